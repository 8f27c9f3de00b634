//! containerd restarted while pods run on the built-in backend: the pod daemons and containers
//! keep running, containerd reconnects through the bundles' `address` files, and the pods are
//! then stopped and removed cleanly with no process left. Also a containerd crash (SIGKILL).

mod support;

use anyhow::{ensure, Result};
use router_integration::{leaks, procs, ContainerSpec, Containerd, K8S_NAMESPACE};
use support::builtin::*;
use support::*;

async fn restart_case(crash: bool) -> Result<()> {
    let mut h = start().await?;
    let result = exercise(&mut h, crash).await;
    let result = result.map_err(|e| anyhow::anyhow!(h.failure_report(&e)));
    h.shutdown().await?;
    result
}

async fn exercise(h: &mut Containerd, crash: bool) -> Result<()> {
    let cri = h.cri();
    let pod = h.pod(
        "kube-system",
        if crash {
            "builtin-crash"
        } else {
            "builtin-restart"
        },
    );
    let cfg = pod.build();
    let pod_id = cri.run_pod(&cfg).await?;
    let daemon = pod_daemon(&cri, &pod_id).await?;
    let c = ContainerSpec::new("steady")
        .in_pod(&pod)
        .shell("echo before; while true; do sleep 1; echo tick; done");
    let cid = cri.run_container(&pod_id, &cfg, &c.build()).await?;
    cri.wait_log_contains(&cid, "before", LONG).await?;
    let c_pid = cri.container_pid(&cid).await?;

    if crash {
        h.crash();
        h.restart().await?;
    } else {
        h.restart().await?;
    }
    let cri = h.cri();
    ensure!(
        procs::alive(daemon),
        "pod daemon {daemon} died with containerd"
    );
    ensure!(
        procs::alive(c_pid),
        "container {c_pid} died with containerd"
    );
    let st = cri.container_status(&cid).await?;
    ensure!(st.state == 1, "container state after restart: {st:?}"); // CONTAINER_RUNNING
    ensure!(
        pod_daemon(&cri, &pod_id).await? == daemon,
        "pod served by another daemon"
    );
    let out = cri
        .exec_sync(&cid, &["echo", "after-restart"], LONG)
        .await?;
    ensure!(out.stdout.contains("after-restart"), "{out:?}");
    // A new container in the running pod joins the same daemon.
    let c2 = ContainerSpec::new("late")
        .in_pod(&pod)
        .shell("echo late-joiner; exit 2");
    let c2id = cri.run_container(&pod_id, &cfg, &c2.build()).await?;
    ensure!(
        cri.wait_container_exit(&c2id, LONG).await? == 2,
        "late container exit code"
    );
    ensure!(
        ppid(cri.pod_pid(&pod_id).await?)? == daemon,
        "pause reparented"
    );

    cri.stop_container(&cid, 2).await?;
    let code = cri.wait_container_exit(&cid, LONG).await?;
    ensure!(
        code == 137 || code == 143,
        "stopped container exit code {code}"
    );
    remove_pod_and(&cri, &pod_id, &[&cid, &c2id]).await?;
    daemon_and_process_gone(daemon, c_pid).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_restart_keeps_pods_then_they_stop_and_remove_cleanly() -> Result<()> {
    restart_case(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_crash_keeps_pods_then_they_stop_and_remove_cleanly() -> Result<()> {
    restart_case(true).await
}

/// The pod daemon is killed: containerd runs the router's `delete` for each of the pod's tasks,
/// which force-deletes the containers through runc; CRI sees them exited, and the pod is then
/// removed with nothing left once containerd's own dead-shim cleanup has run (the harness's
/// leak check then finds nothing of the pod).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_daemon_is_cleaned_up_by_delete() -> Result<()> {
    let h = start().await?;
    let result = async {
        let cri = h.cri();
        let pod = h.pod("kube-system", "builtin-killed");
        let cfg = pod.build();
        let pod_id = cri.run_pod(&cfg).await?;
        let daemon = pod_daemon(&cri, &pod_id).await?;
        let c = ContainerSpec::new("victim")
            .in_pod(&pod)
            .shell("echo up; exec sleep 3600");
        let cid = cri.run_container(&pod_id, &cfg, &c.build()).await?;
        cri.wait_log_contains(&cid, "up", LONG).await?;
        let c_pid = cri.container_pid(&cid).await?;
        let pause = cri.pod_pid(&pod_id).await?;
        let killed = procs::kill_all(&[daemon], LONG);
        ensure!(killed.is_empty(), "daemon {daemon} survived SIGKILL");
        let code = cri.wait_container_exit(&cid, LONG).await?;
        // containerd 1.6's CRI reports 255 when its Wait on the dead shim fails (as with the Go
        // shim); the exit event from the cleanup says 137.
        ensure!(
            code == 137 || code == 255,
            "container exit code after its shim died: {code}"
        );
        ensure!(
            wait_gone(c_pid, LONG).await,
            "container {c_pid} still running"
        );
        ensure!(wait_gone(pause, LONG).await, "pause {pause} still running");
        cri.remove_container(&cid).await?;
        cri.stop_pod(&pod_id).await?;
        cri.remove_pod(&pod_id).await?;
        // containerd (1.6) cleans up after a dead shim in the background: it runs the router's
        // `delete` for each task and removes the bundle when that returned, while CRI already
        // treats the tasks as gone (RemovePodSandbox does not wait for it). Its end is the
        // bundles' removal; the runtime state must be gone by then.
        leaks::dead_shim_cleaned_up(&h, K8S_NAMESPACE, &[cid.as_str(), pod_id.as_str()], LONG)
            .await?;
        let root = std::path::Path::new("/run/runtime-router/runc/k8s.io");
        for id in [&cid, &pod_id] {
            ensure!(
                !root.join(id).exists(),
                "runc state of {id} left in {}",
                root.display()
            );
        }
        Ok(())
    }
    .await;
    let result = result.map_err(|e| anyhow::anyhow!(h.failure_report(&e)));
    h.shutdown().await?;
    result
}
