//! `delete`: containerd calls it when a shim is gone (killed, crashed) to clean up what the shim
//! left. The task's authoritative decision record (in the router's state dir, never the bundle's
//! copy: a bundle may be written by a pod) names the backend that served the task; its cleanup
//! runs: a shim backend's own `delete` (exec, same argv), or the built-in backend's force-delete.
//! No record means `start` refused before writing one: nothing was started, nothing to clean.

use std::io::{self, Write};
use std::path::PathBuf;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::Message;

use crate::args::ShimArgs;
use crate::backend::{self, BackendError};
use crate::handoff::{self, HandoffError};
use crate::record::RecordedBackend;
use crate::records::{RecordStore, StoreError};
use crate::stale::{self, Stale};

/// `delete` could not clean up.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("cannot determine the bundle directory: {0}")]
    Cwd(io::Error),
    #[error("cannot read the decision record: {0}")]
    Record(#[from] StoreError),
    #[error(transparent)]
    Handoff(#[from] HandoffError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot encode DeleteResponse: {0}")]
    Encode(String),
    #[error("cannot write DeleteResponse to stdout: {0}")]
    Stdout(io::Error),
}

/// The bundle: `-bundle` if given, else the working directory (containerd sets both on Linux).
pub fn bundle_dir(args: &ShimArgs) -> Result<PathBuf, io::Error> {
    match &args.bundle {
        Some(b) if b.is_absolute() => Ok(b.clone()),
        Some(b) => Ok(std::env::current_dir()?.join(b)),
        None => std::env::current_dir(),
    }
}

/// Run `delete`. Returns only when there is nothing to hand off to (or on failure).
pub fn run(args: &ShimArgs) -> Result<(), DeleteError> {
    let bundle = bundle_dir(args).map_err(DeleteError::Cwd)?;
    let state = crate::statedir::state_dir();
    let store = RecordStore::open(&state, &args.address, &args.namespace, false)?;
    let rec = match &store {
        Some(s) => s.read(&args.id)?,
        None => None,
    };
    let (Some(store), Some(rec)) = (store, rec) else {
        log::debug!(
            "delete {}: no decision record in {}: nothing to clean up",
            args.id,
            state.display()
        );
        return write_response(&DeleteResponse::new());
    };
    // The record goes now: exec below does not return, and a failed cleanup is containerd's to
    // report (a retried delete then finds nothing to do).
    store.remove(&args.id);
    log::debug!(
        "delete {}: backend `{}` ({:?})",
        args.id,
        rec.backend,
        rec.target
    );
    match stale::remove_dead_socket(args, &rec.sandbox_id) {
        Ok(Stale::Removed(p)) => log::debug!("removed dead shim socket {}", p.display()),
        Ok(_) => {}
        Err(e) => log::warn!("delete {}: checking the shim socket: {e}", args.id),
    }
    if let Some(delegate) = &rec.relay_to {
        // The pod's relay is gone (containerd calls `delete` when the shim it talks to is), and
        // with it the only way containerd reached the delegate: the delegate must go too.
        let relay = crate::relay::relay_address(args, &rec.sandbox_id);
        let relay_alive = stale::socket_path(&relay)
            .is_some_and(|p| std::os::unix::net::UnixStream::connect(p).is_ok());
        if !relay_alive {
            match crate::relay::stop_delegate(delegate, &args.id) {
                Ok(Some(pid)) => log::debug!("stopped delegate shim {pid} behind a dead relay"),
                Ok(None) => {}
                Err(e) => log::warn!("delete {}: stopping the delegate shim: {e}", args.id),
            }
        }
    }
    match rec.target {
        RecordedBackend::Shim { binary, env } => {
            Err(handoff::exec(&binary, &args.raw, &env).into())
        }
        RecordedBackend::Builtin {
            runtime,
            runtime_args,
        } => {
            let bytes = backend::builtin_delete(
                args,
                &rec.backend,
                &runtime,
                &runtime_args,
                &bundle,
                &rec.sandbox_id,
            )?;
            write_bytes(&bytes)
        }
    }
}

fn write_response(resp: &DeleteResponse) -> Result<(), DeleteError> {
    let bytes = resp
        .write_to_bytes()
        .map_err(|e| DeleteError::Encode(e.to_string()))?;
    write_bytes(&bytes)
}

fn write_bytes(bytes: &[u8]) -> Result<(), DeleteError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(DeleteError::Stdout)
}
