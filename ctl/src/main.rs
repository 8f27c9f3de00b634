//! `routerctl`: operator tool for runtime-router.
//!
//! `routerctl check [FILE] [--containerd-config FILE]` validates a policy, prints its tenants and
//! backends, the isolation tiers this host can offer and, given containerd's config, the runtime
//! handlers that bypass the router. `routerctl explain ...` prints the decision for a pod without
//! running anything. `policy apply|watch` rolls a policy out (validated first, atomic replace),
//! `node-features` prints Node Feature Discovery tier labels, `pods` lists the pods the router
//! serves (from its decision records), `metrics` exposes the audit log's
//! decisions to Prometheus, `install`/`uninstall` set a node up (the DaemonSet runs them),
//! `completions SHELL` prints a completion script. Exit codes: 0 fine, 1 policy error / refusal /
//! bypass, 2 usage error. Its own crate: it depends on the policy (`router-config`) and the
//! decision (`router-core`) only, never on what containerd executes (`router-shim`).

/// `println!` that ends the process quietly when stdout is gone (`routerctl ... | head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod admission;
mod args;
mod check;
mod containerd;
mod explain;
mod features;
mod files;
mod host;
mod install;
mod metrics;
mod pods;
mod policy;

use std::process::ExitCode;

use args::{Cli, Command, PolicyCommand};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // help and --version exit 0, a usage error 2 (clap's codes, as documented)
        Err(e) => e.exit(),
    };
    let code = match cli.command {
        Command::Check(mut a) => {
            if a.policy.is_none() {
                a.policy = a.config.take();
            }
            check::run(&a)
        }
        Command::Explain(a) => explain::run(&a),
        Command::Policy(PolicyCommand::Apply { from, to }) => {
            policy::run_apply(&from, to.as_deref())
        }
        Command::Policy(PolicyCommand::Watch {
            from,
            to,
            interval_ms,
        }) => policy::run_watch(
            &from,
            to.as_deref(),
            std::time::Duration::from_millis(interval_ms),
        ),
        Command::NodeFeatures(a) => features::run(a.config.as_deref(), a.output.as_deref()),
        Command::Metrics(a) => metrics::run(
            &a.audit_log,
            a.listen.as_deref(),
            std::time::Duration::from_millis(a.interval_ms),
            usize::try_from(a.max_connections).unwrap_or(usize::MAX),
        ),
        Command::Pods(a) => pods::run(a.state_dir.as_deref(), a.output == "json"),
        Command::Admission { config } => admission::run(config.as_deref()),
        Command::Install(a) => install::install(&a.into()),
        Command::Uninstall(a) => install::uninstall(&a.into()),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "routerctl",
                &mut std::io::stdout(),
            );
            0
        }
    };
    ExitCode::from(code)
}
