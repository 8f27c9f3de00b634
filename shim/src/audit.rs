//! The audit log (SPEC §4): one JSON line per decision or refusal, appended to the policy's
//! `audit_log`. A failure to audit is returned to the caller, who logs it and carries on: it never
//! blocks a correct decision and never produces a weaker one.
//!
//! The log is capped (`audit_log_max_bytes`, `audit_log_keep`): a line that would take the file
//! past the cap first rotates it (`<log>.N-1` → `<log>.N` …, `<log>` → `<log>.1`, the oldest
//! dropped) and then starts a new file. Every writer holds an exclusive `flock` on `<log>.lock`
//! from before it looks at the size until its line is written, so with many `start`s at once a
//! line is never written to a file another writer has just renamed, never split (one `write` of
//! the whole line, O_APPEND) and never written twice. `routerctl metrics` takes the same lock,
//! shared, while it opens the rotated files, so it sees each rotation whole.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use router_config::auditfiles::{lock_path, rotated_path};
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
    /// The runtime handler containerd started the router under (`containerd-shim-<handler>-v2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
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

/// How big the log may grow and how many rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// 0: never rotate (someone else does, e.g. logrotate).
    pub max_bytes: u64,
    pub keep: u32,
}

impl Default for Cap {
    fn default() -> Self {
        Cap {
            max_bytes: router_config::DEFAULT_AUDIT_LOG_MAX_BYTES,
            keep: router_config::DEFAULT_AUDIT_LOG_KEEP,
        }
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

/// Shifts `<log>.1..keep-1` up by one (the oldest is replaced) and renames `<log>` to `<log>.1`.
/// Renames act on names: a symlink planted as a rotated name is moved, never followed.
fn rotate(path: &Path, keep: u32) -> io::Result<()> {
    for n in (1..keep).rev() {
        match std::fs::rename(rotated_path(path, n), rotated_path(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, rotated_path(path, 1))
}

/// Longest a writer waits for `<log>.lock` (others hold it for one line's write).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes `file`'s flock exclusively, polling so that the wait is bounded: `None` after
/// [`LOCK_WAIT`].
fn lock_exclusive(mut file: std::fs::File) -> io::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use nix::fcntl::{Flock, FlockArg};
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut pause = std::time::Duration::from_micros(200);
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(Some(l)),
            Err((f, nix::errno::Errno::EWOULDBLOCK | nix::errno::Errno::EINTR)) => file = f,
            Err((_, e)) => return Err(io::Error::from(e)),
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(10));
    }
}

/// Append `entry` as one line to `path`, creating the parent directory (0750) and the file
/// (0640), rotating first when the line would take the file past `cap` (module doc). The file
/// is opened without following a symlink and written in a single call so concurrent starts do
/// not interleave lines.
pub fn append(path: &Path, cap: Cap, entry: &AuditEntry) -> Result<(), AuditError> {
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
    // with a cap: the rotation lock, held until the line is written (dropped on every path out)
    let lock = if cap.max_bytes == 0 {
        None
    } else {
        let lock_file = lock_path(path);
        let lock_err = |source| AuditError::Io {
            path: lock_file.clone(),
            source,
        };
        let held = lock_exclusive(open_append(&lock_file).map_err(lock_err)?).map_err(lock_err)?;
        if held.is_none() {
            // held far longer than a line takes (a stopped process): the line still goes in,
            // unrotated; a start never hangs on its audit
            log::warn!(
                "{}: held for over {LOCK_WAIT:?}; line appended without rotation",
                lock_file.display()
            );
        }
        held
    };
    let mut f = open_append(path).map_err(io_err)?;
    if lock.is_some() {
        let size = f.metadata().map_err(io_err)?.len();
        if size > 0 && size.saturating_add(line.len() as u64) > cap.max_bytes {
            rotate(path, cap.keep.max(1)).map_err(io_err)?;
            f = open_append(path).map_err(io_err)?;
        }
    }
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
        append(&path, Cap::default(), &e).unwrap();
        e.id = "two".into();
        e.outcome = "refused";
        e.message = "no".into();
        append(&path, Cap::default(), &e).unwrap();
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
        let e = append(&link, Cap::default(), &AuditEntry::default()).unwrap_err();
        assert!(e.to_string().contains("link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"");
        // parent is a file
        let e = append(
            &target.join("x.jsonl"),
            Cap::default(),
            &AuditEntry::default(),
        )
        .unwrap_err();
        assert!(matches!(e, AuditError::Io { .. }));
    }

    /// 50 writers appending at once through a cap small enough for many rotations: every line
    /// is in exactly one file, whole, and no file but the live one exceeds the cap.
    #[test]
    fn concurrent_appends_across_rotations_lose_split_or_repeat_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let cap = Cap {
            max_bytes: 8192,
            keep: 100,
        };
        let writers: Vec<_> = (0..50)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for n in 0..10 {
                        let e = AuditEntry {
                            outcome: "allowed",
                            id: format!("w{w}-n{n}"),
                            message: "x".repeat(100 + w * 7),
                            ..Default::default()
                        };
                        append(&path, cap, &e).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let mut ids = Vec::new();
        let mut rotated = 0;
        for n in 0..=100 {
            let p = if n == 0 {
                path.clone()
            } else {
                rotated_path(&path, n)
            };
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            if n > 0 {
                rotated += 1;
                assert!(
                    text.len() as u64 <= cap.max_bytes,
                    "{} is {} bytes",
                    p.display(),
                    text.len()
                );
            }
            assert!(text.ends_with('\n'), "{} ends mid-line", p.display());
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                ids.push(v["id"].as_str().unwrap().to_owned());
            }
        }
        assert!(rotated >= 5, "only {rotated} rotations");
        let total = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!((total, ids.len()), (500, 500));
    }

    #[test]
    fn a_lock_held_too_long_does_not_stop_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let cap = Cap {
            max_bytes: 4096,
            keep: 2,
        };
        append(&path, cap, &AuditEntry::default()).unwrap();
        let holder = std::fs::File::open(lock_path(&path)).unwrap();
        let held = nix::fcntl::Flock::lock(holder, nix::fcntl::FlockArg::LockShared).unwrap();
        let t = std::time::Instant::now();
        append(
            &path,
            cap,
            &AuditEntry {
                id: "late".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(t.elapsed() >= LOCK_WAIT);
        drop(held);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("\"id\":\"late\""));
    }

    #[test]
    fn rotation_keeps_only_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let cap = Cap {
            max_bytes: 4096,
            keep: 2,
        };
        for n in 0..40 {
            let e = AuditEntry {
                id: format!("{n}"),
                message: "y".repeat(900),
                ..Default::default()
            };
            append(&path, cap, &e).unwrap();
        }
        assert!(rotated_path(&path, 1).exists() && rotated_path(&path, 2).exists());
        assert!(!rotated_path(&path, 3).exists());
        // newest lines are in the live file; the last id is 39
        let live = std::fs::read_to_string(&path).unwrap();
        assert!(
            live.lines().last().unwrap().contains("\"id\":\"39\""),
            "{live}"
        );
        // no cap: never rotated
        let other = dir.path().join("o.jsonl");
        for _ in 0..10 {
            let e = AuditEntry {
                message: "z".repeat(900),
                ..Default::default()
            };
            append(
                &other,
                Cap {
                    max_bytes: 0,
                    keep: 1,
                },
                &e,
            )
            .unwrap();
        }
        assert!(!rotated_path(&other, 1).exists() && !lock_path(&other).exists());
    }
}
