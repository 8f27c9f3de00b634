//! The runsc invocations runc has no counterpart for: `wait ID` (a container's exit),
//! `state ID`, `kill --pid N ID SIG` (an exec'd process: signalling its `runsc-exec` helper on
//! the host does not reach it) and the `--internal-pid-file` argument of `exec`. Everything
//! else (create, start, exec, kill, delete, ps, events) is the same CLI as runc and stays with
//! the daemon's runtime client.
//!
//! Who collects the exit of the runsc processes spawned here is the caller's choice ([`Reap`]):
//! in the daemon, its SIGCHLD subreaper (which reaps every child); alone, a blocking
//! `Child::wait` ([`Runsc::reap_own_children`]).

use std::ffi::OsString;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::wait::{parse_wait, WaitOutcome};
use super::RunscError;

/// At most this much of a runsc command's stdout or stderr is kept.
const OUTPUT_LIMIT: u64 = 1 << 20;

/// Collects a spawned runsc process: resolves to its exit code (128 + signal when killed), or
/// `None` if it cannot be known. Called once per process, after its pipes reached EOF.
pub type Reap =
    Arc<dyn Fn(Child) -> Pin<Box<dyn Future<Output = Option<i32>> + Send>> + Send + Sync>;

/// runsc with the backend's global arguments.
#[derive(Clone)]
pub struct Runsc {
    program: PathBuf,
    global: Vec<OsString>,
    reap: Reap,
}

impl std::fmt::Debug for Runsc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runsc")
            .field("program", &self.program)
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}

/// What one runsc command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The runsc error line (stderr, else stdout, else the exit code).
    fn message(&self) -> String {
        let e = self.stderr.trim();
        if !e.is_empty() {
            return e.to_owned();
        }
        let o = self.stdout.trim();
        if !o.is_empty() {
            return o.to_owned();
        }
        format!("exit status {:?}", self.code)
    }
}

impl Runsc {
    /// Same global arguments as the daemon's runtime client: `--root ROOT`, then the policy's
    /// `runtime_args`. The root must be the one the pod's containers were created under.
    pub fn new(program: &Path, root: &Path, runtime_args: &[String], reap: Reap) -> Self {
        let mut global: Vec<OsString> = vec!["--root".into(), root.as_os_str().to_owned()];
        global.extend(runtime_args.iter().map(OsString::from));
        Self {
            program: program.to_owned(),
            global,
            reap,
        }
    }

    /// A [`Reap`] that waits for each child itself (on a blocking thread), for tests. Never in
    /// the daemon: its subreaper collects every child with `waitpid(-1)`.
    #[cfg(test)]
    pub fn reap_own_children() -> Reap {
        Arc::new(|mut child: Child| {
            Box::pin(async move {
                let status = tokio::task::spawn_blocking(move || child.wait())
                    .await
                    .ok()?
                    .ok()?;
                use std::os::unix::process::ExitStatusExt;
                status.code().or_else(|| status.signal().map(|s| 128 + s))
            })
        })
    }

    /// A runsc command with the global arguments.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.global);
        cmd.env_remove("NOTIFY_SOCKET");
        cmd
    }

    /// Run `runsc <global> <args>` with stdin on /dev/null, capture stdout and stderr to their
    /// end, and collect the process. Only for commands that hand no stdio to a container.
    pub async fn output(&self, args: &[OsString], what: &str) -> Result<Output, RunscError> {
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        log::debug!("run {cmd:?}");
        let mut child = cmd.spawn().map_err(|source| RunscError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let so = child.stdout.take().map(OwnedFd::from);
        let se = child.stderr.take().map(OwnedFd::from);
        let (stdout, stderr) = tokio::join!(read_all(so), read_all(se));
        let code = (self.reap)(child).await;
        log::debug!("runsc {what}: exit {code:?}");
        Ok(Output {
            code,
            stdout,
            stderr,
        })
    }

    /// `runsc wait ID`: blocks until the container exits (or runsc gives up on it).
    pub async fn wait(&self, id: &str) -> Result<WaitOutcome, RunscError> {
        let out = self.output(&[os("wait"), os(id)], "wait").await?;
        Ok(parse_wait(&out.stdout, &out.stderr, out.success()))
    }

    /// `runsc state ID`: the container's status (`created`, `running`, `paused`, `stopped`).
    pub async fn status(&self, id: &str) -> Result<String, RunscError> {
        let out = self.output(&[os("state"), os(id)], "state").await?;
        if !out.success() {
            return Err(RunscError::Command {
                what: format!("state {id}"),
                message: out.message(),
            });
        }
        let v: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).map_err(|e| RunscError::Output {
                what: format!("state {id}"),
                output: out.stdout.clone(),
                reason: e.to_string(),
            })?;
        v.get("status")
            .and_then(|s| s.as_str())
            .map(str::to_owned)
            .ok_or_else(|| RunscError::Output {
                what: format!("state {id}"),
                output: out.stdout.clone(),
                reason: "no status field".into(),
            })
    }

    /// Signal one process of container `id`: `runsc kill --pid PID ID SIGNAL`, where `pid` is
    /// the sandbox-internal pid from `exec --internal-pid-file`.
    pub async fn kill_process(&self, id: &str, pid: i32, signal: u32) -> Result<(), RunscError> {
        let args = [
            os("kill"),
            os("--pid"),
            pid.to_string().into(),
            os(id),
            signal.to_string().into(),
        ];
        let out = self.output(&args, "kill --pid").await?;
        if out.success() {
            return Ok(());
        }
        Err(RunscError::Command {
            what: format!("kill --pid {pid} {id} {signal}"),
            message: out.message(),
        })
    }
}

/// Extra arguments for `runsc exec` (after `exec`, before the container id) so the daemon
/// learns the process's sandbox-internal pid, needed to signal it.
pub fn exec_args(internal_pid_file: &Path) -> Vec<OsString> {
    vec![
        "--internal-pid-file".into(),
        internal_pid_file.as_os_str().to_owned(),
    ]
}

/// Read the pid written by `exec --internal-pid-file`.
pub fn read_internal_pid(path: &Path) -> Result<i32, RunscError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunscError::Io {
        what: format!("read internal pid file {}", path.display()),
        source,
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| RunscError::Output {
            what: format!("exec --internal-pid-file {}", path.display()),
            output: text.clone(),
            reason: "not a positive pid".into(),
        })
}

fn os(s: &str) -> OsString {
    OsString::from(s)
}

/// Read a pipe to its end (bounded).
async fn read_all(fd: Option<OwnedFd>) -> String {
    let Some(fd) = fd else {
        return String::new();
    };
    let Ok(rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return String::new();
    };
    let mut buf = Vec::new();
    if let Err(e) = rx.take(OUTPUT_LIMIT).read_to_end(&mut buf).await {
        log::debug!("reading runsc output: {e}");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_arguments_come_first() {
        let r = Runsc::new(
            Path::new("/usr/bin/runsc"),
            Path::new("/run/r"),
            &["--network=host".into()],
            Runsc::reap_own_children(),
        );
        let mut cmd = r.command();
        cmd.args(["wait", "c1"]);
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--root", "/run/r", "--network=host", "wait", "c1"]);
        assert_eq!(
            exec_args(Path::new("/b/.exec-1.ipid")),
            [
                OsString::from("--internal-pid-file"),
                OsString::from("/b/.exec-1.ipid")
            ]
        );
    }

    #[test]
    fn internal_pid_file_must_hold_a_positive_pid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ipid");
        std::fs::write(&p, "20").unwrap();
        assert_eq!(read_internal_pid(&p).unwrap(), 20);
        std::fs::write(&p, "-1").unwrap();
        assert!(read_internal_pid(&p)
            .unwrap_err()
            .to_string()
            .contains("ipid"));
        assert!(read_internal_pid(&dir.path().join("none")).is_err());
    }

    #[tokio::test]
    async fn a_missing_binary_is_named() {
        let r = Runsc::new(
            Path::new("/nonexistent/runsc"),
            Path::new("/tmp"),
            &[],
            Runsc::reap_own_children(),
        );
        let err = r.status("x").await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/runsc"), "{err}");
    }

    #[tokio::test]
    async fn state_of_an_unknown_container_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let r = Runsc::new(
            Path::new("/usr/bin/runsc"),
            root.path(),
            &[],
            Runsc::reap_own_children(),
        );
        let err = r.status("nope").await.unwrap_err().to_string();
        assert!(err.contains("state nope"), "{err}");
        assert!(err.contains("does not exist"), "{err}");
    }
}
