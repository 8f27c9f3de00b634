//! Policy rollout from a ConfigMap through a real containerd and CRI: `routerctl policy watch`
//! follows a kubelet-style ConfigMap volume (`..data` symlink swapped); a broken version is
//! refused, the live policy stays byte for byte and the next pod is routed by it; a good version
//! applies to the next pod. Then `routerctl metrics` over this run's audit log: promtool accepts
//! the exposition and every counter equals the audit lines.

mod support;

use std::process::Command;

use anyhow::{ensure, Context, Result};
use router_integration::{ContainerSpec, Containerd};
use support::cluster::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_rollout_keeps_last_good_policy_and_metrics_match_audit() -> Result<()> {
    on_cluster_harness(|h| Box::pin(run(h))).await
}

async fn run(h: &Containerd) -> Result<()> {
    let live = h.policy_path().context("harness policy")?.to_owned();
    let v1 = h.expand(&builtin_policy());
    let mut cm = ConfigMapDir::new(&h.dir().join("configmap"), "runtime-router.toml", &v1)?;
    let mut watch = Proc::spawn(
        Command::new(routerctl()?)
            .args(["policy", "watch", "--from"])
            .arg(cm.file())
            .arg("--to")
            .arg(&live)
            .args(["--interval-ms", "100"]),
    )?;
    watch.wait_line("unchanged", LONG)?;

    // a broken version: refused, the live policy untouched, the next pod routed by v1
    let broken = v1.replace(
        "[tenants.team-a]\nnamespaces = [\"web\"]\nbackend = \"runc\"",
        "[tenants.team-a]\nnamespaces = [\"web\"]\nbackend = \"runc2\"",
    );
    ensure!(broken != v1);
    let line = 1 + broken
        .lines()
        .position(|l| l.contains("\"runc2\""))
        .context("the broken line")?;
    cm.update(&broken)?;
    let refused = watch.wait_line("refused", LONG)?;
    let all = watch.seen.join("\n");
    ensure!(
        all.contains(&format!(
            "runtime-router.toml:{line}:11: tenants.team-a.backend: unknown backend `runc2`"
        )),
        "watch did not name file:line:col: {all}\n{refused}"
    );
    ensure!(std::fs::read_to_string(&live)? == v1, "live policy changed");
    let cri = h.cri();
    let p1 = h.pod("web", "after-broken");
    let p1_cfg = p1.build();
    let p1_id = cri.run_pod(&p1_cfg).await.context("pod after broken")?;
    let rec = record(h, &p1_id)?;
    ensure!(
        rec["tenant"] == "team-a",
        "routed by the last good policy: {rec}"
    );

    // a good version: applied (digests printed), the next pod follows it
    let v3 = v1.replace("[tenants.team-a]", "[tenants.team-b]");
    cm.update(&v3)?;
    let applied = watch.wait_line("applied", LONG)?;
    ensure!(applied.matches("sha256:").count() == 2, "{applied}");
    ensure!(std::fs::read_to_string(&live)? == v3);
    let mut prev = live.clone().into_os_string();
    prev.push(".prev");
    ensure!(
        std::fs::read_to_string(&prev)? == v1,
        "previous text not kept"
    );
    let p2 = h.pod("web", "after-good");
    let p2_cfg = p2.build();
    let p2_id = cri.run_pod(&p2_cfg).await.context("pod after good")?;
    let rec = record(h, &p2_id)?;
    ensure!(rec["tenant"] == "team-b", "new policy not applied: {rec}");
    let c = ContainerSpec::new("main").in_pod(&p2).shell("sleep 600");
    cri.run_container(&p2_id, &p2_cfg, &c.build())
        .await
        .context("container")?;
    // a refused pod too (host network is fine for this policy: use an unknown override)
    let p3 = h
        .pod("web", "refused")
        .annotation("runtime-router.io/backend", "nope");
    ensure!(
        cri.run_pod(&p3.build()).await.is_err(),
        "override to an unknown backend must be refused"
    );
    ensure!(
        cri.pod_status(&p1_id).await?.state == 0,
        "pod started under v1 is still ready"
    );
    drop(watch);

    // metrics of this run: promtool accepts them and every counter equals the audit lines
    let audit = h.dir().join("audit/decisions.jsonl");
    let lines = audit_lines(&audit)?;
    ensure!(lines.len() >= 4, "audit: {lines:?}");
    let out = Command::new(routerctl()?)
        .args(["metrics", "--audit-log"])
        .arg(&audit)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    promtool_check(&text)?;
    let got = parsed_counts(&text)?;
    let want = expected_counts(&lines);
    ensure!(got == want, "metrics {got:?}\naudit {want:?}\n{text}");
    ensure!(
        text.contains(&format!(
            "runtime_router_decision_duration_seconds_count{{outcome=\"allowed\",role=\"sandbox\"}} {}",
            lines
                .iter()
                .filter(|l| l["outcome"] == "allowed" && l["role"] == "sandbox")
                .count()
        )),
        "{text}"
    );
    Ok(())
}
