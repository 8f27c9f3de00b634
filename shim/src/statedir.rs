//! The router's own state directory (default `/run/runtime-router`, or `$RUNTIME_ROUTER_STATE_DIR`
//! from containerd's environment): root-only and outside every bundle, so nothing a pod can write
//! lies below it. The built-in backend's OCI runtime state (`<state>/<runtime>/<namespace>`) and the
//! authoritative decision records (`<state>/records/<namespace>/<id>.json`) live here.

use std::path::PathBuf;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/runtime-router";
/// Environment variable naming another state directory (set in containerd's environment; a test
/// harness gives each private containerd its own).
pub const STATE_DIR_ENV: &str = "RUNTIME_ROUTER_STATE_DIR";

/// The state directory in force for this process. A relative or empty value is ignored: the
/// state must not depend on the working directory (which is a bundle).
pub fn state_dir() -> PathBuf {
    match std::env::var_os(STATE_DIR_ENV).map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}
