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
