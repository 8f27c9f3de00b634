//! A thin wrapper over containerd's `ctr` CLI pointed at one harness
//! (`ctr -a <socket> -n <namespace> ...`), for tests that start tasks outside CRI (`ctr run
//! --runtime io.containerd.router.v2`, pause/resume) and for importing the harness's images.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::command;
use crate::error::Result;

/// Deadline of one `ctr` invocation unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// `ctr` bound to one containerd socket and namespace.
#[derive(Debug, Clone)]
pub struct Ctr {
    socket: PathBuf,
    namespace: String,
    timeout: Duration,
}

impl Ctr {
    /// `ctr -a socket -n namespace`.
    pub fn new(socket: impl Into<PathBuf>, namespace: impl Into<String>) -> Self {
        Ctr {
            socket: socket.into(),
            namespace: namespace.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same with another per-invocation deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The namespace used.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A `Command` for `ctr -a SOCK -n NS` to add arguments to.
    pub fn command(&self) -> Command {
        let mut c = Command::new(crate::binaries::ctr_path());
        c.arg("-a").arg(&self.socket).arg("-n").arg(&self.namespace);
        c
    }

    /// Runs `ctr ... args`; returns stdout, or an error carrying stderr on a non-zero exit.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = command::run(self.command().args(args), self.timeout)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `ctr ... args` whatever its exit status (for tests expecting a failure).
    pub fn run_unchecked(&self, args: &[&str]) -> Result<Output> {
        command::run_unchecked(self.command().args(args), self.timeout)
    }

    /// `ctr images import` of an archive (unpacked for the default snapshotter).
    pub fn import(&self, archive: &Path) -> Result<()> {
        let path = archive.to_string_lossy();
        self.run(&["images", "import", path.as_ref()]).map(drop)
    }

    /// Image references (`ctr images ls -q`).
    pub fn images(&self) -> Result<Vec<String>> {
        Ok(lines(&self.run(&["images", "ls", "-q"])?))
    }

    /// Task ids (`ctr tasks ls -q`).
    pub fn tasks(&self) -> Result<Vec<String>> {
        Ok(lines(&self.run(&["tasks", "ls", "-q"])?))
    }

    /// Container ids (`ctr containers ls -q`).
    pub fn containers(&self) -> Result<Vec<String>> {
        Ok(lines(&self.run(&["containers", "ls", "-q"])?))
    }

    /// Namespaces (`ctr namespaces ls -q`).
    pub fn namespaces(&self) -> Result<Vec<String>> {
        Ok(lines(&self.run(&["namespaces", "ls", "-q"])?))
    }

    /// `ctr run -d --runtime RUNTIME IMAGE ID ARGS...`: starts a detached task.
    pub fn run_detached(&self, runtime: &str, image: &str, id: &str, args: &[&str]) -> Result<()> {
        let mut all = vec!["run", "-d", "--runtime", runtime, image, id];
        all.extend_from_slice(args);
        self.run(&all).map(drop)
    }

    /// Best effort: force-deletes every task and container in this namespace. Returns what failed.
    pub fn remove_everything(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match self.tasks() {
            Ok(tasks) => {
                for t in tasks {
                    let _ = self.run(&["tasks", "kill", "-s", "SIGKILL", &t]);
                    if let Err(e) = self.run(&["tasks", "delete", "-f", &t]) {
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        match self.containers() {
            Ok(cs) => {
                for c in cs {
                    if let Err(e) = self.run(&["containers", "delete", &c]) {
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        errors
    }
}

/// Non-empty trimmed lines.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}
