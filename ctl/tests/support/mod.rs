//! What every `routerctl` test file shares: running the built binary with the policy cache off
//! and no policy named by the environment.

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `routerctl ARGS`: (exit code, stdout, stderr).
pub fn routerctl(args: &[&str]) -> (i32, String, String) {
    let (code, out, err, _) = routerctl_timed(args);
    (code, out, err)
}

/// [`routerctl`], also returning how long it took.
pub fn routerctl_timed(args: &[&str]) -> (i32, String, String, Duration) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_routerctl"))
        .args(args)
        // keep the policy cache inside the test's reach: disabled
        .env("RUNTIME_ROUTER_CACHE_DIR", "")
        .env_remove("RUNTIME_ROUTER_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("run routerctl: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t.elapsed(),
    )
}

/// A `routerctl metrics --listen 127.0.0.1:0` process, killed when dropped.
pub struct MetricsServer {
    child: std::process::Child,
    /// host:port it serves.
    pub addr: String,
}

impl MetricsServer {
    /// Starts it on `audit_log` with extra `args`; waits for its "serving http://…" line.
    pub fn start(audit_log: &std::path::Path, args: &[&str]) -> MetricsServer {
        Self::start_binary(env!("CARGO_BIN_EXE_routerctl").as_ref(), audit_log, args)
    }

    /// [`MetricsServer::start`] running `binary` (a copy of routerctl).
    pub fn start_binary(
        binary: &std::path::Path,
        audit_log: &std::path::Path,
        args: &[&str],
    ) -> MetricsServer {
        use std::io::BufRead as _;
        let mut child = Command::new(binary)
            .arg("metrics")
            .arg("--audit-log")
            .arg(audit_log)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run routerctl metrics: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("routerctl metrics output: {e}"));
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        MetricsServer { child, addr }
    }

    /// The process's `Pss` and `Private_Dirty` in KiB (`/proc/<pid>/smaps_rollup`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let text = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", self.child.id()))
            .unwrap_or_else(|e| panic!("smaps_rollup: {e}"));
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in smaps_rollup"))
        };
        (field("Pss:"), field("Private_Dirty:"))
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
