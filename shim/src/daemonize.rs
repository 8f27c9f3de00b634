//! What every long-lived process `start` leaves behind shares: the socket path of a ttrpc
//! address, the bundle's `address` file containerd reads when it reloads shims, and the "ready"
//! handshake with the spawned daemon (its first stdout line: `ready`, or `error: <reason>`).
//! Used by the built-in backend's daemon and by the task API relay, both spawned by
//! [`spawn_self`].

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::args::ShimArgs;
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

/// Spawns this binary with no action as a long-lived daemon serving `address` for `args`'s task:
/// cwd `bundle`, its own session, stdin and stderr on /dev/null, stdout on a pipe that carries
/// only its ready line (containerd 1.6 reads `start`'s output until every writer closes), `env`
/// added. Returns once it serves; on any failure the daemon is killed and its socket removed.
pub fn spawn_self(
    args: &ShimArgs,
    bundle: &Path,
    address: &str,
    env: &[(&str, &str)],
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("find own executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.current_dir(bundle)
        .args(["-namespace", &args.namespace])
        .args(["-id", &args.id])
        .args(["-address", &args.address])
        .args(["-publish-binary", &args.publish_binary])
        .args(["-socket", address]);
    if args.debug {
        cmd.arg("-debug");
    }
    cmd.envs(env.iter().copied())
        // One malloc arena: the daemons are single-threaded or nearly, more arenas only cost
        // memory.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    sys::spawn_in_new_session(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let outcome = match child.stdout.take() {
        Some(mut out) => read_ready(&mut out),
        None => Err("no pipe to the daemon".into()),
    };
    outcome.inspect_err(|_| {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(socket_path(address));
    })
}

/// The daemon's side of the handshake, once it serves: print the ready line, then let go of
/// `start`'s pipe (stdout goes to /dev/null).
pub fn announce_ready() {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{READY_LINE}");
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = sys::redirect_stdout(&null);
    }
}

/// The daemon's side of the handshake when it cannot serve: until "ready", stdout is `start`'s
/// pipe, so the reason reaches containerd from there. Returns the exit code.
pub fn report_failure(reason: &dyn std::fmt::Display) -> i32 {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "error: {reason}");
    let _ = out.flush();
    1
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
