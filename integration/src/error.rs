//! The harness's error type: every failure names what was being done and carries the
//! underlying message (for CRI calls, the gRPC status message, which is where containerd puts a
//! failing shim's stderr).

use std::path::PathBuf;

/// Everything that can go wrong while driving the private containerd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing, naming the path or program.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A CRI call returned a gRPC error status.
    #[error("CRI {op} failed ({code:?}): {message}")]
    Cri {
        /// The CRI method, e.g. `RunPodSandbox`.
        op: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The gRPC status message (containerd's error text, including a failing shim's stderr).
        message: String,
    },
    /// The CRI socket could not be reached.
    #[error("cannot connect to CRI at {socket}: {message}")]
    Connect {
        /// The unix socket path.
        socket: PathBuf,
        /// Why the connection failed.
        message: String,
    },
    /// An external command (ctr, ip, runc, busybox) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status, or how it failed to run.
        status: String,
        /// The command's standard error (trimmed).
        stderr: String,
    },
    /// containerd stopped or never served CRI.
    #[error("containerd {problem}; last lines of its log:\n{log_tail}")]
    Containerd {
        /// What went wrong, e.g. "exited with status 1 before serving CRI".
        problem: String,
        /// The end of containerd's log file.
        log_tail: String,
    },
    /// Waiting for a condition took longer than allowed.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// The condition waited for.
        what: String,
        /// The time allowed.
        seconds: u64,
    },
    /// Input to the harness was unusable (bad option, missing binary, malformed data).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The gRPC status message for CRI errors, the display text otherwise. Tests assert that a
    /// router refusal's reason appears in this text.
    pub fn message(&self) -> String {
        match self {
            Error::Cri { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The gRPC code if this is a CRI error.
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        match self {
            Error::Cri { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Result alias for the harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;
