//! `routerctl`'s command line, on clap (derive): help for every command and subcommand,
//! suggestions for typos, `--version`, and shell completions (`routerctl completions SHELL`).
//! A usage error exits 2 (clap's own code for it), as documented; each command returns 0 (fine)
//! or 1 (invalid policy, refusal, bypass found). The shim binary keeps its own small parser:
//! containerd's Go-style flags are on its start path; this one is an operator's tool.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The operator tool of runtime-router: validate and roll out the node policy, explain a
/// decision, describe the node's tiers, expose the audit log's decisions, install the router on
/// a node.
#[derive(Debug, Parser)]
#[command(
    name = "routerctl",
    version,
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = "exit: 0 ok, 1 invalid policy / refusal / bypass found, 2 usage error"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a policy and print its tenants, backends and the tiers this host offers; with a
    /// containerd config, report the runtime handlers that bypass the router.
    ///
    /// The policy defaults to $RUNTIME_ROUTER_CONFIG or /etc/containerd/runtime-router.toml.
    /// With a containerd config (version 2 or 3), also report every handler that bypasses the
    /// router and whether the router handler's pod_annotations let through what the policy
    /// expects.
    Check(CheckArgs),
    /// Print the decision (tenant, backend, isolation, reasons) or the refusal for a pod,
    /// without running anything.
    ///
    /// --namespace is the pod's Kubernetes namespace; --bundle reads DIR/config.json; without
    /// --namespace and --bundle the task is treated like `ctr run` in --containerd-namespace
    /// (default `default`).
    Explain(ExplainArgs),
    /// Roll a policy out: validated first, then replaced atomically.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print Node Feature Discovery local-feature lines `runtime-router.io/tier.<isolation>=true`,
    /// one per tier this node can serve with the policy's backends.
    NodeFeatures(FeaturesArgs),
    /// Print the audit log's decisions as Prometheus metrics; with --listen, serve /metrics and
    /// follow the log as it grows and is rotated.
    Metrics(MetricsArgs),
    /// List the pods this node runs through the router, from its decision records: Kubernetes
    /// namespace, pod, tenant, backend, tier and age.
    Pods(PodsArgs),
    /// Print admission policies generated from the node policy (a MutatingAdmissionPolicy that
    /// sets runtimeClassName from the namespace, a ValidatingAdmissionPolicy that rejects a class
    /// reserving less than the tenant's tier, and their bindings) as a JSON List for kubectl.
    Admission {
        /// The policy file (default: $RUNTIME_ROUTER_CONFIG or /etc/containerd/runtime-router.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// (DaemonSet) copy the binaries under the host root, register the router as containerd's
    /// default handler (config version 2 or 3, the rest of the file kept), optionally restart
    /// containerd.
    Install(InstallCli),
    /// (DaemonSet) undo `install`: the containerd config comes back byte for byte.
    Uninstall(InstallCli),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `routerctl check` arguments.
#[derive(Debug, Default, Args)]
pub struct CheckArgs {
    /// The policy file.
    #[arg(value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The policy file (the same as FILE).
    #[arg(long = "config", value_name = "FILE", conflicts_with = "policy")]
    pub config: Option<PathBuf>,
    /// containerd's config file, to report handlers that bypass the router.
    #[arg(long, value_name = "FILE")]
    pub containerd_config: Option<PathBuf>,
}

/// `routerctl explain` arguments.
#[derive(Debug, Default, Args)]
pub struct ExplainArgs {
    /// The policy file (default: $RUNTIME_ROUTER_CONFIG or /etc/containerd/runtime-router.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The pod's Kubernetes namespace.
    #[arg(short = 'n', long, value_name = "NS", value_parser = non_empty)]
    pub namespace: Option<String>,
    /// A pod annotation (repeatable).
    #[arg(long = "annotation", value_name = "K=V", value_parser = key_value)]
    pub annotations: Vec<(String, String)>,
    /// A pod label (repeatable; labels never grant trust).
    #[arg(long = "label", value_name = "K=V", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// A bundle directory: its config.json is decided.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// The containerd namespace (tasks without CRI annotations).
    #[arg(long, value_name = "NS")]
    pub containerd_namespace: Option<String>,
    /// The runtime handler the pod comes through (its RuntimeClass's `handler`; default: the
    /// router's own, `router`).
    #[arg(long, value_name = "NAME", default_value = "router")]
    pub handler: String,
}

/// `routerctl policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate FILE as `check` does, then atomically replace PATH (default: the live policy),
    /// keeping the previous text in PATH.prev; a broken FILE leaves PATH unchanged.
    Apply {
        /// The new policy.
        #[arg(value_name = "FILE")]
        from: PathBuf,
        /// The policy to replace.
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
    },
    /// Apply FILE whenever it changes (ConfigMap volumes included); a broken version is
    /// reported and the last good policy stays live.
    Watch {
        /// The policy to follow.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The policy to replace.
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
        /// How often FILE is looked at.
        #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = positive)]
        interval_ms: u64,
    },
}

/// `routerctl pods` arguments.
#[derive(Debug, Default, Args)]
pub struct PodsArgs {
    /// The router's state dir (default: $RUNTIME_ROUTER_STATE_DIR or /run/runtime-router).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// `table` (default) or `json`.
    #[arg(short = 'o', long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

/// `routerctl node-features` arguments.
#[derive(Debug, Default, Args)]
pub struct FeaturesArgs {
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write DIR/runtime-router instead of printing.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// `routerctl metrics` arguments.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The router's audit log.
    #[arg(long, value_name = "FILE")]
    pub audit_log: PathBuf,
    /// Serve /metrics on ADDR (host:port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// How often the log is followed when listening.
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = positive)]
    pub interval_ms: u64,
    /// Most HTTP connections open at once; more wait in the kernel's accept queue.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = positive)]
    pub max_connections: u64,
}

/// `routerctl install|uninstall` arguments.
#[derive(Debug, Args)]
pub struct InstallCli {
    /// The node's / as mounted in the DaemonSet pod.
    #[arg(long, value_name = "DIR")]
    pub host_root: PathBuf,
    /// Where the binaries to install are (default: beside this one).
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Where to put them on the host.
    #[arg(long, value_name = "PATH")]
    pub bin_dir: Option<String>,
    /// containerd's config on the host.
    #[arg(long, value_name = "PATH")]
    pub containerd_config: Option<String>,
    /// The containerd config version to write.
    #[arg(long, value_name = "2|3", value_parser = clap::value_parser!(i64).range(2..=3))]
    pub config_version: Option<i64>,
    /// An annotation pattern the router handler lets through (repeatable).
    #[arg(long = "pod-annotation", value_name = "KEY")]
    pub pod_annotations: Vec<String>,
    /// Leave the other runtime handlers in place.
    #[arg(long)]
    pub keep_handlers: bool,
    /// The command that restarts containerd on the host.
    #[arg(long, value_name = "CMD")]
    pub restart_command: Option<String>,
    /// (uninstall) restore even when the config changed since install.
    #[arg(long)]
    pub force: bool,
    /// (install) The node policy whose [handlers] are registered (default: the host's
    /// /etc/containerd/runtime-router.toml, else the embedded default).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl From<InstallCli> for crate::install::InstallArgs {
    fn from(a: InstallCli) -> Self {
        crate::install::InstallArgs {
            host_root: a.host_root,
            from: a.from,
            bin_dir: a.bin_dir,
            containerd_config: a.containerd_config,
            config_version: a.config_version,
            pod_annotations: a.pod_annotations,
            keep_handlers: a.keep_handlers,
            restart_command: a.restart_command,
            policy: a.config,
            force: a.force,
        }
    }
}

fn key_value(v: &str) -> Result<(String, String), String> {
    match v.split_once('=') {
        Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
        _ => Err(format!("wants KEY=VALUE, got `{v}`")),
    }
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err("is empty".into())
    } else {
        Ok(v.to_owned())
    }
}

fn positive(v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| format!("wants a positive number, got `{v}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("routerctl").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    #[test]
    fn explain_args() {
        let Ok(Command::Explain(a)) = parse(&[
            "explain",
            "--namespace",
            "web",
            "--annotation=a=b=c",
            "--label",
            "trusted=true",
            "--config",
            "/p.toml",
        ]) else {
            panic!("explain did not parse");
        };
        assert_eq!(a.namespace.as_deref(), Some("web"));
        assert_eq!(a.annotations, [("a".to_string(), "b=c".to_string())]);
        assert_eq!(a.labels, [("trusted".to_string(), "true".to_string())]);
        assert_eq!(a.config, Some(PathBuf::from("/p.toml")));
        assert!(parse(&["explain", "--annotation", "novalue"]).is_err());
        assert!(parse(&["explain", "--namespace"]).is_err());
        assert!(parse(&["explain", "--namespace", ""]).is_err());
        assert!(parse(&["explain", "--bogus", "x"]).is_err());
        assert!(parse(&["explain", "--namespace", "a", "--namespace", "b"]).is_err());
    }

    #[test]
    fn check_args() {
        let Ok(Command::Check(a)) = parse(&["check", "p.toml", "--containerd-config", "c.toml"])
        else {
            panic!("check did not parse");
        };
        assert_eq!(a.policy, Some(PathBuf::from("p.toml")));
        assert_eq!(a.containerd_config, Some(PathBuf::from("c.toml")));
        assert!(parse(&["check", "a", "b"]).is_err());
        assert!(parse(&["check", "a", "--config", "b"]).is_err());
    }

    #[test]
    fn policy_features_metrics_install_args() {
        let Ok(Command::Policy(PolicyCommand::Apply { from, to })) =
            parse(&["policy", "apply", "new.toml", "--to=/live.toml"])
        else {
            panic!("policy apply did not parse");
        };
        assert_eq!(from, PathBuf::from("new.toml"));
        assert_eq!(to, Some(PathBuf::from("/live.toml")));
        let Ok(Command::Policy(PolicyCommand::Watch { interval_ms, .. })) = parse(&[
            "policy",
            "watch",
            "--from",
            "cm/p.toml",
            "--interval-ms",
            "50",
        ]) else {
            panic!("policy watch did not parse");
        };
        assert_eq!(interval_ms, 50);
        assert!(parse(&["policy", "watch", "p.toml"]).is_err());
        assert!(parse(&["policy", "apply"]).is_err());
        assert!(parse(&["policy", "apply", "a", "--interval-ms", "5"]).is_err());
        assert!(parse(&["policy", "watch", "--from", "a", "--interval-ms", "0"]).is_err());
        assert!(parse(&["policy"]).is_err());
        let Ok(Command::NodeFeatures(a)) = parse(&["node-features", "--output", "/d"]) else {
            panic!("node-features did not parse");
        };
        assert_eq!(a.output, Some(PathBuf::from("/d")));
        assert!(parse(&["node-features", "x"]).is_err());
        let Ok(Command::Metrics(a)) =
            parse(&["metrics", "--audit-log", "/a", "--listen", "127.0.0.1:0"])
        else {
            panic!("metrics did not parse");
        };
        assert_eq!(a.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(a.interval_ms, 500);
        assert!(parse(&["metrics"]).is_err());
        let Ok(Command::Install(a)) = parse(&[
            "install",
            "--host-root",
            "/h",
            "--keep-handlers",
            "--config-version",
            "3",
        ]) else {
            panic!("install did not parse");
        };
        assert!(a.keep_handlers && a.config_version == Some(3));
        assert!(parse(&["install", "--keep-handlers"]).is_err());
        assert!(parse(&["install", "--host-root", "/h", "--config-version", "1"]).is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
