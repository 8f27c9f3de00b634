//! Removing what a harness instance leaves once its containerd is gone: its shims and everything
//! below them, the runc state they kept outside the temp dir, network namespaces CRI pinned for
//! pods it could not remove, mounts under the temp dir and the CNI bridge. Shared by a harness's
//! own teardown and by the reaper of harnesses whose test process died.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::command;
use crate::{mounts, net, netns, procs};

/// Where containerd's runc shim keeps runc state by default (`<root>/<namespace>/<id>`).
pub const RUNC_SHIM_ROOT: &str = "/run/containerd/runc";

/// Cleans up after a stopped containerd that served `socket` with state dir `state`, everything
/// of it living in `dir`. Returns what could not be cleaned. Does not remove `dir` itself.
pub fn after_containerd(dir: &Path, socket: &Path, state: &Path, bridge: &str) -> Vec<String> {
    let mut left = Vec::new();
    let shims: Vec<i32> = procs::shims_of(socket).iter().map(|p| p.pid).collect();
    if !shims.is_empty() {
        log::warn!("harness cleanup: killing leftover shims {shims:?}");
        let all = procs::with_descendants(&shims, &procs::list());
        // Pods CRI could not remove keep a pinned network namespace: find it through the
        // namespace of their processes before killing them.
        let inodes = all.iter().filter_map(|p| netns::net_ns_of(*p)).collect();
        let pinned = netns::pinned_files(&inodes);
        let alive = procs::kill_all(&all, Duration::from_secs(15));
        if !alive.is_empty() {
            left.push(format!("processes survived SIGKILL: {alive:?}"));
        }
        for f in pinned {
            log::warn!(
                "harness cleanup: removing network namespace {}",
                f.display()
            );
            if let Err(e) = netns::remove_pinned(&f) {
                left.push(e);
            }
        }
    }
    force_delete_task_leftovers(socket, state);
    left.extend(mounts::unmount_all_under(dir));
    if let Err(e) = net::delete_link(bridge) {
        left.push(e);
    }
    left
}

/// Where shims v2 put their ttrpc sockets.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// The socket a shim v2 serves for task (or pod grouping) `id` in namespace `ns` of the
/// containerd at `containerd_socket`: `/run/containerd/s/<sha256 of "<socket>/<ns>/<id>">`, as
/// containerd's shim helpers compute it. A shim removes it on a clean exit, not when killed.
pub fn shim_socket_path(containerd_socket: &Path, ns: &str, id: &str) -> PathBuf {
    let key = containerd_socket.join(ns).join(id);
    let sum = Sha256::digest(key.as_os_str().as_bytes());
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SHIM_SOCKET_DIR).join(hex)
}

/// For every task bundle still in `state`: `runc delete --force` if its runc state exists under
/// [`RUNC_SHIM_ROOT`], and removal of its shim socket (tasks whose shim was killed before it could
/// clean up).
fn force_delete_task_leftovers(socket: &Path, state: &Path) {
    let tasks = state.join("io.containerd.runtime.v2.task");
    let Ok(namespaces) = std::fs::read_dir(&tasks) else {
        return;
    };
    for ns in namespaces.filter_map(|e| e.ok()) {
        let root = Path::new(RUNC_SHIM_ROOT).join(ns.file_name());
        let Ok(ids) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for id in ids.filter_map(|e| e.ok()) {
            let shim_socket = shim_socket_path(
                socket,
                &ns.file_name().to_string_lossy(),
                &id.file_name().to_string_lossy(),
            );
            if shim_socket.exists() {
                if let Err(e) = std::fs::remove_file(&shim_socket) {
                    log::warn!("harness cleanup: remove {}: {e}", shim_socket.display());
                }
            }
            if !root.join(id.file_name()).exists() {
                continue;
            }
            let mut cmd = Command::new("runc");
            cmd.arg("--root")
                .arg(&root)
                .args(["delete", "--force"])
                .arg(id.file_name());
            if let Err(e) = command::run(&mut cmd, Duration::from_secs(60)) {
                log::warn!("harness cleanup: {e}");
            }
        }
    }
}
