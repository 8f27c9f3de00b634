//! The one support module of every e2e suite: what all of them share (timeouts, process
//! facts), and per family of suites the harness set-up, test policy and checks:
//! [`handoff`] (the router handing pods to other shims; one shared containerd per test binary,
//! per-pod leak assertions), [`builtin`] (the router's own backend), [`cluster`] (routerctl
//! driven like the DaemonSet). Test policies are built with `router_integration::PolicyText`;
//! pod and container builders are `router_integration::{PodSpec, ContainerSpec}`; the fault
//! wrapper is `router_integration::faults`.

#![allow(dead_code)]

pub mod builtin;
pub mod cluster;
pub mod handoff;

use std::path::{Path, PathBuf};

use serde_json::Value;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use router_integration::cri::PodSandboxConfig;
use router_integration::{procs, ContainerSpec, Containerd, CriClient, PodSpec};

/// Generous timeout for anything the loaded machine must do.
pub const LONG: Duration = Duration::from_secs(120);

/// The parent pid of a process.
pub fn ppid(pid: i32) -> Result<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 1..];
    rest.split_whitespace()
        .nth(1)
        .context("no ppid in stat")?
        .parse()
        .context("ppid")
}

/// The binary a process runs.
pub fn exe(pid: i32) -> Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("readlink /proc/{pid}/exe"))
}

/// Waits until `pid` is gone; whether it went within `timeout`.
pub async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if !procs::alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    !procs::alive(pid)
}

/// A pod `name` in Kubernetes namespace `ns` with container `c` in it (its host namespaces
/// copied from the pod, as kubelet does), both started: (pod, its config, pod id, container id).
pub async fn pod_with(
    h: &Containerd,
    cri: &CriClient,
    ns: &str,
    name: &str,
    c: ContainerSpec,
) -> Result<(PodSpec, PodSandboxConfig, String, String)> {
    let pod = h.pod(ns, name);
    let cfg = pod.build();
    let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox")?;
    let cid = cri
        .run_container(&pod_id, &cfg, &c.in_pod(&pod).build())
        .await
        .context("the pod's container")?;
    Ok((pod, cfg, pod_id, cid))
}

/// Removes a pod as kubelet does: its containers `cids`, then the pod.
pub async fn remove_pod_and(cri: &CriClient, pod_id: &str, cids: &[&str]) -> Result<()> {
    for cid in cids {
        cri.remove_container(cid).await?;
    }
    cri.stop_pod(pod_id).await?;
    cri.remove_pod(pod_id).await?;
    Ok(())
}

/// After its removal, a pod's daemon and container process are gone.
pub async fn daemon_and_process_gone(daemon: i32, c_pid: i32) -> Result<()> {
    ensure!(
        wait_gone(daemon, LONG).await,
        "pod daemon {daemon} still running after remove"
    );
    ensure!(!procs::alive(c_pid), "container process {c_pid} survived");
    Ok(())
}

/// Every line of an audit log, parsed.
pub fn audit_lines(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).context("read audit log"),
    };
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("audit line {l:?}")))
        .collect()
}

/// The decision record of a CRI task.
pub fn record(h: &Containerd, id: &str) -> Result<Value> {
    let path = h
        .bundle_dir(router_integration::K8S_NAMESPACE, id)
        .join("router-decision.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}
