//! Shared helpers of the cluster suites (`cluster_*.rs`): the built `routerctl`, a directory laid
//! out like a kubelet ConfigMap volume (`..data` symlink swapped on update), child processes that
//! are killed (by their own pid) when dropped, the audit log and decision records, and a minimal
//! HTTP GET for loopback servers.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use router_integration::{binaries, Containerd, ContainerdOptions, PolicyText};
use serde_json::Value;

/// The cluster suites' node policy (`{dir}`, `{root}`, `{state}` filled by the harness): the
/// built-in runc backend, `kube-system` as `provider`, `web` as `team-a` (host network denied).
/// `cluster_policy` edits it by finding `tenants.team-a`'s backend line.
pub fn builtin_policy() -> String {
    builtin_policy_from(PolicyText::new("provider"))
}

/// [`builtin_policy`] after `top` (the top-level keys a suite adds).
pub fn builtin_policy_from(top: PolicyText) -> String {
    top.pod_paths("/var/lib/kubelet/pods")
        .runc()
        .tenant("provider", &["kube-system"], "runc")
        .tenant("team-a", &["web"], "runc")
        .list("deny", &["host-network"])
        .into()
}

/// What a cluster suite runs on its harness.
pub type RunFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + 'a>>;

/// Runs `run` on a fresh harness with the cluster suites' policy, then shuts it down; a failure
/// carries containerd's log.
pub async fn on_cluster_harness<F>(run: F) -> Result<()>
where
    F: for<'a> FnOnce(&'a Containerd) -> RunFuture<'a>,
{
    on_cluster_harness_with(builtin_policy(), run).await
}

/// [`on_cluster_harness`] with another policy.
pub async fn on_cluster_harness_with<F>(policy: String, run: F) -> Result<()>
where
    F: for<'a> FnOnce(&'a Containerd) -> RunFuture<'a>,
{
    let h = Containerd::start(ContainerdOptions::with_policy(policy))
        .await
        .context("start containerd")?;
    let r = run(&h).await;
    r.map_err(|e| anyhow::anyhow!(h.failure_report(&e)))?;
    h.shutdown().await?;
    Ok(())
}

/// The `routerctl` built beside the router shim.
pub fn routerctl() -> Result<PathBuf> {
    binaries::routerctl_path().context("routerctl not built: cargo build --workspace --bins")
}

/// A ConfigMap volume as kubelet's atomic writer lays it out: `DIR/..<n>/KEY` holds the data,
/// `DIR/..data` → `..<n>`, `DIR/KEY` → `..data/KEY`. An update writes a new `..<n+1>`, swaps
/// `..data` with a rename and removes the old directory.
pub struct ConfigMapDir {
    pub dir: PathBuf,
    key: String,
    generation: u32,
}

impl ConfigMapDir {
    pub fn new(dir: &Path, key: &str, text: &str) -> Result<ConfigMapDir> {
        std::fs::create_dir_all(dir)?;
        let mut cm = ConfigMapDir {
            dir: dir.to_owned(),
            key: key.to_string(),
            generation: 0,
        };
        cm.update(text)?;
        std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key))?;
        Ok(cm)
    }

    /// The path a pod reads (`DIR/KEY`).
    pub fn file(&self) -> PathBuf {
        self.dir.join(&self.key)
    }

    /// Publishes a new version the way kubelet does.
    pub fn update(&mut self, text: &str) -> Result<()> {
        let old = self.generation;
        self.generation += 1;
        let ts = format!(
            "..2026_12_01_00_00_{:02}.{}",
            self.generation,
            std::process::id()
        );
        let data = self.dir.join(&ts);
        std::fs::create_dir(&data)?;
        std::fs::write(data.join(&self.key), text)?;
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&ts, &tmp)?;
        std::fs::rename(&tmp, self.dir.join("..data"))?;
        if old > 0 {
            for e in std::fs::read_dir(&self.dir)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("..2026") && name != ts {
                    std::fs::remove_dir_all(e.path())?;
                }
            }
        }
        Ok(())
    }
}

/// A child process with its stdout and stderr lines collected; killed by pid when dropped.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Result<Proc> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {cmd:?}"))?;
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().context("stdout")?;
        let err = child.stderr.take().context("stderr")?;
        for r in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Proc {
            child,
            lines: rx,
            seen: Vec::new(),
        })
    }

    /// Waits for an output line containing `needle` (lines before it are kept in `seen`).
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Ok(l);
                    }
                }
                Err(_) => bail!(
                    "no line with {needle:?} within {timeout:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The label set of a `runtime_router_decisions_total` sample (Prometheus's `metric` object), as
/// `outcome=..,role=..,tenant=..,backend=..,tier=..,handler=..,rule=..`.
pub fn decision_key(labels: &Value) -> String {
    let s = |k: &str| labels[k].as_str().unwrap_or_default().to_string();
    format!(
        "outcome={},role={},tenant={},backend={},tier={},handler={},rule={}",
        s("outcome"),
        s("role"),
        s("tenant"),
        s("backend"),
        s("tier"),
        s("handler"),
        s("rule")
    )
}

/// The label set an audit line is counted under: its tier is `isolation`, its rule the rule's
/// kind. The rules these suites meet are spelt out here, apart from `router_core::rule_kind`.
pub fn audit_key(line: &Value) -> String {
    let s = |k: &str| line[k].as_str().unwrap_or_default().to_string();
    let rule = s("rule");
    let kind = if rule.starts_with("tenants.") && rule.contains(".namespaces[") {
        "namespace".to_string()
    } else if rule.starts_with("sandbox[") {
        "sandbox".to_string()
    } else {
        rule
    };
    format!(
        "outcome={},role={},tenant={},backend={},tier={},handler={},rule={kind}",
        s("outcome"),
        s("role"),
        s("tenant"),
        s("backend"),
        s("isolation"),
        s("handler"),
    )
}

/// The expected `runtime_router_decisions_total` samples of audit lines: label set → count.
pub fn expected_counts(lines: &[Value]) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for l in lines {
        *m.entry(audit_key(l)).or_insert(0) += 1;
    }
    m
}

/// `promtool check metrics` on `text`.
pub fn promtool_check(text: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool (scripts/install-deps.sh installs Debian's prometheus)")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "promtool check metrics failed:\n{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Parses `runtime_router_decisions_total` samples of an exposition into label set → count
/// (labels in the fixed order routerctl writes them).
pub fn parsed_counts(text: &str) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut m = std::collections::BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("runtime_router_decisions_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").context("sample")?;
        let labels = labels.replace('"', "");
        *m.entry(labels).or_insert(0) += value.trim().parse::<u64>()?;
    }
    Ok(m)
}

/// A free loopback port (bound and released: the caller binds it right after).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
