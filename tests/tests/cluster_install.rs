//! The node installer against a running private containerd 1.6 (config version 2): a node whose
//! containerd serves pods with plain runc; `routerctl install --host-root` (the host root's
//! `etc/containerd` is the harness's config dir) registers the router, containerd restarts,
//! the pod started before the restart still runs, a new pod is routed; `routerctl uninstall`
//! restores the original config byte for byte and containerd comes back on runc. The policy
//! names a tier handler (`router-sandbox`) beside `router`: install registers it (a runtime
//! `io.containerd.router-sandbox.v2` and a link `containerd-shim-router-sandbox-v2`), containerd
//! loads it, and uninstall removes both; on 1.6 (config version 2) and on 2.x (version 3).
//! (The config version 3 edit is tested in ctl/tests/routerctl_cluster.rs.)

mod support;

use std::process::Command;

use anyhow::{ensure, Context, Result};
use router_integration::{
    ContainerSpec, Containerd, ContainerdOptions, PolicyText, RuntimeHandler,
};
use support::cluster::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_on_containerd_1_6_then_uninstall_restores_byte_for_byte() -> Result<()> {
    let mut opts = ContainerdOptions::with_policy(policy_with_handlers())
        .default_runtime("runc")
        .handler(RuntimeHandler::runc("runc"));
    opts.router_handler = false;
    let mut h = Containerd::start(opts).await.context("start containerd")?;
    let r = run(&mut h, "config version 2").await;
    r.map_err(|e| anyhow::anyhow!(h.failure_report(&e)))?;
    h.shutdown().await?;
    Ok(())
}

/// The cluster suites' policy with a tier handler beside `router`.
fn policy_with_handlers() -> String {
    PolicyText::after(builtin_policy())
        .gvisor()
        .handler("router", "container", None)
        .handler("router-sandbox", "sandbox", None)
        .to_string()
}

fn routerctl_ok(args: &[&std::ffi::OsStr]) -> Result<String> {
    let out = Command::new(routerctl()?).args(args).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "routerctl {args:?}: {text}");
    Ok(text)
}

async fn run(h: &mut Containerd, config_version: &str) -> Result<()> {
    // the node before: containerd's own config, pods on runc
    let cfg = h.dir().join("config.toml");
    let original = std::fs::read(&cfg)?;
    let cri = h.cri();
    let before = h.pod("web", "before-install");
    let before_cfg = before.build();
    let before_id = cri.run_pod(&before_cfg).await.context("pod before")?;
    let c = ContainerSpec::new("main")
        .in_pod(&before)
        .shell("sleep 600");
    let before_c = cri
        .run_container(&before_id, &before_cfg, &c.build())
        .await
        .context("container before")?;
    ensure!(
        std::fs::metadata(
            h.bundle_dir(router_integration::K8S_NAMESPACE, &before_id)
                .join("router-decision.json")
        )
        .is_err(),
        "the pod before install must not be routed"
    );

    // a host root whose etc/containerd is the harness's config dir; small stand-in binaries
    let host = h.dir().join("host");
    std::fs::create_dir_all(host.join("etc"))?;
    std::os::unix::fs::symlink(h.dir(), host.join("etc/containerd"))?;
    let image_bin = h.dir().join("image-bin");
    std::fs::create_dir_all(&image_bin)?;
    for b in ["containerd-shim-router-v2", "routerctl"] {
        std::fs::copy("/bin/true", image_bin.join(b))?;
    }
    let policy = h.policy_path().context("policy")?.to_owned();
    let out = routerctl_ok(&[
        "install".as_ref(),
        "--host-root".as_ref(),
        host.as_os_str(),
        "--from".as_ref(),
        image_bin.as_os_str(),
        "--config".as_ref(),
        policy.as_os_str(),
    ])?;
    ensure!(out.contains(config_version), "{out}");
    ensure!(out.contains("removed runtime handler `runc`"), "{out}");
    ensure!(
        out.contains("registered tier handler `router-sandbox`"),
        "{out}"
    );
    let link = host.join("usr/local/bin/containerd-shim-router-sandbox-v2");
    ensure!(
        std::fs::read_link(&link)? == std::path::Path::new("containerd-shim-router-v2"),
        "{}",
        link.display()
    );
    let text = std::fs::read_to_string(&cfg)?;
    ensure!(
        text.contains("runtime_type = \"io.containerd.router-sandbox.v2\""),
        "{text}"
    );
    let check = routerctl_ok(&[
        "check".as_ref(),
        policy.as_os_str(),
        "--containerd-config".as_ref(),
        cfg.as_os_str(),
    ])?;
    ensure!(
        check.contains("every pod goes through the router"),
        "{check}"
    );

    // containerd restarts on the edited config; the earlier pod survives
    h.restart().await.context("restart after install")?;
    let cri = h.cri();
    ensure!(
        cri.pod_status(&before_id).await?.state == 0,
        "old pod not ready"
    );
    let out = cri
        .exec_sync(&before_c, &["echo", "still-here"], LONG)
        .await?;
    ensure!(out.stdout.contains("still-here"), "{out:?}");
    let routed = h.pod("web", "after-install");
    let routed_id = cri.run_pod(&routed.build()).await.context("pod after")?;
    let rec = record(h, &routed_id)?;
    ensure!(
        rec["tenant"] == "team-a" && rec["backend"] == "runc",
        "new pod not routed: {rec}"
    );

    // uninstall: the original config byte for byte, containerd back on runc
    routerctl_ok(&[
        "uninstall".as_ref(),
        "--host-root".as_ref(),
        host.as_os_str(),
    ])?;
    ensure!(
        std::fs::read(&cfg)? == original,
        "config not restored byte for byte"
    );
    ensure!(!host.join("usr/local/bin/routerctl").exists());
    ensure!(link.symlink_metadata().is_err(), "{} left", link.display());
    h.restart().await.context("restart after uninstall")?;
    let cri = h.cri();
    ensure!(
        cri.pod_status(&before_id).await?.state == 0,
        "old pod not ready"
    );
    let plain = h.pod("web", "after-uninstall");
    let plain_id = cri
        .run_pod(&plain.build())
        .await
        .context("pod after uninstall")?;
    ensure!(
        std::fs::metadata(
            h.bundle_dir(router_integration::K8S_NAMESPACE, &plain_id)
                .join("router-decision.json")
        )
        .is_err(),
        "after uninstall pods are no longer routed"
    );
    Ok(())
}

/// The same on containerd 2.x with its own config format: the harness's config is migrated to
/// version 3 by that containerd (`containerd config migrate`) and containerd restarted on it,
/// then installed into and restored byte for byte. Needs a containerd 2.x
/// (`ROUTER_E2E_CONTAINERD_DIR`, as scripts/test.sh's 2.x leg sets); with an older one it says so
/// and checks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_on_containerd_2_x_config_version_3_then_uninstall_restores_byte_for_byte(
) -> Result<()> {
    let containerd = router_integration::binaries::containerd_path();
    let version = Command::new(&containerd).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    if !version
        .split_whitespace()
        .nth(2)
        .is_some_and(|v| v.starts_with("2."))
    {
        eprintln!(
            "not checked: {} is not containerd 2.x ({version})",
            containerd.display()
        );
        return Ok(());
    }
    let mut opts = ContainerdOptions::with_policy(policy_with_handlers())
        .default_runtime("runc")
        .handler(RuntimeHandler::runc("runc"));
    opts.router_handler = false;
    let mut h = Containerd::start(opts).await.context("start containerd")?;
    let r = async {
        let cfg = h.dir().join("config.toml");
        let out = Command::new(&containerd)
            .arg("--config")
            .arg(&cfg)
            .args(["config", "migrate"])
            .output()?;
        ensure!(
            out.status.success(),
            "config migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v3 = String::from_utf8(out.stdout)?;
        ensure!(v3.contains("version = 3"), "migrated config: {v3}");
        std::fs::write(&cfg, v3)?;
        h.restart()
            .await
            .context("restart on the version 3 config")?;
        run(&mut h, "config version 3").await
    }
    .await;
    r.map_err(|e| anyhow::anyhow!(h.failure_report(&e)))?;
    h.shutdown().await?;
    Ok(())
}
