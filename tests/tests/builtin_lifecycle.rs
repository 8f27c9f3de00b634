//! End to end through CRI with the trusted tier on the built-in backend (the router's own shim
//! daemon driving runc): a pod and its containers are served by one router daemon; logs,
//! exec-sync output and exit code, a non-zero exit code, stats, and nothing left after remove.

mod support;

use anyhow::{ensure, Context, Result};
use router_integration::{procs, ContainerSpec};
use support::builtin::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_with_two_containers_on_one_daemon_logs_exec_exit_codes_stats() -> Result<()> {
    let h = start().await?;
    let result = async {
        let cri = h.cri();
        let pod = h.pod("kube-system", "builtin-basic");
        let cfg = pod.build();
        let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox")?;
        let daemon = pod_daemon(&cri, &pod_id).await?;

        let main = ContainerSpec::new("main")
            .in_pod(&pod)
            .shell("echo hello-builtin; echo to-stderr >&2; i=0; while true; do i=$((i+1)); done");
        let cid = cri
            .run_container(&pod_id, &cfg, &main.build())
            .await
            .context("run main")?;
        let logs = cri.wait_log_contains(&cid, "to-stderr", LONG).await?;
        ensure!(logs.contains("hello-builtin"), "logs: {logs:?}");
        let c_pid = cri.container_pid(&cid).await?;
        ensure!(
            ppid(c_pid)? == daemon,
            "container init {c_pid} is not a child of the pod daemon {daemon}"
        );

        let out = cri
            .exec_sync(
                &cid,
                &["sh", "-c", "echo out-line; echo err-line >&2; exit 5"],
                LONG,
            )
            .await?;
        ensure!(out.exit_code == 5, "exec exit code: {out:?}");
        ensure!(out.stdout.contains("out-line"), "exec stdout: {out:?}");
        ensure!(out.stderr.contains("err-line"), "exec stderr: {out:?}");
        let out = cri.exec_sync(&cid, &["cat", "/etc/hostname"], LONG).await?;
        ensure!(
            out.exit_code == 0 && out.stdout.contains("builtin-basic"),
            "{out:?}"
        );

        // The busy loop burns CPU: stats report non-zero CPU and memory.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let stats = cri.container_stats(&cid).await?;
        let cpu = stats
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        let mem = stats
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        ensure!(cpu > 0, "cpu usage is zero: {stats:?}");
        ensure!(mem > 0, "memory working set is zero: {stats:?}");

        // UpdateContainerResources reaches the container's cgroup through `runc update`.
        let limit: i64 = 200 * 1024 * 1024;
        cri.runtime_service()
            .update_container_resources(k8s_cri::v1::UpdateContainerResourcesRequest {
                container_id: cid.clone(),
                linux: Some(k8s_cri::v1::LinuxContainerResources {
                    memory_limit_in_bytes: limit,
                    cpu_shares: 512,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .context("UpdateContainerResources")?;
        if let Some(path) = memory_cgroup_limit_file(c_pid) {
            let text = std::fs::read_to_string(&path)?;
            ensure!(
                text.trim() == limit.to_string(),
                "{} = {text:?} after update",
                path.display()
            );
        }

        // Reported, not asserted (memory targets belong to the benchmarks).
        if let Ok((rss, private)) = memory_kib(daemon) {
            eprintln!("pod daemon {daemon}: Rss {rss} KiB, Private {private} KiB (2 containers)");
        }
        // A second container of the same pod: same daemon, its own exit code.
        let short = ContainerSpec::new("short")
            .in_pod(&pod)
            .shell("echo bye >&2; exit 7");
        let sid = cri.run_container(&pod_id, &cfg, &short.build()).await?;
        ensure!(
            cri.wait_container_exit(&sid, LONG).await? == 7,
            "exit code of short"
        );
        ensure!(
            cri.logs(&sid).await?.contains("bye"),
            "stderr of short in log"
        );
        let daemons: Vec<_> = procs::list()
            .into_iter()
            .filter(|p| {
                p.cmdline.iter().any(|a| a.contains(&pod_id))
                    && p.cmdline
                        .first()
                        .is_some_and(|c| c.contains("containerd-shim-router-v2"))
            })
            .collect();
        ensure!(
            daemons.len() == 1,
            "router daemons for the pod: {daemons:?}"
        );

        cri.stop_container(&cid, 5).await?;
        remove_pod_and(&cri, &pod_id, &[&cid, &sid]).await?;
        daemon_and_process_gone(daemon, c_pid).await?;
        Ok(())
    }
    .await;
    let result = result.map_err(|e| anyhow::anyhow!(h.failure_report(&e)));
    h.shutdown().await?;
    result
}

/// The cgroup v1 `memory.limit_in_bytes` of a process (None on a unified hierarchy).
fn memory_cgroup_limit_file(pid: i32) -> Option<std::path::PathBuf> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cg.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctrl, path) = (p.next()?, p.next()?, p.next()?);
        ctrl.split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    })?;
    let file = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(path.trim_start_matches('/'))
        .join("memory.limit_in_bytes");
    file.exists().then_some(file)
}
