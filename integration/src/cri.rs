//! A kubelet-like CRI client: `k8s-cri` v1 over tonic on containerd's unix socket, with crictl's
//! verbs (run pod, create, start, exec-sync, inspect, logs, stop, remove, list, stats) and
//! builders for the pod and container configs kubelet would send. Every failed call becomes
//! [`Error::Cri`] carrying the gRPC status message, where containerd puts a refusing shim's
//! stderr.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::BUSYBOX_IMAGE;
use crate::error::{Error, Result};

/// A `seccompProfile.type` (RuntimeDefault, Unconfined, Localhost).
pub use k8s_cri::v1::security_profile::ProfileType as SeccompProfile;
pub use k8s_cri::v1::{ContainerConfig, ContainerState, PodSandboxConfig, PodSandboxState};

/// Deadline of one CRI call unless told otherwise (generous: the machine is shared).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(180);

/// Result of `ExecSync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code of the command.
    pub exit_code: i32,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
}

/// A CRI client bound to one containerd socket. Cheap to clone; clones share the connection and
/// may be used concurrently.
#[derive(Debug, Clone)]
pub struct CriClient {
    socket: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

fn endpoint(call_timeout: Duration) -> Endpoint {
    // The URI is required by tonic but unused: the connector dials the unix socket.
    Endpoint::from_static("http://[::]:50051")
        .timeout(call_timeout)
        .connect_timeout(Duration::from_secs(10))
}

fn unix_connector(
    socket: &Path,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<UnixStream>,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send,
> + Clone
       + Send
       + 'static {
    let path = socket.to_path_buf();
    tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    })
}

fn status_err(op: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |s| Error::Cri {
        op,
        code: s.code(),
        message: s.message().to_string(),
    }
}

impl CriClient {
    /// Connects to the CRI service on a unix socket (each call has [`DEFAULT_CALL_TIMEOUT`]).
    pub async fn connect(socket: &Path) -> Result<CriClient> {
        Self::connect_with_timeout(socket, DEFAULT_CALL_TIMEOUT).await
    }

    /// Connects with another per-call deadline.
    pub async fn connect_with_timeout(socket: &Path, call_timeout: Duration) -> Result<CriClient> {
        let channel = endpoint(call_timeout)
            .connect_with_connector(unix_connector(socket))
            .await
            .map_err(|e| Error::Connect {
                socket: socket.to_path_buf(),
                message: error_chain(&e),
            })?;
        Ok(Self::from_channel(socket, channel))
    }

    /// A client that connects (and reconnects) on first use. Must be called inside a tokio
    /// runtime, which then carries the connection.
    pub fn connect_lazy(socket: &Path) -> CriClient {
        let channel =
            endpoint(DEFAULT_CALL_TIMEOUT).connect_with_connector_lazy(unix_connector(socket));
        Self::from_channel(socket, channel)
    }

    fn from_channel(socket: &Path, channel: Channel) -> CriClient {
        CriClient {
            socket: socket.to_path_buf(),
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The raw generated runtime-service client, for calls not wrapped here.
    pub fn runtime_service(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// The raw generated image-service client.
    pub fn image_service(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    /// `Version`: runtime name and version, e.g. `("containerd", "1.6.20~ds1")`.
    pub async fn version(&self) -> Result<(String, String)> {
        let r = self
            .runtime
            .clone()
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(status_err("Version"))?
            .into_inner();
        Ok((r.runtime_name, r.runtime_version))
    }

    /// `RunPodSandbox` with the default runtime handler; returns the pod id.
    pub async fn run_pod(&self, config: &PodSandboxConfig) -> Result<String> {
        self.run_pod_with_handler(config, "").await
    }

    /// `RunPodSandbox` with a named runtime handler (`""` = containerd's default).
    pub async fn run_pod_with_handler(
        &self,
        config: &PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: runtime_handler.into(),
            })
            .await
            .map_err(status_err("RunPodSandbox"))?;
        Ok(r.into_inner().pod_sandbox_id)
    }

    /// `StopPodSandbox`.
    pub async fn stop_pod(&self, pod_id: &str) -> Result<()> {
        self.runtime
            .clone()
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            })
            .await
            .map_err(status_err("StopPodSandbox"))?;
        Ok(())
    }

    /// `RemovePodSandbox` (also removes the pod's containers).
    pub async fn remove_pod(&self, pod_id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            })
            .await
            .map_err(status_err("RemovePodSandbox"))?;
        Ok(())
    }

    /// `PodSandboxStatus` (not verbose).
    pub async fn pod_status(&self, pod_id: &str) -> Result<cri::PodSandboxStatus> {
        Ok(self.pod_status_verbose(pod_id, false).await?.0)
    }

    /// `PodSandboxStatus`; with `verbose`, containerd's `info` map too (key `info`: JSON with the
    /// sandbox's pid, runtime handler and OCI spec).
    pub async fn pod_status_verbose(
        &self,
        pod_id: &str,
        verbose: bool,
    ) -> Result<(cri::PodSandboxStatus, HashMap<String, String>)> {
        let r = self
            .runtime
            .clone()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.into(),
                verbose,
            })
            .await
            .map_err(status_err("PodSandboxStatus"))?
            .into_inner();
        let status = r.status.ok_or_else(|| Error::Cri {
            op: "PodSandboxStatus",
            code: tonic::Code::Internal,
            message: format!("no status returned for pod {pod_id}"),
        })?;
        Ok((status, r.info))
    }

    /// `ListPodSandbox` (all pods).
    pub async fn list_pods(&self) -> Result<Vec<cri::PodSandbox>> {
        let r = self
            .runtime
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .map_err(status_err("ListPodSandbox"))?;
        Ok(r.into_inner().items)
    }

    /// `CreateContainer` in a pod; `sandbox` must be the config the pod was run with.
    pub async fn create_container(
        &self,
        pod_id: &str,
        sandbox: &PodSandboxConfig,
        config: &ContainerConfig,
    ) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(config.clone()),
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .map_err(status_err("CreateContainer"))?;
        Ok(r.into_inner().container_id)
    }

    /// `StartContainer`.
    pub async fn start_container(&self, container_id: &str) -> Result<()> {
        self.runtime
            .clone()
            .start_container(cri::StartContainerRequest {
                container_id: container_id.into(),
            })
            .await
            .map_err(status_err("StartContainer"))?;
        Ok(())
    }

    /// `CreateContainer` then `StartContainer`; returns the container id.
    pub async fn run_container(
        &self,
        pod_id: &str,
        sandbox: &PodSandboxConfig,
        config: &ContainerConfig,
    ) -> Result<String> {
        let id = self.create_container(pod_id, sandbox, config).await?;
        self.start_container(&id).await?;
        Ok(id)
    }

    /// `StopContainer` with a grace period in seconds.
    pub async fn stop_container(&self, container_id: &str, timeout_secs: i64) -> Result<()> {
        self.runtime
            .clone()
            .stop_container(cri::StopContainerRequest {
                container_id: container_id.into(),
                timeout: timeout_secs,
            })
            .await
            .map_err(status_err("StopContainer"))?;
        Ok(())
    }

    /// `RemoveContainer`.
    pub async fn remove_container(&self, container_id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_container(cri::RemoveContainerRequest {
                container_id: container_id.into(),
            })
            .await
            .map_err(status_err("RemoveContainer"))?;
        Ok(())
    }

    /// `ContainerStatus` (not verbose).
    pub async fn container_status(&self, container_id: &str) -> Result<cri::ContainerStatus> {
        Ok(self.container_status_verbose(container_id, false).await?.0)
    }

    /// `ContainerStatus`; with `verbose`, containerd's `info` map too (key `info`: JSON with `pid`,
    /// `runtimeType`, `runtimeOptions` and the OCI spec).
    pub async fn container_status_verbose(
        &self,
        container_id: &str,
        verbose: bool,
    ) -> Result<(cri::ContainerStatus, HashMap<String, String>)> {
        let r = self
            .runtime
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: container_id.into(),
                verbose,
            })
            .await
            .map_err(status_err("ContainerStatus"))?
            .into_inner();
        let status = r.status.ok_or_else(|| Error::Cri {
            op: "ContainerStatus",
            code: tonic::Code::Internal,
            message: format!("no status returned for container {container_id}"),
        })?;
        Ok((status, r.info))
    }

    /// The host pid of a running container's init process (from verbose `ContainerStatus`).
    pub async fn container_pid(&self, container_id: &str) -> Result<i32> {
        let (_, info) = self.container_status_verbose(container_id, true).await?;
        info_pid(&info).ok_or_else(|| {
            Error::Invalid(format!(
                "ContainerStatus of {container_id} reports no pid in its verbose info"
            ))
        })
    }

    /// The host pid of a pod's sandbox (pause) process (from verbose `PodSandboxStatus`).
    pub async fn pod_pid(&self, pod_id: &str) -> Result<i32> {
        let (_, info) = self.pod_status_verbose(pod_id, true).await?;
        info_pid(&info).ok_or_else(|| {
            Error::Invalid(format!(
                "PodSandboxStatus of {pod_id} reports no pid in its verbose info"
            ))
        })
    }

    /// `ListContainers`, optionally only those of one pod.
    pub async fn list_containers(&self, pod_id: Option<&str>) -> Result<Vec<cri::Container>> {
        let filter = pod_id.map(|p| cri::ContainerFilter {
            pod_sandbox_id: p.into(),
            ..Default::default()
        });
        let r = self
            .runtime
            .clone()
            .list_containers(cri::ListContainersRequest { filter })
            .await
            .map_err(status_err("ListContainers"))?;
        Ok(r.into_inner().containers)
    }

    /// `ContainerStats`.
    pub async fn container_stats(&self, container_id: &str) -> Result<cri::ContainerStats> {
        let r = self
            .runtime
            .clone()
            .container_stats(cri::ContainerStatsRequest {
                container_id: container_id.into(),
            })
            .await
            .map_err(status_err("ContainerStats"))?
            .into_inner();
        r.stats.ok_or_else(|| Error::Cri {
            op: "ContainerStats",
            code: tonic::Code::Internal,
            message: format!("no stats returned for container {container_id}"),
        })
    }

    /// `ExecSync` of `cmd` in a running container (`timeout` rounded up to whole seconds; zero
    /// means none). The whole call is also bounded by the client's per-call deadline
    /// ([`DEFAULT_CALL_TIMEOUT`] unless connected with another).
    pub async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let r = self
            .runtime
            .clone()
            .exec_sync(cri::ExecSyncRequest {
                container_id: container_id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: i64::try_from(secs).unwrap_or(i64::MAX),
            })
            .await
            .map_err(status_err("ExecSync"))?
            .into_inner();
        Ok(ExecOutput {
            exit_code: r.exit_code,
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        })
    }

    /// The container's log as written by containerd (CRI log format, unparsed).
    pub async fn logs_raw(&self, container_id: &str) -> Result<String> {
        let status = self.container_status(container_id).await?;
        if status.log_path.is_empty() {
            return Err(Error::Invalid(format!(
                "container {container_id} has no log path (pod config lacks log_directory?)"
            )));
        }
        tokio::fs::read_to_string(&status.log_path)
            .await
            .map_err(|e| Error::io(format!("read log {}", status.log_path), e))
    }

    /// The container's output (stdout and stderr interleaved as logged), like `crictl logs`.
    pub async fn logs(&self, container_id: &str) -> Result<String> {
        Ok(parse_cri_log(&self.logs_raw(container_id).await?))
    }

    /// Polls `ContainerStatus` until the container has exited; returns its exit code.
    pub async fn wait_container_exit(&self, container_id: &str, timeout: Duration) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.container_status(container_id).await?;
            if s.state == ContainerState::ContainerExited as i32 {
                return Ok(s.exit_code);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("container {container_id} to exit"),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the container's log until it contains `needle` (containers write asynchronously).
    pub async fn wait_log_contains(
        &self,
        container_id: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.logs(container_id).await.unwrap_or_default();
            if text.contains(needle) {
                return Ok(text);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("`{needle}` in the log of {container_id} (log so far: {text:?})"),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `ListImages`: every tag CRI knows.
    pub async fn list_images(&self) -> Result<Vec<String>> {
        let r = self
            .images
            .clone()
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .map_err(status_err("ListImages"))?;
        Ok(r.into_inner()
            .images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .collect())
    }

    /// Stops and removes every pod (best effort); returns one message per failure.
    pub async fn remove_all_pods(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match self.list_pods().await {
            Ok(pods) => {
                for p in pods {
                    if let Err(e) = self.stop_pod(&p.id).await {
                        errors.push(e.to_string());
                    }
                    if let Err(e) = self.remove_pod(&p.id).await {
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        errors
    }
}

/// `pid` from containerd's verbose status info (`info` key holds JSON).
fn info_pid(info: &HashMap<String, String>) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    v.get("pid")?
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
}

/// The message text of a CRI log file: each line is `TIMESTAMP STREAM TAG MESSAGE`, where tag `P`
/// marks a partial line continued by the next entry and `F` a full line.
pub fn parse_cri_log(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let (_ts, _stream, tag) = (parts.next(), parts.next(), parts.next());
        let msg = parts.next().unwrap_or("");
        out.push_str(msg);
        if tag != Some("P") {
            out.push('\n');
        }
    }
    out
}

/// Full error chain of a transport error, for messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A unique-enough pod uid for tests (`<name>-<pid>-<counter>-<nanos>`).
pub fn new_uid(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{n}-{nanos:x}", std::process::id())
}

fn ns_mode(host: bool, otherwise: cri::NamespaceMode) -> i32 {
    if host {
        cri::NamespaceMode::Node as i32
    } else {
        otherwise as i32
    }
}

/// What kubelet puts in a `PodSandboxConfig`, as a builder.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// Attempt number.
    pub attempt: u32,
    /// Pod annotations.
    pub annotations: HashMap<String, String>,
    /// Pod labels.
    pub labels: HashMap<String, String>,
    /// `hostNetwork: true` (network namespace mode NODE).
    pub host_network: bool,
    /// `hostPID: true`.
    pub host_pid: bool,
    /// `hostIPC: true`.
    pub host_ipc: bool,
    /// Sandbox-level privileged flag (kubelet sets it when any container is privileged).
    pub privileged: bool,
    /// Directory where container logs go (`None`: no logs).
    pub log_directory: Option<PathBuf>,
    /// Hostname (defaults to the pod name when empty and not host-network).
    pub hostname: String,
    /// Cgroup parent (empty: containerd's default).
    pub cgroup_parent: String,
    /// `securityContext.sysctls`.
    pub sysctls: HashMap<String, String>,
}

impl PodSpec {
    /// A pod `name` in Kubernetes namespace `namespace` with a fresh uid.
    pub fn new(namespace: &str, name: &str) -> Self {
        PodSpec {
            namespace: namespace.into(),
            name: name.into(),
            uid: new_uid(name),
            ..Default::default()
        }
    }
    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }
    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
    /// Sets `hostNetwork`.
    pub fn host_network(mut self, on: bool) -> Self {
        self.host_network = on;
        self
    }
    /// Sets `hostPID`.
    pub fn host_pid(mut self, on: bool) -> Self {
        self.host_pid = on;
        self
    }
    /// Sets `hostIPC`.
    pub fn host_ipc(mut self, on: bool) -> Self {
        self.host_ipc = on;
        self
    }
    /// Sets the sandbox-level privileged flag.
    pub fn privileged(mut self, on: bool) -> Self {
        self.privileged = on;
        self
    }
    /// Adds a pod sysctl.
    pub fn sysctl(mut self, key: &str, value: &str) -> Self {
        self.sysctls.insert(key.into(), value.into());
        self
    }
    /// Sets the log directory.
    pub fn log_directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_directory = Some(dir.into());
        self
    }

    /// The CRI message.
    pub fn build(&self) -> PodSandboxConfig {
        let hostname = if self.hostname.is_empty() && !self.host_network {
            self.name.clone()
        } else {
            self.hostname.clone()
        };
        PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: self.attempt,
            }),
            hostname,
            log_directory: self
                .log_directory
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                sysctls: self.sysctls.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: ns_mode(self.host_network, cri::NamespaceMode::Pod),
                        pid: ns_mode(self.host_pid, cri::NamespaceMode::Container),
                        ipc: ns_mode(self.host_ipc, cri::NamespaceMode::Pod),
                        ..Default::default()
                    }),
                    privileged: self.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A bind mount in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Source on the host.
    pub host_path: PathBuf,
    /// Destination in the container.
    pub container_path: String,
    /// Mounted read-only.
    pub readonly: bool,
}

/// What kubelet puts in a `ContainerConfig`, as a builder.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Image reference (default: the harness's busybox).
    pub image: String,
    /// Entrypoint override.
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Bind mounts.
    pub mounts: Vec<MountSpec>,
    /// `securityContext.privileged`.
    pub privileged: bool,
    /// Memory limit in bytes (0: none).
    pub memory_limit: i64,
    /// Allocate a TTY.
    pub tty: bool,
    /// Keep stdin open.
    pub stdin: bool,
    /// Log file name inside the pod's log directory.
    pub log_path: String,
    /// Container annotations.
    pub annotations: HashMap<String, String>,
    /// Container labels.
    pub labels: HashMap<String, String>,
    /// Host network/PID/IPC, copied from the pod as kubelet does.
    pub host_network: bool,
    /// See `host_network`.
    pub host_pid: bool,
    /// See `host_network`.
    pub host_ipc: bool,
    /// `securityContext.capabilities.add_capabilities` (e.g. `NET_ADMIN`, or `ALL`).
    pub add_capabilities: Vec<String>,
    /// Host devices given to the container (kubelet's device plugins do this): host path.
    pub devices: Vec<String>,
    /// `securityContext.capabilities.drop` (e.g. `ALL`).
    pub drop_capabilities: Vec<String>,
    /// `runAsUser`.
    pub run_as_user: Option<i64>,
    /// `allowPrivilegeEscalation: false` as kubelet sends it.
    pub no_new_privs: bool,
    /// `seccompProfile.type` (`None`: unset, which containerd runs unconfined).
    pub seccomp: Option<SeccompProfile>,
    /// `maskedPaths` as kubelet sends them: `KUBELET_MASKED_PATHS` for procMount Default.
    pub masked_paths: Vec<String>,
    /// `readonlyPaths` as kubelet sends them: `KUBELET_READONLY_PATHS`.
    pub readonly_paths: Vec<String>,
}

/// What kubelet sends as `maskedPaths` for procMount `Default` (containerd's CRI plugin masks
/// nothing when a client sends none).
pub const KUBELET_MASKED_PATHS: [&str; 10] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// What kubelet sends as `readonlyPaths` for procMount `Default`.
pub const KUBELET_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

impl ContainerSpec {
    /// Removes a capability (`drop`), e.g. `ALL`.
    pub fn drop_capability(mut self, cap: &str) -> Self {
        self.drop_capabilities.push(cap.into());
        self
    }
    /// Sets `runAsUser`.
    pub fn run_as_user(mut self, uid: i64) -> Self {
        self.run_as_user = Some(uid);
        self
    }
    /// Sets no_new_privs (`allowPrivilegeEscalation: false`).
    pub fn no_new_privs(mut self, on: bool) -> Self {
        self.no_new_privs = on;
        self
    }
    /// Sets the seccomp profile type.
    pub fn seccomp(mut self, profile: SeccompProfile) -> Self {
        self.seccomp = Some(profile);
        self
    }
    /// Sets the masked paths kubelet sends (a procMount other than Default sends fewer).
    pub fn masked_paths(mut self, paths: &[&str]) -> Self {
        self.masked_paths = paths.iter().map(|p| p.to_string()).collect();
        self
    }
}

impl ContainerSpec {
    /// A container `name` running the harness's busybox image with its default command.
    pub fn new(name: &str) -> Self {
        ContainerSpec {
            name: name.into(),
            image: BUSYBOX_IMAGE.into(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            mounts: Vec::new(),
            privileged: false,
            memory_limit: 0,
            tty: false,
            stdin: false,
            log_path: format!("{name}.log"),
            annotations: HashMap::new(),
            labels: HashMap::new(),
            host_network: false,
            host_pid: false,
            host_ipc: false,
            add_capabilities: Vec::new(),
            devices: Vec::new(),
            drop_capabilities: Vec::new(),
            run_as_user: None,
            no_new_privs: false,
            seccomp: None,
            masked_paths: KUBELET_MASKED_PATHS.map(String::from).to_vec(),
            readonly_paths: KUBELET_READONLY_PATHS.map(String::from).to_vec(),
        }
    }
    /// Adds a capability to `add_capabilities`.
    pub fn add_capability(mut self, cap: &str) -> Self {
        self.add_capabilities.push(cap.into());
        self
    }
    /// Gives the container the host device `path` (same path inside, `rw`).
    pub fn device(mut self, path: &str) -> Self {
        self.devices.push(path.into());
        self
    }
    /// Copies the pod's host-namespace flags, as kubelet does for each container.
    pub fn in_pod(mut self, pod: &PodSpec) -> Self {
        self.host_network = pod.host_network;
        self.host_pid = pod.host_pid;
        self.host_ipc = pod.host_ipc;
        self
    }
    /// Sets the image.
    pub fn image(mut self, image: &str) -> Self {
        self.image = image.into();
        self
    }
    /// Sets the command (entrypoint override).
    pub fn command<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cmd: I) -> Self {
        self.command = cmd.into_iter().map(Into::into).collect();
        self
    }
    /// Sets the arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }
    /// Runs `sh -c script`.
    pub fn shell(self, script: &str) -> Self {
        self.command(["/bin/sh", "-c", script])
    }
    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// Adds a bind mount.
    pub fn mount(
        mut self,
        host_path: impl Into<PathBuf>,
        container_path: &str,
        readonly: bool,
    ) -> Self {
        self.mounts.push(MountSpec {
            host_path: host_path.into(),
            container_path: container_path.into(),
            readonly,
        });
        self
    }
    /// Sets `privileged`.
    pub fn privileged(mut self, on: bool) -> Self {
        self.privileged = on;
        self
    }
    /// Sets the memory limit in bytes.
    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit = bytes;
        self
    }
    /// Sets `tty`.
    pub fn tty(mut self, on: bool) -> Self {
        self.tty = on;
        self
    }
    /// Sets `stdin`.
    pub fn stdin(mut self, on: bool) -> Self {
        self.stdin = on;
        self
    }
    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// The CRI message.
    pub fn build(&self) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: self.name.clone(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: self.command.clone(),
            args: self.args.clone(),
            envs: self
                .env
                .iter()
                .map(|(k, v)| cri::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            mounts: self
                .mounts
                .iter()
                .map(|m| cri::Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.to_string_lossy().into_owned(),
                    readonly: m.readonly,
                    ..Default::default()
                })
                .collect(),
            devices: self
                .devices
                .iter()
                .map(|d| cri::Device {
                    container_path: d.clone(),
                    host_path: d.clone(),
                    permissions: "rw".into(),
                })
                .collect(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            log_path: self.log_path.clone(),
            stdin: self.stdin,
            tty: self.tty,
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: self.memory_limit,
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    privileged: self.privileged,
                    capabilities: (!self.add_capabilities.is_empty()
                        || !self.drop_capabilities.is_empty())
                    .then(|| cri::Capability {
                        add_capabilities: self.add_capabilities.clone(),
                        drop_capabilities: self.drop_capabilities.clone(),
                        ..Default::default()
                    }),
                    run_as_user: self.run_as_user.map(|value| cri::Int64Value { value }),
                    no_new_privs: self.no_new_privs,
                    seccomp: self.seccomp.map(|p| cri::SecurityProfile {
                        profile_type: p as i32,
                        ..Default::default()
                    }),
                    masked_paths: self.masked_paths.clone(),
                    readonly_paths: self.readonly_paths.clone(),
                    namespace_options: Some(cri::NamespaceOption {
                        network: ns_mode(self.host_network, cri::NamespaceMode::Pod),
                        pid: ns_mode(self.host_pid, cri::NamespaceMode::Container),
                        ipc: ns_mode(self.host_ipc, cri::NamespaceMode::Pod),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_are_joined() {
        let raw = "2024-01-01T00:00:00.1Z stdout F hello world\n\
                   2024-01-01T00:00:00.2Z stderr P part\n\
                   2024-01-01T00:00:00.3Z stderr F ial\n";
        assert_eq!(parse_cri_log(raw), "hello world\npartial\n");
    }

    #[test]
    fn host_flags_map_to_node_namespaces() {
        let pod = PodSpec::new("kube-system", "p")
            .host_network(true)
            .host_pid(true);
        let cfg = pod.build();
        let ns = cfg
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .expect("namespace options");
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.ipc, cri::NamespaceMode::Pod as i32);
        let c = ContainerSpec::new("c").in_pod(&pod).build();
        let cns = c
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .expect("container namespace options");
        assert_eq!(cns.network, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn uids_differ() {
        assert_ne!(new_uid("a"), new_uid("a"));
    }

    #[test]
    fn pid_from_info() {
        let mut info = HashMap::new();
        info.insert("info".to_string(), r#"{"pid": 1234, "x": 1}"#.to_string());
        assert_eq!(info_pid(&info), Some(1234));
        info.insert("info".to_string(), "not json".to_string());
        assert_eq!(info_pid(&info), None);
    }
}
