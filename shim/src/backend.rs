//! Glue between `start`/`delete` and the built-in backend (`crate::builtin`, owned separately).
//! Until the built-in backend is part of the build, a pod routed to a `builtin` backend is
//! refused (fail closed) and its cleanup reports that nothing could be done.

use std::path::{Path, PathBuf};

use crate::args::ShimArgs;

/// The built-in backend could not serve the request.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend `{backend}` is of kind builtin, which this build of containerd-shim-router-v2 does not provide")]
    BuiltinUnavailable { backend: String },
    #[allow(dead_code)] // produced once the built-in backend is wired in
    #[error("backend `{backend}` (builtin): {message}")]
    Builtin { backend: String, message: String },
}

/// Whether `builtin` backends can be served by this build.
pub fn builtin_available() -> bool {
    false
}

/// Start (or join) the pod's built-in shim daemon; returns its ttrpc address.
pub fn builtin_start(
    _args: &ShimArgs,
    backend: &str,
    _runtime: &Path,
    _runtime_args: &[String],
    _bundle: &Path,
    _sandbox_id: Option<&str>,
) -> Result<String, BackendError> {
    Err(BackendError::BuiltinUnavailable {
        backend: backend.to_owned(),
    })
}

/// Clean up after a dead built-in shim; returns the encoded `DeleteResponse`.
pub fn builtin_delete(
    _args: &ShimArgs,
    backend: &str,
    _runtime: &PathBuf,
    _runtime_args: &[String],
    _bundle: &Path,
) -> Result<Vec<u8>, BackendError> {
    Err(BackendError::BuiltinUnavailable {
        backend: backend.to_owned(),
    })
}
