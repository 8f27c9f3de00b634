//! A small client for a runc-compatible OCI runtime CLI (runc, runsc, ...). Each call spawns
//! the runtime with the backend's global arguments (`--root`, then the policy's `runtime_args`),
//! waits for it through the daemon's [reaper](super::reaper) (never `wait()` on the child: the
//! subreaper reaps every child) and turns a failure into an error carrying the runtime's own
//! message. The `runc` crate is used for the shapes of runc's JSON output; its process
//! spawning is not, because it waits on children itself (racing our `waitpid(-1)`) and has no
//! place for extra global arguments such as runsc's `--platform`.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio::io::AsyncReadExt;

use super::reaper::reaper;
use super::BuiltinError;

/// Standard IO handed to a runtime call that creates a process (`create`, `exec`): the
/// runtime passes its own stdio on to the container process.
#[derive(Default)]
pub struct ProcStdio {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

/// The runtime CLI and its global arguments.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    program: PathBuf,
    global: Vec<OsString>,
}

impl OciRuntime {
    /// `root`: the runtime's state directory (`--root`); `runtime_args`: extra global flags.
    pub fn new(program: &Path, root: &Path, runtime_args: &[String]) -> Self {
        let mut global: Vec<OsString> = vec!["--root".into(), root.as_os_str().to_owned()];
        global.extend(runtime_args.iter().map(OsString::from));
        Self {
            program: program.to_owned(),
            global,
        }
    }

    fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.global);
        if let Some(log) = log {
            cmd.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        // NOTIFY_SOCKET makes runc talk to systemd; never meant for us.
        cmd.env_remove("NOTIFY_SOCKET");
        cmd
    }

    /// Run the command, capture stdout (if `capture`) and stderr (unless given), wait for it.
    async fn run(
        &self,
        mut cmd: Command,
        what: &str,
        stdio: Option<ProcStdio>,
        log: Option<&Path>,
    ) -> Result<String, BuiltinError> {
        let capture_stdout = stdio.is_none();
        match stdio {
            Some(io) => {
                cmd.stdin(io.stdin.map(Stdio::from).unwrap_or_else(Stdio::null));
                cmd.stdout(io.stdout.map(Stdio::from).unwrap_or_else(Stdio::null));
                cmd.stderr(io.stderr.map(Stdio::from).unwrap_or_else(Stdio::null));
            }
            None => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
        }
        log::debug!("run {:?}", cmd);
        let mut child = cmd.spawn().map_err(|e| BuiltinError::Spawn {
            program: self.program.clone(),
            source: e,
        })?;
        // Subscribe before the first await: the reaper runs on this same thread.
        let exited = reaper().subscribe(child.id() as i32);
        // The child holds its copies of the stdio files now; drop ours.
        drop(cmd);
        let mut out = String::new();
        let mut err = String::new();
        if capture_stdout {
            let so = child.stdout.take().map(read_pipe);
            let se = child.stderr.take().map(read_pipe);
            let (o, e) = tokio::join!(opt(so), opt(se));
            out = o;
            err = e;
        }
        let exit = exited.await.map_err(|_| BuiltinError::Runtime {
            what: what.to_owned(),
            message: "lost track of the runtime process".into(),
        })?;
        drop(child);
        if exit.status != 0 {
            let mut message = last_error_in_log(log).unwrap_or_default();
            if message.is_empty() {
                message = err.trim().to_owned();
            }
            if message.is_empty() {
                message = out.trim().to_owned();
            }
            if message.is_empty() {
                message = format!("exit status {}", exit.status);
            }
            return Err(BuiltinError::Runtime {
                what: what.to_owned(),
                message,
            });
        }
        Ok(out)
    }

    /// `create --bundle B --pid-file P [--console-socket S] ID`.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        stdio: ProcStdio,
        log: &Path,
    ) -> Result<(), BuiltinError> {
        let mut cmd = self.command(Some(log));
        cmd.arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(s) = console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        cmd.arg(id);
        self.run(cmd, "create", Some(stdio), Some(log))
            .await
            .map(drop)
    }

    /// `start ID`.
    pub async fn start(&self, id: &str, log: &Path) -> Result<(), BuiltinError> {
        let mut cmd = self.command(Some(log));
        cmd.args(["start", id]);
        self.run(cmd, "start", None, Some(log)).await.map(drop)
    }

    /// `start ID` with the container's stdio and no capture: runsc gives a container joining a
    /// sandbox the stdio of `start` and keeps it, so reading it to its end would never finish.
    pub async fn start_with_stdio(
        &self,
        id: &str,
        stdio: ProcStdio,
        log: &Path,
    ) -> Result<(), BuiltinError> {
        let mut cmd = self.command(Some(log));
        cmd.args(["start", id]);
        self.run(cmd, "start", Some(stdio), Some(log))
            .await
            .map(drop)
    }

    /// `exec --detach --process SPEC --pid-file P [--console-socket S] [EXTRA...] ID`.
    #[allow(clippy::too_many_arguments)]
    pub async fn exec(
        &self,
        id: &str,
        spec: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        extra: &[OsString],
        stdio: ProcStdio,
        log: &Path,
    ) -> Result<(), BuiltinError> {
        let mut cmd = self.command(Some(log));
        cmd.args(["exec", "--detach", "--process"])
            .arg(spec)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(s) = console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        cmd.args(extra);
        cmd.arg(id);
        self.run(cmd, "exec", Some(stdio), Some(log))
            .await
            .map(drop)
    }

    /// `kill [--all] ID SIGNAL`.
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), BuiltinError> {
        let mut cmd = self.command(None);
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run(cmd, "kill", None, None).await.map(drop)
    }

    /// `delete [--force] ID`.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), BuiltinError> {
        let mut cmd = self.command(None);
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        self.run(cmd, "delete", None, None).await.map(drop)
    }

    /// `pause ID` / `resume ID`.
    pub async fn pause(&self, id: &str, pause: bool) -> Result<(), BuiltinError> {
        let verb = if pause { "pause" } else { "resume" };
        let mut cmd = self.command(None);
        cmd.args([verb, id]);
        self.run(cmd, verb, None, None).await.map(drop)
    }

    /// `update --resources FILE ID`.
    pub async fn update(&self, id: &str, resources: &Path) -> Result<(), BuiltinError> {
        let mut cmd = self.command(None);
        cmd.args(["update", "--resources"]).arg(resources).arg(id);
        self.run(cmd, "update", None, None).await.map(drop)
    }

    /// `ps --format json ID`: the pids in the container.
    pub async fn ps(&self, id: &str) -> Result<Vec<i64>, BuiltinError> {
        let mut cmd = self.command(None);
        cmd.args(["ps", "--format", "json", id]);
        let out = self.run(cmd, "ps", None, None).await?;
        let pids: Option<Vec<i64>> =
            serde_json::from_str(out.trim()).map_err(|e| BuiltinError::Runtime {
                what: "ps".into(),
                message: format!("unreadable output: {e}"),
            })?;
        Ok(pids.unwrap_or_default())
    }

    /// `events --stats ID`: one stats sample as runc prints it.
    pub async fn stats(&self, id: &str) -> Result<serde_json::Value, BuiltinError> {
        let mut cmd = self.command(None);
        cmd.args(["events", "--stats", id]);
        let out = self.run(cmd, "events --stats", None, None).await?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| BuiltinError::Runtime {
                what: "events --stats".into(),
                message: format!("unreadable output: {e}"),
            })?;
        Ok(v.get("data").cloned().unwrap_or(serde_json::Value::Null))
    }
}

async fn opt(f: Option<impl std::future::Future<Output = String>>) -> String {
    match f {
        Some(f) => f.await,
        None => String::new(),
    }
}

/// Read a child's pipe to its end (bounded to 1 MiB).
fn read_pipe(p: impl Into<std::os::fd::OwnedFd>) -> impl std::future::Future<Output = String> {
    let fd: std::os::fd::OwnedFd = p.into();
    async move {
        let Ok(rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
            return String::new();
        };
        let mut buf = Vec::new();
        let _ = rx.take(1 << 20).read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// The last `"level":"error"` message in a runtime's JSON log (what runc writes on failure).
fn last_error_in_log(log: Option<&Path>) -> Option<String> {
    let mut text = String::new();
    File::open(log?).ok()?.read_to_string(&mut text).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("level").and_then(|l| l.as_str()) == Some("error"))
        .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_owned))
}

/// Read a pid file written by the runtime.
pub fn read_pid_file(path: &Path) -> Result<i32, BuiltinError> {
    let text = std::fs::read_to_string(path).map_err(|e| BuiltinError::Io {
        what: format!("read pid file {}", path.display()),
        source: e,
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| BuiltinError::Runtime {
            what: "create".into(),
            message: format!("bad pid file {}: {:?}", path.display(), text.trim()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_is_found_in_json_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.json");
        std::fs::write(
            &p,
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"no such file\"}\nnot json\n",
        )
        .unwrap();
        assert_eq!(last_error_in_log(Some(&p)).as_deref(), Some("no such file"));
        assert_eq!(last_error_in_log(None), None);
    }

    #[test]
    fn global_args_put_root_before_runtime_args() {
        let r = OciRuntime::new(
            Path::new("/usr/bin/runsc"),
            Path::new("/run/x"),
            &["--platform=systrap".into()],
        );
        let cmd = r.command(Some(Path::new("/b/log.json")));
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--root",
                "/run/x",
                "--platform=systrap",
                "--log",
                "/b/log.json",
                "--log-format",
                "json"
            ]
        );
    }

    #[test]
    fn pid_file_must_hold_a_positive_pid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("init.pid");
        std::fs::write(&p, "1234").unwrap();
        assert_eq!(read_pid_file(&p).unwrap(), 1234);
        std::fs::write(&p, "zero").unwrap();
        assert!(read_pid_file(&p).is_err());
        assert!(read_pid_file(&dir.path().join("missing")).is_err());
    }
}
