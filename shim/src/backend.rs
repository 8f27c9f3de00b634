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
    true
}

/// Start (or join) the pod's built-in shim daemon; returns its ttrpc address.
pub fn builtin_start(
    args: &ShimArgs,
    backend: &str,
    runtime: &Path,
    runtime_args: &[String],
    bundle: &Path,
    sandbox_id: Option<&str>,
) -> Result<String, BackendError> {
    let b = crate::builtin::BuiltinBackend {
        runtime: runtime.to_owned(),
        runtime_args: runtime_args.to_vec(),
    };
    crate::builtin::start(args, &b, bundle, sandbox_id).map_err(|e| BackendError::Builtin {
        backend: backend.to_owned(),
        message: e.to_string(),
    })
}

/// Clean up after a dead built-in shim; returns the encoded `DeleteResponse`.
pub fn builtin_delete(
    args: &ShimArgs,
    backend: &str,
    runtime: &PathBuf,
    runtime_args: &[String],
    bundle: &Path,
    sandbox_id: &str,
) -> Result<Vec<u8>, BackendError> {
    let b = crate::builtin::BuiltinBackend {
        runtime: runtime.to_owned(),
        runtime_args: runtime_args.to_vec(),
    };
    crate::builtin::delete(args, &b, bundle, sandbox_id).map_err(|e| BackendError::Builtin {
        backend: backend.to_owned(),
        message: e.to_string(),
    })
}
