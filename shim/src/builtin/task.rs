//! The ttrpc Task service of the pod's shim daemon: every container of the pod (the sandbox and
//! its app containers) and their exec'd processes, driven through the OCI runtime CLI, with the
//! task events containerd expects. Locks are held only between awaits, never across one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ProcessInfo, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, Status,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::ttrpc::{self, Code};
use tokio::sync::{oneshot, watch, Notify, RwLock};

use super::ociruntime::{read_pid_file, OciRuntime};
use super::reaper::{reaper, Exit};
use super::runsc::glue::RunscRules;
use super::stdio::{self, IoHandles, IoPaths};
use super::{oom, piddir, rootfs, stats, BuiltinError};

/// How long the daemon waits for containerd's Shutdown after its last container is deleted.
const EMPTY_GRACE: Duration = Duration::from_secs(10);
/// How long the daemon stays after a Shutdown that found it empty.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(2);
/// How long a fresh daemon waits for its first container.
const FIRST_CREATE_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PState {
    Created,
    Running,
    Stopped,
}

#[derive(Debug, Clone, Copy)]
struct ExitInfo {
    status: u32,
    at: SystemTime,
}

struct Proc {
    pid: i32,
    state: PState,
    io: IoPaths,
    handles: IoHandles,
    exit: watch::Sender<Option<ExitInfo>>,
    /// An exec's process spec (JSON) until it is started.
    spec: Option<Vec<u8>>,
    /// runsc: an exec's pid inside the sandbox (its host pid is a `runsc-exec` helper).
    internal_pid: Option<i32>,
}

impl Proc {
    fn new(io: IoPaths) -> Self {
        Self {
            pid: 0,
            state: PState::Created,
            io,
            handles: IoHandles::default(),
            exit: watch::channel(None).0,
            spec: None,
            internal_pid: None,
        }
    }

    fn exit_info(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }
}

struct Container {
    bundle: PathBuf,
    rootfs: Option<PathBuf>,
    init: Proc,
    execs: HashMap<String, Proc>,
    paused: bool,
    kill_all_on_exit: bool,
    oom_stop: Option<oneshot::Sender<()>>,
    /// runsc: a container joining its pod's sandbox (shares the sandbox pid; its stdio is given
    /// at start; its exit comes from `runsc wait`).
    joined: bool,
}

/// The daemon's state and collaborators.
pub struct Inner {
    namespace: String,
    runtime: OciRuntime,
    runsc: Option<RunscRules>,
    publisher: RemotePublisher,
    containers: Mutex<HashMap<String, Container>>,
    cgroup_v2: bool,
    seq: AtomicU64,
    ever_created: AtomicBool,
    /// Refuses tasks the router's `start` did not decide for this pod.
    gate: Arc<crate::admission::Admission>,
    /// Held shared by every `Kill` until it returns; an exit is recorded (and so told to
    /// containerd, by `Wait` and by the `TaskExit` event) only when no `Kill` is in flight.
    /// Without it, a signalled process could be reaped and reported while `runc kill` was still
    /// running: containerd then deleted the task and shut this daemon down, closing the
    /// connection the `Kill` was to answer on, and StopPodSandbox failed with "ttrpc: closed".
    kills: RwLock<()>,
    /// Notified when the daemon should exit.
    pub exit: Notify,
}

/// The Task service handed to the ttrpc server.
#[derive(Clone)]
pub struct TaskService(pub Arc<Inner>);

fn ts(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

fn status_of(p: &Proc, paused: bool) -> Status {
    match p.state {
        PState::Created => Status::CREATED,
        PState::Running if paused => Status::PAUSED,
        PState::Running => Status::RUNNING,
        PState::Stopped => Status::STOPPED,
    }
}

fn rpc(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn not_found(what: &str) -> ttrpc::Error {
    rpc(Code::NOT_FOUND, format!("{what}: not found"))
}

impl From<BuiltinError> for ttrpc::Error {
    fn from(e: BuiltinError) -> Self {
        let code = match &e {
            BuiltinError::Unsupported(_) => Code::UNIMPLEMENTED,
            _ => Code::UNKNOWN,
        };
        rpc(code, e.to_string())
    }
}

/// Whether a runtime error says the container is not there (any more).
fn is_gone(msg: &str) -> bool {
    msg.contains("does not exist") || msg.contains("not found")
}

/// Whether the container shares a pid namespace (no `pid` entry, or one with a path): then its
/// other processes do not die with its init, and are killed when the init exits.
fn shares_pid_namespace(bundle: &Path) -> bool {
    // bounded, never blocking (the bundle may hold anything a pod planted)
    let Ok(Some(bytes)) =
        router_config::safefile::read_limited(&bundle.join("config.json"), 16 << 20, false)
    else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    let Some(nss) = v.pointer("/linux/namespaces").and_then(|n| n.as_array()) else {
        return true;
    };
    match nss
        .iter()
        .find(|n| n.get("type").and_then(|t| t.as_str()) == Some("pid"))
    {
        None => true,
        Some(n) => n
            .get("path")
            .and_then(|p| p.as_str())
            .is_some_and(|p| !p.is_empty()),
    }
}

impl Inner {
    pub fn new(
        namespace: String,
        runtime: OciRuntime,
        runsc: Option<RunscRules>,
        publisher: RemotePublisher,
        gate: crate::admission::Admission,
    ) -> Arc<Self> {
        Arc::new(Self {
            gate: Arc::new(gate),
            namespace,
            runtime,
            runsc,
            publisher,
            containers: Mutex::new(HashMap::new()),
            cgroup_v2: stats::host_is_cgroup_v2(),
            seq: AtomicU64::new(0),
            ever_created: AtomicBool::new(false),
            kills: RwLock::new(()),
            exit: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every container of the pod has been deleted (or none was ever created).
    pub fn holds_no_container(&self) -> bool {
        self.lock().is_empty()
    }

    async fn publish<E: Event + MessageDyn>(&self, event: E) {
        let topic = event.topic();
        let ctx = ttrpc::context::with_timeout(0);
        if let Err(e) = self
            .publisher
            .publish(ctx, &topic, &self.namespace, Box::new(event))
            .await
        {
            log::warn!("publish {topic}: {e}");
        }
    }

    /// Exit the daemon if, after `grace`, it still holds no container.
    pub fn exit_when_idle(self: &Arc<Self>, grace: Duration, only_if_never_created: bool) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if only_if_never_created && me.ever_created.load(Ordering::SeqCst) {
                return;
            }
            if me.holds_no_container() {
                log::info!("no container left: exiting");
                me.exit.notify_one();
            }
        });
    }

    /// Arm the timer for a daemon nobody creates a container in.
    pub fn arm_first_create_timer(self: &Arc<Self>) {
        self.exit_when_idle(FIRST_CREATE_GRACE, true);
    }

    /// Wait for a process's exit, then record it and tell containerd.
    fn watch_exit(
        self: &Arc<Self>,
        cid: String,
        exec_id: String,
        exited: oneshot::Receiver<Exit>,
        output_done: Option<oneshot::Receiver<()>>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(exit) = exited.await else { return };
            stdio::drain(output_done).await;
            // Any `Kill` that may have caused this exit answers first.
            drop(me.kills.write().await);
            let info = ExitInfo {
                status: exit.status,
                at: exit.at,
            };
            let kill_all = {
                let mut map = me.lock();
                let Some(c) = map.get_mut(&cid) else { return };
                let kill_all = exec_id.is_empty() && c.kill_all_on_exit;
                let p = if exec_id.is_empty() {
                    &mut c.init
                } else {
                    match c.execs.get_mut(&exec_id) {
                        Some(p) => p,
                        None => return,
                    }
                };
                p.state = PState::Stopped;
                p.handles.stdin_close = None;
                p.handles.console = None;
                p.exit.send_replace(Some(info));
                kill_all
            };
            log::debug!(
                "{cid}/{exec_id}: pid {} exited with {}",
                exit.pid,
                exit.status
            );
            if kill_all {
                if let Err(e) = me.runtime.kill(&cid, 9, true).await {
                    log::debug!("kill --all after init exit of {cid}: {e}");
                }
            }
            let id = if exec_id.is_empty() {
                cid.clone()
            } else {
                exec_id
            };
            me.publish(TaskExit {
                container_id: cid,
                id,
                pid: exit.pid as u32,
                exit_status: exit.status,
                exited_at: Some(ts(exit.at)).into(),
                ..Default::default()
            })
            .await;
        });
    }

    fn log_path(bundle: &Path) -> PathBuf {
        bundle.join("log.json")
    }

    async fn create(self: &Arc<Self>, req: CreateTaskRequest) -> ttrpc::Result<CreateTaskResponse> {
        let id = req.id.clone();
        if id.is_empty() || req.bundle.is_empty() {
            return Err(rpc(
                Code::INVALID_ARGUMENT,
                "create: id and bundle are required",
            ));
        }
        if !req.checkpoint.is_empty() {
            return Err(rpc(
                Code::UNIMPLEMENTED,
                "create from a checkpoint is not supported",
            ));
        }
        if self.lock().contains_key(&id) {
            return Err(rpc(
                Code::ALREADY_EXISTS,
                format!("container {id} already exists"),
            ));
        }
        // Before anything is made: a task containerd brought here without the router's `start`
        // (so without its spec checked) is refused (crate::admission).
        let gate = self.gate.clone();
        let task = id.clone();
        let bundle = PathBuf::from(&req.bundle);
        let pin_in = bundle.clone();
        // Then the bind sources `start` walked are pinned to what it walked (builtin::pin),
        // held until the runtime has mounted them.
        let admitted = tokio::task::spawn_blocking(move || {
            let rec = gate.admit(&task)?;
            let policy = router_config::load(None).map_err(|e| {
                format!("runtime-router: refused to create task {task}: policy error: {e}")
            })?;
            let state = crate::statedir::state_dir();
            super::pin::pin_bind_sources(&pin_in, &rec, &policy, &state)
                .map_err(|why| format!("runtime-router refused: task {task}: {why}"))
        })
        .await;
        let pins = match admitted {
            Ok(Ok(pins)) => {
                if let Some(p) = &pins {
                    log::debug!("{id}: {} bind source(s) pinned for the runtime", p.len());
                }
                pins
            }
            Ok(Err(why)) => {
                log::warn!("{why}");
                return Err(rpc(Code::FAILED_PRECONDITION, why));
            }
            Err(e) => return Err(rpc(Code::INTERNAL, format!("admission check: {e}"))),
        };
        self.ever_created.store(true, Ordering::SeqCst);
        let mounts: Vec<rootfs::MountSpec> = req
            .rootfs
            .iter()
            .map(|m| rootfs::MountSpec {
                kind: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        let rootfs_dir = bundle.join("rootfs");
        rootfs::mount_all(&mounts, &rootfs_dir)?;
        let mounted = (!mounts.is_empty()).then_some(rootfs_dir);
        let io = IoPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let joined = self.runsc.is_some() && RunscRules::joins_sandbox(&bundle);
        let created = match piddir::create(&self.namespace, &id) {
            Ok(pids) => {
                self.create_container(&id, &bundle, &pids, &io, joined)
                    .await
            }
            Err(e) => Err(e),
        };
        // the runtime has mounted what was pinned: config.json is put back
        drop(pins);
        match created {
            Ok((pid, handles)) => {
                let output_done = {
                    let mut map = self.lock();
                    let mut init = Proc::new(io.clone());
                    init.pid = pid;
                    init.handles = handles;
                    // A joined runsc container's exit is watched from its start.
                    let output_done = if joined {
                        None
                    } else {
                        init.handles.output_done.take()
                    };
                    let (oom_tx, oom_rx) = oneshot::channel();
                    map.insert(
                        id.clone(),
                        Container {
                            bundle: bundle.clone(),
                            rootfs: mounted,
                            init,
                            execs: HashMap::new(),
                            paused: false,
                            kill_all_on_exit: shares_pid_namespace(&bundle),
                            oom_stop: Some(oom_tx),
                            joined,
                        },
                    );
                    let me = self.clone();
                    let cid = id.clone();
                    // A joined container's pid is the sandbox's: its cgroup is not its own.
                    let oom_pid = if joined { None } else { Some(pid) };
                    oom::watch(oom_pid, oom_rx, move || {
                        let me = me.clone();
                        let cid = cid.clone();
                        log::info!("{cid}: OOM");
                        tokio::spawn(async move {
                            me.publish(TaskOOM {
                                container_id: cid,
                                ..Default::default()
                            })
                            .await;
                        });
                    });
                    output_done
                };
                if !joined {
                    self.watch_exit(
                        id.clone(),
                        String::new(),
                        reaper().subscribe(pid),
                        output_done,
                    );
                }
                self.publish(TaskCreate {
                    container_id: id,
                    bundle: req.bundle.clone(),
                    rootfs: req.rootfs.clone(),
                    io: Some(TaskIO {
                        stdin: io.stdin,
                        stdout: io.stdout,
                        stderr: io.stderr,
                        terminal: io.terminal,
                        ..Default::default()
                    })
                    .into(),
                    pid: pid as u32,
                    ..Default::default()
                })
                .await;
                Ok(CreateTaskResponse {
                    pid: pid as u32,
                    ..Default::default()
                })
            }
            Err(e) => {
                // Leave nothing half-created behind: the runtime's container (a create that
                // failed late, or whose runtime died after doing its work), runsc's sandbox and
                // gofer, the pid dir, the rootfs mounts; and, if the daemon now holds nothing,
                // the daemon itself once containerd is done with it.
                self.destroy_in_runtime(&id).await;
                piddir::remove(&self.namespace, &id);
                if let Some(dir) = &mounted {
                    if let Err(u) = rootfs::unmount_all(dir) {
                        log::warn!("{u}");
                    }
                }
                Err(e.into())
            }
        }
    }

    async fn create_container(
        &self,
        id: &str,
        bundle: &Path,
        pids: &Path,
        io: &IoPaths,
        joined: bool,
    ) -> Result<(i32, IoHandles), BuiltinError> {
        let pid_file = pids.join("init.pid");
        let log = Self::log_path(bundle);
        if io.terminal {
            let console = stdio::ConsoleSocket::new()?;
            let create = self.runtime.create(
                id,
                bundle,
                &pid_file,
                Some(console.path()),
                Default::default(),
                &log,
            );
            let (created, master) = tokio::join!(create, async {
                tokio::time::timeout(Duration::from_secs(60), console.receive()).await
            });
            created?;
            let master = master.map_err(|_| BuiltinError::Runtime {
                what: "create".into(),
                message: "no pty master received on the console socket".into(),
            })??;
            let handles = stdio::attach_console(master, io)?;
            Ok((read_pid_file(&pid_file)?, handles))
        } else if joined {
            // runsc takes a joining container's stdio at `start`.
            self.runtime
                .create(id, bundle, &pid_file, None, Default::default(), &log)
                .await?;
            Ok((read_pid_file(&pid_file)?, IoHandles::default()))
        } else {
            let (procio, handles) = stdio::plain(io)?;
            self.runtime
                .create(id, bundle, &pid_file, None, procio, &log)
                .await?;
            Ok((read_pid_file(&pid_file)?, handles))
        }
    }

    async fn start(self: &Arc<Self>, req: StartRequest) -> ttrpc::Result<StartResponse> {
        if req.exec_id.is_empty() {
            let (pid, log, joined, io) = {
                let map = self.lock();
                let c = map.get(&req.id).ok_or_else(|| not_found(&req.id))?;
                if c.init.state != PState::Created {
                    return Err(rpc(
                        Code::FAILED_PRECONDITION,
                        format!("container {} is not in the created state", req.id),
                    ));
                }
                (
                    c.init.pid,
                    Self::log_path(&c.bundle),
                    c.joined,
                    c.init.io.clone(),
                )
            };
            let mut stdin_close = None;
            let started = if joined && !io.terminal {
                match stdio::plain(&io) {
                    Ok((procio, handles)) => {
                        stdin_close = handles.stdin_close;
                        self.runtime.start_with_stdio(&req.id, procio, &log).await
                    }
                    Err(e) => Err(e),
                }
            } else {
                self.runtime.start(&req.id, &log).await
            };
            if let Err(e) = started {
                self.abandon_failed_start(&req.id).await;
                return Err(e.into());
            }
            let mut output_done = None;
            if let Some(c) = self.lock().get_mut(&req.id) {
                if c.init.state == PState::Created {
                    c.init.state = PState::Running;
                }
                if stdin_close.is_some() {
                    c.init.handles.stdin_close = stdin_close;
                }
                if joined {
                    output_done = c.init.handles.output_done.take();
                }
            }
            if joined {
                if let Some(runsc) = &self.runsc {
                    let exited = runsc.watch_exit(&req.id, pid);
                    self.watch_exit(req.id.clone(), String::new(), exited, output_done);
                }
            }
            self.publish(TaskStart {
                container_id: req.id.clone(),
                pid: pid as u32,
                ..Default::default()
            })
            .await;
            return Ok(StartResponse {
                pid: pid as u32,
                ..Default::default()
            });
        }
        self.start_exec(req).await
    }

    /// A container whose `start` failed: nothing of it may keep running (runc's `runc init`
    /// waiting on its exec fifo; runsc's sandbox and gofer), so it is forced out of the runtime
    /// now and recorded as exited (128 + SIGKILL); containerd's Delete then finds nothing left
    /// to do in the runtime.
    async fn abandon_failed_start(self: &Arc<Self>, id: &str) {
        self.destroy_in_runtime(id).await;
        let info = ExitInfo {
            status: 137,
            at: SystemTime::now(),
        };
        let pid = {
            let mut map = self.lock();
            let Some(c) = map.get_mut(id) else { return };
            if c.init.state == PState::Stopped {
                return;
            }
            c.init.state = PState::Stopped;
            c.init.handles.stdin_close = None;
            c.init.handles.console = None;
            c.init.exit.send_replace(Some(info));
            c.oom_stop.take();
            c.init.pid
        };
        self.publish(TaskExit {
            container_id: id.to_owned(),
            id: id.to_owned(),
            pid: pid as u32,
            exit_status: info.status,
            exited_at: Some(ts(info.at)).into(),
            ..Default::default()
        })
        .await;
    }

    /// Force a container out of the OCI runtime (best effort): `delete --force`, which kills
    /// what is left of it (runsc: its sandbox and gofer too). Already gone is fine.
    async fn destroy_in_runtime(&self, id: &str) {
        if let Err(e) = self.runtime.delete(id, true).await {
            if !is_gone(&e.to_string()) {
                log::warn!("{id}: forced delete: {e}");
            }
        }
    }

    async fn start_exec(self: &Arc<Self>, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let (bundle, spec, io) = {
            let mut map = self.lock();
            let c = map.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            if c.init.state != PState::Running {
                return Err(rpc(
                    Code::FAILED_PRECONDITION,
                    format!("container {} is not running", req.id),
                ));
            }
            let p = c
                .execs
                .get_mut(&req.exec_id)
                .ok_or_else(|| not_found(&format!("exec {}", req.exec_id)))?;
            let spec = p.spec.take().ok_or_else(|| {
                rpc(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} was already started", req.exec_id),
                )
            })?;
            (c.bundle.clone(), spec, p.io.clone())
        };
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let pids = piddir::path(&self.namespace, &req.id)?;
        let spec_path = pids.join(format!("exec-{n}.json"));
        let pid_path = pids.join(format!("exec-{n}.pid"));
        let ipid_path = pids.join(format!("exec-{n}.ipid"));
        let extra = if self.runsc.is_some() {
            RunscRules::exec_args(&ipid_path)
        } else {
            Vec::new()
        };
        let result = async {
            std::fs::write(&spec_path, &spec).map_err(|e| BuiltinError::Io {
                what: format!("write {}", spec_path.display()),
                source: e,
            })?;
            let log = Self::log_path(&bundle);
            let handles = if io.terminal {
                let console = stdio::ConsoleSocket::new()?;
                let exec = self.runtime.exec(
                    &req.id,
                    &spec_path,
                    &pid_path,
                    Some(console.path()),
                    &extra,
                    Default::default(),
                    &log,
                );
                let (done, master) = tokio::join!(exec, async {
                    tokio::time::timeout(Duration::from_secs(60), console.receive()).await
                });
                done?;
                let master = master.map_err(|_| BuiltinError::Runtime {
                    what: "exec".into(),
                    message: "no pty master received on the console socket".into(),
                })??;
                stdio::attach_console(master, &io)?
            } else {
                let (procio, handles) = stdio::plain(&io)?;
                self.runtime
                    .exec(&req.id, &spec_path, &pid_path, None, &extra, procio, &log)
                    .await?;
                handles
            };
            let internal = if self.runsc.is_some() {
                Some(RunscRules::read_internal_pid(&ipid_path)?)
            } else {
                None
            };
            Ok::<_, BuiltinError>((read_pid_file(&pid_path)?, handles, internal))
        }
        .await;
        let _ = std::fs::remove_file(&spec_path);
        let _ = std::fs::remove_file(&pid_path);
        let _ = std::fs::remove_file(&ipid_path);
        let (pid, mut handles, internal_pid) = match result {
            Ok(r) => r,
            Err(e) => {
                // The exec stays in the created state; containerd deletes it.
                if let Some(p) = self
                    .lock()
                    .get_mut(&req.id)
                    .and_then(|c| c.execs.get_mut(&req.exec_id))
                {
                    p.spec = Some(spec);
                }
                return Err(e.into());
            }
        };
        let exited = reaper().subscribe(pid);
        let output_done = handles.output_done.take();
        {
            let mut map = self.lock();
            if let Some(p) = map
                .get_mut(&req.id)
                .and_then(|c| c.execs.get_mut(&req.exec_id))
            {
                p.pid = pid;
                p.state = PState::Running;
                p.handles = handles;
                p.internal_pid = internal_pid;
            }
        }
        self.publish(TaskExecStarted {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            pid: pid as u32,
            ..Default::default()
        })
        .await;
        self.watch_exit(req.id.clone(), req.exec_id.clone(), exited, output_done);
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn delete(self: &Arc<Self>, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        if !req.exec_id.is_empty() {
            let mut map = self.lock();
            let c = map.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            let p = c
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| not_found(&format!("exec {}", req.exec_id)))?;
            if p.state == PState::Running {
                return Err(rpc(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} is still running", req.exec_id),
                ));
            }
            let exit = p.exit_info();
            let pid = p.pid;
            c.execs.remove(&req.exec_id);
            return Ok(DeleteResponse {
                pid: pid as u32,
                exit_status: exit.map(|e| e.status).unwrap_or(0),
                exited_at: exit.map(|e| ts(e.at)).into(),
                ..Default::default()
            });
        }
        let (state, pid, rootfs_dir) = {
            let map = self.lock();
            let c = map.get(&req.id).ok_or_else(|| not_found(&req.id))?;
            (c.init.state, c.init.pid, c.rootfs.clone())
        };
        if state == PState::Running {
            return Err(rpc(
                Code::FAILED_PRECONDITION,
                format!("container {} must be stopped before delete", req.id),
            ));
        }
        if let Err(e) = self.runtime.delete(&req.id, state == PState::Created).await {
            // Already gone from the runtime is fine; anything else gets one forced try, then
            // is reported (the container stays, so containerd may delete it again).
            if !is_gone(&e.to_string()) {
                if let Err(e) = self.runtime.delete(&req.id, true).await {
                    if !is_gone(&e.to_string()) {
                        return Err(e.into());
                    }
                }
            }
        }
        if let Some(dir) = &rootfs_dir {
            rootfs::unmount_all(dir)?;
        }
        piddir::remove(&self.namespace, &req.id);
        let removed = self.lock().remove(&req.id);
        let (exit_status, exited_at) = match removed.as_ref().and_then(|c| c.init.exit_info()) {
            Some(e) => (e.status, ts(e.at)),
            None => (137, ts(SystemTime::now())),
        };
        drop(removed);
        if self.lock().is_empty() {
            self.exit_when_idle(EMPTY_GRACE, false);
        }
        self.publish(TaskDelete {
            container_id: req.id.clone(),
            pid: pid as u32,
            exit_status,
            exited_at: Some(exited_at.clone()).into(),
            id: req.id.clone(),
            ..Default::default()
        })
        .await;
        Ok(DeleteResponse {
            pid: pid as u32,
            exit_status,
            exited_at: Some(exited_at).into(),
            ..Default::default()
        })
    }

    async fn kill(&self, req: KillRequest) -> ttrpc::Result<Empty> {
        // Released when this returns: exits wait for it (see `Inner::kills`).
        let _in_flight = self.kills.read().await;
        if !req.exec_id.is_empty() {
            let (pid, internal) = {
                let map = self.lock();
                let c = map.get(&req.id).ok_or_else(|| not_found(&req.id))?;
                let p = c
                    .execs
                    .get(&req.exec_id)
                    .ok_or_else(|| not_found(&format!("exec {}", req.exec_id)))?;
                match p.state {
                    PState::Running => (p.pid, p.internal_pid),
                    PState::Stopped => {
                        return Err(rpc(Code::NOT_FOUND, "process already finished"))
                    }
                    PState::Created => {
                        return Err(rpc(Code::FAILED_PRECONDITION, "process not started"))
                    }
                }
            };
            if let (Some(runsc), Some(internal)) = (&self.runsc, internal) {
                runsc.kill_exec(&req.id, internal, req.signal).await?;
                return Ok(Empty::new());
            }
            crate::sys::send_signal(pid, req.signal)
                .map_err(|e| rpc(Code::UNKNOWN, format!("kill exec {}: {e}", req.exec_id)))?;
            return Ok(Empty::new());
        }
        let state = {
            let map = self.lock();
            map.get(&req.id)
                .ok_or_else(|| not_found(&req.id))?
                .init
                .state
        };
        if state == PState::Stopped && !req.all {
            return Err(rpc(Code::NOT_FOUND, "process already finished"));
        }
        if let Err(e) = self.runtime.kill(&req.id, req.signal, req.all).await {
            let msg = e.to_string();
            // the init exited between our state check and runc's signal (runc 1.1: "unable
            // to signal init: os: process already finished")
            if msg.contains("not running")
                || msg.contains("does not exist")
                || msg.contains("process already finished")
            {
                return Err(rpc(Code::NOT_FOUND, "process already finished"));
            }
            return Err(e.into());
        }
        Ok(Empty::new())
    }

    async fn exec(&self, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        {
            let mut map = self.lock();
            let c = map.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            if c.execs.contains_key(&req.exec_id) || req.exec_id.is_empty() {
                return Err(rpc(
                    Code::ALREADY_EXISTS,
                    format!("exec id {:?} already exists or is empty", req.exec_id),
                ));
            }
            if c.init.state != PState::Running {
                return Err(rpc(
                    Code::FAILED_PRECONDITION,
                    format!("container {} is not running", req.id),
                ));
            }
            let mut p = Proc::new(IoPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            });
            p.spec = Some(req.spec.value.clone());
            c.execs.insert(req.exec_id.clone(), p);
        }
        self.publish(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
        .await;
        Ok(Empty::new())
    }

    fn with_proc<T>(
        &self,
        id: &str,
        exec_id: &str,
        f: impl FnOnce(&mut Proc, bool) -> T,
    ) -> ttrpc::Result<T> {
        let mut map = self.lock();
        let c = map.get_mut(id).ok_or_else(|| not_found(id))?;
        let paused = c.paused;
        let p = if exec_id.is_empty() {
            &mut c.init
        } else {
            c.execs
                .get_mut(exec_id)
                .ok_or_else(|| not_found(&format!("exec {exec_id}")))?
        };
        Ok(f(p, paused))
    }

    fn state(&self, req: StateRequest) -> ttrpc::Result<StateResponse> {
        let bundle = {
            let map = self.lock();
            map.get(&req.id)
                .map(|c| c.bundle.display().to_string())
                .unwrap_or_default()
        };
        self.with_proc(&req.id, &req.exec_id, |p, paused| {
            let exit = p.exit_info();
            StateResponse {
                id: if req.exec_id.is_empty() {
                    req.id.clone()
                } else {
                    req.exec_id.clone()
                },
                bundle,
                pid: p.pid as u32,
                status: status_of(p, paused).into(),
                stdin: p.io.stdin.clone(),
                stdout: p.io.stdout.clone(),
                stderr: p.io.stderr.clone(),
                terminal: p.io.terminal,
                exit_status: exit.map(|e| e.status).unwrap_or(0),
                exited_at: exit.map(|e| ts(e.at)).into(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            }
        })
    }

    async fn wait(&self, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let mut rx = self.with_proc(&req.id, &req.exec_id, |p, _| p.exit.subscribe())?;
        let info = match rx.wait_for(|e| e.is_some()).await {
            Ok(v) => *v,
            Err(_) => None,
        };
        let info = info.ok_or_else(|| rpc(Code::UNKNOWN, "process vanished while waiting"))?;
        Ok(WaitResponse {
            exit_status: info.status,
            exited_at: Some(ts(info.at)).into(),
            ..Default::default()
        })
    }

    async fn pause(&self, id: &str, pause: bool) -> ttrpc::Result<Empty> {
        if !self.lock().contains_key(id) {
            return Err(not_found(id));
        }
        self.runtime.pause(id, pause).await?;
        if let Some(c) = self.lock().get_mut(id) {
            c.paused = pause;
        }
        if pause {
            self.publish(TaskPaused {
                container_id: id.to_owned(),
                ..Default::default()
            })
            .await;
        } else {
            self.publish(TaskResumed {
                container_id: id.to_owned(),
                ..Default::default()
            })
            .await;
        }
        Ok(Empty::new())
    }

    async fn pids(&self, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        if !self.lock().contains_key(&req.id) {
            return Err(not_found(&req.id));
        }
        let pids = self.runtime.ps(&req.id).await?;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid: pid as u32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn update(&self, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        if !self.lock().contains_key(&req.id) {
            return Err(not_found(&req.id));
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        // in the task's root-only dir, never the bundle: a planted symlink there must not make
        // root write the resources over a host file
        let path = piddir::path(&self.namespace, &req.id)?.join(format!("resources-{n}.json"));
        std::fs::write(&path, &req.resources.value).map_err(|e| BuiltinError::Io {
            what: format!("write {}", path.display()),
            source: e,
        })?;
        let r = self.runtime.update(&req.id, &path).await;
        let _ = std::fs::remove_file(&path);
        r?;
        Ok(Empty::new())
    }

    async fn stats(&self, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        if !self.lock().contains_key(&req.id) {
            return Err(not_found(&req.id));
        }
        let sample = self.runtime.stats(&req.id).await?;
        Ok(StatsResponse {
            stats: Some(stats::to_any(&sample, self.cgroup_v2)?).into(),
            ..Default::default()
        })
    }

    fn close_io(&self, req: CloseIORequest) -> ttrpc::Result<Empty> {
        self.with_proc(&req.id, &req.exec_id, |p, _| {
            if req.stdin {
                p.handles.stdin_close.take();
            }
        })?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        let console = self.with_proc(&req.id, &req.exec_id, |p, _| p.handles.console.clone())?;
        match console {
            Some(c) => stdio::resize(&c, req.width, req.height)?,
            None => {
                return Err(rpc(
                    Code::FAILED_PRECONDITION,
                    "process has no terminal to resize",
                ))
            }
        }
        Ok(Empty::new())
    }

    fn connect(&self, req: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        let task_pid = self
            .lock()
            .get(&req.id)
            .map(|c| c.init.pid as u32)
            .unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        })
    }

    fn shutdown(self: &Arc<Self>, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        // Not at once: containerd may still hold this pod's task handle in a call that raced
        // the delete (a StopPodSandbox beside a RemovePodSandbox); for a little while it gets
        // "not found", which it accepts, rather than "ttrpc: closed", which fails the call.
        if self.lock().is_empty() {
            log::info!("shutdown: no container left, exiting shortly");
            self.exit_when_idle(SHUTDOWN_LINGER, false);
        }
        Ok(Empty::new())
    }

    /// Stop OOM watchers (daemon exit).
    pub fn stop_watchers(&self) {
        for c in self.lock().values_mut() {
            c.oom_stop.take();
        }
    }
}

#[async_trait]
impl Task for TaskService {
    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        self.0.state(req)
    }
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        log::debug!("create {} in {}", req.id, req.bundle);
        self.0.create(req).await
    }
    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        self.0.start(req).await
    }
    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        self.0.delete(req).await
    }
    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        self.0.pids(req).await
    }
    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        self.0.pause(&req.id, true).await
    }
    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        self.0.pause(&req.id, false).await
    }
    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        self.0.kill(req).await
    }
    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        self.0.exec(req).await
    }
    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        self.0.resize_pty(req)
    }
    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        self.0.close_io(req)
    }
    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        self.0.update(req).await
    }
    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        self.0.wait(req).await
    }
    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        self.0.stats(req).await
    }
    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        self.0.connect(req)
    }
    async fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        self.0.shutdown(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_namespace_sharing_is_read_from_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let write = |s: &str| std::fs::write(dir.path().join("config.json"), s).unwrap();
        write(r#"{"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#);
        assert!(!shares_pid_namespace(dir.path()));
        write(r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#);
        assert!(shares_pid_namespace(dir.path()));
        write(r#"{"linux":{"namespaces":[{"type":"mount"}]}}"#);
        assert!(shares_pid_namespace(dir.path()));
    }

    #[test]
    fn stopped_state_wins_over_paused() {
        let mut p = Proc::new(IoPaths::default());
        p.state = PState::Running;
        assert_eq!(status_of(&p, true), Status::PAUSED);
        p.state = PState::Stopped;
        assert_eq!(status_of(&p, true), Status::STOPPED);
    }
}
