//! The DaemonSet image end to end: built offline by router_integration::routerimage from the
//! router binaries of this build, imported into a real containerd, run over CRI as a kube-system
//! pod (routed by the router, like the DaemonSet's pod after install) with a temporary host root
//! mounted at /host; inside it `routerctl install` registers the router in the host root's
//! containerd config and copies the binaries out of the image.

mod support;

use anyhow::{ensure, Context, Result};
use router_integration::{binaries, routerimage, ContainerSpec, Containerd};
use support::cluster::*;
use support::*;

const NODE_CONFIG: &str = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"#;

const IMAGE: &str = "docker.io/local/runtime-router:test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_image_installs_into_a_host_root() -> Result<()> {
    on_cluster_harness(|h| Box::pin(run(h))).await
}

async fn run(h: &Containerd) -> Result<()> {
    let bin_dir = binaries::router_bin_dir().context("router binaries")?;
    let archive = h.dir().join("router-image.tar");
    let image = routerimage::build(&bin_dir, IMAGE).context("build the router image")?;
    std::fs::write(&archive, image).with_context(|| format!("write {}", archive.display()))?;
    h.ctr(router_integration::K8S_NAMESPACE)
        .import(&archive)
        .context("ctr import of the router image")?;
    std::fs::remove_file(&archive).context("remove the image archive")?;
    let cri = h.cri();
    let deadline = std::time::Instant::now() + LONG;
    while !cri.list_images().await?.iter().any(|i| i.contains(IMAGE)) {
        ensure!(
            std::time::Instant::now() < deadline,
            "image not seen by CRI"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let host = h.dir().join("host");
    std::fs::create_dir_all(host.join("etc/containerd"))?;
    std::fs::write(host.join("etc/containerd/config.toml"), NODE_CONFIG)?;
    let pod = h.pod("kube-system", "runtime-router-node");
    let cfg = pod.build();
    let pod_id = cri.run_pod(&cfg).await.context("pod")?;
    let c = ContainerSpec::new("router")
        .in_pod(&pod)
        .image(IMAGE)
        .command(["/bin/sh", "-c"])
        .args(["routerctl install --host-root /host --from /usr/local/bin"])
        .mount(&host, "/host", false);
    let cid = cri
        .run_container(&pod_id, &cfg, &c.build())
        .await
        .context("image container")?;
    let code = cri.wait_container_exit(&cid, LONG).await?;
    let logs = cri.logs(&cid).await.unwrap_or_default();
    ensure!(code == 0, "exit {code}: {logs}");
    ensure!(logs.contains("config version 2"), "{logs}");
    let text = std::fs::read_to_string(host.join("etc/containerd/config.toml"))?;
    ensure!(text.contains("default_runtime_name = \"router\""), "{text}");
    ensure!(
        std::fs::read(host.join("usr/local/bin/routerctl"))?
            == std::fs::read(bin_dir.join("routerctl"))?,
        "routerctl not copied from the image"
    );
    Ok(())
}
