//! The shim daemon's main: parse the invocation, become a child subreaper, serve the Task
//! service on the pod's socket with a single-threaded tokio runtime (small memory), tell
//! `start` it is ready, and exit when containerd shuts it down with no container left.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::shim_async::create_task;
use containerd_shim_protos::ttrpc::r#async::transport::Listener;
use containerd_shim_protos::ttrpc::r#async::Server;
use tokio::signal::unix::{signal, SignalKind};

use super::ociruntime::OciRuntime;
use super::reaper::reaper;
use super::runsc::glue::RunscRules;
use super::task::{Inner, TaskService};
use super::{
    ensure_namespace, pod_runtime_root, remove_pod_runtime_root, BuiltinBackend, BuiltinError,
    PodLocks,
};
use super::{ENV_RUNTIME, ENV_RUNTIME_ARGS};
use crate::args::ShimArgs;
use crate::sys;

/// The task service names containerd calls: v2 (containerd 1.6/1.7, and 2.x given a plain
/// address) and v3 (2.x); the messages are the same.
const TASK_V3: &str = "containerd.task.v3.Task";
const TASK_V2: &str = "containerd.task.v2.Task";

/// Run the daemon; never returns.
pub fn run_daemon() -> ! {
    let code = match run() {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            crate::daemonize::report_failure(&e)
        }
    };
    std::process::exit(code)
}

fn backend_from_env() -> Result<BuiltinBackend, BuiltinError> {
    let runtime = std::env::var_os(ENV_RUNTIME)
        .map(PathBuf::from)
        .ok_or_else(|| BuiltinError::Invocation(format!("{ENV_RUNTIME} is not set")))?;
    let runtime_args: Vec<String> = match std::env::var(ENV_RUNTIME_ARGS) {
        Ok(s) if !s.is_empty() => serde_json::from_str(&s)
            .map_err(|e| BuiltinError::Invocation(format!("{ENV_RUNTIME_ARGS}: {e}")))?,
        _ => Vec::new(),
    };
    // Not for the runtime processes we spawn.
    std::env::remove_var(ENV_RUNTIME);
    std::env::remove_var(ENV_RUNTIME_ARGS);
    std::env::remove_var("MALLOC_ARENA_MAX");
    Ok(BuiltinBackend {
        runtime,
        runtime_args,
    })
}

fn run() -> Result<(), BuiltinError> {
    let args = ShimArgs::from_env().map_err(|e| BuiltinError::Invocation(e.to_string()))?;
    ensure_namespace(&args)?;
    let socket = args
        .socket
        .clone()
        .ok_or_else(|| BuiltinError::Invocation("missing -socket".into()))?;
    let backend = backend_from_env()?;
    crate::logging::init_in_bundle(args.debug);
    log::debug!("daemon starting");
    sys::set_child_subreaper().map_err(|e| BuiltinError::Io {
        what: "become child subreaper".into(),
        source: e,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .thread_stack_size(256 * 1024)
        .build()
        .map_err(|e| BuiltinError::Io {
            what: "start async runtime".into(),
            source: e,
        })?;
    rt.block_on(serve(args, backend, socket))
}

async fn serve(
    args: ShimArgs,
    backend: BuiltinBackend,
    socket: String,
) -> Result<(), BuiltinError> {
    reaper().start().map_err(|e| BuiltinError::Io {
        what: "install SIGCHLD handler".into(),
        source: e,
    })?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| BuiltinError::Io {
        what: "install SIGTERM handler".into(),
        source: e,
    })?;
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| BuiltinError::Invocation("TTRPC_ADDRESS is not set".into()))?;
    let publisher = RemotePublisher::new(&ttrpc_address).await.map_err(|e| {
        BuiltinError::Daemon(format!("connect to containerd at {ttrpc_address}: {e}"))
    })?;
    // The daemon is started by its pod's first task, the sandbox: `-id` is the sandbox id.
    let root = pod_runtime_root(&backend, &args.namespace, &args.id);
    std::fs::create_dir_all(&root).map_err(|e| BuiltinError::Io {
        what: format!("create {}", root.display()),
        source: e,
    })?;
    let runtime = OciRuntime::new(&backend.runtime, &root, &backend.runtime_args);
    let runsc = RunscRules::for_backend(&backend, &root);
    let gate = crate::admission::Admission {
        state: crate::statedir::state_dir(),
        address: args.address.clone(),
        namespace: args.namespace.clone(),
        sandbox_id: args.id.clone(),
        publish_binary: args.publish_binary.clone(),
    };
    let inner = Inner::new(args.namespace.clone(), runtime, runsc, publisher, gate);
    let service = Arc::new(TaskService(inner.clone()));

    let path = PathBuf::from(socket.strip_prefix("unix://").unwrap_or(&socket));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BuiltinError::Io {
            what: format!("create {}", dir.display()),
            source: e,
        })?;
    }
    log::debug!("connected to containerd events");
    let listener = UnixListener::bind(&path).map_err(|e| BuiltinError::Io {
        what: format!("listen on {}", path.display()),
        source: e,
    })?;
    let result = serve_on(listener, service, &inner, &mut sigterm).await;
    let _ = std::fs::remove_file(&path);
    inner.stop_watchers();
    // Empty once every container of the pod was deleted, but for lock files runsc may have
    // re-created (see PodLocks::RemoveOrphans); left (for the dead-shim cleanup) if the
    // daemon exits with containers.
    let locks = if inner.holds_no_container() {
        PodLocks::RemoveOrphans
    } else {
        PodLocks::Keep
    };
    remove_pod_runtime_root(&backend, &args.namespace, &root, locks);
    result
}

async fn serve_on(
    listener: UnixListener,
    service: Arc<TaskService>,
    inner: &Arc<Inner>,
    sigterm: &mut tokio::signal::unix::Signal,
) -> Result<(), BuiltinError> {
    let listener = Listener::try_from(listener).map_err(|e| BuiltinError::Io {
        what: "ttrpc listener".into(),
        source: e,
    })?;
    let mut services = create_task(service.clone());
    if let Some(v3) = create_task(service).remove(TASK_V3) {
        services.insert(TASK_V2.to_owned(), v3);
    }
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(services);
    server
        .start()
        .await
        .map_err(|e| BuiltinError::Daemon(format!("ttrpc server: {e}")))?;

    crate::daemonize::announce_ready();
    log::info!("serving on {}", std::process::id());
    inner.arm_first_create_timer();

    tokio::select! {
        _ = inner.exit.notified() => {}
        _ = sigterm.recv() => log::info!("SIGTERM: exiting"),
    }
    // Let the reply to Shutdown reach containerd before the connections close.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server.shutdown()).await;
    Ok(())
}
