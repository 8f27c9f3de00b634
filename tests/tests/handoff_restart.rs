//! End to end through CRI: containerd crashes and restarts under routed pods. A pod whose shim
//! survived is reconnected (the handed-off shim's own `address` file); a pod whose shim died
//! meanwhile is cleaned up through the router's `delete`, which runs the recorded backend's
//! cleanup, and can then be stopped and removed leaving nothing behind. Own containerd (it is
//! crashed on purpose).

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use router_integration::{procs, ContainerSpec};
use support::handoff::*;

fn socket_of(fx: &Fixture, id: &str) -> Result<PathBuf> {
    let address = shim_address(fx, id)?;
    address
        .trim()
        .strip_prefix("unix://")
        .map(PathBuf::from)
        .with_context(|| format!("address {address:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_restart_reconnects_live_shims_and_cleans_dead_ones_standin() -> Result<()> {
    let mut fx = start_fixture().await?;
    let r = scenario(&mut fx).await;
    let r = with_log(&fx, r);
    fx.h.shutdown().await.context("harness shutdown")?;
    r
}

async fn scenario(fx: &mut Fixture) -> Result<()> {
    let cri = fx.cri().await?;
    let mut pods = Vec::new();
    for (ns, name) in [("kube-system", "survivor"), ("shop-restart", "casualty")] {
        let pod = fx.h.pod(ns, name);
        let cfg = pod.build();
        let id = cri.run_pod(&cfg).await.context("RunPodSandbox")?;
        let c = ContainerSpec::new("main")
            .in_pod(&pod)
            .shell("echo up; exec sleep 3600");
        let cid = cri.run_container(&id, &cfg, &c.build()).await?;
        cri.wait_log_contains(&cid, "up", Duration::from_secs(60))
            .await?;
        pods.push((id, cid));
    }
    let (live_pod, live_c) = pods[0].clone();
    let (dead_pod, dead_c) = pods[1].clone();
    let (live_shim, bin) = pod_shim(&cri, &live_pod).await?;
    ensure!(
        is_same_file(&bin, &trusted_shim_binary()),
        "survivor on {}",
        bin.display()
    );
    let (dead_shim, bin) = pod_shim(&cri, &dead_pod).await?;
    ensure!(
        is_same_file(&bin, &fx.standin()),
        "casualty on {}",
        bin.display()
    );
    let dead_pids = [
        cri.pod_pid(&dead_pod).await?,
        cri.container_pid(&dead_c).await?,
    ];
    let dead_socket = socket_of(fx, &dead_pod)?;
    drop(cri);

    // containerd dies; one pod's shim dies while it is down
    fx.h.crash();
    std::process::Command::new("kill")
        .args(["-9", &dead_shim.to_string()])
        .status()
        .context("kill -9")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while procs::alive(dead_shim) {
        ensure!(
            Instant::now() < deadline,
            "shim {dead_shim} survived kill -9"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fx.h.restart().await.context("restart containerd")?;
    let cri = fx.cri().await?;

    // the survivor is reconnected and still serves exec
    ensure!(procs::alive(live_shim), "survivor's shim {live_shim} died");
    let out = cri
        .exec_sync(&live_c, &["echo", "still-here"], Duration::from_secs(60))
        .await?;
    ensure!(
        out.stdout.trim() == "still-here",
        "exec after restart: {out:?}"
    );

    // the casualty was cleaned through the router's delete; kubelet stops and removes it
    remove_pod(fx, &cri, &dead_pod).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let alive: Vec<i32> = dead_pids.into_iter().filter(|p| procs::alive(*p)).collect();
        if alive.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "processes of the dead pod survived: {alive:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_task_gone(&fx.h, &dead_pod)?;
    assert_task_gone(&fx.h, &dead_c)?;
    ensure!(
        !dead_socket.exists(),
        "dead shim socket {} left behind",
        dead_socket.display()
    );
    remove_pod(fx, &cri, &live_pod).await?;
    assert_task_gone(&fx.h, &live_pod)?;
    Ok(())
}
