//! The runtime-router demo (run by `scripts/demo.sh`): a private containerd whose only runtime
//! handler is the router, a trusted pod (Kubernetes namespace `telemetry`) and an untrusted pod
//! (namespace `customer-a`), and then where each landed and why: the decision record, the shim
//! serving the pod, what the pod sees as its kernel (`uname -r`, `dmesg`), the audit lines. It also
//! shows three refusals an untrusted tenant meets (asking for the host network, an unsafe sysctl
//! under the tenant's Pod Security Standards baseline, asking for weaker isolation). Everything it starts is removed at the end.
//!
//! The untrusted tier here is the built-in backend driving gVisor (`runsc`, from Debian): Kata is
//! neither packaged by Debian nor fetchable on these machines, so a real VM tier cannot be shown
//! (`routerctl check` says which tiers a host can offer; production config in docs/install.md).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use router_integration::{
    procs, ContainerSpec, Containerd, ContainerdOptions, CriClient, PolicyText, SeccompProfile,
    K8S_NAMESPACE,
};
use serde_json::Value;

/// The demo's node policy: the operator's namespaces on runc, everyone else on gVisor with every
/// deny rule and the Pod Security Standards' baseline.
fn policy() -> String {
    PolicyText::new("untrusted")
        .pod_paths("/var/lib/kubelet/pods")
        .runc()
        .gvisor()
        .tenant(
            "provider",
            &["kube-system", "telemetry", "sdewan-*"],
            "runc",
        )
        .tenant("untrusted", &[], "gvisor")
        .key("pod_security", "baseline")
        .untrusted_deny()
        .into()
}

const WORKLOAD: &str = "sleep 3600";

fn section(title: &str) {
    println!("\n━━━ {title} ━━━");
}

/// Starts a pod with one long-running container; returns the pod id.
async fn run_pod(h: &Containerd, cri: &CriClient, ns: &str, name: &str) -> Result<String> {
    let pod = h.pod(ns, name);
    let sandbox = pod.build();
    let id = cri
        .run_pod(&sandbox)
        .await
        .with_context(|| format!("RunPodSandbox {ns}/{name}"))?;
    // RuntimeDefault seccomp, as kubelet sends it with --seccomp-default (docs/pod-security.md)
    let container = ContainerSpec::new("main")
        .in_pod(&pod)
        .seccomp(SeccompProfile::RuntimeDefault)
        .shell(WORKLOAD)
        .build();
    let cid = cri
        .run_container(&id, &sandbox, &container)
        .await
        .with_context(|| format!("start the container of {ns}/{name}"))?;
    show_pod(h, cri, ns, name, &id, &cid).await?;
    Ok(id)
}

async fn show_pod(
    h: &Containerd,
    cri: &CriClient,
    ns: &str,
    name: &str,
    id: &str,
    cid: &str,
) -> Result<()> {
    section(&format!("pod {ns}/{name}"));
    let record_path = h.bundle_dir(K8S_NAMESPACE, id).join("router-decision.json");
    let record: Value = serde_json::from_slice(
        &std::fs::read(&record_path).with_context(|| format!("read {}", record_path.display()))?,
    )
    .context("parse the decision record")?;
    println!("decision record ({}):", record_path.display());
    for key in ["tenant", "backend", "isolation", "rule"] {
        println!(
            "  {key:<10} {}",
            record.get(key).map(compact).unwrap_or_default()
        );
    }
    if let Some(reasons) = record.get("reasons").and_then(Value::as_array) {
        for r in reasons {
            println!("  why        {}", r.as_str().unwrap_or_default());
        }
    }
    let pause = cri.pod_pid(id).await.context("pod pid")?;
    if let Some(shim) = procs::ppid(pause).and_then(procs::info) {
        println!(
            "served by  pid {} {}",
            shim.pid,
            shim.cmdline.first().map(String::as_str).unwrap_or("?")
        );
    }
    for cmd in ["uname -r", "dmesg 2>&1 | head -n 2"] {
        let out = cri
            .exec_sync(cid, &["/bin/sh", "-c", cmd], Duration::from_secs(60))
            .await
            .with_context(|| format!("exec `{cmd}` in {ns}/{name}"))?;
        let text = &out.stdout;
        println!("$ {cmd}");
        for line in text.lines() {
            println!("    {line}");
        }
    }
    Ok(())
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Shows a refused pod: the error containerd hands to kubelet (what `kubectl describe pod` shows).
async fn refused(h: &Containerd, cri: &CriClient, title: &str, pod: router_integration::PodSpec) {
    section(title);
    match cri.run_pod(&pod.build()).await {
        Ok(id) => {
            println!("UNEXPECTED: pod {id} was started");
            let _ = cri.stop_pod(&id).await;
            let _ = cri.remove_pod(&id).await;
        }
        Err(e) => {
            let msg = e.to_string();
            let reason = msg
                .find("runtime-router refused")
                .map(|i| &msg[i..])
                .unwrap_or(&msg);
            println!("RunPodSandbox failed, as it must:\n  {reason}");
        }
    }
    let _ = h;
}

fn print_audit(path: &Path) -> Result<()> {
    section(&format!("audit log {}", path.display()));
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).context("parse an audit line")?;
        let get = |k: &str| v.get(k).map(compact).unwrap_or_default();
        println!(
            "{} {:<9} {:<8} ns={:<10} pod={:<12} tenant={:<9} backend={:<7} rule={} ({} µs)",
            get("time"),
            get("outcome"),
            get("role"),
            get("k8s_namespace"),
            get("pod_name"),
            get("tenant"),
            get("backend"),
            get("rule"),
            get("decision_us"),
        );
    }
    Ok(())
}

async fn demo(h: &Containerd) -> Result<()> {
    let cri = h.cri();
    println!(
        "host kernel: {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim()
    );
    println!(
        "policy ({}):\n{}",
        h.policy_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        h.expand(&policy())
    );

    run_pod(h, &cri, "telemetry", "collector").await?;
    run_pod(h, &cri, "customer-a", "shop").await?;

    refused(
        h,
        &cri,
        "untrusted pod asking for the host network",
        h.pod("customer-a", "sniffer").host_network(true),
    )
    .await;
    refused(
        h,
        &cri,
        "untrusted pod setting a sysctl outside the Pod Security Standards' safe set",
        h.pod("customer-a", "tuner")
            .sysctl("kernel.msgmax", "65536"),
    )
    .await;
    refused(
        h,
        &cri,
        "untrusted pod asking for weaker isolation with an annotation",
        h.pod("customer-a", "escape")
            .annotation("runtime-router.io/backend", "runc")
            .label("trusted", "true"),
    )
    .await;

    print_audit(&h.dir().join("audit/decisions.jsonl"))?;
    section("cleaning up");
    let pods = cri.list_pods().await.map(|p| p.len()).unwrap_or(0);
    let failures = cri.remove_all_pods().await;
    for f in &failures {
        println!("  cleanup problem: {f}");
    }
    println!("stopped and removed {pods} pods");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let h = Containerd::start(ContainerdOptions::with_policy(policy()))
        .await
        .context("start a private containerd with the router as its runtime")?;
    println!("private containerd: socket {}", h.socket().display());
    let result = demo(&h).await;
    if let Err(e) = &result {
        eprintln!(
            "demo failed: {e:#}\n--- containerd log tail ---\n{}",
            h.log_tail()
        );
    }
    h.shutdown()
        .await
        .context("shut the private containerd down")?;
    println!("containerd stopped; nothing left running");
    result
}
