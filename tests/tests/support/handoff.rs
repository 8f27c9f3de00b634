//! Shared helpers of the hand-off end-to-end suites (`handoff_*.rs`): one private containerd per
//! test binary, shared by its tests while any of them runs (each test uses its own Kubernetes
//! namespaces and pods), the test policy (trusted tier = containerd's `containerd-shim-runc-v2`
//! as a shim backend, VM tier = the Kata stand-in), and checks on what served a pod: the shim
//! process that is the parent of the pod's pause process, its binary, its environment; the
//! decision record and the audit log; and that nothing is left after a refusal.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{exe, ppid};
use anyhow::{bail, ensure, Context, Result};
use router_integration::cri::PodSandboxConfig;
use router_integration::{
    procs, ContainerSpec, Containerd, CriClient, PodSpec, PolicyText, STANDIN_BINARY,
};
use serde_json::Value;

/// Backend override annotation.
pub const BACKEND_OVERRIDE: &str = "runtime-router.io/backend";
/// Marker env var given to the VM-tier backend in the test policy.
pub use router_integration::policy::KATA_CONF;
/// The harness options `with_fresh` takes.
pub use router_integration::ContainerdOptions;

/// Environment variable choosing the trusted tier of these suites: unset or `shim` =
/// containerd's `containerd-shim-runc-v2` as a `shim` backend; `builtin` = the router's built-in
/// backend driving runc (`scripts/test.sh` runs the suites both ways).
pub const TRUSTED_TIER_ENV: &str = "ROUTER_E2E_TRUSTED_TIER";

/// Whether the trusted tier is the built-in backend in this run.
pub fn trusted_tier_builtin() -> bool {
    std::env::var(TRUSTED_TIER_ENV).as_deref() == Ok("builtin")
}

/// The binary whose process serves a trusted pod in this run.
pub fn trusted_shim_binary() -> PathBuf {
    if trusted_tier_builtin() {
        router_integration::binaries::router_shim_path()
            .unwrap_or_else(|| PathBuf::from("containerd-shim-router-v2 (not built)"))
    } else {
        router_integration::binaries::runc_shim_path()
    }
}

/// The decision record's `target.kind` for a trusted pod in this run.
pub fn trusted_target_kind() -> &'static str {
    if trusted_tier_builtin() {
        "builtin"
    } else {
        "shim"
    }
}

/// The test policy for a harness: the trusted tier `runc` (containerd's runc shim, or the
/// built-in backend with `ROUTER_E2E_TRUSTED_TIER=builtin`), the VM tier `kata` (the stand-in),
/// `ghost` (a binary that does not exist), and the tenants `provider`, `haunted`, `partner` and
/// `untrusted` (the default, with every deny rule).
pub fn policy_for(h: &Containerd) -> String {
    let policy = PolicyText::new("untrusted").pod_paths("{dir}/kubelet/pods");
    let policy = if trusted_tier_builtin() {
        policy.runc()
    } else {
        policy.shim("runc", "containerd-shim-runc-v2", &[], "container")
    };
    let policy = policy
        .shim(
            "kata",
            STANDIN_BINARY,
            &[("KATA_CONF_FILE", KATA_CONF)],
            "vm",
        )
        .shim("ghost", "containerd-shim-ghost-v2", &[], "vm")
        .tenant(
            "provider",
            &["kube-system", "telemetry", "sdewan-*"],
            "runc",
        )
        .list("containerd_namespaces", &["infra"])
        .tenant("haunted", &["haunted"], "ghost")
        .tenant("partner", &["partner-*"], "runc")
        .list("deny", &["privileged", "host-path"])
        .tenant("untrusted", &[], "kata")
        .untrusted_deny()
        .list(
            "allow_annotations",
            &["io.katacontainers.config.hypervisor.default_memory"],
        );
    h.expand(policy.text())
}

/// The shared containerd of one test binary.
pub struct Fixture {
    pub h: Containerd,
}

static SHARED: tokio::sync::Mutex<Weak<Fixture>> = tokio::sync::Mutex::const_new(Weak::new());

/// The binary's shared containerd, started with the test policy if no test holds it. Dropping
/// the last `Arc` tears it down (every process, mount and file it made).
pub async fn shared() -> Result<Arc<Fixture>> {
    let mut slot = SHARED.lock().await;
    if let Some(f) = slot.upgrade() {
        return Ok(f);
    }
    let f = Arc::new(start_fixture().await?);
    *slot = Arc::downgrade(&f);
    Ok(f)
}

/// Runs a test's body on the binary's shared containerd, with a CRI client; a failure carries
/// containerd's log tail.
pub async fn with_shared<F, Fut>(body: F) -> Result<()>
where
    F: FnOnce(Arc<Fixture>, CriClient) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let fx = shared().await?;
    let cri = fx.cri().await?;
    let r = body(Arc::clone(&fx), cri).await;
    with_log(&fx, r)
}

/// Runs a test's body on a fresh containerd with the test policy (`opts` for the harness), then
/// shuts it down, whose leak check must pass too; a failure carries containerd's log.
pub async fn with_fresh<F, Fut>(opts: ContainerdOptions, body: F) -> Result<()>
where
    F: FnOnce(Arc<Fixture>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let fx = Arc::new(start_fixture_with(opts).await?);
    let r = body(Arc::clone(&fx)).await;
    let r = with_log(&fx, r);
    let fx = Arc::try_unwrap(fx).map_err(|_| anyhow::anyhow!("a test kept its harness"))?;
    fx.h.shutdown().await.context("harness shutdown")?;
    r
}

/// A fresh containerd with the test policy (for suites that change the policy).
pub async fn start_fixture() -> Result<Fixture> {
    start_fixture_with(ContainerdOptions::default()).await
}

/// Like [`start_fixture`] with other harness options (the policy is set by this function).
pub async fn start_fixture_with(opts: ContainerdOptions) -> Result<Fixture> {
    ensure!(
        router_integration::binaries::router_shim_path().is_some(),
        "containerd-shim-router-v2 is not built next to the tests: run `cargo build -p router-shim --bins` first"
    );
    // placeholder: the real policy names the harness's own directories, known once it exists
    let opts = ContainerdOptions {
        policy: Some("version = 1\n".into()),
        ..opts
    };
    let h = Containerd::start(opts)
        .await
        .context("start the harness containerd")?;
    h.set_policy(&policy_for(&h))?;
    std::fs::create_dir_all(h.dir().join("kubelet/pods"))?;
    Ok(Fixture { h })
}

impl Fixture {
    /// A CRI client on the calling test's runtime.
    pub async fn cri(&self) -> Result<CriClient> {
        CriClient::connect(self.h.socket())
            .await
            .context("connect CRI")
    }

    /// Path of the audit log named by the test policy.
    pub fn audit_path(&self) -> PathBuf {
        self.h.dir().join("audit/decisions.jsonl")
    }

    /// Every audit line so far.
    pub fn audit(&self) -> Result<Vec<Value>> {
        super::audit_lines(&self.audit_path())
    }

    /// Audit lines about the pod with this uid.
    pub fn audit_for_uid(&self, uid: &str) -> Result<Vec<Value>> {
        Ok(self
            .audit()?
            .into_iter()
            .filter(|v| v["pod_uid"] == uid)
            .collect())
    }

    /// The decision record of a task in the CRI namespace.
    pub fn record(&self, id: &str) -> Result<Value> {
        super::record(&self.h, id)
    }

    /// Path of the Kata stand-in binary of this harness.
    pub fn standin(&self) -> PathBuf {
        self.h.standin_dir().join(STANDIN_BINARY)
    }

    /// A kubelet-style volume directory of a pod (`<kubelet root>/pods/<uid>/volumes/...`).
    pub fn kubelet_volume(&self, uid: &str, name: &str) -> Result<PathBuf> {
        let dir = self
            .h
            .dir()
            .join("kubelet/pods")
            .join(uid)
            .join("volumes/kubernetes.io~empty-dir")
            .join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// After a refusal of the pod with this uid: the audit says refused, and nothing of the
    /// refused task is left (no process naming its id, no bundle). Returns the refused id.
    pub fn assert_refused_and_gone(&self, uid: &str, needle: &str) -> Result<String> {
        let lines = self.audit_for_uid(uid)?;
        let refused = lines
            .iter()
            .rev()
            .find(|v| v["outcome"] == "refused")
            .with_context(|| format!("no refused audit line for pod uid {uid}: {lines:?}"))?;
        let msg = refused["message"].as_str().unwrap_or_default();
        ensure!(
            msg.contains(needle),
            "audit message {msg:?} lacks {needle:?}"
        );
        let id = refused["id"]
            .as_str()
            .context("refused audit line has no id")?
            .to_owned();
        assert_task_gone(&self.h, &id)?;
        Ok(id)
    }
}

/// No process mentions the task id and its bundle is gone (waits a little: containerd removes
/// the bundle right after the failed start).
pub fn assert_task_gone(h: &Containerd, id: &str) -> Result<()> {
    let bundle = h.bundle_dir(router_integration::K8S_NAMESPACE, id);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let procs = procs::referencing(id);
        let gone = procs.is_empty() && !bundle.exists();
        if gone {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "task {id} left behind: processes {procs:?}, bundle exists: {}",
                bundle.exists()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A process's environment variable.
pub fn environ_var(pid: i32, key: &str) -> Result<Option<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))?;
    let prefix = format!("{key}=");
    Ok(raw
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .find_map(|kv| kv.strip_prefix(&prefix).map(str::to_owned)))
}

/// The shim serving a pod: the parent of its pause process. Returns (shim pid, shim binary).
pub async fn pod_shim(cri: &CriClient, pod_id: &str) -> Result<(i32, PathBuf)> {
    let pause = cri.pod_pid(pod_id).await?;
    let shim = ppid(pause)?;
    Ok((shim, exe(shim)?))
}

/// The shim serving a container: the parent of its init process.
pub async fn container_shim(cri: &CriClient, container_id: &str) -> Result<(i32, PathBuf)> {
    let init = cri.container_pid(container_id).await?;
    let shim = ppid(init)?;
    Ok((shim, exe(shim)?))
}

/// The shim address containerd uses for a task: `bootstrap.json` (containerd 2.x writes it from
/// the `start` reply), else the `address` file (1.6/1.7).
pub fn shim_address(fx: &Fixture, id: &str) -> Result<String> {
    let bundle = fx.h.bundle_dir(router_integration::K8S_NAMESPACE, id);
    if let Ok(text) = std::fs::read_to_string(bundle.join("bootstrap.json")) {
        let v: serde_json::Value = serde_json::from_str(&text).context("bootstrap.json")?;
        return v["address"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("bootstrap.json without an address: {text}"));
    }
    Ok(std::fs::read_to_string(bundle.join("address"))
        .context("the shim's address file")?
        .trim()
        .to_owned())
}

/// The error text of a failed CRI call, checked to carry every needle.
pub fn refusal_text<T: std::fmt::Debug>(
    r: router_integration::Result<T>,
    needles: &[&str],
) -> Result<String> {
    let e = match r {
        Ok(v) => bail!("expected a refusal, got {v:?}"),
        Err(e) => e.to_string(),
    };
    eprintln!("refusal as the CRI client saw it: {e}");
    for n in needles {
        ensure!(e.contains(n), "error {e:?} lacks {n:?}");
    }
    Ok(e)
}

/// Stop and remove a pod (best effort is not enough in a test: errors are returned).
/// Then nothing of the pod may be left (the shared harness's own check runs only at its end,
/// where a failure can no longer fail a test): its shim and relay, containers, runtime state,
/// sockets, mounts and cgroups ([`router_integration::leaks::find_of`]).
pub async fn remove_pod(fx: &Fixture, cri: &CriClient, pod_id: &str) -> Result<()> {
    let mut ids: std::collections::BTreeSet<String> = cri
        .list_containers(Some(pod_id))
        .await
        .context("ListContainers")?
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.insert(pod_id.to_owned());
    cri.stop_pod(pod_id).await.context("StopPodSandbox")?;
    cri.remove_pod(pod_id).await.context("RemovePodSandbox")?;
    let scope = fx.h.leak_scope();
    let left = tokio::task::spawn_blocking(move || {
        router_integration::leaks::wait_clean_of(&scope, &ids, Duration::from_secs(20))
    })
    .await
    .context("leak check")?;
    ensure!(left.is_empty(), "pod {pod_id} left behind: {left:#?}");
    Ok(())
}

/// Adds containerd's log tail to an error.
pub fn with_log<T>(fx: &Fixture, r: Result<T>) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!(fx.h.failure_report(&e)))
}

/// Whether a path is the harness's stand-in or the runc shim.
pub fn is_same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Runs a pod and one long-running container in it; returns (pod id, pod config, container id).
pub async fn pod_with_container(
    fx: &Fixture,
    cri: &CriClient,
    pod: &PodSpec,
) -> Result<(String, PodSandboxConfig, String)> {
    let cfg = pod.build();
    let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox")?;
    let c = ContainerSpec::new("main")
        .in_pod(pod)
        .shell("echo started; exec sleep 3600");
    let cid = cri
        .run_container(&pod_id, &cfg, &c.build())
        .await
        .context("run container")?;
    cri.wait_log_contains(&cid, "started", Duration::from_secs(60))
        .await?;
    let _ = fx;
    Ok((pod_id, cfg, cid))
}

/// CreateContainer then StartContainer (containerd 1.6 starts the task, hence the shim, at
/// StartContainer).
pub async fn create_and_start(
    cri: &CriClient,
    pod_id: &str,
    cfg: &PodSandboxConfig,
    c: &ContainerSpec,
) -> router_integration::Result<String> {
    let id = cri.create_container(pod_id, cfg, &c.build()).await?;
    cri.start_container(&id).await.map(|()| id)
}

/// A container of `pod` bind-mounting the host's `/etc` is refused by the `host-path` rule,
/// naming it.
pub async fn host_etc_is_refused(
    cri: &CriClient,
    pod_id: &str,
    cfg: &PodSandboxConfig,
    pod: &PodSpec,
) -> Result<()> {
    let host_path = ContainerSpec::new("hostpath")
        .in_pod(pod)
        .mount("/etc", "/host-etc", true)
        .shell("exec sleep 3600");
    refusal_text(
        create_and_start(cri, pod_id, cfg, &host_path).await,
        &["runtime-router refused", "deny:host-path", "/etc"],
    )?;
    Ok(())
}

/// A container with the pod's own paths runs: its kubelet volume (written), containerd's
/// `/etc/hosts` and `/dev/shm`, and each of `host_dirs` read-only (each must hold a file `in`
/// saying `from-host`).
pub async fn own_pod_paths_work(
    fx: &Fixture,
    cri: &CriClient,
    pod_id: &str,
    cfg: &PodSandboxConfig,
    pod: &PodSpec,
    host_dirs: &[&Path],
) -> Result<()> {
    let own = fx.kubelet_volume(&pod.uid, "scratch")?;
    let mut c = ContainerSpec::new("own")
        .in_pod(pod)
        .mount(&own, "/scratch", false);
    let mut script = String::new();
    for (i, d) in host_dirs.iter().enumerate() {
        c = c.mount(*d, &format!("/host-{i}"), true);
        script.push_str(&format!("grep -q from-host /host-{i}/in && "));
    }
    script.push_str(
        "grep -q localhost /etc/hosts && touch /dev/shm/x && \
         echo mine > /scratch/out && echo own-ok; exec sleep 3600",
    );
    let ok = create_and_start(cri, pod_id, cfg, &c.shell(&script))
        .await
        .context("a container with only its own pod's paths")?;
    cri.wait_log_contains(&ok, "own-ok", Duration::from_secs(60))
        .await?;
    ensure!(std::fs::read_to_string(own.join("out"))?.trim() == "mine");
    Ok(())
}
