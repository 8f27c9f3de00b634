//! The private containerd of one test: a temporary directory with its root, state, socket, CNI
//! network, Kata stand-in, policy file and log; containerd started on it with the router as the
//! CRI default handler; and a teardown that leaves nothing behind (pods removed through CRI,
//! containerd stopped, this instance's shims and their containers killed, mounts under the temp
//! dir detached, the bridge deleted, the temp dir removed).

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::binaries;
use crate::cleanup;
use crate::config::{self, CriSettings, Layout, RuntimeHandler};
use crate::cri::{CriClient, PodSpec};
use crate::ctr::Ctr;
use crate::error::{Error, Result};
use crate::images::{self, ImageSpec};
use crate::net::{self, SubnetLease};
use crate::procs::{self, ProcInfo};
use crate::reaper;
use crate::standin;
use nix::fcntl::Flock;
use std::sync::Mutex;

/// containerd namespace CRI uses.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// Where kubelet keeps per-pod directories (volumes, etc-hosts).
pub const KUBELET_PODS_DIR: &str = "/var/lib/kubelet/pods";
/// Lines of containerd's log returned by [`Containerd::log_tail`].
pub const LOG_TAIL_LINES: usize = 80;
/// How long teardown lets the processes of removed pods take to exit before it calls them leaks.
pub const LEAK_GRACE: Duration = Duration::from_secs(15);

/// How to start a harness. `Default` registers only the router, as containerd's default handler.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// CRI `default_runtime_name` (default `"router"`); must be the router or an extra handler.
    pub default_runtime_name: String,
    /// Register the router handler (`io.containerd.router.v2`) (default true).
    pub router_handler: bool,
    /// `pod_annotations` of the router handler (default: `runtime-router.io/*`,
    /// `io.katacontainers.*`, `dev.gvisor.*`).
    pub router_pod_annotations: Vec<String>,
    /// Other handlers, e.g. [`RuntimeHandler::runc`]`("runc")` for direct-backend benchmarks.
    pub extra_handlers: Vec<RuntimeHandler>,
    /// Router tier handlers ([`ContainerdOptions::tier_handler`]).
    pub tier_handlers: Vec<String>,
    /// Policy TOML written to `<dir>/policy.toml` and named by `RUNTIME_ROUTER_CONFIG` in
    /// containerd's (hence every shim's) environment. `None`: the variable is not set. The
    /// placeholders `{dir}`, `{root}` and `{state}` are replaced by the harness's temp dir and
    /// containerd's root and state dirs (see [`Containerd::expand`]).
    pub policy: Option<String>,
    /// Extra environment for containerd and the shims it starts (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// containerd log level (default `"info"`).
    pub log_level: String,
    /// Pod subnet; `None` leases one of [`net::SUBNETS`] for this harness.
    pub subnet: Option<String>,
    /// How long to wait for CRI to serve (default 120 s).
    pub startup_timeout: Duration,
    /// Build and import the busybox and pause images into `k8s.io` (default true).
    pub import_images: bool,
    /// The containerd binary (default [`binaries::containerd_path`]: `containerd` in
    /// `$ROUTER_E2E_CONTAINERD_DIR`, else on PATH).
    pub containerd_binary: PathBuf,
    /// Put containerd's state dir (task bundles, shim files) on a tmpfs of its own, as it is on a
    /// real node (`/run/containerd` on `/run`, a tmpfs on every systemd distribution), rather than
    /// on the temp dir's disk (default true; falls back to disk with a warning if mounting fails).
    pub state_on_tmpfs: bool,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        ContainerdOptions {
            default_runtime_name: config::ROUTER_HANDLER.into(),
            router_handler: true,
            router_pod_annotations: config::ROUTER_POD_ANNOTATIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            extra_handlers: Vec::new(),
            tier_handlers: Vec::new(),
            policy: None,
            env: Vec::new(),
            log_level: "info".into(),
            subnet: None,
            startup_timeout: Duration::from_secs(120),
            import_images: true,
            containerd_binary: binaries::containerd_path(),
            state_on_tmpfs: true,
        }
    }
}

impl ContainerdOptions {
    /// Default options with a policy.
    pub fn with_policy(policy: impl Into<String>) -> Self {
        ContainerdOptions {
            policy: Some(policy.into()),
            ..Default::default()
        }
    }
    /// Sets `default_runtime_name`.
    pub fn default_runtime(mut self, name: &str) -> Self {
        self.default_runtime_name = name.into();
        self
    }
    /// Adds a router tier handler `name` (`io.containerd.NAME.v2`, the router's pod annotations):
    /// containerd runs the router for it through a link `containerd-shim-NAME-v2` the harness
    /// puts on its PATH, so the router knows the handler by the name it was started under.
    pub fn tier_handler(mut self, name: &str) -> Self {
        self.tier_handlers.push(name.to_string());
        self
    }
    /// Adds a runtime handler.
    pub fn handler(mut self, handler: RuntimeHandler) -> Self {
        self.extra_handlers.push(handler);
        self
    }
    /// Adds an environment variable for containerd and its shims.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Every path of one harness instance, all inside its temp dir.
#[derive(Debug, Clone)]
struct Paths {
    dir: PathBuf,
    root: PathBuf,
    state: PathBuf,
    socket: PathBuf,
    cni_conf_dir: PathBuf,
    ipam_dir: PathBuf,
    opt_dir: PathBuf,
    standin_dir: PathBuf,
    pod_logs: PathBuf,
    config: PathBuf,
    log: PathBuf,
    policy: PathBuf,
    images: PathBuf,
}

impl Paths {
    fn expand(&self, text: &str) -> String {
        text.replace("{dir}", &self.dir.to_string_lossy())
            .replace("{root}", &self.root.to_string_lossy())
            .replace("{state}", &self.state.to_string_lossy())
    }

    fn new(dir: &Path) -> Self {
        Paths {
            dir: dir.to_path_buf(),
            root: dir.join("root"),
            state: dir.join("state"),
            socket: dir.join("containerd.sock"),
            cni_conf_dir: dir.join("cni/conf.d"),
            ipam_dir: dir.join("cni/ipam"),
            opt_dir: dir.join("opt"),
            standin_dir: dir.join("bin"),
            pod_logs: dir.join("pod-logs"),
            config: dir.join("config.toml"),
            log: dir.join("containerd.log"),
            policy: dir.join("policy.toml"),
            images: dir.join("images.tar"),
        }
    }
}

/// A running private containerd. Dropping it tears everything down (best effort, logged);
/// [`Containerd::shutdown`] does the same and reports what could not be cleaned.
#[derive(Debug)]
pub struct Containerd {
    tempdir: Option<tempfile::TempDir>,
    paths: Paths,
    child: Option<Child>,
    containerd_binary: PathBuf,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    router_bin_dir: Option<PathBuf>,
    bridge: String,
    lease: SubnetLease,
    has_policy: bool,
    cri: CriClient,
    startup_timeout: Duration,
    lock: Option<Flock<File>>,
    kubelet_dirs: Mutex<Vec<PathBuf>>,
}

impl Containerd {
    /// Creates the temp dir, writes configs, starts containerd, waits until CRI serves `Version`
    /// and (unless disabled) imports the busybox and pause images.
    pub async fn start(opts: ContainerdOptions) -> Result<Containerd> {
        for dir in reaper::reap_stale_harnesses() {
            log::warn!("reaped abandoned harness {}", dir.display());
        }
        let tempdir = tempfile::Builder::new()
            .prefix(reaper::DIR_PREFIX)
            .tempdir()
            .map_err(|e| Error::io("create harness temp dir", e))?;
        let lock = reaper::lock_dir(tempdir.path())?;
        let paths = Paths::new(tempdir.path());
        for d in [
            &paths.root,
            &paths.state,
            &paths.cni_conf_dir,
            &paths.ipam_dir,
            &paths.opt_dir,
            &paths.pod_logs,
        ] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("create {}", d.display()), e))?;
        }
        standin::install_standin(&paths.standin_dir)?;

        let lease = match &opts.subnet {
            Some(s) => SubnetLease::fixed(s),
            None => SubnetLease::acquire(),
        };
        let bridge = net::unique_bridge_name();
        let network = format!("rr-harness-{bridge}");
        write(
            &paths.cni_conf_dir.join("10-harness.conflist"),
            &config::cni_conflist(&network, &bridge, &lease.subnet, &paths.ipam_dir),
        )?;

        let mut handlers = Vec::new();
        if opts.router_handler {
            let mut router = RuntimeHandler::router();
            router.pod_annotations = opts.router_pod_annotations.clone();
            handlers.push(router);
        }
        handlers.extend(opts.extra_handlers.iter().cloned());
        // router tier handlers: the router under each handler's shim name
        for name in &opts.tier_handlers {
            let mut h = RuntimeHandler::router();
            h.pod_annotations = opts.router_pod_annotations.clone();
            h.name = name.clone();
            h.runtime_type = format!("io.containerd.{name}.v2");
            handlers.push(h);
            let router = binaries::router_shim_path().ok_or_else(|| {
                Error::io(
                    format!("tier handler {name}"),
                    std::io::Error::new(std::io::ErrorKind::NotFound, "router shim not built"),
                )
            })?;
            let link = paths.standin_dir.join(format!("containerd-shim-{name}-v2"));
            std::os::unix::fs::symlink(&router, &link)
                .map_err(|e| Error::io(format!("link {}", link.display()), e))?;
        }
        let text = config::containerd_config(
            &Layout {
                root: &paths.root,
                state: &paths.state,
                socket: &paths.socket,
                cni_conf_dir: &paths.cni_conf_dir,
                opt_dir: &paths.opt_dir,
            },
            &CriSettings {
                default_runtime_name: &opts.default_runtime_name,
                handlers: &handlers,
                log_level: &opts.log_level,
            },
        )?;
        write(&paths.config, &text)?;

        let mut env_remove = Vec::new();
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        if let Some(policy) = &opts.policy {
            write_atomic(&paths.policy, &paths.expand(policy))?;
            env.push((
                crate::POLICY_ENV.into(),
                paths.policy.clone().into_os_string(),
            ));
        } else {
            env_remove.push(OsString::from(crate::POLICY_ENV));
        }
        let router_bin_dir = binaries::router_bin_dir();
        if opts.router_handler && binaries::router_shim_path().is_none() {
            log::warn!(
                "{} not found in {:?} (build with `cargo build --bins` or set {}): pods on the \
                 router handler will fail",
                binaries::ROUTER_SHIM_BINARY,
                router_bin_dir,
                binaries::ROUTER_BIN_DIR_ENV
            );
        }
        env.push((
            "PATH".into(),
            search_path(
                router_bin_dir.as_deref(),
                &paths.standin_dir,
                binaries::containerd_dir().as_deref(),
            ),
        ));
        for (k, v) in &opts.env {
            env.push((k.into(), v.into()));
        }

        let paths_socket = paths.socket.clone();
        let mut harness = Containerd {
            tempdir: Some(tempdir),
            paths,
            child: None,
            containerd_binary: opts.containerd_binary.clone(),
            env,
            env_remove,
            router_bin_dir,
            bridge,
            lease,
            has_policy: opts.policy.is_some(),
            cri: CriClient::connect_lazy(&paths_socket),
            startup_timeout: opts.startup_timeout,
            lock: Some(lock),
            kubelet_dirs: Mutex::new(Vec::new()),
        };
        // From here on, an error drops `harness`, which tears everything down — including this
        // mount, which is why it is made only now: an early error that drops the bare temp dir
        // could not remove a mounted state dir.
        if opts.state_on_tmpfs {
            if let Err(e) = crate::mounts::mount_tmpfs(&harness.paths.state) {
                log::warn!(
                    "containerd state stays on disk: cannot mount a tmpfs on {}: {e}",
                    harness.paths.state.display()
                );
            }
        }
        harness.spawn_and_wait().await?;
        if opts.import_images {
            harness.build_images()?;
            harness.import_images(K8S_NAMESPACE).await?;
            harness.wait_cri_images().await?;
        }
        log::info!(
            "harness containerd up: dir {} socket {} bridge {} subnet {}",
            harness.paths.dir.display(),
            harness.paths.socket.display(),
            harness.bridge,
            harness.lease.subnet
        );
        Ok(harness)
    }

    /// The harness's temp dir (root of everything it created).
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }
    /// containerd's gRPC socket (CRI and containerd API).
    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }
    /// containerd `root`.
    pub fn root(&self) -> &Path {
        &self.paths.root
    }
    /// containerd `state` (task bundles live in `state/io.containerd.runtime.v2.task/<ns>/<id>`).
    pub fn state(&self) -> &Path {
        &self.paths.state
    }
    /// The bundle directory of a task (CRI pod or container id) in a namespace.
    pub fn bundle_dir(&self, namespace: &str, id: &str) -> PathBuf {
        self.paths
            .state
            .join("io.containerd.runtime.v2.task")
            .join(namespace)
            .join(id)
    }
    /// The file containerd logs to.
    pub fn log_path(&self) -> &Path {
        &self.paths.log
    }
    /// The policy file named by `RUNTIME_ROUTER_CONFIG` (`None` if the harness has no policy).
    pub fn policy_path(&self) -> Option<&Path> {
        self.has_policy.then_some(self.paths.policy.as_path())
    }
    /// Replaces the policy text atomically (the router reads it at every `start`; a concurrent
    /// reader sees the old or the new file, never half of one). Placeholders are expanded as in
    /// [`ContainerdOptions::policy`]. Fails if the harness was started without a policy (the
    /// variable is not set, so the file would not be read).
    pub fn set_policy(&self, text: &str) -> Result<()> {
        if !self.has_policy {
            return Err(Error::Invalid(
                "harness was started without a policy (ContainerdOptions::policy is None)".into(),
            ));
        }
        write_atomic(&self.paths.policy, &self.paths.expand(text))
    }

    /// `text` with `{dir}`, `{root}` and `{state}` replaced by this harness's temp dir and
    /// containerd's root and state dirs.
    pub fn expand(&self, text: &str) -> String {
        self.paths.expand(text)
    }
    /// Directory holding `containerd-shim-kata-standin-v2` (on containerd's PATH).
    pub fn standin_dir(&self) -> &Path {
        &self.paths.standin_dir
    }
    /// Directory of the router binaries put first on containerd's PATH (if known).
    pub fn router_bin_dir(&self) -> Option<&Path> {
        self.router_bin_dir.as_deref()
    }
    /// The CNI bridge of this harness.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }
    /// The pod subnet of this harness.
    pub fn subnet(&self) -> &str {
        &self.lease.subnet
    }
    /// containerd's pid while running.
    pub fn containerd_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    /// A CRI client for the calling task. Called inside a tokio runtime it is a new client whose
    /// connection lives on that runtime (so it keeps working in any test, whichever runtime started
    /// the harness; it connects on first use); outside a runtime, a clone of the harness's own.
    /// Clones may be used concurrently.
    pub fn cri(&self) -> CriClient {
        if tokio::runtime::Handle::try_current().is_ok() {
            CriClient::connect_lazy(&self.paths.socket)
        } else {
            self.cri.clone()
        }
    }
    /// A `ctr` bound to this containerd in `namespace`.
    pub fn ctr(&self, namespace: &str) -> Ctr {
        Ctr::new(&self.paths.socket, namespace)
    }
    /// Shim processes serving this containerd (`-address <socket>` on their command line).
    pub fn shims(&self) -> Vec<ProcInfo> {
        procs::shims_of(&self.paths.socket)
    }
    /// The pid of the router's pod daemon serving `pod_id` (a shim of this harness started
    /// with `-id <pod_id>`).
    pub fn daemon_of(&self, pod_id: &str) -> Result<i32> {
        self.shims()
            .into_iter()
            .find(|p| {
                p.cmdline
                    .windows(2)
                    .any(|w| w[0] == "-id" && w[1] == pod_id)
            })
            .map(|p| p.pid)
            .ok_or_else(|| Error::Invalid(format!("no shim daemon for pod {pod_id}")))
    }

    /// A pod spec whose container logs go to a fresh directory inside the harness.
    pub fn pod(&self, namespace: &str, name: &str) -> PodSpec {
        let spec = PodSpec::new(namespace, name);
        let dir = self
            .paths
            .pod_logs
            .join(format!("{namespace}_{name}_{}", spec.uid));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            log::warn!("cannot create pod log dir {}: {e}", dir.display());
        }
        spec.log_directory(dir)
    }

    /// A kubelet-style volume directory for a pod,
    /// `/var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~empty-dir/<volume>`, created now; the
    /// pod's `/var/lib/kubelet/pods/<uid>` is removed at teardown. Mount it with
    /// [`crate::ContainerSpec::mount`] to mimic a kubelet volume.
    pub fn kubelet_volume(&self, pod: &PodSpec, volume: &str) -> Result<PathBuf> {
        let safe = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains('/');
        if !safe(volume) || !safe(&pod.uid) {
            return Err(Error::Invalid(format!(
                "kubelet volume `{volume}` of pod uid `{}`: names must be non-empty and contain no `/`",
                pod.uid
            )));
        }
        let pod_dir = Path::new(KUBELET_PODS_DIR).join(&pod.uid);
        let dir = pod_dir.join("volumes/kubernetes.io~empty-dir").join(volume);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        if let Ok(mut dirs) = self.kubelet_dirs.lock() {
            if !dirs.contains(&pod_dir) {
                dirs.push(pod_dir);
            }
        }
        Ok(dir)
    }

    /// The last [`LOG_TAIL_LINES`] lines of containerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.paths.log, LOG_TAIL_LINES)
    }

    /// A test's failure message: the error, containerd's last log lines, then the error again.
    /// A CI report that keeps only the head and the tail of a long output still shows it (a
    /// message with the log first and the error last lost the error that way). The error is
    /// written with `{:#}`, which for an `anyhow::Error` is its whole chain on one line.
    pub fn failure_report(&self, error: &dyn std::fmt::Display) -> String {
        format!(
            "{error:#}\n\ncontainerd log, last {LOG_TAIL_LINES} lines:\n{}\nend of containerd log; the failure: {error:#}",
            self.log_tail()
        )
    }

    /// Stops containerd only (SIGTERM, then SIGKILL after 15 s), leaving shims and containers
    /// running, and starts it again on the same directories and config.
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(err) = self.stop_containerd() {
            return Err(Error::Containerd {
                problem: err,
                log_tail: self.log_tail(),
            });
        }
        self.spawn_and_wait().await
    }

    /// Simulates a containerd crash: SIGKILL, shims and containers left running. [`restart`]
    /// brings containerd back; teardown cleans up either way.
    ///
    /// [`restart`]: Containerd::restart
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Imports the harness's images into another containerd namespace (e.g. for `ctr run`).
    pub async fn import_images(&self, namespace: &str) -> Result<()> {
        if !self.paths.images.is_file() {
            self.build_images()?;
        }
        let ctr = self.ctr(namespace);
        let archive = self.paths.images.clone();
        tokio::task::spawn_blocking(move || ctr.import(&archive))
            .await
            .map_err(|e| Error::Invalid(format!("image import task failed: {e}")))?
    }

    /// Tears everything down and reports anything that could not be cleaned.
    pub async fn shutdown(mut self) -> Result<()> {
        let leftovers = tokio::task::spawn_blocking(move || self.teardown())
            .await
            .map_err(|e| Error::Invalid(format!("teardown task failed: {e}")))?;
        if leftovers.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "harness cleanup incomplete: {}",
                leftovers.join("; ")
            )))
        }
    }

    fn build_images(&self) -> Result<()> {
        images::write_archive(
            &[ImageSpec::busybox(), ImageSpec::pause()],
            Path::new(images::BUSYBOX_PATH),
            &self.paths.images,
        )
    }

    async fn wait_cri_images(&self) -> Result<()> {
        let cri = self.cri();
        let deadline = Instant::now() + self.startup_timeout;
        loop {
            let have = cri.list_images().await?;
            if [config::BUSYBOX_IMAGE, config::PAUSE_IMAGE]
                .iter()
                .all(|want| have.iter().any(|h| h == want))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("CRI to list the imported images (it lists {have:?})"),
                    seconds: self.startup_timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts containerd and waits for CRI `Version`.
    async fn spawn_and_wait(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.paths.log)
            .map_err(|e| Error::io(format!("open {}", self.paths.log.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io(format!("dup {}", self.paths.log.display()), e))?;
        let mut cmd = Command::new(&self.containerd_binary);
        // cwd = the harness dir: relative paths (e.g. a container log path in a pod without a
        // log directory) stay inside it.
        cmd.current_dir(&self.paths.dir)
            .arg("--config")
            .arg(&self.paths.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| {
            Error::io(
                format!("cannot start {}", self.containerd_binary.display()),
                e,
            )
        })?;
        self.child = Some(child);

        let deadline = Instant::now() + self.startup_timeout;
        let mut last_err = String::from("socket not created yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(Error::Containerd {
                        problem: format!("exited ({status}) before serving CRI"),
                        log_tail: self.log_tail(),
                    });
                }
            }
            if self.paths.socket.exists() {
                match CriClient::connect(&self.paths.socket).await {
                    Ok(c) => match c.version().await {
                        Ok(_) => {
                            self.cri = c;
                            return Ok(());
                        }
                        Err(e) => last_err = e.to_string(),
                    },
                    Err(e) => last_err = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Containerd {
                    problem: format!(
                        "did not serve CRI within {}s (last error: {last_err})",
                        self.startup_timeout.as_secs()
                    ),
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, wait up to 15 s, SIGKILL. Returns an error message if it would not die.
    fn stop_containerd(&mut self) -> Option<String> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
        let _ = kill(pid, Signal::SIGTERM);
        if wait_child(&mut child, Duration::from_secs(15)) {
            return None;
        }
        log::warn!("containerd {pid} ignored SIGTERM for 15s; killing it");
        let _ = child.kill();
        if wait_child(&mut child, Duration::from_secs(15)) {
            None
        } else {
            Some(format!("containerd {pid} survived SIGKILL"))
        }
    }

    /// What the leak check looks for: this harness's dir, socket, state, log and router state dir
    /// (its containerd, while running, is not a leak). Tests may check mid-way with
    /// [`crate::leaks::wait_clean`].
    pub fn leak_scope(&self) -> crate::leaks::Scope {
        let router_state = self
            .env
            .iter()
            .find(|(k, _)| k == crate::leaks::ROUTER_STATE_DIR_ENV)
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| PathBuf::from(crate::leaks::ROUTER_STATE_DIR));
        crate::leaks::Scope {
            dir: self.paths.dir.clone(),
            socket: self.paths.socket.clone(),
            state: self.paths.state.clone(),
            log: self.paths.log.clone(),
            router_state,
            ignore_pids: self
                .containerd_pid()
                .and_then(|p| i32::try_from(p).ok())
                .into_iter()
                .collect(),
            keep_ids: Default::default(),
        }
    }

    /// The whole teardown; idempotent. Returns what could not be cleaned.
    fn teardown(&mut self) -> Vec<String> {
        let Some(tempdir) = self.tempdir.take() else {
            return Vec::new();
        };
        let mut left = Vec::new();

        // 1. Pods through CRI and ctr-started tasks in other namespaces, while containerd runs.
        let removed_through_cri = self.child.is_some();
        if removed_through_cri {
            let socket = self.paths.socket.clone();
            let errors = on_fresh_runtime(Duration::from_secs(300), async move {
                match CriClient::connect_with_timeout(&socket, Duration::from_secs(90)).await {
                    Ok(c) => c.remove_all_pods().await,
                    Err(e) => vec![e.to_string()],
                }
            })
            .unwrap_or_else(|| vec!["removing pods through CRI timed out".into()]);
            for e in errors {
                log::warn!("teardown: {e}");
            }
            let ctr =
                Ctr::new(&self.paths.socket, K8S_NAMESPACE).with_timeout(Duration::from_secs(60));
            for ns in ctr.namespaces().unwrap_or_default() {
                for e in Ctr::new(&self.paths.socket, &ns)
                    .with_timeout(Duration::from_secs(60))
                    .remove_everything()
                {
                    log::warn!("teardown: namespace {ns}: {e}");
                }
            }
        }

        // 2. containerd itself.
        if let Some(e) = self.stop_containerd() {
            left.push(e);
        }

        // 2b. Whatever of this harness outlived the removal of its pods is a leak (checked before
        // anything is force-cleaned, scoped to this harness's own ids, socket and dir).
        let mut leaked = false;
        if removed_through_cri {
            let scope = self.leak_scope();
            let found = crate::leaks::wait_clean(&scope, LEAK_GRACE);
            if !found.is_empty() {
                leaked = true;
                for e in crate::leaks::force_clean_runtime_state(&scope) {
                    log::warn!("teardown: {e}");
                }
            }
            left.extend(found.into_iter().map(|l| format!("leak: {l}")));
        }

        // 3. Shims, containers, runc state, netns, mounts, the bridge.
        left.extend(cleanup::after_containerd(
            &self.paths.dir,
            &self.paths.socket,
            &self.paths.state,
            &self.bridge,
        ));
        if leaked {
            for e in crate::leaks::remove_cgroups(&self.leak_scope()) {
                log::warn!("teardown: {e}");
            }
        }
        for d in self
            .kubelet_dirs
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
        {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    left.push(format!("remove {}: {e}", d.display()));
                }
            }
        }
        let dir = self.paths.dir.clone();
        if let Err(e) = tempdir.close() {
            left.push(format!("remove {}: {e}", dir.display()));
        }
        // Released last, so the reaper never sees a half-removed dir as abandoned.
        drop(self.lock.take());
        left
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for problem in self.teardown() {
            log::error!("harness teardown: {problem}");
        }
    }
}

/// Runs a future on a new current-thread runtime in a new thread (usable from sync code and from
/// inside another runtime, e.g. in `Drop`). `None` if it did not finish within `limit`.
fn on_fresh_runtime<T, F>(limit: Duration, fut: F) -> Option<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async move { tokio::time::timeout(limit, fut).await.ok() })
    });
    handle.join().ok().flatten()
}

fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

/// PATH for containerd: router binaries, the stand-in dir, the dir of the containerd under test
/// (so `io.containerd.runc.v2` and a `shim` backend naming `containerd-shim-runc-v2` are that
/// version's shim), then the usual PATH.
fn search_path(
    router_bin_dir: Option<&Path>,
    standin_dir: &Path,
    containerd_dir: Option<&Path>,
) -> OsString {
    let base = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let mut parts: Vec<PathBuf> = Vec::new();
    if let Some(d) = router_bin_dir {
        parts.push(d.to_path_buf());
    }
    parts.push(standin_dir.to_path_buf());
    parts.extend(containerd_dir.map(Path::to_path_buf));
    parts.extend(std::env::split_paths(&base));
    std::env::join_paths(parts).unwrap_or(base)
}

/// Writes through a temp file in the same dir and renames it over `path`.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    write(&tmp, text)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), path.display()), e))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// The last `n` lines of a file (empty if unreadable).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_puts_router_then_standin_first() {
        let p = search_path(
            Some(Path::new("/r/bin")),
            Path::new("/t/standin"),
            Some(Path::new("/opt/c/bin")),
        );
        let parts: Vec<PathBuf> = std::env::split_paths(&p).collect();
        assert_eq!(parts[0], PathBuf::from("/r/bin"));
        assert_eq!(parts[1], PathBuf::from("/t/standin"));
        assert_eq!(parts[2], PathBuf::from("/opt/c/bin"));
        assert!(parts.len() > 3);
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("log");
        std::fs::write(&f, "a\nb\nc\n").expect("write");
        assert_eq!(tail(&f, 2), "b\nc");
        assert_eq!(tail(&dir.path().join("none"), 2), "");
    }
}
