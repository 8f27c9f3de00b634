//! Shared helpers of the built-in backend suites (`builtin_*.rs`): a private containerd whose
//! router policy puts the trusted tier (`kube-system`, containerd namespaces `default`/`infra`)
//! on the `builtin` backend driving `/usr/sbin/runc`, and checks on which process serves a pod
//! (the parent of its pause process must be a `containerd-shim-router-v2` daemon).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use router_integration::{procs, Containerd, ContainerdOptions, CriClient};

/// Generous timeout for anything the loaded machine must do.
pub const LONG: Duration = Duration::from_secs(120);
/// The OCI runtime the built-in backend drives in these suites.
pub const RUNC: &str = "/usr/sbin/runc";

/// The test policy; `{dir}`, `{root}`, `{state}` are filled from the harness.
const POLICY_TEMPLATE: &str = r#"version = 1
audit_log = "{dir}/audit/decisions.jsonl"
default_tenant = "provider"
allowed_host_paths = ["/var/lib/kubelet/pods/{pod_uid}/", "{root}/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/", "{state}/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/"]

[backends.runc]
kind = "builtin"
runtime = "/usr/sbin/runc"
isolation = "container"

[tenants.provider]
namespaces = ["kube-system"]
containerd_namespaces = ["default", "infra"]
backend = "runc"
"#;

/// The gVisor suites' policy: `kube-system` on built-in runc, every other namespace on the
/// built-in backend driving runsc with the flags this host needs (docs/gvisor.md).
pub const GVISOR_POLICY: &str = r#"version = 1
default_tenant = "untrusted"

[backends.runc]
kind = "builtin"
runtime = "/usr/sbin/runc"
isolation = "container"

[backends.gvisor]
kind = "builtin"
runtime = "/usr/bin/runsc"
runtime_args = ["--platform=ptrace", "--network=host"]
isolation = "sandbox"

[tenants.provider]
namespaces = ["kube-system"]
backend = "runc"

[tenants.untrusted]
backend = "gvisor"
deny = ["host-network", "host-pid", "host-ipc", "privileged", "capabilities", "host-devices"]
"#;

/// A harness whose trusted tier is the built-in backend.
pub async fn start() -> Result<Containerd> {
    // The harness fills `{dir}`, `{root}` and `{state}` when it writes the policy file.
    Containerd::start(ContainerdOptions::with_policy(POLICY_TEMPLATE))
        .await
        .context("start containerd")
}

/// The pid of a process's parent.
pub fn ppid(pid: i32) -> Result<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    after
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .context("no ppid in stat")
}

/// The executable of a process.
pub fn exe(pid: i32) -> Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).with_context(|| format!("exe of {pid}"))
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

/// Wait until `pid` is gone.
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
