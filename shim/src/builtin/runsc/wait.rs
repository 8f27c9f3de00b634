//! A container's exit under runsc. The container runs inside the sandbox process, so no SIGCHLD
//! tells us it ended: [`watch`] keeps one `runsc wait ID` per container and turns its answer
//! into an [`ExitReport`]. `runsc wait` prints `{"id":"c1","exitStatus":7}` and exits 0
//! (`exitStatus` is the code, or 128 + signal); it answers again with the same status after the
//! exit, as long as the sandbox lives. When the sandbox process itself dies (kill -9, OOM) the
//! wait fails (`urpc method "containerManager.Wait" failed: EOF`, or `connecting to control
//! server ... connection refused`) and the container is `stopped`: that is reported as
//! [`KILLED_WITH_SANDBOX`], the container having been killed with its sandbox.
//!
//! Not for the sandbox container: its `runsc wait` races the sandbox's own exit. Its exit is
//! the sandbox process's exit (the daemon's SIGCHLD), whose code mirrors the root container's.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::oneshot;

use super::cli::Runsc;
use super::KILLED_WITH_SANDBOX;

/// First pause before asking `runsc wait` again after a failure while the container runs.
const RETRY_FIRST: Duration = Duration::from_millis(200);
/// Longest pause between such retries.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What one `runsc wait` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The container exited with this status (code, or 128 + signal).
    Exited(u32),
    /// runsc could not wait (its message).
    Failed(String),
}

#[derive(Deserialize)]
struct WaitLine {
    #[serde(rename = "exitStatus")]
    exit_status: i64,
}

/// Read `runsc wait`'s output: the JSON line on stdout when it succeeded, else its message.
pub fn parse_wait(stdout: &str, stderr: &str, success: bool) -> WaitOutcome {
    let line = stdout.lines().map(str::trim).rfind(|l| !l.is_empty());
    if success {
        if let Some(line) = line {
            match serde_json::from_str::<WaitLine>(line) {
                Ok(w) => return WaitOutcome::Exited(status_from(w.exit_status)),
                Err(e) => {
                    return WaitOutcome::Failed(format!(
                        "unreadable runsc wait output {line:?}: {e}"
                    ))
                }
            }
        }
    }
    let msg = stderr.trim();
    let msg = if msg.is_empty() {
        line.unwrap_or("")
    } else {
        msg
    };
    WaitOutcome::Failed(if msg.is_empty() {
        "runsc wait failed without a message".into()
    } else {
        msg.to_owned()
    })
}

/// A wait status as containerd wants it (u32); runsc never reports a negative one, but a
/// negative or huge value must not wrap into a plausible code.
fn status_from(v: i64) -> u32 {
    u32::try_from(v).ok().filter(|s| *s <= 255).unwrap_or(255)
}

/// How an exit was learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitSource {
    /// `runsc wait` reported it.
    Waited,
    /// The wait failed and the container is stopped or gone: its sandbox died (the reason is
    /// runsc's message).
    SandboxGone(String),
}

/// One container's exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReport {
    pub status: u32,
    pub at: SystemTime,
    pub source: ExitSource,
}

/// Learn container `id`'s exit. Call after `runsc start ID` succeeded (a wait started before
/// can fail). Retries, with a growing pause, while runsc cannot wait but says the container is
/// still running; stops when the receiver is dropped.
async fn exit_of(runsc: &Runsc, id: &str, cancelled: impl Fn() -> bool) -> Option<ExitReport> {
    let mut pause = RETRY_FIRST;
    loop {
        let reason = match runsc.wait(id).await {
            Ok(WaitOutcome::Exited(status)) => {
                return Some(ExitReport {
                    status,
                    at: SystemTime::now(),
                    source: ExitSource::Waited,
                })
            }
            Ok(WaitOutcome::Failed(msg)) => msg,
            Err(e) => e.to_string(),
        };
        match runsc.status(id).await {
            Ok(s) if s == "running" || s == "paused" || s == "created" => {
                log::warn!("runsc wait {id} failed while it is {s}: {reason}; retrying");
            }
            Ok(s) => {
                log::info!("{id}: runsc wait failed ({reason}) and it is {s}: its sandbox is gone");
                return Some(gone(reason));
            }
            Err(e) => {
                log::info!("{id}: runsc wait failed ({reason}); state: {e}");
                return Some(gone(reason));
            }
        }
        if cancelled() {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

fn gone(reason: String) -> ExitReport {
    ExitReport {
        status: KILLED_WITH_SANDBOX,
        at: SystemTime::now(),
        source: ExitSource::SandboxGone(reason),
    }
}

/// Spawn a task that learns container `id`'s exit ([`exit_of`]) and sends it. Dropping the
/// receiver stops the retries (a `runsc wait` already running ends with the container).
pub fn watch(runsc: Runsc, id: String) -> oneshot::Receiver<ExitReport> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let report = exit_of(&runsc, &id, || tx.is_closed()).await;
        if let Some(r) = report {
            log::debug!("{id}: exit {} ({:?})", r.status, r.source);
            let _ = tx.send(r);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_is_read_from_the_json_line() {
        assert_eq!(
            parse_wait("{\"id\":\"c1\",\"exitStatus\":7}\n", "", true),
            WaitOutcome::Exited(7)
        );
        assert_eq!(
            parse_wait("{\"id\":\"c2\",\"exitStatus\":137}\n", "", true),
            WaitOutcome::Exited(137)
        );
        assert_eq!(
            parse_wait(
                "{\"id\":\"c\",\"exitStatus\":0}",
                "W1127 some warning\n",
                true
            ),
            WaitOutcome::Exited(0)
        );
    }

    #[test]
    fn out_of_range_statuses_do_not_wrap() {
        assert_eq!(
            parse_wait("{\"id\":\"c\",\"exitStatus\":-1}", "", true),
            WaitOutcome::Exited(255)
        );
        assert_eq!(
            parse_wait("{\"id\":\"c\",\"exitStatus\":4096}", "", true),
            WaitOutcome::Exited(255)
        );
    }

    #[test]
    fn failures_carry_runscs_message() {
        let msg =
            "waiting on container \"c1\": urpc method \"containerManager.Wait\" failed: EOF\n";
        assert_eq!(
            parse_wait("", msg, false),
            WaitOutcome::Failed(msg.trim().to_owned())
        );
        assert!(matches!(
            parse_wait("not json", "", true),
            WaitOutcome::Failed(m) if m.contains("not json")
        ));
        assert!(matches!(
            parse_wait("", "", false),
            WaitOutcome::Failed(m) if m.contains("without a message")
        ));
        // Exit 0 but nothing printed is not an exit.
        assert!(matches!(parse_wait("", "", true), WaitOutcome::Failed(_)));
    }
}
