//! Child reaping for the daemon. The daemon is a child subreaper: `runc` CLI runs, container
//! inits (re-parented after `runc create` exits) and exec'd processes (after `runc exec` exits)
//! are all our children. On every SIGCHLD this module reaps every exited child with
//! `waitpid(-1, WNOHANG)` and hands each exit to whoever subscribed to that pid. An exit nobody
//! has asked for yet (a process that died before we read its pid file) is kept for a while, so
//! a later subscription still gets it: no zombie, no lost exit status.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use crate::sys;

/// How long an exit nobody subscribed to is kept.
const UNCLAIMED_TTL: Duration = Duration::from_secs(60);
/// At most this many unclaimed exits are kept (orphans of no interest are dropped first).
const UNCLAIMED_MAX: usize = 256;

/// One process exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// Exit code, or 128 + signal number.
    pub status: u32,
    pub at: SystemTime,
}

#[derive(Default)]
struct Inner {
    waiters: HashMap<i32, oneshot::Sender<Exit>>,
    unclaimed: VecDeque<(Instant, Exit)>,
}

/// The process-wide table of pids being waited for.
pub struct Reaper {
    inner: Mutex<Inner>,
}

static REAPER: LazyLock<Reaper> = LazyLock::new(|| Reaper {
    inner: Mutex::new(Inner::default()),
});

/// The daemon's reaper.
pub fn reaper() -> &'static Reaper {
    &REAPER
}

impl Reaper {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock aborts the process (panic = abort), so poisoning
        // cannot be observed in release builds; recover the data in any case.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Be told when `pid` exits. If it already exited (and was reaped), the exit is delivered
    /// at once.
    pub fn subscribe(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        if let Some(pos) = inner.unclaimed.iter().position(|(_, e)| e.pid == pid) {
            if let Some((_, exit)) = inner.unclaimed.remove(pos) {
                let _ = tx.send(exit);
                return rx;
            }
        }
        inner.waiters.insert(pid, tx);
        rx
    }

    /// Record one reaped child.
    fn deliver(&self, exit: Exit) {
        let mut inner = self.lock();
        if let Some(tx) = inner.waiters.remove(&exit.pid) {
            if tx.send(exit).is_ok() {
                return;
            }
        }
        let now = Instant::now();
        while let Some((t, _)) = inner.unclaimed.front() {
            if now.duration_since(*t) > UNCLAIMED_TTL || inner.unclaimed.len() >= UNCLAIMED_MAX {
                inner.unclaimed.pop_front();
            } else {
                break;
            }
        }
        inner.unclaimed.push_back((now, exit));
    }

    /// Reap every exited child now.
    pub fn reap_all(&self) {
        loop {
            match sys::reap_one() {
                Ok(Some(r)) => {
                    log::debug!("reaped pid {} status {}", r.pid, r.status);
                    self.deliver(Exit {
                        pid: r.pid,
                        status: r.status,
                        at: SystemTime::now(),
                    });
                }
                Ok(None) => return,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    return;
                }
            }
        }
    }

    /// Install the SIGCHLD listener and reap on every signal. Must run inside the runtime
    /// before any child is spawned.
    pub fn start(&'static self) -> std::io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        tokio::spawn(async move {
            // A child may have exited before the listener existed.
            self.reap_all();
            while sigchld.recv().await.is_some() {
                self.reap_all();
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(pid: i32) -> Exit {
        Exit {
            pid,
            status: 3,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn exit_before_subscription_is_kept() {
        let r = Reaper {
            inner: Mutex::new(Inner::default()),
        };
        r.deliver(exit(42));
        let mut rx = r.subscribe(42);
        assert_eq!(rx.try_recv().map(|e| e.status), Ok(3));
        // taken once only
        let mut rx = r.subscribe(42);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn subscription_gets_later_exit_and_unclaimed_is_bounded() {
        let r = Reaper {
            inner: Mutex::new(Inner::default()),
        };
        let mut rx = r.subscribe(7);
        r.deliver(exit(7));
        assert_eq!(rx.try_recv().map(|e| e.pid), Ok(7));
        for pid in 1000..(1000 + UNCLAIMED_MAX as i32 + 50) {
            r.deliver(exit(pid));
        }
        assert!(r.lock().unclaimed.len() <= UNCLAIMED_MAX);
    }
}
