//! The `start` action of the built-in backend. For a pod (or a task outside any pod) it spawns
//! the shim daemon — this same binary with no action, in its own session, stdin and stderr on
//! /dev/null and stdout on a pipe that only carries its "ready" line (containerd 1.6 reads
//! `start`'s output until every writer closes, so the daemon must not keep it) — waits until
//! the daemon serves its socket, and writes the bundle's `address` file (read by containerd
//! when it reloads shims after a restart). For a container of a pod it finds the pod's running
//! daemon and returns its address: one daemon per pod. A failed start leaves no daemon and no
//! socket behind.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ensure_namespace, BuiltinBackend, BuiltinError, ENV_RUNTIME, ENV_RUNTIME_ARGS};
use crate::args::ShimArgs;
use crate::sys;

/// How long `start` waits for the daemon to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The line the daemon prints when it serves its socket.
pub(crate) const READY_LINE: &str = "ready";

/// The socket address of the daemon serving `grouping` (the pod's sandbox id).
pub fn daemon_address(args: &ShimArgs, grouping: &str) -> String {
    containerd_shim::socket_address(&args.address, &args.namespace, grouping)
}

fn socket_path(address: &str) -> PathBuf {
    PathBuf::from(address.strip_prefix("unix://").unwrap_or(address))
}

/// Writes `bundle/address` for containerd. The bundle may be writable by a pod, so the temp file
/// is created exclusively and never through a symlink (a planted `.address.tmp -> /etc/x` must
/// not make root write there), and the rename replaces whatever `address` is.
fn write_address(bundle: &Path, address: &str) -> Result<(), BuiltinError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
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
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            BuiltinError::Io {
                what: format!("write {}/address", bundle.display()),
                source: e,
            }
        })
}

/// `start` for the built-in backend; returns the address to print on stdout.
pub fn start(
    args: &ShimArgs,
    backend: &BuiltinBackend,
    bundle: &Path,
    sandbox_id: Option<&str>,
) -> Result<String, BuiltinError> {
    ensure_namespace(args)?;
    if let Some(sandbox) = sandbox_id.filter(|s| *s != args.id) {
        let address = daemon_address(args, sandbox);
        UnixStream::connect(socket_path(&address)).map_err(|e| BuiltinError::NoPodShim {
            sandbox_id: sandbox.to_owned(),
            address: address.clone(),
            reason: e.to_string(),
        })?;
        write_address(bundle, &address)?;
        return Ok(address);
    }
    if super::runsc::detect::is_runsc(&backend.runtime) {
        super::runsc::detect::check_platform(&backend.runtime, &backend.runtime_args)
            .map_err(|e| BuiltinError::Invocation(e.to_string()))?;
    }
    let address = daemon_address(args, &args.id);
    let path = socket_path(&address);
    if UnixStream::connect(&path).is_ok() {
        // containerd retried a start whose daemon is already serving.
        write_address(bundle, &address)?;
        return Ok(address);
    }
    let _ = std::fs::remove_file(&path);
    log::debug!("spawning the pod's shim daemon at {address}");
    spawn_daemon(args, backend, bundle, &address)?;
    log::debug!("shim daemon ready");
    if let Err(e) = write_address(bundle, &address) {
        // The daemon exits by itself when no container arrives; the socket must go now.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(address)
}

fn spawn_daemon(
    args: &ShimArgs,
    backend: &BuiltinBackend,
    bundle: &Path,
    address: &str,
) -> Result<(), BuiltinError> {
    let exe = std::env::current_exe().map_err(|e| BuiltinError::Io {
        what: "find own executable".into(),
        source: e,
    })?;
    let runtime_args = serde_json::to_string(&backend.runtime_args)
        .map_err(|e| BuiltinError::Invocation(format!("runtime_args: {e}")))?;
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
    cmd.env(ENV_RUNTIME, &backend.runtime)
        .env(ENV_RUNTIME_ARGS, runtime_args)
        // One malloc arena: the daemon is single-threaded, more arenas only cost memory.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    sys::spawn_in_new_session(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| BuiltinError::Io {
        what: "spawn shim daemon".into(),
        source: e,
    })?;
    let outcome = match child.stdout.take() {
        Some(mut out) => read_ready(&mut out),
        None => Err("no pipe to the daemon".into()),
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(reason) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(socket_path(address));
            Err(BuiltinError::Daemon(reason))
        }
    }
}

/// Read the daemon's first line: `ready`, or `error: ...`.
fn read_ready(out: &mut std::process::ChildStdout) -> Result<(), String> {
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
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the daemon's answer: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn args(id: &str) -> ShimArgs {
        ShimArgs::parse(
            [
                "-namespace",
                "k8s.io",
                "-address",
                "/run/c.sock",
                "-id",
                id,
                "start",
            ]
            .iter()
            .map(OsString::from)
            .collect(),
        )
        .unwrap()
    }

    #[test]
    fn pod_containers_share_the_sandbox_address() {
        let a = daemon_address(&args("sandbox"), "sandbox");
        let b = daemon_address(&args("container"), "sandbox");
        assert_eq!(a, b);
        assert!(a.starts_with("unix:///run/containerd/s/"), "{a}");
        assert_ne!(a, daemon_address(&args("other"), "other"));
    }

    #[test]
    fn container_without_pod_daemon_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuiltinBackend {
            runtime: "/usr/sbin/runc".into(),
            runtime_args: vec![],
        };
        let e = start(&args("c1"), &b, dir.path(), Some("no-such-pod-sandbox")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("no-such-pod-sandbox"), "{msg}");
        assert!(!dir.path().join("address").exists());
    }

    #[test]
    fn ready_line_parsing() {
        let mut c = Command::new("/bin/sh")
            .args(["-c", "echo ready"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(read_ready(c.stdout.as_mut().unwrap()).is_ok());
        let _ = c.wait();
        let mut c = Command::new("/bin/sh")
            .args(["-c", "echo 'error: boom'"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        assert_eq!(read_ready(c.stdout.as_mut().unwrap()), Err("boom".into()));
        let _ = c.wait();
        let mut c = Command::new("/bin/true")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(read_ready(c.stdout.as_mut().unwrap()).is_err());
        let _ = c.wait();
    }
}
