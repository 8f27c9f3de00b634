//! End to end through CRI: a policy file that exists but is broken refuses every pod, trusted or
//! not, with an error naming the file, line and field, and leaves nothing running; fixing the
//! file applies to the next pod without restarting anything (the router reads it at every
//! `start`). These tests rewrite the policy, so they have a containerd of their own each.

mod support;

use anyhow::{ensure, Context, Result};
use support::handoff::*;

/// Runs one pod per tier and expects both refused with `needles`; then checks nothing is left.
async fn expect_every_pod_refused(fx: &Fixture, needles: &[&str]) -> Result<()> {
    let cri = fx.cri().await?;
    for ns in ["kube-system", "shop-broken"] {
        let pod = fx.h.pod(ns, "refused");
        refusal_text(cri.run_pod(&pod.build()).await, needles)
            .with_context(|| format!("pod in {ns}"))?;
    }
    ensure!(fx.h.shims().is_empty(), "shims running: {:?}", fx.h.shims());
    ensure!(
        cri.list_pods().await?.is_empty(),
        "pods listed after refusals"
    );
    Ok(())
}

/// After fixing the policy a pod runs on the runc tier, without restarting containerd.
async fn fixed_policy_applies_to_next_pod(fx: &Fixture) -> Result<()> {
    fx.h.set_policy(&policy_for(&fx.h))?;
    let cri = fx.cri().await?;
    let pod = fx.h.pod("kube-system", "after-fix");
    let id = cri
        .run_pod(&pod.build())
        .await
        .context("RunPodSandbox after the fix")?;
    let (_, bin) = pod_shim(&cri, &id).await?;
    ensure!(
        is_same_file(&bin, &trusted_shim_binary()),
        "after the fix the pod runs on {}",
        bin.display()
    );
    remove_pod(fx, &cri, &id).await?;
    Ok(())
}

/// Makes `broken` the live policy; returns `PATH:LINE:`, what each refusal must name.
fn set_broken_policy(fx: &Fixture, broken: &str, line: usize) -> Result<String> {
    fx.h.set_policy(broken)?;
    let path = fx.h.policy_path().context("policy path")?;
    Ok(format!("{}:{line}:", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policy_refuses_every_pod_with_file_line_and_field() -> Result<()> {
    with_fresh(ContainerdOptions::default(), |fx| async move {
        // the provider's backend line names a backend that does not exist
        let good = policy_for(&fx.h);
        let broken = good.replacen(
            "backend = \"runc\"\ncontainerd_namespaces = [\"infra\"]",
            "backend = \"runc2\"\ncontainerd_namespaces = [\"infra\"]",
            1,
        );
        ensure!(broken != good, "test policy changed shape: fix this test");
        let line = broken
            .lines()
            .position(|l| l.contains("\"runc2\""))
            .context("broken line")?
            + 1;
        let at = set_broken_policy(&fx, &broken, line)?;
        expect_every_pod_refused(
            &fx,
            &[
                "runtime-router refused",
                &at,
                "tenants.provider.backend",
                "runc2",
            ],
        )
        .await?;

        // the refusals were audited where the broken file's audit_log says
        let refused: Vec<_> = fx
            .audit()?
            .into_iter()
            .filter(|v| v["outcome"] == "refused" && v["rule"] == "policy")
            .collect();
        ensure!(refused.len() == 2, "policy refusals audited: {refused:?}");
        ensure!(
            refused
                .iter()
                .all(|v| v["message"].as_str().unwrap_or("").contains(&at)),
            "audit lines lack {at}: {refused:?}"
        );
        fixed_policy_applies_to_next_pod(&fx).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_policy_refuses_every_pod_with_file_and_line() -> Result<()> {
    with_fresh(ContainerdOptions::default(), |fx| async move {
        let good = policy_for(&fx.h);
        // a TOML syntax error on the line after audit_log (kept first so the refusal is audited
        // in the test's directory, not the host's default audit path)
        let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
        let audit_at = lines
            .iter()
            .position(|l| l.starts_with("audit_log"))
            .context("audit_log line")?;
        lines.insert(audit_at + 1, "default_tenant = = \"oops\"".into());
        let broken = lines.join("\n");
        let line = audit_at + 2;
        let at = set_broken_policy(&fx, &broken, line)?;
        expect_every_pod_refused(&fx, &["runtime-router refused", &at]).await?;
        let n = fx
            .audit()?
            .into_iter()
            .filter(|v| v["outcome"] == "refused" && v["rule"] == "policy")
            .count();
        ensure!(n == 2, "{n} policy refusals audited");
        fixed_policy_applies_to_next_pod(&fx).await
    })
    .await
}

/// containerd at debug level passes `-debug` to `start`: the router then logs through the
/// bundle's `log` FIFO into containerd's log, and its stdout/stderr (read together by containerd
/// 1.6 as the shim address) stay clean, so pods still start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_start_logs_into_containerds_log_and_pods_still_start() -> Result<()> {
    let opts = router_integration::ContainerdOptions {
        log_level: "debug".into(),
        ..Default::default()
    };
    with_fresh(opts, |fx| async move {
        let cri = fx.cri().await?;
        let pod = fx.h.pod("kube-system", "debug-pod");
        let id = cri.run_pod(&pod.build()).await.context("RunPodSandbox")?;
        let log = std::fs::read_to_string(fx.h.log_path())?;
        let want =
            format!("containerd-shim-router-v2: sandbox {id}: tenant `provider` backend `runc`");
        ensure!(
            log.lines().any(|l| l.contains(&want)),
            "containerd's log lacks {want:?}"
        );
        remove_pod(&fx, &cri, &id).await?;
        Ok(())
    })
    .await
}

/// An audit log that cannot be written does not block a correct decision: the pod runs where the
/// policy says, and the failure is reported in containerd's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_audit_log_is_reported_and_does_not_block_standin() -> Result<()> {
    with_fresh(ContainerdOptions::default(), |fx| async move {
        let good = policy_for(&fx.h);
        let audit_line = format!(
            "audit_log = \"{}/audit/decisions.jsonl\"",
            fx.h.dir().display()
        );
        // the parent of the audit log is a regular file: the append fails with ENOTDIR
        let blocker = fx.h.dir().join("not-a-dir");
        std::fs::write(&blocker, b"")?;
        let bad_audit = format!("audit_log = \"{}/decisions.jsonl\"", blocker.display());
        ensure!(
            good.contains(&audit_line),
            "test policy changed shape: fix this test"
        );
        fx.h.set_policy(&good.replace(&audit_line, &bad_audit))?;

        let cri = fx.cri().await?;
        let pod = fx.h.pod("shop-noaudit", "web");
        let id = cri.run_pod(&pod.build()).await.context("RunPodSandbox")?;
        let (_, bin) = pod_shim(&cri, &id).await?;
        ensure!(
            is_same_file(&bin, &fx.standin()),
            "pod on {}",
            bin.display()
        );
        let rec = fx.record(&id)?;
        ensure!(rec["backend"] == "kata", "record: {rec}");
        let log = std::fs::read_to_string(fx.h.log_path())?;
        ensure!(
            log.lines().any(|l| l.contains("audit line for sandbox")
                && l.contains(&id)
                && l.contains("not-a-dir")),
            "containerd's log does not report the audit failure for {id}"
        );
        remove_pod(&fx, &cri, &id).await?;
        Ok(())
    })
    .await
}
