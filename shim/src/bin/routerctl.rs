//! `routerctl`: operator tool for runtime-router.
//!
//! `routerctl check [FILE] [--containerd-config FILE]` validates a policy, prints its tenants and
//! backends, the isolation tiers this host can offer and, given containerd's config, the runtime
//! handlers that bypass the router. `routerctl explain ...` prints the decision for a pod without
//! running anything. Exit codes: 0 fine, 1 policy error / refusal / bypass, 2 usage error.

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
#[path = "routerctl/files.rs"]
mod files;
#[path = "routerctl/host.rs"]
mod host;

use std::process::ExitCode;

const USAGE: &str = "usage:
  routerctl check [FILE] [--containerd-config FILE]
  routerctl explain [--config FILE] --namespace NS [--annotation K=V ...] [--label K=V ...]
                    [--bundle DIR] [--containerd-namespace NS]

check    validate a policy (default: $RUNTIME_ROUTER_CONFIG or /etc/containerd/runtime-router.toml),
         print tenants, backends and the isolation tiers this host offers; with a containerd
         config (version 2 or 3), report runtime handlers that bypass the router and whether the
         router handler's pod_annotations let through what the policy expects.
explain  print the decision (tenant, backend, isolation, reasons) or the refusal for a pod.
         --namespace is the pod's Kubernetes namespace; --bundle reads DIR/config.json;
         without --namespace and --bundle the task is treated like `ctr run` in
         --containerd-namespace (default `default`).
exit: 0 ok, 1 invalid policy / refusal / bypass found, 2 usage error";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let code = match argv.first().map(String::as_str) {
        Some("check") => args::parse_check(&argv[1..]).map(|a| check::run(&a)),
        Some("explain") => args::parse_explain(&argv[1..]).map(|a| explain::run(&a)),
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
