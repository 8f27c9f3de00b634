//! OOM notification for a container: on cgroup v1, an eventfd registered on the container's
//! `memory.oom_control` (through `cgroup.event_control`); on cgroup v2, a poll of the `oom_kill`
//! counter in `memory.events`. Each OOM is reported once through the callback (the daemon
//! publishes TaskOOM; CRI then reports the container's reason as OOMKilled).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::sys;

/// Where a process's memory cgroup is, by hierarchy version.
#[derive(Debug, PartialEq, Eq)]
pub enum MemoryCgroup {
    V1(PathBuf),
    V2(PathBuf),
}

/// Find the memory cgroup of `pid` from `/proc/PID/cgroup` text.
pub fn memory_cgroup_from(text: &str) -> Option<MemoryCgroup> {
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if ctrls.split(',').any(|c| c == "memory") {
            return Some(MemoryCgroup::V1(
                Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')),
            ));
        }
        if ctrls.is_empty() {
            unified = Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
        }
    }
    if crate::builtin::stats::host_is_cgroup_v2() {
        return unified.map(MemoryCgroup::V2);
    }
    None
}

/// Watch `pid`'s memory cgroup for OOM kills until `stop` fires or the cgroup goes away
/// (`None`: nothing to watch).
pub fn watch(pid: Option<i32>, stop: oneshot::Receiver<()>, on_oom: impl Fn() + Send + 'static) {
    let Some(pid) = pid else { return };
    let text = match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("oom watch: read cgroup of pid {pid}: {e}");
            return;
        }
    };
    match memory_cgroup_from(&text) {
        Some(MemoryCgroup::V1(dir)) => match register_v1(&dir) {
            Ok(efd) => {
                tokio::spawn(watch_v1(dir, efd, stop, on_oom));
            }
            Err(e) => log::warn!("oom watch on {}: {e}", dir.display()),
        },
        Some(MemoryCgroup::V2(dir)) => {
            tokio::spawn(watch_v2(dir, stop, on_oom));
        }
        None => log::debug!("oom watch: no memory cgroup for pid {pid}"),
    }
}

fn register_v1(dir: &Path) -> std::io::Result<OwnedFd> {
    let control = File::open(dir.join("memory.oom_control"))?;
    let efd = sys::eventfd()?;
    let mut ev = OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))?;
    ev.write_all(format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()).as_bytes())?;
    // The kernel holds its own reference to the control file once registered.
    Ok(efd)
}

async fn watch_v1(
    dir: PathBuf,
    efd: OwnedFd,
    mut stop: oneshot::Receiver<()>,
    on_oom: impl Fn() + Send + 'static,
) {
    let Ok(afd) = sys::async_file(File::from(efd)) else {
        return;
    };
    loop {
        let ready = tokio::select! {
            _ = &mut stop => return,
            r = afd.readable() => r,
        };
        let Ok(mut guard) = ready else { return };
        let mut buf = [0u8; 8];
        match guard.try_io(|f| f.get_ref().read(&mut buf)) {
            Ok(Ok(8)) => {
                // The eventfd also fires when the cgroup is removed.
                if !dir.exists() {
                    return;
                }
                on_oom();
            }
            Ok(_) => return,
            Err(_would_block) => continue,
        }
    }
}

fn oom_kills_v2(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("memory.events")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

async fn watch_v2(
    dir: PathBuf,
    mut stop: oneshot::Receiver<()>,
    on_oom: impl Fn() + Send + 'static,
) {
    let Some(mut seen) = oom_kills_v2(&dir) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        match oom_kills_v2(&dir) {
            Some(n) if n > seen => {
                seen = n;
                on_oom();
            }
            Some(_) => {}
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_memory_line_is_found() {
        let text = "12:pids:/k8s/abc\n5:memory:/k8s/abc\n0::/k8s/abc\n";
        assert_eq!(
            memory_cgroup_from(text),
            Some(MemoryCgroup::V1(PathBuf::from(
                "/sys/fs/cgroup/memory/k8s/abc"
            )))
        );
    }

    #[test]
    fn combined_controllers_line() {
        let text = "4:cpu,memory:/x\n";
        assert_eq!(
            memory_cgroup_from(text),
            Some(MemoryCgroup::V1(PathBuf::from("/sys/fs/cgroup/memory/x")))
        );
    }
}
