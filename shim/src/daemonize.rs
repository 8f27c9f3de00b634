//! What every long-lived process `start` leaves behind shares: the socket path of a ttrpc
//! address, the bundle's `address` file containerd reads when it reloads shims, and the "ready"
//! handshake with the spawned daemon (its first stdout line: `ready`, or `error: <reason>`).
//! Used by the built-in backend's daemon and by the task API relay.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// How long `start` waits for a spawned daemon to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The line a daemon prints when it serves its socket.
pub const READY_LINE: &str = "ready";

/// The filesystem path of a `unix://` ttrpc address (or of a bare path).
pub fn socket_path(address: &str) -> PathBuf {
    PathBuf::from(address.strip_prefix("unix://").unwrap_or(address))
}

/// Writes `bundle/address` for containerd. The bundle may be writable by a pod, so the temp file
/// is created exclusively and never through a symlink (a planted `.address.tmp -> /etc/x` must
/// not make root write there), and the rename replaces whatever `address` is.
pub fn write_address(bundle: &Path, address: &str) -> io::Result<()> {
    let tmp = bundle.join(format!(".address.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(address.as_bytes()))
        .and_then(|_| std::fs::rename(&tmp, bundle.join("address")))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Read a spawned daemon's first line: `Ok` for `ready`, else its reason.
pub fn read_ready(out: &mut std::process::ChildStdout) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no answer within {}s", READY_TIMEOUT.as_secs()));
        }
        match sys::wait_readable(out.as_fd(), left) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => return Err(format!("waiting for the daemon: {e}")),
        }
        match out.read(&mut chunk) {
            Ok(0) => {
                let text = String::from_utf8_lossy(&buf).trim().to_owned();
                return Err(if text.is_empty() {
                    "it exited without a word".into()
                } else {
                    text
                });
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line = String::from_utf8_lossy(&buf[..pos]).trim().to_owned();
                    return if line == READY_LINE {
                        Ok(())
                    } else {
                        Err(line
                            .strip_prefix("error: ")
                            .map(str::to_owned)
                            .unwrap_or(line))
                    };
                }
                if buf.len() > 64 * 1024 {
                    return Err("daemon answered garbage".into());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the daemon's answer: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn ready_line_parsing() {
        let run = |script: &str| {
            let mut c = Command::new("/bin/sh")
                .args(["-c", script])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let r = read_ready(c.stdout.as_mut().unwrap());
            let _ = c.wait();
            r
        };
        assert_eq!(run("echo ready"), Ok(()));
        assert_eq!(run("echo 'error: boom'"), Err("boom".into()));
        assert!(run("true").is_err());
    }

    #[test]
    fn address_file_replaces_a_planted_symlink_without_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("address")).unwrap();
        write_address(dir.path(), "unix:///run/x").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("address")).unwrap(),
            "unix:///run/x"
        );
        assert_eq!(socket_path("unix:///run/x"), PathBuf::from("/run/x"));
    }
}
