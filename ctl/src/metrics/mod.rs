//! `routerctl metrics --audit-log FILE [--listen ADDR]`: the routing decisions in the audit log
//! as Prometheus metrics (`prometheus-client`):
//!
//! - `runtime_router_decisions_total{outcome,role,tenant,backend,tier,handler,rule}` counts audit
//!   lines; `rule` is the rule's kind (`namespace`, `default_tenant`, `sandbox`, `deny:<rule>`,
//!   …, `router_core::rule_kind`), never a pod id or a pattern;
//! - `runtime_router_decision_duration_seconds{outcome,role}`: histogram of `decision_us`;
//! - `runtime_router_audit_lines_invalid_total` counts lines that are not an audit entry.
//!
//! Without `--listen` the file is read once and printed (Prometheus text format 0.0.4). With
//! `--listen` the log is followed (`follow`) and served over HTTP (`serve`).

mod follow;
mod serve;
mod stats;

use follow::Follower;
use serve::to_text_004;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `routerctl metrics`.
pub fn run(
    audit_log: &Path,
    listen: Option<&str>,
    interval: Duration,
    max_connections: usize,
) -> u8 {
    let mut f = Follower::new(audit_log);
    if let Err(e) = f.poll() {
        eprintln!("error: {}: {e}", audit_log.display());
        return 1;
    }
    let Some(addr) = listen else {
        if !audit_log.exists() {
            eprintln!(
                "warning: {}: no audit log yet: no decisions",
                audit_log.display()
            );
        }
        let text = to_text_004(&f.stats.render());
        let _ = std::io::stdout().write_all(text.as_bytes());
        return 0;
    };
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    match listener.local_addr() {
        Ok(a) => out!("serving http://{a}/metrics from {}", audit_log.display()),
        Err(_) => out!("serving /metrics on {addr}"),
    }
    let shared = Arc::new(Mutex::new(f));
    let follower = Arc::clone(&shared);
    let path = audit_log.to_owned();
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        let mut f = follower.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.poll() {
            eprintln!("warning: {}: {e}", path.display());
        }
    });
    match serve::serve(listener, shared, max_connections) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: serving {addr}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests;
