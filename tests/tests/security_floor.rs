//! End to end through CRI (issue 21): the floor no policy opens, and bind sources walked without
//! following the symlinks a pod plants in its own volumes, on the hand-off path (the Kata
//! stand-in, say `standin`) and the built-in backend (runc and runsc driven by the router itself,
//! which pins each walked source for the runtime: `shim/src/builtin/pin.rs`).
//!
//! - Under a policy whose `allowed_host_paths` is `/`, a container mounting containerd's socket,
//!   its state or root dir, the router's records or the policy is refused, naming the rule and
//!   what the path reaches; a host path outside the floor, the pod's own volume, `/etc/hosts`
//!   and `/dev/shm` still work.
//! - With the per-pod entries, a first container plants `root -> /` in the pod's emptyDir and a
//!   second one bind-mounts `<emptyDir>/root/etc`: refused, and nothing outside the volume is
//!   read or written. A path inside the emptyDir with no symlink in it yet runs on the built-in
//!   backends (which pin what they walked) and is refused on the hand-off (which mounts after
//!   the router's check).

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use router_integration::policy::{RUNC, RUNSC, RUNSC_ARGS};
use router_integration::{ContainerSpec, CriClient, PodSpec, PolicyText};
use support::handoff::*;

/// The default (untrusted) tenant: the Kata stand-in, through a hand-off.
const HANDOFF_NS: &str = "tenant-floor";
/// A tenant on the router's built-in backend with `host-path` denied.
const BUILTIN_NS: &str = "floor-builtin";
/// The same on the built-in backend driving runsc (gVisor).
const GVISOR_NS: &str = "floor-gvisor";

/// The hand-off test policy plus a built-in tenant; `allowed` replaces `allowed_host_paths`.
fn floor_policy(fx: &Fixture, allowed: Option<&str>) -> Result<String> {
    let mut policy = policy_for(&fx.h);
    if let Some(allowed) = allowed {
        let start = policy
            .find("allowed_host_paths = [")
            .context("test policy without allowed_host_paths")?;
        let end = start + policy[start..].find('\n').context("one line")?;
        policy.replace_range(start..end, &format!("allowed_host_paths = [{allowed}]"));
    }
    let deny = ["host-path", "privileged"];
    Ok(PolicyText::after(policy)
        .builtin("builtin-runc", RUNC, &[], "container")
        .tenant("floor-builtin", &[BUILTIN_NS], "builtin-runc")
        .list("deny", &deny)
        .builtin("builtin-runsc", RUNSC, &RUNSC_ARGS, "sandbox")
        .tenant("floor-gvisor", &[GVISOR_NS], "builtin-runsc")
        .list("deny", &deny)
        .into())
}

async fn refused(
    cri: &CriClient,
    pod_id: &str,
    cfg: &router_integration::cri::PodSandboxConfig,
    c: &ContainerSpec,
    needles: &[&str],
) -> Result<String> {
    refusal_text(create_and_start(cri, pod_id, cfg, c).await, needles)
}

async fn floor_holds_in(fx: &Fixture, ns: &str) -> Result<()> {
    let cri = fx.cri().await?;
    let pod: PodSpec = fx.h.pod(ns, "reacher");
    let (pod_id, cfg, _) = pod_with_container(fx, &cri, &pod).await?;
    let records =
        std::path::PathBuf::from(router_integration::leaks::ROUTER_STATE_DIR).join("records");
    let policy = fx.h.policy_path().context("policy path")?.to_path_buf();
    let floor = [
        (fx.h.socket().to_path_buf(), "containerd's socket"),
        (fx.h.state().to_path_buf(), "containerd's state dir"),
        (
            fx.h.state().join("io.containerd.runtime.v2.task"),
            "containerd's state dir",
        ),
        (fx.h.root().to_path_buf(), "containerd's root dir"),
        (records, "the router's state"),
        (policy, "the node policy"),
        ("/".into(), "containerd's socket"),
    ];
    for (i, (p, what)) in floor.iter().enumerate() {
        let c = ContainerSpec::new(&format!("floor-{i}"))
            .in_pod(&pod)
            .mount(p, "/reach", true)
            .shell("exec sleep 3600");
        let text = refused(
            &cri,
            &pod_id,
            &cfg,
            &c,
            &["runtime-router refused", "deny:host-path", "reaches", what],
        )
        .await
        .with_context(|| format!("{ns}: bind mount of {}", p.display()))?;
        ensure!(
            text.contains(&*p.to_string_lossy()),
            "refusal does not name {}: {text}",
            p.display()
        );
    }
    // `/` opens what is outside the floor: a host dir of the harness, the pod's own volume,
    // /etc/hosts and /dev/shm
    let shared = fx.h.dir().join("shared-data");
    std::fs::create_dir_all(&shared)?;
    std::fs::write(shared.join("in"), "from-host")?;
    own_pod_paths_work(fx, &cri, &pod_id, &cfg, &pod, &[&shared])
        .await
        .with_context(|| format!("{ns}: a container with paths outside the floor"))?;
    remove_pod(fx, &cri, &pod_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_holds_under_a_root_entry_standin_builtin_and_gvisor() -> Result<()> {
    with_fresh(ContainerdOptions::default(), |fx| async move {
        fx.h.set_policy(&floor_policy(&fx, Some("\"/\""))?)?;
        floor_holds_in(&fx, HANDOFF_NS)
            .await
            .context("hand-off (stand-in)")?;
        floor_holds_in(&fx, BUILTIN_NS).await.context("built-in")?;
        floor_holds_in(&fx, GVISOR_NS)
            .await
            .context("built-in, gVisor")
    })
    .await
}

async fn planted_symlink_leads_nowhere_in(fx: &Fixture, ns: &str) -> Result<()> {
    let cri = fx.cri().await?;
    let pod = fx.h.pod(ns, "planter");
    let cfg = pod.build();
    let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox")?;
    let vol = fx.kubelet_volume(&pod.uid, "cache")?;
    let marker = format!("rr-floor-{}", &pod.uid[..8]);
    // the pod's first container plants `root -> /` in its own emptyDir
    let planter = cri
        .run_container(
            &pod_id,
            &cfg,
            &ContainerSpec::new("planter")
                .in_pod(&pod)
                .mount(&vol, "/cache", false)
                .shell("ln -s / /cache/root && echo planted; exec sleep 3600")
                .build(),
        )
        .await
        .context("the planting container")?;
    cri.wait_log_contains(&planter, "planted", Duration::from_secs(60))
        .await?;
    ensure!(
        std::fs::symlink_metadata(vol.join("root"))?.is_symlink(),
        "the pod could not plant its symlink"
    );
    // a second container of the same pod follows it to the host's /etc
    let reader = ContainerSpec::new("reader")
        .in_pod(&pod)
        .mount(vol.join("root/etc"), "/hostetc", false)
        .shell(&format!(
            "cat /hostetc/hostname; touch /hostetc/{marker}; exec sleep 3600"
        ));
    let text = refused(
        &cri,
        &pod_id,
        &cfg,
        &reader,
        &["runtime-router refused", "deny:host-path", "is a symlink"],
    )
    .await?;
    ensure!(
        text.contains(&format!("{}/root", vol.canonicalize()?.display())),
        "refusal does not name the symlink: {text}"
    );
    ensure!(
        !std::path::Path::new("/etc").join(&marker).exists(),
        "a file was written into the host's /etc"
    );
    // a `..` that would climb through it is refused as well
    let climber = ContainerSpec::new("climber")
        .in_pod(&pod)
        .mount(vol.join("root/../root/etc"), "/hostetc", true)
        .shell("exec sleep 3600");
    refused(&cri, &pod_id, &cfg, &climber, &["deny:host-path"]).await?;
    // a path inside the volume with no symlink in it now: the pod could still swap `sub` for one
    // before the runtime mounts it. A hand-off backend mounts after the router's check, so it is
    // refused there; the built-in backend pins what it walked and runs it.
    std::fs::create_dir_all(vol.join("sub/etc"))?;
    std::fs::write(vol.join("sub/etc/mine"), "from-the-volume")?;
    let inner = ContainerSpec::new("inner")
        .in_pod(&pod)
        .mount(vol.join("sub/etc"), "/inner", true)
        .shell("cat /inner/mine; echo; echo inner-ok; exec sleep 3600");
    if ns == HANDOFF_NS {
        refused(
            &cri,
            &pod_id,
            &cfg,
            &inner,
            &["deny:host-path", "which this pod can write"],
        )
        .await?;
    } else {
        let id = create_and_start(&cri, &pod_id, &cfg, &inner)
            .await
            .context("a path inside the pod's own volume on a built-in backend")?;
        let log = cri
            .wait_log_contains(&id, "inner-ok", Duration::from_secs(60))
            .await?;
        ensure!(log.contains("from-the-volume"), "read: {log}");
    }
    remove_pod(fx, &cri, &pod_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_planted_in_own_volume_leads_nowhere_standin_builtin_and_gvisor() -> Result<()> {
    with_fresh(ContainerdOptions::default(), |fx| async move {
        fx.h.set_policy(&floor_policy(&fx, None)?)?;
        planted_symlink_leads_nowhere_in(&fx, HANDOFF_NS)
            .await
            .context("hand-off (stand-in)")?;
        planted_symlink_leads_nowhere_in(&fx, BUILTIN_NS)
            .await
            .context("built-in")?;
        planted_symlink_leads_nowhere_in(&fx, GVISOR_NS)
            .await
            .context("built-in, gVisor")
    })
    .await
}
