//! Per-tier runtime handlers end to end through CRI (issue 22). The harness registers the router
//! twice: `router` (the default handler, `io.containerd.router.v2`) and `router-vm`
//! (`io.containerd.router-vm.v2`, run through a link `containerd-shim-router-vm-v2` to the same
//! binary). The policy says `router` reserves container and `router-vm` reserves vm, served by
//! `kata` (the Kata stand-in). On the hand-off trusted tier (`provider`: containerd's runc shim,
//! or the built-in backend with `ROUTER_E2E_TRUSTED_TIER=builtin`) and on the built-in one
//! (`hb-builtin`: the router driving runc):
//! - an untrusted pod through `router` is refused, and the error names the RuntimeClass to use;
//! - the same pod through `router-vm` runs on the VM tier;
//! - a trusted pod through `router-vm` is raised to the VM tier;
//! - a trusted pod through the default handler runs on runc;
//! - every pod's container follows it (backend, handler), relayed pods on containerd 2.x
//!   included; records and audit lines carry the handler.

mod support;

use anyhow::{ensure, Context, Result};
use router_integration::policy::RUNC;
use router_integration::{CriClient, PolicyText};
use support::handoff::*;

fn handlers_policy(fx: &Fixture) -> String {
    PolicyText::after(policy_for(&fx.h))
        .builtin("builtin-runc", RUNC, &[], "container")
        .tenant("hb-builtin", &["hb-builtin"], "builtin-runc")
        .handler("router", "container", None)
        .handler("router-vm", "vm", Some("kata"))
        .into()
}

/// Runs `pod` through `handler` with one container; checks both records name `backend`,
/// `isolation` and the handler, and the pod's shim is `shim`. Removes the pod.
async fn runs_on(
    fx: &Fixture,
    cri: &CriClient,
    (ns, name): (&str, &str),
    handler: &str,
    backend: &str,
    isolation: &str,
    shim: &std::path::Path,
) -> Result<()> {
    let pod = fx.h.pod(ns, name);
    let cfg = pod.build();
    let pod_id = cri
        .run_pod_with_handler(&cfg, handler)
        .await
        .with_context(|| format!("{ns}/{name} through {handler:?}"))?;
    let c = router_integration::ContainerSpec::new("main")
        .in_pod(&pod)
        .shell("echo started; exec sleep 3600");
    let cid = cri
        .run_container(&pod_id, &cfg, &c.build())
        .await
        .with_context(|| format!("container of {ns}/{name}"))?;
    cri.wait_log_contains(&cid, "started", std::time::Duration::from_secs(60))
        .await?;
    let want_handler = if handler.is_empty() {
        "router"
    } else {
        handler
    };
    // containerd 2.x talks to a hand-off pod through the router's relay (its shim answered
    // bootstrap version 3): the container's record names the same relay as its pod's
    let (_, version) = cri.version().await?;
    let two = version.trim_start_matches('v').starts_with("2.");
    let mut relays = Vec::new();
    for (id, role) in [(&pod_id, "sandbox"), (&cid, "container")] {
        let rec = fx.record(id)?;
        ensure!(
            rec["backend"] == backend
                && rec["isolation"] == isolation
                && rec["handler"] == want_handler,
            "{ns}/{name} {role} record: {rec}"
        );
        let relayed = rec["relay_to"].is_string();
        ensure!(
            relayed == (two && rec["target"]["kind"] == "shim"),
            "containerd {version}, {ns}/{name} {role}: relay {relayed}: {rec}"
        );
        relays.push(rec["relay_to"].clone());
    }
    ensure!(
        relays[0] == relays[1],
        "{ns}/{name}: container relay {relays:?}"
    );
    let (_, exe) = pod_shim(cri, &pod_id).await?;
    ensure!(
        is_same_file(&exe, shim),
        "{ns}/{name} is served by {}, not {}",
        exe.display(),
        shim.display()
    );
    let lines = fx.audit_for_uid(&pod.uid)?;
    ensure!(
        lines.len() == 2
            && lines
                .iter()
                .all(|l| l["outcome"] == "allowed" && l["handler"] == want_handler),
        "{ns}/{name} audit: {lines:?}"
    );
    remove_pod(fx, cri, &pod_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_handler_reserves_a_tier_and_the_node_holds_pods_to_it() -> Result<()> {
    with_fresh(
        ContainerdOptions::default().tier_handler("router-vm"),
        |fx| async move {
            fx.h.set_policy(&handlers_policy(&fx))?;
            let cri = fx.cri().await?;
            let standin = fx.standin();
            let router = router_integration::binaries::router_shim_path().context("router")?;

            // untrusted through the container-tier handler: refused, naming the class
            let pod = fx.h.pod("tenant-x", "shop");
            refusal_text(
                cri.run_pod(&pod.build()).await,
                &[
                    "runtime-router refused",
                    "tenant `untrusted`",
                    "vm tier",
                    "runtime handler `router` reserves only container",
                    "use RuntimeClass `router-vm`",
                    "rule handler",
                ],
            )?;
            fx.assert_refused_and_gone(&pod.uid, "use RuntimeClass `router-vm`")?;
            // the same pod through the VM handler: the VM tier
            runs_on(
                &fx,
                &cri,
                ("tenant-x", "shop"),
                "router-vm",
                "kata",
                "vm",
                &standin,
            )
            .await
            .context("untrusted through router-vm")?;

            // trusted, hand-off trusted tier: raised by the VM handler; runc by default
            runs_on(
                &fx,
                &cri,
                ("telemetry", "raised"),
                "router-vm",
                "kata",
                "vm",
                &standin,
            )
            .await
            .context("provider through router-vm")?;
            runs_on(
                &fx,
                &cri,
                ("telemetry", "plain"),
                "",
                "runc",
                "container",
                &trusted_shim_binary(),
            )
            .await
            .context("provider through the default handler")?;

            // trusted, built-in trusted tier: the same
            runs_on(
                &fx,
                &cri,
                ("hb-builtin", "raised"),
                "router-vm",
                "kata",
                "vm",
                &standin,
            )
            .await
            .context("hb-builtin through router-vm")?;
            runs_on(
                &fx,
                &cri,
                ("hb-builtin", "plain"),
                "router",
                "builtin-runc",
                "container",
                &router,
            )
            .await
            .context("hb-builtin through router")?;
            Ok(())
        },
    )
    .await
}
