//! End to end through CRI: a delegate shim's `start` reply in each encoding containerd reads
//! (protobuf `BootstrapResult` as containerd 2.3's shim library prints it, JSON, plain) is
//! classified by the router, and containers of the pod keep coming back to the router's `start`
//! (their specs meet the deny rules); a reply the router cannot classify, or one of a version it
//! does not know, refuses the pod and leaves nothing running. The delegate is the test binary
//! `containerd-shim-replyas-v2` (`tests/bin/replyas.rs`): containerd's own runc shim, its reply
//! re-encoded by the project's own codec. containerd 2.3 itself is not packaged by Debian; this
//! suite replays its reply format on the lines CI has.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use router_integration::PolicyText;
use support::handoff::*;

/// Each test delegate's mode; its tenant is the namespace `reply-<mode>`.
const MODES: [&str; 6] = ["proto", "json", "plain", "garbage", "proto-v9", "json-v9"];

/// The hand-off test policy plus one backend and tenant per reply mode.
fn replies_policy(fx: &Fixture) -> Result<String> {
    let replyas = router_integration::binaries::router_bin_dir()
        .context("no router bin dir")?
        .join("containerd-shim-replyas-v2");
    ensure!(
        replyas.exists(),
        "{} is not built: run `cargo build --workspace --bins`",
        replyas.display()
    );
    let real = router_integration::binaries::runc_shim_path();
    let mut policy = PolicyText::after(policy_for(&fx.h));
    for mode in MODES {
        let name = format!("reply-{mode}");
        let env = [
            ("REPLYAS_REAL", &*real.to_string_lossy()),
            ("REPLYAS_MODE", mode),
        ];
        policy = policy
            .shim(&name, &replyas.to_string_lossy(), &env, "sandbox")
            .tenant(&name, &[&name], &name)
            .list("deny", &["host-path", "privileged"]);
    }
    Ok(policy.into())
}

async fn fixture() -> Result<Fixture> {
    let fx = start_fixture().await?;
    fx.h.set_policy(&replies_policy(&fx)?)?;
    Ok(fx)
}

/// The pod runs, its first container passed the router's own `start` (an allowed container audit
/// line), a host-path container of it is refused by the deny rule, and on 2.x (the runc shim
/// answers version 3) the pod is served through the relay.
async fn pod_runs_with_containers_checked(fx: &Fixture, mode: &str, two_x: bool) -> Result<()> {
    let cri = fx.cri().await?;
    let pod = fx.h.pod(&format!("reply-{mode}"), "web");
    let (pod_id, cfg, first) = pod_with_container(fx, &cri, &pod).await?;
    let rec = fx.record(&pod_id)?;
    ensure!(rec["backend"] == format!("reply-{mode}"), "{rec}");
    let container_lines: Vec<_> = fx
        .audit_for_uid(&pod.uid)?
        .into_iter()
        .filter(|l| l["id"] == first.as_str() && l["role"] == "container")
        .collect();
    ensure!(
        container_lines.iter().any(|l| l["outcome"] == "allowed"),
        "{mode}: the container never passed the router's start: {container_lines:?}"
    );
    let relayed = fx.record(&pod_id)?["relay_to"].is_string();
    ensure!(
        relayed == two_x,
        "{mode}: relay in front of the delegate: {relayed}, want {two_x}"
    );
    host_etc_is_refused(&cri, &pod_id, &cfg, &pod).await?;
    let out = cri
        .exec_sync(&first, &["echo", "alive"], Duration::from_secs(60))
        .await?;
    ensure!(out.stdout.trim() == "alive", "{mode}: exec: {out:?}");
    remove_pod(fx, &cri, &pod_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encoding_of_a_known_reply_keeps_containers_checked() -> Result<()> {
    let fx = fixture().await?;
    let r = async {
        let (_, version) = fx.cri().await?.version().await?;
        let two_x = version.trim_start_matches('v').starts_with("2.");
        for mode in ["proto", "json", "plain"] {
            // containerd 2.x's runc shim answers version 3, which a plain address cannot say
            if mode == "plain" && two_x {
                continue;
            }
            pod_runs_with_containers_checked(&fx, mode, two_x)
                .await
                .with_context(|| format!("delegate replying `{mode}` on containerd {version}"))?;
        }
        Ok(())
    }
    .await;
    let r = with_log(&fx, r);
    fx.h.shutdown().await?;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclassifiable_replies_refuse_the_pod_and_leave_nothing() -> Result<()> {
    let fx = fixture().await?;
    let r = async {
        let cri = fx.cri().await?;
        for (mode, needle) in [
            ("garbage", r"not a bootstrap reply\xff"),
            ("proto-v9", "version 9 (protobuf BootstrapResult)"),
            ("json-v9", "version 9 (JSON)"),
        ] {
            let pod = fx.h.pod(&format!("reply-{mode}"), "web");
            refusal_text(
                cri.run_pod(&pod.build()).await,
                &["runtime-router refused", &format!("reply-{mode}"), needle],
            )
            .with_context(|| format!("delegate replying `{mode}`"))?;
            let id = fx.assert_refused_and_gone(&pod.uid, needle)?;
            let scope = fx.h.leak_scope();
            let ids = BTreeSet::from([id.clone()]);
            let left = tokio::task::spawn_blocking(move || {
                router_integration::leaks::wait_clean_of(&scope, &ids, Duration::from_secs(20))
            })
            .await?;
            ensure!(left.is_empty(), "`{mode}`: refused pod {id} left {left:#?}");
        }
        ensure!(
            cri.list_pods().await?.is_empty(),
            "pods listed after refusals"
        );
        Ok(())
    }
    .await;
    let r = with_log(&fx, r);
    fx.h.shutdown().await?;
    r
}
