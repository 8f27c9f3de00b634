//! The gVisor tier uses the network namespace CNI gave the pod (issue 5): with
//! `--network=host`, runsc runs the sandbox in the pod's netns (from the CRI spec) and serves its
//! sockets from that namespace, so each pod has its CNI address and two gVisor pods talk over the
//! CNI bridge, while no sandbox process is in the host's namespace.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use router_integration::cri::PodSandboxConfig;
use router_integration::{netns, ContainerSpec, Containerd, ContainerdOptions, PodSpec};
use support::builtin::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gvisor_pod_uses_its_cni_network_namespace() -> Result<()> {
    // The harness leases a documentation subnet that overlaps no route of this host.
    let h = Containerd::start(ContainerdOptions::with_policy(gvisor_policy())).await?;
    let result = exercise(&h).await;
    let result = result.map_err(|e| anyhow::anyhow!(h.failure_report(&e)));
    h.shutdown().await?;
    result
}

/// A running gVisor pod: its spec, CRI config, id, IP and sandbox pid.
struct Pod {
    spec: PodSpec,
    cfg: PodSandboxConfig,
    id: String,
    ip: String,
    sandbox: i32,
}

async fn gvisor_pod(h: &Containerd, name: &str) -> Result<Pod> {
    let cri = h.cri();
    let pod = h.pod("tenant-a", name);
    let cfg = pod.build();
    let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox in gVisor")?;
    let ip = cri
        .pod_status(&pod_id)
        .await?
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .filter(|ip| !ip.is_empty())
        .with_context(|| format!("pod {name} has no IP"))?;
    let sandbox = cri.pod_pid(&pod_id).await?;
    Ok(Pod {
        spec: pod,
        cfg,
        id: pod_id,
        ip,
        sandbox,
    })
}

async fn exercise(h: &Containerd) -> Result<()> {
    let cri = h.cri();
    let server_pod = gvisor_pod(h, "server").await?;
    let client_pod = gvisor_pod(h, "client").await?;
    let (server_ip, client_ip) = (server_pod.ip.clone(), client_pod.ip.clone());

    // Each sandbox process lives in its pod's namespace, not the host's.
    let host_ns = netns::net_ns_of(std::process::id() as i32).context("own netns")?;
    let server_ns = netns::net_ns_of(server_pod.sandbox).context("server netns")?;
    let client_ns = netns::net_ns_of(client_pod.sandbox).context("client netns")?;
    ensure!(
        server_ns != host_ns && client_ns != host_ns && server_ns != client_ns,
        "network namespaces: host {host_ns}, server {server_ns}, client {client_ns}"
    );

    let server = ContainerSpec::new("server")
        .in_pod(&server_pod.spec)
        .shell("echo listening; nc -l -p 8080; echo server-done");
    let sid = cri
        .run_container(&server_pod.id, &server_pod.cfg, &server.build())
        .await?;
    let client = ContainerSpec::new("client")
        .in_pod(&client_pod.spec)
        .shell("echo up; sleep 1000");
    let cid = cri
        .run_container(&client_pod.id, &client_pod.cfg, &client.build())
        .await?;
    cri.wait_log_contains(&sid, "listening", LONG).await?;
    cri.wait_log_contains(&cid, "up", LONG).await?;

    // Each container sees its own pod's CNI address.
    for (id, ip) in [(&sid, &server_ip), (&cid, &client_ip)] {
        let out = cri.exec_sync(id, &["ip", "-o", "-4", "addr"], LONG).await?;
        ensure!(
            out.exit_code == 0 && out.stdout.contains(&format!("{ip}/")),
            "pod IP {ip} not inside {id}: {out:?}"
        );
    }

    // Pod to pod over the CNI bridge, both ends in gVisor (retried while the listener starts).
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do \
           echo hello-from-gvisor | nc -w 5 {server_ip} 8080 && exit 0; sleep 1; done; exit 1"
    );
    let out = cri.exec_sync(&cid, &["sh", "-c", &script], LONG).await?;
    ensure!(out.exit_code == 0, "nc to {server_ip}:8080: {out:?}");
    let logs = cri.wait_log_contains(&sid, "server-done", LONG).await?;
    ensure!(logs.contains("hello-from-gvisor"), "server log: {logs:?}");
    ensure!(
        cri.wait_container_exit(&sid, LONG).await? == 0,
        "server exit"
    );

    cri.stop_container(&cid, 2).await?;
    for (pod_id, id) in [(&server_pod.id, &sid), (&client_pod.id, &cid)] {
        cri.remove_container(id).await?;
        cri.stop_pod(pod_id).await?;
        cri.remove_pod(pod_id).await?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
