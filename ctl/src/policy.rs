//! `routerctl policy apply FILE [--to PATH]` and `routerctl policy watch --from FILE [--to PATH]`:
//! roll a policy out without ever putting a broken one live.
//!
//! `apply` validates FILE with the same parse/validate as `check` (router_config::parse), and only
//! then replaces PATH: the new text is written to a temp file in PATH's directory, synced, the
//! previous text is kept beside PATH as `PATH.prev`, and the temp file is renamed over PATH (one
//! atomic step: a pod start reads either the old or the new policy, never a mix). A broken FILE
//! leaves PATH byte for byte as it was.
//!
//! `watch` polls FILE (following symlinks, so kubelet's ConfigMap update — a new `..2026_...`
//! directory and the `..data` symlink swapped to it — is seen like any edit) and applies each new
//! text. A broken version is reported once and the last good policy stays live.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Result of applying one text.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// PATH now holds the new text; digests of the old text (None: there was no file) and new.
    Replaced { old: Option<String>, new: String },
    /// PATH already held exactly this text.
    Unchanged { digest: String },
}

/// Why a text was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

fn io_err<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> ApplyError + 'a {
    move |source| ApplyError::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

/// Every diagnostic of an invalid policy, one `file:line:col: field: message` per line.
fn describe(e: &router_config::ConfigError) -> String {
    let d = e.diagnostics();
    if d.is_empty() {
        e.to_string()
    } else {
        d.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The file kept beside `to` with the text it held before the last apply.
pub fn prev_path(to: &Path) -> PathBuf {
    let mut s = to.as_os_str().to_owned();
    s.push(".prev");
    PathBuf::from(s)
}

/// Validates `text` (named `origin` in diagnostics) and, when valid, replaces `to` atomically.
pub fn apply_text(text: &[u8], origin: &Path, to: &Path) -> Result<Applied, ApplyError> {
    let s = std::str::from_utf8(text)
        .map_err(|e| ApplyError::Invalid(format!("{}: not UTF-8 text: {e}", origin.display())))?;
    router_config::parse(s, origin).map_err(|e| ApplyError::Invalid(describe(&e)))?;
    let new = router_config::digest(text);
    let old_text = match std::fs::read(to) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(to, "cannot read the live policy")(e)),
    };
    if old_text.as_deref() == Some(text) {
        return Ok(Applied::Unchanged { digest: new });
    }
    let dir = match to.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mode = std::fs::metadata(to)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    if let Some(old) = &old_text {
        write_atomic(&prev_path(to), old, mode, &dir)?;
    }
    write_atomic(to, text, mode, &dir)?;
    Ok(Applied::Replaced {
        old: old_text.map(|t| router_config::digest(&t)),
        new,
    })
}

/// Writes `bytes` to a temp file in `dir`, syncs it and renames it to `path`, then syncs `dir`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, dir: &Path) -> Result<(), ApplyError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".to_string());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io_err(&tmp, "cannot create temp file"))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(io_err(&tmp, "cannot write temp file"))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp, "cannot set mode"))?;
        std::fs::rename(&tmp, path).map_err(io_err(path, "cannot rename into place"))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The live policy path: `--to`, else `$RUNTIME_ROUTER_CONFIG`, else the default.
fn target(to: Option<&Path>) -> PathBuf {
    router_config::policy_path(to)
}

fn report(from: &Path, to: &Path, r: &Applied) {
    match r {
        Applied::Replaced { old, new } => out!(
            "applied {} to {}: {} -> {new} (previous text kept in {})",
            from.display(),
            to.display(),
            old.as_deref().unwrap_or("none"),
            prev_path(to).display()
        ),
        Applied::Unchanged { digest } => out!(
            "unchanged: {} already holds {} ({digest})",
            to.display(),
            from.display()
        ),
    }
}

/// `routerctl policy apply FILE [--to PATH]`.
pub fn run_apply(from: &Path, to: Option<&Path>) -> u8 {
    let to = target(to);
    let text = match crate::files::read_bytes(from, router_config::safefile::MAX_POLICY_BYTES) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: cannot read policy: {e}", from.display());
            eprintln!("{} left unchanged", to.display());
            return 1;
        }
    };
    match apply_text(&text, from, &to) {
        Ok(r) => {
            report(from, &to, &r);
            0
        }
        Err(e) => {
            for l in e.to_string().lines() {
                eprintln!("error: {l}");
            }
            eprintln!("{} left unchanged: not applied", to.display());
            1
        }
    }
}

/// `routerctl policy watch --from FILE [--to PATH] [--interval MS]`: never returns on its own
/// (unless `--once` tests want one round).
pub fn run_watch(from: &Path, to: Option<&Path>, interval: Duration) -> u8 {
    let to = target(to);
    out!(
        "watching {} -> {} every {} ms",
        from.display(),
        to.display(),
        interval.as_millis()
    );
    // digest of the last text seen at `from` (applied or refused), so each version is reported once
    let mut last_seen: Option<String> = None;
    let mut missing_reported = false;
    loop {
        // bounded and non-blocking: a FIFO or a huge file at `from` is reported, never hangs
        match router_config::safefile::read_limited(
            from,
            router_config::safefile::MAX_POLICY_BYTES,
            true,
        )
        .map_err(|e| e.into_io())
        .and_then(|t| t.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound)))
        {
            Ok(text) => {
                missing_reported = false;
                let d = router_config::digest(&text);
                if last_seen.as_deref() != Some(d.as_str()) {
                    last_seen = Some(d.clone());
                    match apply_text(&text, from, &to) {
                        Ok(r) => report(from, &to, &r),
                        Err(e) => {
                            for l in e.to_string().lines() {
                                eprintln!("error: {l}");
                            }
                            eprintln!(
                                "refused {} ({d}): {} keeps the last good policy",
                                from.display(),
                                to.display()
                            );
                        }
                    }
                }
            }
            Err(e) => {
                if !missing_reported {
                    eprintln!(
                        "warning: {}: cannot read ({e}); {} keeps the last good policy",
                        from.display(),
                        to.display()
                    );
                    missing_reported = true;
                    last_seen = None;
                }
            }
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version = 1\ndefault_tenant = \"t\"\n[backends.r]\nkind = \"builtin\"\nruntime = \"/usr/sbin/runc\"\nisolation = \"container\"\n[tenants.t]\nbackend = \"r\"\n";

    #[test]
    fn apply_keeps_previous_and_refuses_broken() {
        let d = tempfile::tempdir().unwrap();
        let to = d.path().join("live.toml");
        let src = d.path().join("new.toml");
        let r = apply_text(GOOD.as_bytes(), &src, &to).unwrap();
        assert!(matches!(r, Applied::Replaced { old: None, .. }), "{r:?}");
        assert!(!prev_path(&to).exists());
        let r = apply_text(GOOD.as_bytes(), &src, &to).unwrap();
        assert!(matches!(r, Applied::Unchanged { .. }));
        let second = GOOD.replace("default_tenant = \"t\"", "default_tenant = \"t\" # 2");
        apply_text(second.as_bytes(), &src, &to).unwrap();
        assert_eq!(std::fs::read_to_string(prev_path(&to)).unwrap(), GOOD);
        let broken = GOOD.replace("backend = \"r\"", "backend = \"nope\"");
        let e = apply_text(broken.as_bytes(), &src, &to).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("{}:8:11", src.display())), "{msg}");
        assert_eq!(std::fs::read_to_string(&to).unwrap(), second);
        // no temp files left behind
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
