//! The `delete` action: containerd runs it when a shim is gone (crashed, killed, or found dead
//! after a restart). Force-delete the container through the runtime, unmount its rootfs, remove
//! its pid dir, and answer a `DeleteResponse` saying it was killed (137) now.

use std::path::Path;
use std::time::SystemTime;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::Message;

use super::ociruntime::OciRuntime;
use super::{
    ensure_namespace, pod_runtime_root, remove_pod_runtime_root, rootfs, runtime_root,
    BuiltinBackend, BuiltinError, PodLocks,
};
use crate::args::ShimArgs;

/// Clean up after a dead shim; returns the `DeleteResponse` bytes for stdout.
pub fn delete(
    args: &ShimArgs,
    backend: &BuiltinBackend,
    bundle: &Path,
    sandbox_id: &str,
) -> Result<Vec<u8>, BuiltinError> {
    ensure_namespace(args)?;
    // A pod whose daemon started before pods had roots of their own has its state in the
    // shared root.
    let mut root = pod_runtime_root(backend, &args.namespace, sandbox_id);
    if !root.is_dir() {
        root = runtime_root(backend, &args.namespace);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BuiltinError::Io {
            what: "start async runtime".into(),
            source: e,
        })?;
    rt.block_on(async {
        super::reaper::reaper()
            .start()
            .map_err(|e| BuiltinError::Io {
                what: "install SIGCHLD handler".into(),
                source: e,
            })?;
        let runtime = OciRuntime::new(&backend.runtime, &root, &backend.runtime_args);
        if let Err(e) = runtime.delete(&args.id, true).await {
            let msg = e.to_string();
            if !msg.contains("does not exist") && !msg.contains("not found") {
                log::warn!("{e}");
            }
        }
        Ok::<_, BuiltinError>(())
    })?;
    remove_pod_runtime_root(backend, &args.namespace, &root, PodLocks::Keep);
    // `delete` looked at the daemon's socket before this cleanup; look again now that the
    // runtime is done with the task: a dead daemon's socket must not outlive its last task.
    match crate::stale::remove_dead_socket(args, sandbox_id) {
        Ok(crate::stale::Stale::Removed(p)) => {
            log::debug!("removed dead shim socket {}", p.display())
        }
        Ok(_) => {}
        Err(e) => log::warn!("checking the shim socket after cleanup: {e}"),
    }
    // The runtime's own cgroup of the task, if it left it (runsc after its sandbox died).
    if let Some(path) = super::cgroupdir::cgroups_path(bundle, &args.id) {
        for problem in super::cgroupdir::remove(&path) {
            log::warn!("{problem}");
        }
    }
    let rootfs_dir = bundle.join("rootfs");
    if let Err(e) = rootfs::unmount_all(&rootfs_dir) {
        log::warn!("{e}");
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    // The pid the daemon's runtime wrote, from the root-only pid dir (never the bundle).
    let pid = super::piddir::path(&args.namespace, &args.id)
        .ok()
        .and_then(|d| std::fs::read_to_string(d.join("init.pid")).ok())
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(0);
    super::piddir::remove(&args.namespace, &args.id);
    let resp = DeleteResponse {
        pid,
        exit_status: 137,
        exited_at: Some(Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    resp.write_to_bytes()
        .map_err(|e| BuiltinError::Unsupported(format!("encode DeleteResponse: {e}")))
}
