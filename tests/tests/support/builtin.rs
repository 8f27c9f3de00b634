//! Shared helpers of the built-in backend suites (`builtin_*.rs`): a private containerd whose
//! router policy puts the trusted tier (`kube-system`, containerd namespaces `default`/`infra`)
//! on the `builtin` backend driving `/usr/sbin/runc`, and checks on which process serves a pod
//! (the parent of its pause process must be a `containerd-shim-router-v2` daemon).

use super::{exe, ppid};
use anyhow::{ensure, Context, Result};
use router_integration::{Containerd, ContainerdOptions, CriClient, PolicyText};

/// The test policy: `kube-system` (and containerd namespaces `default`, `infra`) on the built-in
/// backend driving runc, which is also the default.
pub fn policy() -> String {
    PolicyText::new("provider")
        .pod_paths("/var/lib/kubelet/pods")
        .runc()
        .tenant("provider", &["kube-system"], "runc")
        .list("containerd_namespaces", &["default", "infra"])
        .into()
}

/// The gVisor suites' policy: `kube-system` on built-in runc, every other namespace on the
/// built-in backend driving runsc with the flags this host needs (docs/gvisor.md).
pub fn gvisor_policy() -> String {
    PolicyText::bare("untrusted")
        .runc()
        .gvisor()
        .tenant("provider", &["kube-system"], "runc")
        .tenant("untrusted", &[], "gvisor")
        .list(
            "deny",
            &[
                "host-network",
                "host-pid",
                "host-ipc",
                "privileged",
                "capabilities",
                "host-devices",
            ],
        )
        .into()
}

/// A harness whose trusted tier is the built-in backend.
pub async fn start() -> Result<Containerd> {
    // The harness fills `{dir}`, `{root}` and `{state}` when it writes the policy file.
    Containerd::start(ContainerdOptions::with_policy(policy()))
        .await
        .context("start containerd")
}

/// The shim daemon serving a pod: the parent of its pause process, checked to be the router.
pub async fn pod_daemon(cri: &CriClient, pod_id: &str) -> Result<i32> {
    let pause = cri.pod_pid(pod_id).await?;
    let shim = ppid(pause)?;
    let bin = exe(shim)?;
    ensure!(
        bin.file_name().and_then(|n| n.to_str()) == Some("containerd-shim-router-v2"),
        "pod {pod_id} pause {pause} has parent {shim} running {}",
        bin.display()
    );
    Ok(shim)
}

/// Resident and private memory of a process in KiB, from smaps_rollup.
pub fn memory_kib(pid: i32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum()
    };
    Ok((
        field("Rss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    ))
}
