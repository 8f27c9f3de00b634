//! Where the router keeps its own state for a containerd, as the shim lays it out: the state dir
//! (`$RUNTIME_ROUTER_STATE_DIR`, default `/run/runtime-router`) and the authoritative decision
//! record of a task, `<state>/records/<first 8 bytes of sha256(containerd socket), hex>/<ns>/<id>.json`.
//! Tests use it to look at (or tamper with) what only root can write.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The router's default state dir.
pub const DEFAULT_STATE_DIR: &str = "/run/runtime-router";

/// The authoritative decision record of task `id` in namespace `ns` of the containerd serving
/// `containerd_socket`, below the state dir `state`.
pub fn record_path(state: &Path, containerd_socket: &Path, ns: &str, id: &str) -> PathBuf {
    let sum = Sha256::digest(containerd_socket.to_string_lossy().as_bytes());
    let key: String = sum.iter().take(8).map(|b| format!("{b:02x}")).collect();
    state
        .join("records")
        .join(key)
        .join(ns)
        .join(format!("{id}.json"))
}
