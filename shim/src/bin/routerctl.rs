//! `routerctl`: operator tool for runtime-router.
//!
//! `routerctl check [FILE] [--containerd-config FILE]` validates a policy, prints its tenants and
//! backends, the isolation tiers this host can offer and, given containerd's config, the runtime
//! handlers that bypass the router. `routerctl explain ...` prints the decision for a pod without
//! running anything. `policy apply|watch` rolls a policy out (validated first, atomic replace),
//! `node-features` prints Node Feature Discovery tier labels, `metrics` exposes the audit log's
//! decisions to Prometheus, `install`/`uninstall` set a node up (the DaemonSet runs them). Exit codes: 0 fine, 1 policy error / refusal / bypass, 2 usage error.

/// `println!` that ends the process quietly when stdout is gone (`routerctl ... | head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[path = "routerctl/args.rs"]
mod args;
#[path = "routerctl/check.rs"]
mod check;
#[path = "routerctl/containerd.rs"]
mod containerd;
#[path = "routerctl/explain.rs"]
mod explain;
#[path = "routerctl/features.rs"]
mod features;
#[path = "routerctl/files.rs"]
mod files;
#[path = "routerctl/host.rs"]
mod host;
#[path = "routerctl/install.rs"]
mod install;
#[path = "routerctl/metrics.rs"]
mod metrics;
#[path = "routerctl/policy.rs"]
mod policy;

use std::process::ExitCode;

const USAGE: &str = "usage:
  routerctl check [FILE] [--containerd-config FILE]
  routerctl explain [--config FILE] --namespace NS [--annotation K=V ...] [--label K=V ...]
                    [--bundle DIR] [--containerd-namespace NS]
  routerctl policy apply FILE [--to PATH]
  routerctl policy watch --from FILE [--to PATH] [--interval-ms MS]
  routerctl node-features [--config FILE] [--output DIR]
  routerctl metrics --audit-log FILE [--listen ADDR] [--interval-ms MS]
  routerctl install --host-root DIR [--from DIR] [--bin-dir PATH] [--containerd-config PATH]
                    [--config-version 2|3] [--pod-annotation KEY ...] [--keep-handlers]
                    [--restart-command CMD]
  routerctl uninstall --host-root DIR [--containerd-config PATH] [--force] [--restart-command CMD]

check    validate a policy (default: $RUNTIME_ROUTER_CONFIG or /etc/containerd/runtime-router.toml),
         print tenants, backends and the isolation tiers this host offers; with a containerd
         config (version 2 or 3), report runtime handlers that bypass the router and whether the
         router handler's pod_annotations let through what the policy expects.
explain  print the decision (tenant, backend, isolation, reasons) or the refusal for a pod.
         --namespace is the pod's Kubernetes namespace; --bundle reads DIR/config.json;
         without --namespace and --bundle the task is treated like `ctr run` in
         --containerd-namespace (default `default`).
policy   apply: validate FILE as `check` does, then atomically replace PATH (default: the live
         policy), keeping the previous text in PATH.prev; a broken FILE leaves PATH unchanged.
         watch: apply FILE whenever it changes (ConfigMap volumes included); a broken version
         is reported and the last good policy stays live.
node-features  NFD local-feature lines `runtime-router.io/tier.<isolation>=true`, one per tier
         this node can serve with the policy's backends; --output DIR writes DIR/runtime-router.
metrics  Prometheus text of the audit log's decisions; --listen serves /metrics and follows
         the log as it grows and is rotated.
install  (DaemonSet) copy the binaries under DIR, register the router as containerd's default
         handler (config version 2 or 3, the rest of the file kept), optionally restart
         containerd; uninstall restores the original config byte for byte.
exit: 0 ok, 1 invalid policy / refusal / bypass found, 2 usage error";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let code = match argv.first().map(String::as_str) {
        Some("check") => args::parse_check(&argv[1..]).map(|a| check::run(&a)),
        Some("explain") => args::parse_explain(&argv[1..]).map(|a| explain::run(&a)),
        Some("policy") => args::parse_policy(&argv[1..]).map(|a| {
            let from = a.from.unwrap_or_default();
            if a.watch {
                let ms = a.interval_ms.unwrap_or(1000);
                policy::run_watch(&from, a.to.as_deref(), std::time::Duration::from_millis(ms))
            } else {
                policy::run_apply(&from, a.to.as_deref())
            }
        }),
        Some("node-features") => args::parse_features(&argv[1..])
            .map(|a| features::run(a.config.as_deref(), a.output.as_deref())),
        Some("metrics") => args::parse_metrics(&argv[1..]).and_then(|a| {
            let log = a.audit_log.ok_or("metrics needs --audit-log FILE")?;
            let ms = a.interval_ms.unwrap_or(500);
            Ok(metrics::run(
                &log,
                a.listen.as_deref(),
                std::time::Duration::from_millis(ms),
            ))
        }),
        Some("install") => args::parse_install(&argv[1..]).map(|a| install::install(&a)),
        Some("uninstall") => args::parse_install(&argv[1..]).map(|a| install::uninstall(&a)),
        Some("-h") | Some("--help") | Some("help") => {
            out!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`")),
        None => Err("missing command".to_string()),
    };
    match code {
        Ok(c) => ExitCode::from(c),
        Err(msg) => {
            eprintln!("routerctl: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
