//! The audit log (SPEC §4): one JSON line per decision or refusal, appended to the policy's
//! `audit_log`. A failure to audit is returned to the caller, who logs it and carries on: it never
//! blocks a correct decision and never produces a weaker one.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where the audit goes when the policy names no `audit_log`.
pub const DEFAULT_AUDIT_LOG: &str = "/var/log/runtime-router/decisions.jsonl";

/// A deny rule or override that was refused, with the spec field that triggered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    pub rule: String,
    pub field: String,
}

/// One audit line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC.
    pub time: String,
    /// `allowed` or `refused`.
    pub outcome: &'static str,
    /// `sandbox` or `container`.
    pub role: String,
    /// containerd namespace.
    pub namespace: String,
    pub id: String,
    pub sandbox_id: Option<String>,
    pub k8s_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub tenant: Option<String>,
    pub backend: Option<String>,
    pub isolation: Option<String>,
    /// The policy rule that chose the tenant/backend, or the rule that refused.
    pub rule: String,
    pub reasons: Vec<String>,
    pub refused_overrides: Vec<String>,
    pub denials: Vec<Denial>,
    /// The refusal's message (empty when allowed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub policy_digest: Option<String>,
    pub policy_source: Option<String>,
    /// Time the decision took (read spec and policy, decide), in microseconds.
    pub decision_us: u64,
}

/// Appending the line failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("audit entry could not be encoded: {0}")]
    Encode(serde_json::Error),
}

/// Append `entry` as one line to `path`, creating the parent directory (0750) and the file
/// (0640). The file is opened without following a symlink and written in a single call so
/// concurrent starts do not interleave lines.
pub fn append(path: &Path, entry: &AuditEntry) -> Result<(), AuditError> {
    let mut line = serde_json::to_vec(entry).map_err(AuditError::Encode)?;
    line.push(b'\n');
    let io_err = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(parent)
                .map_err(io_err)?;
        }
    }
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err)?;
    f.write_all(&line).map_err(io_err)
}

/// Where a policy that failed to load asks the audit to go: its top-level `audit_log`, found by
/// a TOML parse, or for a file that does not parse, by a line `audit_log = "/abs/path"` before
/// the first table. Only absolute paths are taken. The location never affects a decision.
pub fn audit_log_hint(policy_text: &str) -> Option<PathBuf> {
    let from_toml = policy_text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("audit_log")?.as_str().map(PathBuf::from));
    let found = from_toml.or_else(|| {
        policy_text
            .lines()
            .map(str::trim)
            .take_while(|l| !l.starts_with('['))
            .find_map(|l| {
                let rest = l
                    .strip_prefix("audit_log")?
                    .trim_start()
                    .strip_prefix('=')?;
                let rest = rest.trim().strip_prefix('"')?;
                let end = rest.find('"')?;
                let value = &rest[..end];
                (!value.contains('\\')).then(|| PathBuf::from(value))
            })
    })?;
    found.is_absolute().then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_log_hint_from_broken_policies() {
        assert_eq!(
            audit_log_hint("version = 1\naudit_log = \"/a/b.jsonl\"\n[tenants.x]\nbackend = 3\n"),
            Some(PathBuf::from("/a/b.jsonl"))
        );
        // does not parse: the top-level line is still found
        assert_eq!(
            audit_log_hint("audit_log = \"/a/c.jsonl\" # here\nversion = = 1\n"),
            Some(PathBuf::from("/a/c.jsonl"))
        );
        assert_eq!(
            audit_log_hint("version = = 1\n[x]\naudit_log = \"/in/table\"\n"),
            None
        );
        assert_eq!(audit_log_hint("audit_log = \"relative.jsonl\"\n"), None);
        assert_eq!(audit_log_hint(""), None);
    }

    #[test]
    fn appends_lines_and_creates_parent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/decisions.jsonl");
        let mut e = AuditEntry {
            time: "t".into(),
            outcome: "allowed",
            id: "one".into(),
            decision_us: 12,
            ..Default::default()
        };
        append(&path, &e).unwrap();
        e.id = "two".into();
        e.outcome = "refused";
        e.message = "no".into();
        append(&path, &e).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], "one");
        assert_eq!(lines[0]["decision_us"], 12);
        assert!(lines[0].get("message").is_none());
        assert_eq!(lines[1]["outcome"], "refused");
        assert_eq!(lines[1]["message"], "no");
    }

    #[test]
    fn symlink_and_unwritable_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        std::fs::write(&target, b"").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = append(&link, &AuditEntry::default()).unwrap_err();
        assert!(e.to_string().contains("link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"");
        // parent is a file
        let e = append(&target.join("x.jsonl"), &AuditEntry::default()).unwrap_err();
        assert!(matches!(e, AuditError::Io { .. }));
    }
}
