//! `routerctl pods`: the pods this node runs through the router, read from the router's decision
//! records (`<state>/records/<containerd>/<namespace>/<id>.json`, the root-only copies the shim
//! writes at each `start` and removes at `delete`): one row per pod sandbox with its Kubernetes
//! namespace and name, tenant, backend, tier, runtime handler and age; `--output json` for scripts. Records are
//! read as the shim reads them (`files`, on `safefile`: bounded, never a FIFO, never through a link). A
//! directory that cannot be listed, a record that cannot be read or parsed, or one whose role is
//! neither `sandbox` nor `container` is reported on stderr and makes the exit code 1; the others
//! are still listed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::files;

/// The router's state dir, as the shim finds it.
const STATE_DIR_ENV: &str = "RUNTIME_ROUTER_STATE_DIR";
const DEFAULT_STATE_DIR: &str = "/run/runtime-router";
/// A record is a few KiB; anything larger is not one.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// One pod, as printed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PodRow {
    pub k8s_namespace: String,
    pub pod: String,
    pub tenant: String,
    pub backend: String,
    pub tier: String,
    /// The runtime handler containerd started the pod under (`-` in records written before the
    /// router recorded it).
    pub handler: String,
    /// Seconds since the decision (the record's modification time).
    pub age_seconds: u64,
    pub sandbox_id: String,
    pub containerd_namespace: String,
    pub decided_at: String,
}

/// The state dir: `explicit`, else `$RUNTIME_ROUTER_STATE_DIR`, else the default.
pub fn state_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(STATE_DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("-").to_string()
}

/// The row of one sandbox record, `Ok(None)` for a container's, an error for anything else.
fn row(record: &Value, age_seconds: u64) -> Result<Option<PodRow>, String> {
    match record["role"].as_str() {
        Some("sandbox") => {}
        Some("container") => return Ok(None),
        other => return Err(format!("not a record: role {other:?}")),
    }
    // what every sandbox record holds (a task without CRI has no Kubernetes namespace or name)
    for key in [
        "id",
        "sandbox_id",
        "namespace",
        "tenant",
        "backend",
        "isolation",
    ] {
        if !record[key].is_string() {
            return Err(format!("not a record: no `{key}`"));
        }
    }
    Ok(Some(PodRow {
        k8s_namespace: text(record, "k8s_namespace"),
        pod: text(record, "pod_name"),
        tenant: text(record, "tenant"),
        backend: text(record, "backend"),
        tier: text(record, "isolation"),
        handler: text(record, "handler"),
        age_seconds,
        sandbox_id: text(record, "sandbox_id"),
        containerd_namespace: text(record, "namespace"),
        decided_at: text(record, "decided_at"),
    }))
}

/// The entries of `path`, sorted; none when it does not exist; a directory that exists but cannot
/// be listed (run as non-root, say) is a problem, not an empty node.
fn dirs(path: &Path, problems: &mut Vec<String>) -> Vec<PathBuf> {
    let rd = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(format!("{}: {e}", path.display()));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for entry in rd {
        match entry {
            Ok(e) => out.push(e.path()),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    out.sort();
    out
}

/// One record file, parsed.
fn read_record(file: &Path) -> Result<Value, String> {
    let bytes = files::read_bytes_no_follow(file, MAX_RECORD_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a record: {e}"))
}

/// Every pod of the records under `state`, and the problems met (one line each).
pub fn collect(state: &Path, now: SystemTime) -> (Vec<PodRow>, Vec<String>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for containerd in dirs(&state.join("records"), &mut problems) {
        for ns in dirs(&containerd, &mut problems) {
            for file in dirs(&ns, &mut problems) {
                // beside each sandbox's record: its pod's bind sources (`<id>.binds`)
                if file.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let age = std::fs::symlink_metadata(&file)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .map_or(0, |d| d.as_secs());
                match read_record(&file).and_then(|r| row(&r, age)) {
                    Ok(r) => rows.extend(r),
                    Err(e) => problems.push(format!("{}: {e}", file.display())),
                }
            }
        }
    }
    rows.sort_by(|a, b| (&a.k8s_namespace, &a.pod).cmp(&(&b.k8s_namespace, &b.pod)));
    (rows, problems)
}

/// `5s`, `3m`, `2h`, `4d`, as kubectl prints ages.
fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

pub fn run(state: Option<&Path>, json: bool) -> u8 {
    let state = state_dir(state);
    let (rows, problems) = collect(&state, SystemTime::now());
    for p in &problems {
        eprintln!("error: {p}");
    }
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => out!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    } else if rows.is_empty() {
        out!("no pods in {}", state.join("records").display());
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.k8s_namespace.clone(),
                    r.pod.clone(),
                    r.tenant.clone(),
                    r.backend.clone(),
                    r.tier.clone(),
                    r.handler.clone(),
                    age(r.age_seconds),
                ]
            })
            .collect();
        crate::check::print_table(
            &[
                "NAMESPACE",
                "POD",
                "TENANT",
                "BACKEND",
                "TIER",
                "HANDLER",
                "AGE",
            ],
            &table,
        );
    }
    u8::from(!problems.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn sandboxes_listed_containers_skipped_bad_records_reported() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ns = d.path().join("records/0123456789abcdef/k8s.io");
        let rec = |id: &str, role: &str, ns: &str, pod: &str, iso: &str| {
            format!(
                r#"{{"version":1,"id":"{id}","namespace":"k8s.io","role":"{role}","sandbox_id":"{id}","tenant":"t-{ns}","backend":"b-{iso}","isolation":"{iso}","rule":"r","policy_digest":"","policy_source":"","k8s_namespace":"{ns}","pod_name":"{pod}","decided_at":"2026-12-06T00:00:00Z"}}"#
            )
        };
        write(
            &ns.join("s2.json"),
            &rec("s2", "sandbox", "web", "shop", "vm"),
        );
        write(
            &ns.join("s1.json"),
            &rec("s1", "sandbox", "kube-system", "dns", "container"),
        );
        write(
            &ns.join("c1.json"),
            &rec("c1", "container", "web", "shop", "vm"),
        );
        write(&ns.join("s1.binds"), "/x\n");
        write(&ns.join("bad.json"), "{not json");
        write(&ns.join("odd.json"), r#"{"role":"relay"}"#);
        write(
            &ns.join("part.json"),
            r#"{"role":"sandbox","id":"p","tenant":"t"}"#,
        );
        std::os::unix::fs::symlink(ns.join("s1.json"), ns.join("link.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        let (rows, problems) = collect(d.path(), later);
        let names: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.k8s_namespace.as_str(), r.pod.as_str(), r.tier.as_str()))
            .collect();
        assert_eq!(
            names,
            [("kube-system", "dns", "container"), ("web", "shop", "vm")]
        );
        assert!(
            rows.iter().all(|r| (3595..=3605).contains(&r.age_seconds)),
            "{rows:?}"
        );
        // a bad record, a role that is neither, and a link: each named, none listed
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("bad.json") && problems[0].contains("not a record"));
        assert!(problems[1].contains("link.json"), "{problems:?}");
        assert!(
            problems[2].contains("odd.json") && problems[2].contains("role"),
            "{problems:?}"
        );
        assert!(
            problems[3].contains("part.json") && problems[3].contains("no `sandbox_id`"),
            "{problems:?}"
        );
        // nothing there: no rows, no problems
        let (rows, problems) = collect(&d.path().join("nowhere"), later);
        assert!(rows.is_empty() && problems.is_empty());
    }

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (7199, "119m"),
            (7200, "2h"),
            (172_800, "2d"),
        ];
        for (s, want) in cases {
            assert_eq!(age(s), want);
        }
    }
}
