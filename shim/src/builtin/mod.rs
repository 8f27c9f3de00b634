//! The built-in backend: this binary becomes the pod's shim daemon (ttrpc Task service for
//! containerd) and drives an OCI runtime CLI such as runc. Entry points for `start.rs`,
//! `delete.rs` and `main.rs`:
//! - [`start`]: the `start` action for a pod (spawns the daemon) or for a container of a pod
//!   (finds the pod's daemon); returns the address to print.
//! - [`delete`]: the `delete` action after a daemon is gone: force-delete through the runtime,
//!   unmount the rootfs, and the `DeleteResponse` bytes to print.
//! - [`run_daemon`]: the daemon itself (no action argument; spawned by [`start`]).

mod cgroupdir;
mod cleanup;
mod daemon;
mod launch;
mod ociruntime;
mod oom;
mod piddir;
mod pin;
mod reaper;
mod rootfs;
// runsc (gVisor) rules, owned by epsilon: see docs/gvisor.md "Integration".
mod runsc;
pub(crate) mod stats;
mod stdio;
mod task;

use std::path::{Path, PathBuf};

use crate::args::ShimArgs;

pub use cleanup::delete;
pub use daemon::run_daemon;
pub use launch::start;

/// The built-in backend's configuration (from `BackendKind::Builtin` of the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinBackend {
    /// The OCI runtime CLI (absolute path or a name on PATH).
    pub runtime: PathBuf,
    /// Global arguments given to the runtime before every command.
    pub runtime_args: Vec<String>,
}

/// What went wrong in the built-in backend; each message names the thing that failed.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run OCI runtime {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("OCI runtime {what} failed: {message}")]
    Runtime { what: String, message: String },
    #[error("pod sandbox {sandbox_id} has no running shim at {address}: {reason}")]
    NoPodShim {
        sandbox_id: String,
        address: String,
        reason: String,
    },
    #[error("shim daemon did not start: {0}")]
    Daemon(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("bad daemon invocation: {0}")]
    Invocation(String),
}

/// The runtime's state directory for a containerd namespace: one per runtime binary, so runc
/// and runsc state never mix.
pub fn runtime_root(backend: &BuiltinBackend, namespace: &str) -> PathBuf {
    let name = backend
        .runtime
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "runtime".into());
    crate::statedir::state_dir().join(name).join(namespace)
}

/// The root a pod's containers are kept in by the runtime: for runsc, a directory of the pod's
/// own inside [`runtime_root`] (named by its sandbox id); for runc, the shared root.
///
/// Why runsc gets one: runsc (Debian 12's 2022-12 build) loads a sandbox's containers by
/// listing *every* container of its root and locking each. A pod's `runsc delete` racing
/// another pod's removal then re-creates the other pod's lock file after that pod's delete
/// removed it: an empty `<id>_sandbox:<id>.lock` is left behind for good. In a root of its own
/// a pod's runsc never touches another pod's files (and lists only its own containers).
pub fn pod_runtime_root(backend: &BuiltinBackend, namespace: &str, sandbox_id: &str) -> PathBuf {
    let shared = runtime_root(backend, namespace);
    if runsc::detect::is_runsc(&backend.runtime) {
        shared.join(sandbox_id)
    } else {
        shared
    }
}

/// What [`remove_pod_runtime_root`] does with lock files in a pod's own root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodLocks {
    /// Leave them: the pod may still have containers, or a `runsc create` may be under way.
    Keep,
    /// Remove the lock files that have no state file beside them first. Only for a daemon
    /// exiting with no container left.
    ///
    /// Why: the cross-pod race described at [`pod_runtime_root`] also happens inside one pod.
    /// When a gVisor sandbox is killed, containerd deletes the sandbox task as soon as it sees
    /// its exit, while the pod's other containers are still being deleted; a `runsc delete` of
    /// one of them locks every container of the root and so re-creates the sandbox's lock file
    /// that the sandbox's delete had just removed. A lock without a state file names no
    /// container. With no container left in the daemon and the daemon no longer serving, no
    /// `runsc create` of this pod (which makes the lock before the state) can be under way, so
    /// such a lock is garbage.
    RemoveOrphans,
}

/// Removes a pod's own runtime root once it is empty (its last container deleted), after
/// removing orphan locks if `locks` says so; the shared root is never touched. A root still
/// holding state is left and logged: the next delete of the pod tries again.
pub fn remove_pod_runtime_root(
    backend: &BuiltinBackend,
    namespace: &str,
    root: &Path,
    locks: PodLocks,
) {
    if root == runtime_root(backend, namespace) {
        return;
    }
    if locks == PodLocks::RemoveOrphans {
        remove_orphan_locks(root);
    }
    remove_dir_if_empty(root);
}

fn remove_orphan_locks(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let orphan =
            path.extension().is_some_and(|e| e == "lock") && !path.with_extension("state").exists();
        if orphan {
            match std::fs::remove_file(&path) {
                Ok(()) => log::info!("removed orphan runsc lock {}", path.display()),
                Err(e) => log::warn!("remove orphan runsc lock {}: {e}", path.display()),
            }
        }
    }
}

fn remove_dir_if_empty(root: &Path) {
    match std::fs::remove_dir(root) {
        Ok(()) => log::debug!("removed pod runtime root {}", root.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
            let left: Vec<String> = std::fs::read_dir(root)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            log::info!("pod runtime root {} kept, holding {left:?}", root.display());
        }
        Err(e) => log::warn!("remove pod runtime root {}: {e}", root.display()),
    }
}

/// Environment variables carrying the backend to the daemon.
pub(crate) const ENV_RUNTIME: &str = "RUNTIME_ROUTER_BUILTIN_RUNTIME";
pub(crate) const ENV_RUNTIME_ARGS: &str = "RUNTIME_ROUTER_BUILTIN_RUNTIME_ARGS";

fn ensure_namespace(args: &ShimArgs) -> Result<(), BuiltinError> {
    if args.namespace.is_empty() || args.namespace.contains('/') || args.namespace == ".." {
        return Err(BuiltinError::Invocation(format!(
            "bad -namespace {:?}",
            args.namespace
        )));
    }
    if args.id.is_empty() {
        return Err(BuiltinError::Invocation("missing -id".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runsc_backend() -> BuiltinBackend {
        BuiltinBackend {
            runtime: "/usr/bin/runsc".into(),
            runtime_args: vec![],
        }
    }

    #[test]
    fn runtime_root_is_per_runtime_and_namespace() {
        let b = BuiltinBackend {
            runtime: "/usr/sbin/runc".into(),
            runtime_args: vec![],
        };
        assert_eq!(
            runtime_root(&b, "k8s.io"),
            PathBuf::from("/run/runtime-router/runc/k8s.io")
        );
        assert_eq!(
            pod_runtime_root(&b, "k8s.io", "sb1"),
            PathBuf::from("/run/runtime-router/runc/k8s.io"),
            "runc pods share their namespace's root"
        );
    }

    #[test]
    fn runsc_pods_get_a_root_of_their_own() {
        let b = runsc_backend();
        assert_eq!(
            pod_runtime_root(&b, "k8s.io", "sb1"),
            PathBuf::from("/run/runtime-router/runsc/k8s.io/sb1")
        );
    }

    #[test]
    fn a_pod_root_goes_when_empty_and_the_shared_root_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = runsc_backend();
        let shared = runtime_root(&b, "ns");
        // the shared root is never removed, even when empty
        remove_pod_runtime_root(&b, "ns", &shared, PodLocks::Keep);
        let pod = dir.path().join("sb1");
        std::fs::create_dir(&pod).unwrap();
        std::fs::write(pod.join("c1_sandbox:sb1.state"), "{}").unwrap();
        remove_pod_runtime_root(&b, "ns", &pod, PodLocks::Keep);
        assert!(pod.exists(), "a root holding state stays");
        std::fs::remove_file(pod.join("c1_sandbox:sb1.state")).unwrap();
        remove_pod_runtime_root(&b, "ns", &pod, PodLocks::Keep);
        assert!(!pod.exists(), "an empty pod root goes");
        remove_pod_runtime_root(&b, "ns", &pod, PodLocks::Keep);
    }

    #[test]
    fn an_exited_pod_root_loses_orphan_locks_but_not_live_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = runsc_backend();
        let pod = dir.path().join("sb1");
        std::fs::create_dir(&pod).unwrap();
        // a container that still exists: its lock and state stay
        std::fs::write(pod.join("c1_sandbox:sb1.state"), "{}").unwrap();
        std::fs::write(pod.join("c1_sandbox:sb1.lock"), "").unwrap();
        // the sandbox's lock re-created after its delete: no state beside it
        std::fs::write(pod.join("sb1_sandbox:sb1.lock"), "").unwrap();
        remove_pod_runtime_root(&b, "ns", &pod, PodLocks::RemoveOrphans);
        assert!(pod.join("c1_sandbox:sb1.state").exists());
        assert!(
            pod.join("c1_sandbox:sb1.lock").exists(),
            "a live lock stays"
        );
        assert!(
            !pod.join("sb1_sandbox:sb1.lock").exists(),
            "an orphan lock goes"
        );
        std::fs::remove_file(pod.join("c1_sandbox:sb1.state")).unwrap();
        remove_pod_runtime_root(&b, "ns", &pod, PodLocks::RemoveOrphans);
        assert!(!pod.exists(), "only orphan locks left: the root goes");
        // the shared root is never touched
        let shared = runtime_root(&b, "ns");
        remove_pod_runtime_root(&b, "ns", &shared, PodLocks::RemoveOrphans);
    }
}
