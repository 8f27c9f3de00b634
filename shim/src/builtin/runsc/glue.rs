//! The runsc rules in the daemon's own types: one [`RunscRules`] per pod daemon whose backend
//! runtime is runsc, called by the Task service at create, start, exec and kill (the exact call
//! sites are listed under "Integration" in `docs/gvisor.md`). Children spawned here are
//! collected by the daemon's subreaper, like every other child.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::super::reaper::{reaper, Exit};
use super::super::{BuiltinBackend, BuiltinError};
use super::cli::{self, Reap, Runsc};
use super::{detect, wait, Role, RunscError};

impl From<RunscError> for BuiltinError {
    fn from(e: RunscError) -> Self {
        match e {
            RunscError::Spawn { program, source } => BuiltinError::Spawn { program, source },
            RunscError::Io { what, source } => BuiltinError::Io { what, source },
            other => BuiltinError::Runtime {
                what: "runsc".into(),
                message: other.to_string(),
            },
        }
    }
}

/// What the daemon does differently when its runtime is runsc.
#[derive(Debug, Clone)]
pub struct RunscRules {
    runsc: Runsc,
}

/// Collect a runsc child through the daemon's subreaper (never `wait()` on it directly).
fn reap_through_subreaper() -> Reap {
    Arc::new(|child| {
        let exited = reaper().subscribe(child.id() as i32);
        drop(child);
        Box::pin(async move { exited.await.ok().map(|e| e.status as i32) })
    })
}

impl RunscRules {
    /// `Some` when `backend.runtime` is runsc. `root`: the `--root` the daemon's runtime client
    /// uses (the same for every container of the pod).
    pub fn for_backend(backend: &BuiltinBackend, root: &Path) -> Option<Self> {
        detect::is_runsc(&backend.runtime).then(|| Self {
            runsc: Runsc::new(
                &backend.runtime,
                root,
                &backend.runtime_args,
                reap_through_subreaper(),
            ),
        })
    }

    /// Whether the bundle is a container joining its pod's sandbox (CRI annotation
    /// `container-type=container`): such a container shares the sandbox's pid, gets its stdio
    /// at `start`, and its exit comes from [`RunscRules::watch_exit`]. An unreadable bundle
    /// counts as a sandbox (runsc's own reading); `create` reports what is wrong with it.
    pub fn joins_sandbox(bundle: &Path) -> bool {
        Role::from_bundle(bundle).is_ok_and(|r| r.joins_sandbox())
    }

    /// The exit of container `id` (joined to a sandbox, already started), in the reaper's
    /// shape: `pid` is what the daemon reports for it (the sandbox pid from its pid file).
    /// Dropping the receiver stops the retries.
    pub fn watch_exit(&self, id: &str, pid: i32) -> oneshot::Receiver<Exit> {
        let (mut tx, rx) = oneshot::channel();
        let exited = wait::watch(self.runsc.clone(), id.to_owned());
        let id = id.to_owned();
        tokio::spawn(async move {
            tokio::select! {
                r = exited => {
                    let Ok(r) = r else { return };
                    if let wait::ExitSource::SandboxGone(reason) = &r.source {
                        log::info!("{id}: sandbox gone ({reason}): exit {}", r.status);
                    }
                    let _ = tx.send(Exit { pid, status: r.status, at: r.at });
                }
                // Nobody waits any more: dropping `exited` stops the watcher's retries.
                _ = tx.closed() => {}
            }
        });
        rx
    }

    /// Extra `runsc exec` arguments: where runsc writes the process's sandbox-internal pid.
    pub fn exec_args(internal_pid_file: &Path) -> Vec<OsString> {
        cli::exec_args(internal_pid_file)
    }

    /// The pid written by `exec --internal-pid-file`.
    pub fn read_internal_pid(path: &Path) -> Result<i32, BuiltinError> {
        Ok(cli::read_internal_pid(path)?)
    }

    /// Signal an exec'd process of container `id` by its sandbox-internal pid (its host pid is
    /// a `runsc-exec` helper: signalling that does not reach the process).
    pub async fn kill_exec(
        &self,
        id: &str,
        internal_pid: i32,
        signal: u32,
    ) -> Result<(), BuiltinError> {
        Ok(self.runsc.kill_process(id, internal_pid, signal).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_exist_only_for_runsc() {
        let b = |rt: &str| BuiltinBackend {
            runtime: rt.into(),
            runtime_args: vec!["--network=host".into()],
        };
        let root = Path::new("/run/runtime-router/runsc/k8s.io");
        assert!(RunscRules::for_backend(&b("/usr/bin/runsc"), root).is_some());
        assert!(RunscRules::for_backend(&b("/usr/bin/runc"), root).is_none());
    }

    #[test]
    fn joining_is_read_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!RunscRules::joins_sandbox(dir.path()));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.container-type":"container",
                "io.kubernetes.cri.sandbox-id":"s"}}"#,
        )
        .unwrap();
        assert!(RunscRules::joins_sandbox(dir.path()));
    }

    #[test]
    fn runsc_errors_keep_their_message() {
        let e: BuiltinError = RunscError::Command {
            what: "kill --pid 3 c1 15".into(),
            message: "no such process".into(),
        }
        .into();
        let msg = e.to_string();
        assert!(
            msg.contains("kill --pid 3 c1 15") && msg.contains("no such process"),
            "{msg}"
        );
    }
}
