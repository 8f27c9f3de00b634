//! `containerd-shim-router-v2`: a containerd shim v2 binary that routes each pod to an isolation
//! backend chosen from the node policy. `start` decides and hands over (exec of another shim v2
//! binary, or the built-in backend); `delete` runs the recorded backend's cleanup; without an
//! action the binary is the built-in backend's shim daemon, or a pod's task API relay.

mod admission;
mod args;
mod audit;
mod backend;
mod builtin;
mod containerd_compat;
mod daemonize;
mod delete;
mod handoff;
mod hostfacts;
mod logging;
mod record;
mod records;
mod relay;
mod stale;
mod start;
mod statedir;
mod sys;
mod timefmt;

use std::process::ExitCode;

use args::{Action, ShimArgs};

const NAME: &str = "containerd-shim-router-v2";

fn main() -> ExitCode {
    let args = match ShimArgs::from_env() {
        Ok(a) => a,
        Err(e) => {
            eprint!("{NAME}: {e}");
            return ExitCode::from(2);
        }
    };
    if args.version {
        println!("{NAME}:\n  Version: {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.info {
        use std::io::Write;
        let info =
            containerd_compat::runtime_info("io.containerd.router.v2", env!("CARGO_PKG_VERSION"));
        let mut out = std::io::stdout().lock();
        return match out.write_all(&info).and_then(|()| out.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprint!("{NAME}: cannot print RuntimeInfo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.namespace.is_empty() {
        eprint!("{NAME}: shim namespace cannot be empty (-namespace)");
        return ExitCode::FAILURE;
    }
    match args.action {
        Action::Start => run_start(&args),
        Action::Delete => run_delete(&args),
        Action::Daemon => run_daemon(),
    }
}

fn run_start(args: &ShimArgs) -> ExitCode {
    logging::init_in_bundle(args.debug);
    match start::run(args) {
        Ok(address) => match start::print_address(&address) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprint!("runtime-router: cannot print the shim address: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            start::report_refusal(&e);
            ExitCode::FAILURE
        }
    }
}

fn run_delete(args: &ShimArgs) -> ExitCode {
    logging::init(logging::Sink::Stderr, args.debug);
    match delete::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e).context(format!("delete {}", args.id));
            eprint!("runtime-router: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_daemon() -> ExitCode {
    if let Some(delegate) = std::env::var_os(relay::ENV_RELAY_TO) {
        relay::run_daemon(delegate.to_string_lossy().into_owned())
    }
    builtin::run_daemon()
}
