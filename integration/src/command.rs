//! Running external programs (ctr, ip, runc) with a deadline: output is captured, a non-zero exit
//! becomes an [`Error::Command`] carrying stderr, and a program that overruns is killed.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long output is still collected after the program exited (a grandchild may hold its pipes).
const PIPE_GRACE: Duration = Duration::from_secs(5);

/// Runs `cmd` to completion (at most `timeout`), returning its output if it exited 0.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let out = run_unchecked(cmd, timeout)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `cmd` to completion (at most `timeout`) whatever its exit status.
pub fn run_unchecked(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("cannot run `{}`", describe(cmd)), e))?;
    // Pipes are drained on threads that report through channels: a grandchild that inherited a
    // pipe and outlives the child must not block us once the child has exited.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out_t = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_t = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: format!("`{}`", describe(cmd)),
                    seconds: timeout.as_secs(),
                });
            }
            Err(e) => return Err(Error::io(format!("wait for `{}`", describe(cmd)), e)),
        }
    };
    let until = Instant::now() + PIPE_GRACE;
    let stdout = out_t
        .recv_timeout(until.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    let stderr = err_t
        .recv_timeout(until.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// `program arg arg ...` for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_stderr() {
        let err = run(
            Command::new("/bin/busybox").args(["sh", "-c", "echo nope >&2; exit 3"]),
            Duration::from_secs(20),
        )
        .expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("nope") && text.contains('3'), "{text}");
    }

    #[test]
    fn overrun_is_killed() {
        let started = Instant::now();
        let err = run(
            Command::new("/bin/busybox").args(["sleep", "30"]),
            Duration::from_millis(300),
        )
        .expect_err("must time out");
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn grandchild_holding_the_pipe_does_not_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; exit 0", pid_file.display());
        let started = Instant::now();
        let result = run(
            Command::new("/bin/busybox").args(["sh", "-c", &script]),
            Duration::from_secs(60),
        );
        let elapsed = started.elapsed();
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert!(result.is_ok(), "{result:?}");
        assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    }

    #[test]
    fn success_returns_stdout() {
        let out = run(
            Command::new("/bin/busybox").args(["echo", "hi"]),
            Duration::from_secs(20),
        )
        .expect("runs");
        assert_eq!(out.stdout, b"hi\n");
    }
}
