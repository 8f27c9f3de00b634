//! The `start` action of the built-in backend. For a pod (or a task outside any pod) it spawns
//! the shim daemon — this same binary with no action, in its own session, stdin and stderr on
//! /dev/null and stdout on a pipe that only carries its "ready" line (containerd 1.6 reads
//! `start`'s output until every writer closes, so the daemon must not keep it) — waits until
//! the daemon serves its socket, and writes the bundle's `address` file (read by containerd
//! when it reloads shims after a restart). For a container of a pod it finds the pod's running
//! daemon and returns its address: one daemon per pod. A failed start leaves no daemon and no
//! socket behind.

use std::os::unix::net::UnixStream;
use std::path::Path;

use super::{ensure_namespace, BuiltinBackend, BuiltinError, ENV_RUNTIME, ENV_RUNTIME_ARGS};
use crate::args::ShimArgs;
use crate::daemonize::socket_path;

fn write_address(bundle: &Path, address: &str) -> Result<(), BuiltinError> {
    crate::daemonize::write_address(bundle, address).map_err(|e| BuiltinError::Io {
        what: format!("write {}/address", bundle.display()),
        source: e,
    })
}

/// The socket address of the daemon serving `grouping` (the pod's sandbox id).
pub fn daemon_address(args: &ShimArgs, grouping: &str) -> String {
    containerd_shim::socket_address(&args.address, &args.namespace, grouping)
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
    let runtime_args = serde_json::to_string(&backend.runtime_args)
        .map_err(|e| BuiltinError::Invocation(format!("runtime_args: {e}")))?;
    let runtime = backend.runtime.to_string_lossy();
    crate::daemonize::spawn_self(
        args,
        bundle,
        address,
        &[(ENV_RUNTIME, &runtime), (ENV_RUNTIME_ARGS, &runtime_args)],
    )
    .map_err(BuiltinError::Daemon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(id: &str) -> ShimArgs {
        crate::args::test_args(id)
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
}
