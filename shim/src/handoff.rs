//! Hand-off to another shim v2 binary: find it (a name on `PATH` or an absolute path) and run
//! it with the same argv, working directory, stdin, stderr and environment plus the backend's
//! `env`. `start` runs it as a child and reads its reply (so a version-3 reply can be fronted by
//! the relay, `crate::relay`); `delete` replaces this process with it.
//!
//! While a delegate's `start` runs, the router's `start` is a child subreaper: the shim daemon
//! the delegate spawns is re-parented to the router when the delegate exits. If the router then
//! refuses the pod (a reply it cannot classify, a relay that cannot start), [`stop_orphans`]
//! ends exactly those daemons; on success the router exits and they are re-parented onwards as
//! they would have been without it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The backend's binary cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("backend `{backend}`: shim binary `{binary}` not found on PATH ({path})")]
    NotOnPath {
        backend: String,
        binary: String,
        path: String,
    },
    #[error("backend `{backend}`: shim binary `{binary}` is missing or not an executable file")]
    NotExecutable { backend: String, binary: String },
    #[error(
        "backend `{backend}`: shim binary `{binary}` must be a name on PATH or an absolute path"
    )]
    Relative { backend: String, binary: String },
    #[error("could not run shim binary {binary}: {source}")]
    Exec { binary: PathBuf, source: io::Error },
    #[error("backend `{backend}`: {binary} start failed ({status})")]
    StartFailed {
        backend: String,
        binary: PathBuf,
        status: String,
    },
    #[error("backend `{backend}`: {binary} start {why}")]
    BadReply {
        backend: String,
        binary: PathBuf,
        why: String,
    },
}

/// Longest reply read from a delegate's `start` (a bootstrap reply is well under 1 KiB).
const MAX_REPLY: usize = 64 * 1024;
/// How long a delegate's `start` may take before it is killed.
const START_TIMEOUT: Duration = Duration::from_secs(120);

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolve a backend's `binary` against `path_var` (the `PATH` containerd gave us).
/// Relative `PATH` entries are skipped: the working directory is the bundle.
pub fn resolve(
    backend: &str,
    binary: &str,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, HandoffError> {
    if binary.contains('/') {
        let p = Path::new(binary);
        if !p.is_absolute() {
            return Err(HandoffError::Relative {
                backend: backend.into(),
                binary: binary.into(),
            });
        }
        if is_executable_file(p) {
            return Ok(p.to_owned());
        }
        return Err(HandoffError::NotExecutable {
            backend: backend.into(),
            binary: binary.into(),
        });
    }
    if binary.is_empty() {
        return Err(HandoffError::NotExecutable {
            backend: backend.into(),
            binary: binary.into(),
        });
    }
    let path_var = path_var.map(OsStr::to_owned).unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        if !dir.is_absolute() {
            continue;
        }
        let cand = dir.join(binary);
        if is_executable_file(&cand) {
            return Ok(cand);
        }
    }
    Err(HandoffError::NotOnPath {
        backend: backend.into(),
        binary: binary.into(),
        path: path_var.to_string_lossy().into_owned(),
    })
}

/// Replace this process with `binary`, passing `argv` (argv\[1..\] as received), the current
/// working directory, stdio and environment, plus `env`. Returns only on failure.
pub fn exec(binary: &Path, argv: &[OsString], env: &BTreeMap<String, String>) -> HandoffError {
    log::debug!("handing off to {} {:?}", binary.display(), argv);
    let source = Command::new(binary).args(argv).envs(env).exec();
    HandoffError::Exec {
        binary: binary.to_owned(),
        source,
    }
}

/// Run `binary`'s `start` (`argv` as received) as a child sharing our working directory,
/// stdin and stderr, with `env` added; returns what it printed on stdout once it exited 0.
/// Its stderr reaches containerd as ours would. Never waits past [`START_TIMEOUT`], and stops
/// reading when the child has exited even if a process it left behind holds the pipe open.
pub fn run_start(
    backend: &str,
    binary: &Path,
    argv: &[OsString],
    env: &BTreeMap<String, String>,
) -> Result<Vec<u8>, HandoffError> {
    log::debug!("handing off to {} {:?}", binary.display(), argv);
    let bad = |why: String| HandoffError::BadReply {
        backend: backend.to_owned(),
        binary: binary.to_owned(),
        why,
    };
    // what the delegate leaves running becomes ours, so a refusal can end it (stop_orphans)
    if let Err(e) = crate::sys::set_child_subreaper() {
        log::warn!("cannot become a child subreaper: {e}");
    }
    let mut child = Command::new(binary)
        .args(argv)
        .envs(env)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| HandoffError::Exec {
            binary: binary.to_owned(),
            source,
        })?;
    let Some(mut out) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(bad("gave no stdout pipe".into()));
    };
    let deadline = Instant::now() + START_TIMEOUT;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut exited = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(bad(format!(
                "did not exit within {}s",
                START_TIMEOUT.as_secs()
            )));
        }
        // EOF (the child and all it spawned closed stdout) wakes this at once; the short
        // timeout only matters when a process the child left behind kept the pipe.
        let readable = crate::sys::wait_readable(out.as_fd(), left.min(Duration::from_millis(100)))
            .unwrap_or(true);
        if readable {
            match io::Read::read(&mut out, &mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    reply.extend_from_slice(&chunk[..n]);
                    if reply.len() > MAX_REPLY {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(bad(format!("printed more than {MAX_REPLY} bytes")));
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(bad(format!("output could not be read: {e}"))),
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            if !crate::sys::wait_readable(out.as_fd(), Duration::ZERO).unwrap_or(false) {
                break;
            }
        }
    }
    let status = match exited {
        Some(s) => s,
        None => child
            .wait()
            .map_err(|e| bad(format!("could not be waited for: {e}")))?,
    };
    if !status.success() {
        return Err(HandoffError::StartFailed {
            backend: backend.to_owned(),
            binary: binary.to_owned(),
            status: status.to_string(),
        });
    }
    Ok(reply)
}

/// Ends the processes re-parented to this `start` (the daemons a delegate's `start` left
/// behind, see the module doc): SIGKILL, then reaped, then the socket files they were bound to
/// are removed once nothing answers there (a killed Go shim leaves its socket, and containerd
/// 2.x's runc shim names it nowhere in the bundle). Returns their pids. Only this process's own
/// children are touched: a pod's existing shim, which a container's `start` merely names, is
/// never our child.
pub fn stop_orphans() -> Vec<i32> {
    let me = std::process::id() as i32;
    let pids = children_of(me);
    for &pid in &pids {
        let sockets = bound_sockets(pid);
        match crate::sys::send_signal(pid, libc::SIGKILL as u32) {
            Ok(()) => {
                let _ = crate::sys::wait_child(pid);
                log::debug!("stopped {pid}, left running by a refused delegate");
                for path in sockets {
                    remove_dead_socket(&format!("unix://{path}"));
                }
            }
            Err(e) => log::warn!("cannot stop {pid}, left running by a refused delegate: {e}"),
        }
    }
    pids
}

/// The filesystem paths of the unix sockets `pid` holds open (its `socket:[inode]` descriptors
/// looked up in `/proc/net/unix`).
fn bound_sockets(pid: i32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: std::collections::BTreeSet<String> = fds
        .filter_map(|e| {
            let link = std::fs::read_link(e.ok()?.path()).ok()?;
            let link = link.to_str()?;
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode [Path]
            let cols: Vec<&str> = line.split_whitespace().collect();
            let path = cols.get(7)?;
            (inodes.contains(*cols.get(6)?) && path.starts_with('/')).then(|| (*path).to_owned())
        })
        .collect()
}

/// Removes the socket file of `address` (`unix://PATH`) if nothing listens there any more (a
/// killed Go shim leaves it behind); a socket that still answers is left alone
/// (`crate::stale`).
pub fn remove_dead_socket(address: &str) {
    let Some(path) = crate::stale::socket_path(address) else {
        return;
    };
    match crate::stale::remove_if_dead(&path) {
        Ok(crate::stale::Stale::Removed(p)) => {
            log::debug!("removed the dead delegate socket {}", p.display())
        }
        Ok(_) => {}
        Err(e) => log::warn!(
            "cannot remove the dead delegate socket {}: {e}",
            path.display()
        ),
    }
}

/// The pids whose parent is `ppid` (from `/proc/<pid>/stat`; the field after the command name,
/// which may itself hold spaces and parentheses, so it is read after the last `)`).
fn children_of(ppid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 1..];
        let parent: i32 = after.split_whitespace().nth(1)?.parse().ok()?;
        (parent == ppid).then_some(pid)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exe(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn resolves_names_on_path_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        exe(a.path(), "shim-x", 0o644); // not executable: skipped
        let want = exe(b.path(), "shim-x", 0o755);
        let path = std::env::join_paths(["relative/dir".as_ref(), a.path(), b.path()]).unwrap();
        assert_eq!(resolve("k", "shim-x", Some(&path)).unwrap(), want);
        let e = resolve("kata", "containerd-shim-nope-v2", Some(&path)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`containerd-shim-nope-v2`") && msg.contains("`kata`"),
            "{msg}"
        );
        assert!(resolve("k", "shim-x", None).is_err());
    }

    #[test]
    fn start_reply_is_read_and_failures_are_named() {
        let a = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let p = a.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let env = BTreeMap::from([("X_ROUTER".to_owned(), "v".to_owned())]);
        let ok = script("ok", "printf '%s %s' \"$1\" \"$X_ROUTER\"");
        assert_eq!(
            run_start("b", &ok, &["start".into()], &env).unwrap(),
            b"start v".to_vec()
        );
        let fail = script("fail", "echo reason >&2; exit 3");
        let e = run_start("kata", &fail, &[], &env).unwrap_err().to_string();
        assert!(e.contains("`kata`") && e.contains("exit status: 3"), "{e}");
        // a daemon that keeps stdout open must not hold `start` up
        let lingering = script("linger", "sleep 30 & echo unix:///run/s");
        let t = Instant::now();
        assert_eq!(
            run_start("b", &lingering, &[], &env).unwrap(),
            b"unix:///run/s\n".to_vec()
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        let chatty = script("chatty", "head -c 200000 /dev/zero");
        assert!(run_start("b", &chatty, &[], &env).is_err());
    }

    #[test]
    fn absolute_and_relative_paths() {
        let a = tempfile::tempdir().unwrap();
        let p = exe(a.path(), "s", 0o755);
        assert_eq!(resolve("k", p.to_str().unwrap(), None).unwrap(), p);
        assert!(matches!(
            resolve("k", "bin/s", None),
            Err(HandoffError::Relative { .. })
        ));
        assert!(matches!(
            resolve("k", "/nonexistent/s", None),
            Err(HandoffError::NotExecutable { .. })
        ));
        assert!(matches!(
            resolve("k", a.path().to_str().unwrap(), None),
            Err(HandoffError::NotExecutable { .. })
        ));
    }
}
