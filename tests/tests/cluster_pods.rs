//! `routerctl pods` on a real node (issue 24's per-pod status): pods started over CRI through the
//! router, on two tiers (built-in runc, built-in runsc), are listed from its decision records
//! with their Kubernetes namespace, name, tenant, backend, tier and runtime handler; a removed pod
//! is no longer listed. The harness's records share the node's
//! state dir with any other harness running, so rows are matched by sandbox id.

mod support;

use std::process::Command;

use anyhow::{ensure, Context, Result};
use router_integration::{ContainerSpec, Containerd, PolicyText};
use serde_json::Value;
use support::cluster::*;
use support::*;

/// `routerctl pods ARGS`: (exit code, stdout, stderr).
fn pods(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(routerctl()?).arg("pods").args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The JSON row of sandbox `id`, if listed.
fn row_of(id: &str) -> Result<Option<Value>> {
    let (code, out, err) = pods(&["--output", "json"])?;
    ensure!(code == 0, "routerctl pods: exit {code} {err}");
    let rows: Vec<Value> = serde_json::from_str(&out).with_context(|| format!("json: {out}"))?;
    Ok(rows.into_iter().find(|r| r["sandbox_id"] == id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routerctl_pods_lists_each_running_pod_with_its_tenant_and_tier() -> Result<()> {
    // the cluster suites' policy and a tenant on gVisor: pods on two tiers
    let policy = PolicyText::after(builtin_policy())
        .gvisor()
        .tenant("sandboxed", &["gv"], "gvisor")
        .to_string();
    on_cluster_harness_with(policy, |h| Box::pin(run(h))).await
}

async fn run(h: &Containerd) -> Result<()> {
    let cri = h.cri();
    let mut started = Vec::new();
    // (namespace, pod, tenant, backend, tier): two on built-in runc, one on built-in runsc
    for (ns, name, tenant, backend, tier) in [
        ("kube-system", "listed-dns", "provider", "runc", "container"),
        ("web", "listed-shop", "team-a", "runc", "container"),
        ("gv", "listed-sandboxed", "sandboxed", "gvisor", "sandbox"),
    ] {
        let c = ContainerSpec::new("main").shell("exec sleep 3600");
        let (_, _, pod_id, cid) = pod_with(h, &cri, ns, name, c).await?;
        let row = row_of(&pod_id)?.with_context(|| format!("{ns}/{name} ({pod_id}) not listed"))?;
        for (key, want) in [
            ("k8s_namespace", ns),
            ("pod", name),
            ("tenant", tenant),
            ("backend", backend),
            ("tier", tier),
            // the harness registers the router as `io.containerd.router.v2`
            ("handler", "router"),
            ("containerd_namespace", "k8s.io"),
        ] {
            ensure!(row[key] == want, "{key} of {name}: {row}");
        }
        started.push((pod_id, cid, name, tier));
    }
    // the table names each pod once, with its tier
    let (code, table, err) = pods(&[])?;
    ensure!(code == 0, "exit {code}: {err}");
    for (_, _, name, tier) in &started {
        let lines: Vec<&str> = table.lines().filter(|l| l.contains(name)).collect();
        ensure!(
            lines.len() == 1 && lines[0].split_whitespace().any(|w| w == *tier),
            "{name} in:\n{table}"
        );
    }
    ensure!(
        table
            .lines()
            .next()
            .is_some_and(|l| l.contains("TIER") && l.contains("HANDLER")),
        "{table}"
    );
    // a removed pod is gone from the list (its records go with `delete`)
    for (pod_id, cid, name, _) in &started {
        cri.stop_container(cid, 2).await?;
        remove_pod_and(&cri, pod_id, &[cid]).await?;
        ensure!(
            row_of(pod_id)?.is_none(),
            "{name} still listed after removal"
        );
    }
    Ok(())
}
