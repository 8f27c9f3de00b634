//! What the built-in backend needs to drive gVisor's `runsc` instead of runc (issue 5; the
//! measurements behind every rule here are in `docs/gvisor.md`). runsc runs a whole pod in one
//! sandbox process (the sentry): the pod's other containers join it through the CRI
//! annotations, and their processes are not host processes. So, for runsc only:
//! - [`detect`]: is this backend's runtime runsc, and do its `runtime_args` name a platform this
//!   runsc build has?
//! - [`bundle`]: is a bundle the pod's sandbox container or a container joining it?
//! - [`wait`]: a container's exit, learnt through `runsc wait` (its pid file holds the shared
//!   sandbox pid, whose SIGCHLD says nothing about the container).
//! - [`cli`]: the runsc-only invocations: `wait`, `state`, `kill --pid` for exec'd processes,
//!   the `--internal-pid-file` argument of `exec`.
//! - [`glue`]: [`glue::RunscRules`], the above in the daemon's types (its reaper, its errors).
//!
//! This module owns no daemon state: the daemon calls in at create/start/exec/kill (see
//! "Integration" in `docs/gvisor.md`).

pub mod bundle;
pub mod cli;
pub mod detect;
pub mod glue;
pub mod wait;

#[cfg(test)]
mod testbundle;
#[cfg(test)]
mod tests;

pub use bundle::Role;

use std::path::PathBuf;

/// Exit status reported for a container whose sandbox is gone (killed with it: 128 + SIGKILL).
pub const KILLED_WITH_SANDBOX: u32 = 137;

/// What went wrong talking to runsc; each message names the command or file involved.
#[derive(Debug, thiserror::Error)]
pub enum RunscError {
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("runsc {what} failed: {message}")]
    Command { what: String, message: String },
    #[error("runsc {what}: unreadable output {output:?}: {reason}")]
    Output {
        what: String,
        output: String,
        reason: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "runtime_args: {flag} names platform `{platform}`, which {} does not have \
         (it has: {}); on a host without usable KVM use --platform=ptrace",
        program.display(), available.join(", ")
    )]
    UnknownPlatform {
        program: PathBuf,
        flag: String,
        platform: String,
        available: Vec<String>,
    },
}
