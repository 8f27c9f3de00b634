//! The task API relay: what keeps every container of a pod coming back through the router's
//! `start` when the pod's delegate shim answers bootstrap protocol 3 (containerd 2.x's own runc
//! shim always does, and serves only `containerd.task.v3.Task`). Given that reply, containerd
//! 2.x would connect the pod's app containers straight to the delegate and never call `start`
//! for them (SPEC §2). So the router answers containerd with a version-2 reply naming the relay
//! instead: one small process per pod (this binary, no action, `RUNTIME_ROUTER_RELAY_TO` set)
//! that listens on its own socket and forwards each ttrpc connection to the delegate, renaming
//! the task service from v2 to v3 (the messages are the same). containerd then calls `start` for
//! every container, and each one's spec meets the deny rules there. The relay also checks every
//! `Create` against the router's decision records (`crate::admission`), so a container that
//! reached the pod without `start` is refused rather than run unchecked.
//!
//! Lifetime: the relay holds one idle connection to the delegate and exits once the delegate is
//! gone (after its open connections drain), removing its socket.

mod frame;
mod serve;

use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::admission::Admission;
use crate::args::ShimArgs;
use crate::containerd_compat::{BootstrapReply, TASK_SERVICE_V2, TASK_SERVICE_V3};
use crate::daemonize::socket_path;
use crate::sys;

/// Set (to the delegate's ttrpc address) in the environment of a relay daemon.
pub const ENV_RELAY_TO: &str = "RUNTIME_ROUTER_RELAY_TO";

/// The relay could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("backend `{backend}`: the pod's relay for sandbox {sandbox_id} is not running ({address}: {reason})")]
    NoRelay {
        backend: String,
        sandbox_id: String,
        address: String,
        reason: String,
    },
    #[error("backend `{backend}` answered bootstrap protocol 3 ({got}) for a container of pod {sandbox_id}, whose sandbox it answered with a version-2 reply")]
    OtherShim {
        backend: String,
        sandbox_id: String,
        got: String,
    },
    #[error("backend `{backend}`: starting the pod's task relay: {reason}")]
    Spawn { backend: String, reason: String },
}

/// What `start` does with a delegate's reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Front {
    /// A version-2 reply keeps containers coming back to `start`: containerd is given its
    /// address (re-encoded by the router, never the delegate's bytes).
    PassThrough(String),
    /// A version-3 reply: containerd must be given a relay instead; this is the delegate's
    /// address to front.
    Relay(String),
}

/// Decides what a delegate's classified `start` reply needs.
pub fn front_for(reply: &BootstrapReply) -> Front {
    if reply.skips_container_start() {
        Front::Relay(reply.address.clone())
    } else {
        Front::PassThrough(reply.address.clone())
    }
}

/// The relay's socket address for the pod of `sandbox_id` (never the delegate's own: that one
/// is derived from the same containerd address, namespace and sandbox id).
pub fn relay_address(args: &ShimArgs, sandbox_id: &str) -> String {
    containerd_shim::socket_address(
        &args.address,
        &args.namespace,
        &format!("{sandbox_id}/router-relay"),
    )
}

/// For the sandbox: start (or find, if containerd retried) the pod's relay in front of
/// `delegate` and return the relay's address.
pub fn start_for_sandbox(
    args: &ShimArgs,
    backend: &str,
    bundle: &Path,
    delegate: &str,
) -> Result<String, RelayError> {
    let address = relay_address(args, &args.id);
    let path = socket_path(&address);
    let spawn_err = |reason: String| RelayError::Spawn {
        backend: backend.to_owned(),
        reason,
    };
    if UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
        crate::daemonize::spawn_self(args, bundle, &address, &[(ENV_RELAY_TO, delegate)])
            .map_err(spawn_err)?;
    }
    // `bundle/address` stays the delegate's: a Go shim removes the socket named there when it
    // exits, and containerd 2.x (the only line that gets a relay) reconnects from the
    // `bootstrap.json` it writes from our reply.
    Ok(address)
}

/// For a container of a relayed pod: the pod's relay address, once the relay answers.
pub fn join_for_container(
    args: &ShimArgs,
    backend: &str,
    sandbox_id: &str,
) -> Result<String, RelayError> {
    let address = relay_address(args, sandbox_id);
    let no_relay = |reason: String| RelayError::NoRelay {
        backend: backend.to_owned(),
        sandbox_id: sandbox_id.to_owned(),
        address: address.clone(),
        reason,
    };
    UnixStream::connect(socket_path(&address)).map_err(|e| no_relay(e.to_string()))?;
    Ok(address)
}

/// Ends a delegate shim the relay no longer fronts (the relay died, or could not be started
/// after the delegate's `start` succeeded): asks it its pid over its own task API (`Connect`,
/// v3) and kills it, so no shim daemon outlives the pod. `Ok(None)` if nothing serves there.
pub fn stop_delegate(delegate: &str, task_id: &str) -> std::io::Result<Option<i32>> {
    use std::io::{Error, ErrorKind};
    let mut conn = match UnixStream::connect(socket_path(delegate)) {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let timeout = Some(std::time::Duration::from_secs(2));
    conn.set_read_timeout(timeout)?;
    conn.set_write_timeout(timeout)?;
    let req = frame::request(
        TASK_SERVICE_V3,
        "Connect",
        &frame::string_message(1, task_id),
    );
    frame::write_frame(
        &mut conn,
        &frame::Frame {
            stream_id: 1,
            kind: frame::TYPE_REQUEST,
            flags: 0,
            payload: req,
        },
    )?;
    let bad = |what: &str| {
        Error::new(
            ErrorKind::InvalidData,
            format!("delegate {delegate}: {what}"),
        )
    };
    let resp = frame::read_frame(&mut conn)?.ok_or_else(|| bad("closed without an answer"))?;
    let pid = frame::response_payload(&resp.payload)
        .and_then(|p| frame::varint_field(p, 1))
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 1)
        .ok_or_else(|| bad("Connect gave no shim pid"))?;
    sys::send_signal(pid, libc::SIGKILL as u32)?;
    Ok(Some(pid))
}

/// The relay daemon's main (this binary with no action and `RUNTIME_ROUTER_RELAY_TO` set).
pub fn run_daemon(delegate: String) -> ! {
    let code = match daemon(delegate) {
        Ok(()) => 0,
        Err(e) => crate::daemonize::report_failure(&e),
    };
    std::process::exit(code)
}

fn daemon(delegate: String) -> Result<(), String> {
    let args = ShimArgs::from_env().map_err(|e| e.to_string())?;
    let socket = args.socket.clone().ok_or("missing -socket")?;
    std::env::remove_var(ENV_RELAY_TO);
    crate::logging::init_in_bundle(args.debug);
    let gate = Admission {
        state: crate::statedir::state_dir(),
        address: args.address.clone(),
        namespace: args.namespace.clone(),
        sandbox_id: args.id.clone(),
        publish_binary: args.publish_binary.clone(),
    };
    let relay = serve::Relay::bind(
        &socket_path(&socket),
        &socket_path(&delegate),
        serve::Rename {
            from: TASK_SERVICE_V2,
            to: TASK_SERVICE_V3,
        },
        gate,
    )
    .map_err(|e| format!("relay {socket} -> {delegate}: {e}"))?;
    crate::daemonize::announce_ready();
    log::info!("relaying {socket} to {delegate}");
    relay.run();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(id: &str) -> ShimArgs {
        crate::args::test_args(id)
    }

    #[test]
    fn only_version_3_replies_need_a_relay() {
        let classify = |b: &[u8]| crate::containerd_compat::classify(b).unwrap();
        let plain = classify(b"unix:///run/containerd/s/abc");
        assert_eq!(
            front_for(&plain),
            Front::PassThrough("unix:///run/containerd/s/abc".into())
        );
        let v2 = classify(br#"{"version":2,"address":"unix:///x","protocol":"ttrpc"}"#);
        assert_eq!(front_for(&v2), Front::PassThrough("unix:///x".into()));
        let v3 = classify(br#"{"version":3,"address":"unix:///x","protocol":"ttrpc"}"#);
        assert_eq!(front_for(&v3), Front::Relay("unix:///x".into()));
        let proto3 = crate::containerd_compat::bootstrap::encode_result(
            &crate::containerd_compat::bootstrap::BootstrapResult {
                version: 3,
                address: "unix:///y".into(),
                protocol: "ttrpc".into(),
            },
        );
        assert_eq!(
            front_for(&classify(&proto3)),
            Front::Relay("unix:///y".into())
        );
    }

    #[test]
    fn relay_socket_is_per_pod_and_not_the_delegates() {
        let a = relay_address(&args("pod-1"), "pod-1");
        assert_eq!(a, relay_address(&args("ctr-1"), "pod-1"));
        assert_ne!(a, relay_address(&args("pod-2"), "pod-2"));
        let delegate = containerd_shim::socket_address("/run/c.sock", "k8s.io", "pod-1");
        assert_ne!(a, delegate);
    }

    #[test]
    fn a_container_of_a_pod_without_a_running_relay_is_refused() {
        let e = join_for_container(&args("ctr-1"), "vm", "pod-gone")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not running") && e.contains("pod-gone"), "{e}");
    }
}
