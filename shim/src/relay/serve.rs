//! The relay's serving loop: accept containerd's connections on the pod's relay socket, open one
//! connection to the delegate for each, and move whole ttrpc frames both ways — requests renamed
//! to the delegate's task service and `Create` checked first, responses unchanged. Blocking I/O on
//! small-stack threads (two per connection; containerd opens a few per pod): the relay does no
//! work of its own beyond framing.

use std::io;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::frame::{self, Frame};
use crate::admission::Admission;

/// Stack of each relay thread: they only hold a frame buffer (on the heap) and a few locals.
const THREAD_STACK: usize = 64 * 1024;
/// How long open connections may drain once the delegate is gone.
const DRAIN: Duration = Duration::from_secs(5);

/// The task service containerd calls, and the one the delegate serves.
#[derive(Debug, Clone, Copy)]
pub struct Rename {
    pub from: &'static str,
    pub to: &'static str,
}

/// A bound relay, ready to run.
pub struct Relay {
    listener: UnixListener,
    listen_path: PathBuf,
    watch: UnixStream,
    shared: Arc<Shared>,
}

struct Shared {
    delegate: PathBuf,
    rename: Rename,
    gate: Admission,
    active: Mutex<usize>,
    idle: Condvar,
}

impl Relay {
    /// Connects to the delegate (it must be serving) and listens on `listen`.
    pub fn bind(
        listen: &Path,
        delegate: &Path,
        rename: Rename,
        gate: Admission,
    ) -> io::Result<Relay> {
        let watch = UnixStream::connect(delegate)?;
        if let Some(dir) = listen.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let listener = UnixListener::bind(listen)?;
        Ok(Relay {
            listener,
            listen_path: listen.to_owned(),
            watch,
            shared: Arc::new(Shared {
                delegate: delegate.to_owned(),
                rename,
                gate,
                active: Mutex::new(0),
                idle: Condvar::new(),
            }),
        })
    }

    /// Serves until the delegate is gone, then lets open connections drain and removes the
    /// socket.
    pub fn run(self) {
        let Relay {
            listener,
            listen_path,
            mut watch,
            shared,
        } = self;
        let acceptor = shared.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(conn) => acceptor.clone().serve_connection(conn),
                        Err(e) => log::warn!("relay accept: {e}"),
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("relay: cannot start the accept thread: {e}");
            let _ = std::fs::remove_file(&listen_path);
            return;
        }
        // The delegate never writes on this idle connection: a read returns when it is gone.
        let mut sink = [0u8; 64];
        loop {
            match io::Read::read(&mut watch, &mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        log::info!("relay: the delegate shim is gone; exiting");
        let _ = std::fs::remove_file(&listen_path);
        let deadline = Instant::now() + DRAIN;
        let mut active = shared.lock_active();
        while *active > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            active = match shared.idle.wait_timeout(active, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Counts one open connection while alive.
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        let mut n = self.0.lock_active();
        *n = n.saturating_sub(1);
        self.0.idle.notify_all();
    }
}

impl Shared {
    fn lock_active(&self) -> std::sync::MutexGuard<'_, usize> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serve_connection(self: Arc<Self>, client: UnixStream) {
        *self.lock_active() += 1;
        let active = Active(self.clone());
        let spawned = std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _active = active;
                if let Err(e) = self.relay_connection(client) {
                    log::debug!("relay connection ended: {e}");
                }
            });
        if let Err(e) = spawned {
            log::warn!("relay: cannot serve a connection: {e}");
        }
    }

    fn relay_connection(&self, client: UnixStream) -> io::Result<()> {
        let delegate = UnixStream::connect(&self.delegate)?;
        let to_client = Arc::new(Mutex::new(client.try_clone()?));
        let down = {
            let mut from_delegate = delegate.try_clone()?;
            let to_client = to_client.clone();
            let client = client.try_clone()?;
            std::thread::Builder::new()
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    // Responses (and anything else the delegate sends) go back unchanged.
                    while let Ok(Some(f)) = frame::read_frame(&mut from_delegate) {
                        let mut w = to_client.lock().unwrap_or_else(|p| p.into_inner());
                        if frame::write_frame(&mut *w, &f).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(Shutdown::Both);
                })?
        };
        let mut from_client = client;
        let mut to_delegate = delegate;
        let result = (|| -> io::Result<()> {
            while let Some(f) = frame::read_frame(&mut from_client)? {
                match self.forward(f) {
                    Forward::Delegate(f) => frame::write_frame(&mut to_delegate, &f)?,
                    Forward::Answer(f) => {
                        let mut w = to_client.lock().unwrap_or_else(|p| p.into_inner());
                        frame::write_frame(&mut *w, &f)?;
                    }
                }
            }
            Ok(())
        })();
        let _ = to_delegate.shutdown(Shutdown::Write);
        let _ = down.join();
        result
    }

    /// What to do with one frame from containerd.
    fn forward(&self, mut f: Frame) -> Forward {
        if f.kind != frame::TYPE_REQUEST {
            return Forward::Delegate(f);
        }
        let Some(req) = frame::parse_request(&f.payload) else {
            return Forward::Delegate(f);
        };
        let task_service = req.service == self.rename.from || req.service == self.rename.to;
        if task_service && req.method == "Create" {
            let id = frame::create_task_id(req.payload).unwrap_or_default();
            if let Err(why) = self.gate.check(id) {
                log::warn!("{why}");
                return Forward::Answer(Frame {
                    stream_id: f.stream_id,
                    kind: frame::TYPE_RESPONSE,
                    flags: 0,
                    payload: frame::error_response(frame::CODE_FAILED_PRECONDITION, &why),
                });
            }
        }
        if req.service == self.rename.from {
            if let Some(renamed) = frame::with_service(&f.payload, self.rename.to) {
                f.payload = renamed;
            }
        }
        Forward::Delegate(f)
    }
}

enum Forward {
    /// Send to the delegate.
    Delegate(Frame),
    /// Answer containerd directly.
    Answer(Frame),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DecisionRecord;
    use crate::records::RecordStore;
    use std::sync::mpsc;

    fn record(id: &str, sandbox: &str) -> DecisionRecord {
        crate::record::test_record(id, sandbox)
    }

    fn create(stream_id: u32, service: &str, id: &str) -> Frame {
        Frame {
            stream_id,
            kind: frame::TYPE_REQUEST,
            flags: 0,
            payload: frame::request(service, "Create", &frame::string_message(1, id)),
        }
    }

    /// A delegate that answers every request with an empty OK response on the same stream and
    /// reports the (service, method) it saw.
    fn fake_delegate(
        listener: UnixListener,
        seen: mpsc::Sender<(String, String)>,
    ) -> Arc<Mutex<Vec<UnixStream>>> {
        let conns = Arc::new(Mutex::new(Vec::new()));
        let held = conns.clone();
        std::thread::spawn(move || {
            // the relay's idle watch connection, then one per relayed connection
            for conn in listener.incoming().flatten() {
                held.lock().unwrap().push(conn.try_clone().unwrap());
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut conn = conn;
                    while let Ok(Some(f)) = frame::read_frame(&mut conn) {
                        if let Some(r) = frame::parse_request(&f.payload) {
                            let _ = seen.send((r.service.to_owned(), r.method.to_owned()));
                        }
                        let reply = Frame {
                            stream_id: f.stream_id,
                            kind: frame::TYPE_RESPONSE,
                            flags: 0,
                            payload: Vec::new(),
                        };
                        if frame::write_frame(&mut conn, &reply).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        conns
    }

    #[test]
    fn renames_the_service_refuses_unrecorded_creates_and_exits_with_the_delegate() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = RecordStore::open(&state, "/run/c.sock", "k8s.io", true)
            .unwrap()
            .unwrap();
        store.write("ctr-ok", &record("ctr-ok", "pod-1")).unwrap();
        let delegate_path = dir.path().join("delegate.sock");
        let delegate = UnixListener::bind(&delegate_path).unwrap();
        let (tx, seen) = mpsc::channel();
        let delegate_conns = fake_delegate(delegate, tx);
        let listen = dir.path().join("relay/relay.sock");
        let relay = Relay::bind(
            &listen,
            &delegate_path,
            Rename {
                from: "containerd.task.v2.Task",
                to: "containerd.task.v3.Task",
            },
            Admission {
                state,
                address: "/run/c.sock".into(),
                namespace: "k8s.io".into(),
                sandbox_id: "pod-1".into(),
                publish_binary: String::new(),
            },
        )
        .unwrap();
        let done = std::thread::spawn(move || relay.run());

        let mut c = UnixStream::connect(&listen).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // a task the router never decided: answered by the relay, never reaches the delegate
        frame::write_frame(&mut c, &create(1, "containerd.task.v2.Task", "ctr-rogue")).unwrap();
        let r = frame::read_frame(&mut c).unwrap().unwrap();
        assert_eq!((r.stream_id, r.kind), (1, frame::TYPE_RESPONSE));
        assert_eq!(frame::response_payload(&r.payload), None);
        let text = String::from_utf8_lossy(&r.payload).into_owned();
        assert!(
            text.contains("ctr-rogue") && text.contains("pod-1"),
            "{text}"
        );
        // a decided one: forwarded with the delegate's service name
        frame::write_frame(&mut c, &create(3, "containerd.task.v2.Task", "ctr-ok")).unwrap();
        let r = frame::read_frame(&mut c).unwrap().unwrap();
        assert_eq!(r.stream_id, 3);
        assert_eq!(frame::response_payload(&r.payload), Some(&[][..]));
        let got = seen.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, ("containerd.task.v3.Task".into(), "Create".into()));
        // other methods pass, renamed
        let state_req = Frame {
            stream_id: 5,
            kind: frame::TYPE_REQUEST,
            flags: 0,
            payload: frame::request("containerd.task.v2.Task", "State", &[]),
        };
        frame::write_frame(&mut c, &state_req).unwrap();
        assert_eq!(frame::read_frame(&mut c).unwrap().unwrap().stream_id, 5);
        assert_eq!(
            seen.recv_timeout(Duration::from_secs(10)).unwrap(),
            ("containerd.task.v3.Task".into(), "State".into())
        );
        assert!(
            seen.try_recv().is_err(),
            "the rogue Create reached the delegate"
        );

        // the delegate dies (its sockets close): the relay closes containerd's connection,
        // removes its socket and returns
        for conn in delegate_conns.lock().unwrap().iter() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        assert_eq!(frame::read_frame(&mut c).ok().flatten(), None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done.is_finished() {
            assert!(Instant::now() < deadline, "relay still running");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!listen.exists(), "relay socket left behind");
    }
}
