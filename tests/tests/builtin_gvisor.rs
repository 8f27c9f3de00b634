//! End to end through CRI with an untrusted tenant on the built-in backend driving gVisor's
//! runsc (`--platform=ptrace --network=host`, the flags this host supports, see docs/gvisor.md):
//! a pod with two containers in one sandbox, each exiting with its own code; exec-sync inside;
//! logs; the gVisor kernel seen from inside; stop and remove leave no process.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use router_integration::{procs, ContainerSpec, Containerd, ContainerdOptions};
use support::builtin::*;
use support::*;

fn sandbox_processes(pod_id: &str) -> Vec<procs::ProcInfo> {
    procs::list()
        .into_iter()
        .filter(|p| {
            p.cmdline.first().is_some_and(|c| c.contains("runsc"))
                && p.cmdline.iter().any(|a| a.contains(pod_id))
        })
        .collect()
}

/// runsc keeps each pod's containers in a root of the pod's own (`<state>/runsc/<ns>/<sandbox
/// id>`): nothing of the pod lies in the namespace's shared root, where another pod's runsc
/// (which lists and locks every container of its root) would re-create its removed lock files.
fn pod_state_is_in_its_own_root(h: &Containerd, pod_id: &str, ids: &[&str]) -> Result<()> {
    let shared = h
        .leak_scope()
        .router_state
        .join("runsc")
        .join(router_integration::K8S_NAMESPACE);
    let names = |dir: &std::path::Path| -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    };
    let own = names(&shared.join(pod_id))?;
    for id in ids {
        ensure!(
            own.iter()
                .any(|n| n.starts_with(&format!("{id}_sandbox:{pod_id}."))),
            "no runsc state of {id} in the pod's own root: {own:?}"
        );
    }
    let mixed: Vec<String> = names(&shared)?
        .into_iter()
        .filter(|n| n != pod_id && ids.iter().any(|id| n.contains(id)))
        .collect();
    ensure!(mixed.is_empty(), "pod state in the shared root: {mixed:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gvisor_pod_two_containers_exit_codes_exec_logs_cleanup() -> Result<()> {
    let h = Containerd::start(ContainerdOptions::with_policy(gvisor_policy())).await?;
    let result = exercise(&h).await;
    let result = result.map_err(|e| anyhow::anyhow!(h.failure_report(&e)));
    h.shutdown().await?;
    result
}

async fn exercise(h: &Containerd) -> Result<()> {
    let cri = h.cri();
    let pod = h.pod("tenant-a", "sandboxed");
    let cfg = pod.build();
    let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox in gVisor")?;
    let daemon = pod_daemon(&cri, &pod_id).await?;

    let c1 = ContainerSpec::new("one")
        .in_pod(&pod)
        .shell("uname -r; dmesg | head -n 1; echo one-ready; sleep 2; exit 3");
    let c2 = ContainerSpec::new("two")
        .in_pod(&pod)
        .shell("echo two-ready; trap 'exit 42' TERM; while true; do sleep 1; done");
    let id1 = cri
        .run_container(&pod_id, &cfg, &c1.build())
        .await
        .context("run one")?;
    let id2 = cri
        .run_container(&pod_id, &cfg, &c2.build())
        .await
        .context("run two")?;
    let logs = cri.wait_log_contains(&id1, "one-ready", LONG).await?;
    let host_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    ensure!(
        !logs.contains(host_release.trim()),
        "container sees the host kernel {host_release:?}: {logs:?}"
    );
    ensure!(
        logs.contains("gVisor"),
        "dmesg does not show gVisor: {logs:?}"
    );
    cri.wait_log_contains(&id2, "two-ready", LONG).await?;
    pod_state_is_in_its_own_root(h, &pod_id, &[&pod_id, &id2])?;

    let out = cri
        .exec_sync(&id2, &["sh", "-c", "echo inside; exit 6"], LONG)
        .await?;
    ensure!(
        out.exit_code == 6 && out.stdout.contains("inside"),
        "exec: {out:?}"
    );

    ensure!(
        cri.wait_container_exit(&id1, LONG).await? == 3,
        "exit code of one"
    );
    // The daemon is still serving the pod's other container.
    ensure!(
        procs::alive(daemon),
        "daemon gone after one container exited"
    );
    cri.stop_container(&id2, 10).await?;
    let code2 = cri.wait_container_exit(&id2, LONG).await?;
    ensure!(code2 == 42, "exit code of two after SIGTERM trap: {code2}");

    cri.remove_container(&id1).await?;
    cri.remove_container(&id2).await?;
    cri.stop_pod(&pod_id).await?;
    cri.remove_pod(&pod_id).await?;
    ensure!(
        wait_gone(daemon, LONG).await,
        "pod daemon {daemon} still running"
    );
    let deadline = std::time::Instant::now() + LONG;
    while !sandbox_processes(&pod_id).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = sandbox_processes(&pod_id);
    ensure!(left.is_empty(), "runsc processes left: {left:?}");
    Ok(())
}

/// kill -9 of the gVisor sandbox process is reported as the exit of every container of the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gvisor_sandbox_killed_is_reported_as_container_exits() -> Result<()> {
    let h = Containerd::start(ContainerdOptions::with_policy(gvisor_policy())).await?;
    let result = async {
        let cri = h.cri();
        let pod = h.pod("tenant-b", "sandbox-killed");
        let cfg = pod.build();
        let pod_id = cri.run_pod(&cfg).await?;
        let daemon = pod_daemon(&cri, &pod_id).await?;
        let mut ids = Vec::new();
        for name in ["a", "b"] {
            let c = ContainerSpec::new(name)
                .in_pod(&pod)
                .shell("echo up; exec sleep 3600");
            let id = cri.run_container(&pod_id, &cfg, &c.build()).await?;
            cri.wait_log_contains(&id, "up", LONG).await?;
            ids.push(id);
        }
        let sandbox = cri.pod_pid(&pod_id).await?;
        let left = procs::kill_all(&[sandbox], LONG);
        ensure!(left.is_empty(), "sandbox {sandbox} survived SIGKILL");
        for id in &ids {
            let code = cri.wait_container_exit(id, LONG).await?;
            ensure!(code == 137, "container {id} exit code {code}, want 137");
        }
        for id in &ids {
            cri.remove_container(id).await?;
        }
        cri.stop_pod(&pod_id).await?;
        cri.remove_pod(&pod_id).await?;
        ensure!(
            wait_gone(daemon, LONG).await,
            "pod daemon {daemon} still running"
        );
        let left = sandbox_processes(&pod_id);
        ensure!(left.is_empty(), "runsc processes left: {left:?}");
        Ok(())
    }
    .await;
    let result = result.map_err(|e| anyhow::anyhow!(h.failure_report(&e)));
    h.shutdown().await?;
    result
}
