//! `routerctl metrics --listen` over a real containerd's audit log:
//! - scraped by a real Prometheus server (Debian's `prometheus`, on 127.0.0.1, its own temp
//!   storage, stopped by the test): pods routed, the audit log rotated the way logrotate does
//!   (renamed; the next start creates a new file) and more pods routed; Prometheus's view of
//!   `runtime_router_decisions_total` equals the audit lines of both files, each counted once;
//! - 50 pod starts at once under a policy whose `audit_log_max_bytes` forces many rotations by
//!   the router itself: every rotated file holds whole JSON lines only, every start has exactly
//!   one line, and the followed counters equal the lines written.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use router_integration::{http, Containerd, PolicyText};
use serde_json::Value;
use support::cluster::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_decisions_across_a_rotation() -> Result<()> {
    on_cluster_harness(|h| Box::pin(run(h))).await
}

/// The cap of the rotation test: a few sandbox lines per file.
const CAP: u64 = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_starts_across_router_rotations() -> Result<()> {
    let policy = builtin_policy_from(PolicyText::new("provider").audit_cap(CAP, 100));
    on_cluster_harness_with(policy, |h| Box::pin(rotations(h))).await
}

/// `routerctl metrics --listen` on `audit`, and the address it serves.
fn start_metrics(audit: &std::path::Path) -> Result<(Proc, String)> {
    let mut metrics = Proc::spawn(
        Command::new(routerctl()?)
            .args(["metrics", "--audit-log"])
            .arg(audit)
            .args(["--listen", "127.0.0.1:0", "--interval-ms", "100"]),
    )?;
    let line = metrics.wait_line("serving http://", LONG)?;
    let target = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .context("address")?
        .to_string();
    Ok((metrics, target))
}

async fn rotations(h: &Containerd) -> Result<()> {
    let audit = h.dir().join("audit/decisions.jsonl");
    let (metrics, target) = start_metrics(&audit)?;
    // 50 RunPodSandbox at once: 40 routed (kube-system and web), 10 refused (host network in
    // web, whose tenant denies it)
    let mut starts = tokio::task::JoinSet::new();
    for n in 0..50 {
        let cri = h.cri();
        let spec = match n % 5 {
            0 => h.pod("web", &format!("rot-{n}")).host_network(true),
            1 | 2 => h.pod("web", &format!("rot-{n}")),
            _ => h.pod("kube-system", &format!("rot-{n}")),
        };
        let refused = n % 5 == 0;
        starts.spawn(async move { (refused, cri.run_pod(&spec.build()).await) });
    }
    let mut pods = Vec::new();
    while let Some(r) = starts.join_next().await {
        match r? {
            (false, Ok(id)) => pods.push(id),
            (true, Err(_)) => {}
            (refused, r) => bail!("start (refused expected: {refused}): {r:?}"),
        }
    }
    ensure!(pods.len() == 40, "{} pods ran", pods.len());

    // every file the router wrote: whole lines only, each start once
    let mut lines = Vec::new();
    let mut rotated = 0;
    for n in (1..=100).rev() {
        let p = std::path::PathBuf::from(format!("{}.{n}", audit.display()));
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        rotated += 1;
        ensure!(
            text.ends_with('\n') && text.len() as u64 <= CAP,
            "{}: {} bytes, last byte {:?}",
            p.display(),
            text.len(),
            text.chars().last()
        );
        lines.extend(audit_lines(&p)?);
    }
    lines.extend(audit_lines(&audit)?);
    ensure!(rotated >= 3, "only {rotated} rotations");
    let mut ids: Vec<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
    ensure!(
        lines.len() == 50,
        "{} audit lines for 50 starts",
        lines.len()
    );
    ids.sort();
    ids.dedup();
    ensure!(ids.len() == 50, "{} distinct ids in 50 lines", ids.len());

    // the follower counted each line once, across every rotation
    let want = expected_counts(&lines);
    let got = until_counts(
        &want,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || parsed_counts(&http::get(&target, "/metrics")?.body),
    )
    .await?;
    ensure!(got == want, "/metrics {got:?}\nwant {want:?}");
    drop(metrics);
    for id in pods {
        let cri = h.cri();
        cri.stop_pod(&id).await?;
        cri.remove_pod(&id).await?;
    }
    eprintln!(
        "50 starts, {} lines in {rotated} rotated files and the live one",
        lines.len()
    );
    Ok(())
}

/// Starts Prometheus on a free loopback port scraping `target` every second. A port taken between
/// the probe and Prometheus's bind (another harness) is retried with another port.
fn start_prometheus(dir: &std::path::Path, target: &str) -> Result<(Proc, String)> {
    std::fs::create_dir_all(dir)?;
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: runtime-router\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )?;
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut p = Proc::spawn(
            Command::new("prometheus")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}")),
        )
        .context("prometheus (scripts/install-deps.sh installs Debian's prometheus)")?;
        match p.wait_line("Server is ready to receive web requests", LONG) {
            Ok(_) => return Ok((p, addr)),
            Err(e) if p.seen.iter().any(|l| l.contains("address already in use")) => {
                eprintln!("prometheus port {addr} taken, another: {e}");
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    bail!("no free port for prometheus")
}

/// `runtime_router_decisions_total` samples: label set → count.
type Counts = std::collections::BTreeMap<String, u64>;

/// Calls `read` every `every` until it returns `want` or `timeout` has passed; returns the last
/// counts read. An error from `read` ends the wait.
async fn until_counts(
    want: &Counts,
    timeout: Duration,
    every: Duration,
    mut read: impl FnMut() -> Result<Counts>,
) -> Result<Counts> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = read()?;
        if &got == want || Instant::now() > deadline {
            return Ok(got);
        }
        tokio::time::sleep(every).await;
    }
}

/// Prometheus's current `runtime_router_decisions_total` series as label set → value.
fn query(addr: &str) -> Result<Counts> {
    let http::Reply { code, body, .. } =
        http::get(addr, "/api/v1/query?query=runtime_router_decisions_total")?;
    ensure!(code == 200, "{code}: {body}");
    let v: Value = serde_json::from_str(&body)?;
    let mut m = std::collections::BTreeMap::new();
    for r in v["data"]["result"].as_array().context("result")? {
        let key = decision_key(&r["metric"]);
        let n: u64 = r["value"][1].as_str().context("value")?.parse()?;
        m.insert(key, n);
    }
    Ok(m)
}

async fn run(h: &Containerd) -> Result<()> {
    let audit = h.dir().join("audit/decisions.jsonl");
    let (metrics, target) = start_metrics(&audit)?;

    let cri = h.cri();
    let p1 = h.pod("web", "metrics-one");
    cri.run_pod(&p1.build()).await.context("pod one")?;
    ensure!(
        cri.run_pod(&h.pod("web", "metrics-hostnet").host_network(true).build())
            .await
            .is_err(),
        "host network must be refused"
    );
    // The follower polls by path, so a file created and renamed away within one poll interval
    // is never opened. logrotate rotates a file that has been followed for a while: wait until
    // the lines already written are counted.
    let pre = audit_lines(&audit)?;
    let pre_want = expected_counts(&pre);
    ensure!(
        pre_want.values().sum::<u64>() == 2,
        "audit before rotation: {pre:?}"
    );
    let pre_got = until_counts(
        &pre_want,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || parsed_counts(&http::get(&target, "/metrics")?.body),
    )
    .await?;
    ensure!(
        pre_got == pre_want,
        "/metrics before rotation: {pre_got:?}\nwant {pre_want:?}"
    );
    // logrotate: rename; the router's next start creates a new file
    let rotated = h.dir().join("audit/decisions.jsonl.1");
    std::fs::rename(&audit, &rotated)?;
    let p2 = h.pod("kube-system", "metrics-two");
    cri.run_pod(&p2.build()).await.context("pod two")?;
    ensure!(audit.exists(), "a new audit file after the rotation");

    let mut lines = audit_lines(&rotated)?;
    lines.extend(audit_lines(&audit)?);
    let want = expected_counts(&lines);
    ensure!(want.values().sum::<u64>() == 3, "audit: {lines:?}");

    // our endpoint: promtool-valid and exact
    let http::Reply { code, body, .. } = http::get(&target, "/metrics")?;
    ensure!(code == 200, "{code}");
    promtool_check(&body)?;
    ensure!(parsed_counts(&body)? == want, "{body}\nwant {want:?}");
    let code = http::get(&target, "/other")?.code;
    ensure!(code == 404, "{code}");

    // a real Prometheus server scrapes it
    let (prom, prom_addr) = start_prometheus(&h.dir().join("prometheus"), &target)?;
    // a query that fails counts as nothing seen yet
    let got = until_counts(
        &want,
        Duration::from_secs(60),
        Duration::from_millis(500),
        || Ok(query(&prom_addr).unwrap_or_default()),
    )
    .await?;
    drop(prom);
    ensure!(got == want, "prometheus sees {got:?}\naudit {want:?}");
    drop(metrics);
    Ok(())
}
