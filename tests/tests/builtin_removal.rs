//! Pod removal as kubelet and the CRI validation suite do it, on the built-in backend: stop,
//! stop again, remove; and RemovePodSandbox of a running pod racing a StopPodSandbox (critest's
//! "should support removing PodSandbox" under load). Every call must succeed. Two daemon faults
//! made the race fail on containerd 2.1.9: the daemon exited the moment Shutdown found it empty,
//! so a racing Kill got `ttrpc: closed` ("failed to kill pod sandbox container: ttrpc: closed",
//! as critest saw it); and a Kill that lost the race with the init's exit reported runc's
//! "process already finished" as an error instead of "not found".

mod support;

use anyhow::{Context, Result};
use router_integration::ContainerSpec;
use support::builtin::*;

const PODS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_stops_and_removes_of_a_pod_all_succeed() -> Result<()> {
    let h = start().await?;
    let result = async {
        let cri = h.cri();
        for i in 0..PODS {
            // a pod with a container: stop, stop again (kubelet retries), remove
            // (host network: two CNI DELs of one pod at once fail in the bridge plugin, a race
            // of containerd's and CNI's that kubelet never provokes and that is not the shim's)
            let pod = h
                .pod("kube-system", &format!("stop-race-{i}"))
                .host_network(true);
            let cfg = pod.build();
            let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox")?;
            let c = ContainerSpec::new("main")
                .in_pod(&pod)
                .shell("exec sleep 3600");
            cri.run_container(&pod_id, &cfg, &c.build())
                .await
                .context("run container")?;
            cri.stop_pod(&pod_id)
                .await
                .with_context(|| format!("pod {i}: StopPodSandbox"))?;
            cri.stop_pod(&pod_id)
                .await
                .with_context(|| format!("pod {i}: StopPodSandbox of a stopped pod"))?;
            cri.remove_pod(&pod_id)
                .await
                .with_context(|| format!("pod {i}: RemovePodSandbox"))?;

            // a pod alone (what critest's "should support removing PodSandbox" runs): remove
            // while a stop is under way
            let pod = h
                .pod("kube-system", &format!("remove-race-{i}"))
                .host_network(true);
            let pod_id = cri.run_pod(&pod.build()).await.context("RunPodSandbox")?;
            let (a, b) = tokio::join!(cri.stop_pod(&pod_id), cri.remove_pod(&pod_id));
            a.with_context(|| format!("pod {i}: StopPodSandbox racing a remove"))?;
            b.with_context(|| format!("pod {i}: RemovePodSandbox racing a stop"))?;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let result = result.map_err(|e| anyhow::anyhow!(h.failure_report(&e)));
    h.shutdown().await?;
    result
}
