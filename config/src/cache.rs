//! Content-addressed cache of validated policies, so `start` does not re-parse an unchanged TOML
//! file (parsing a 50-tenant policy costs several hundred µs; loading its cached binary form
//! (`codec`), about ten).
//!
//! The key is the SHA-256 of the policy text, which `load` computes anyway for the digest: any
//! edit is a different key, so an edit applies to the next pod with no invalidation logic. Only
//! policies that validated are stored. The directory (`$RUNTIME_ROUTER_CACHE_DIR`, default
//! `/run/runtime-router/policy-cache`; empty or relative disables the cache) is trusted only if it is a real
//! directory owned by the policy file's owner and writable by nobody else; any cache problem
//! falls back to parsing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::model::Policy;

/// Environment variable naming the cache directory (empty: no cache).
pub const CACHE_DIR_ENV: &str = "RUNTIME_ROUTER_CACHE_DIR";
/// Default cache directory (tmpfs on every distribution: gone at reboot).
pub const DEFAULT_CACHE_DIR: &str = "/run/runtime-router/policy-cache";
/// Bumped whenever the serialized `Policy` changes shape.
const SCHEMA: u32 = 2;
/// Entries kept before old ones are pruned.
const MAX_ENTRIES: usize = 32;

/// The cache directory from the environment, `None` when disabled.
pub(crate) fn dir_from_env() -> Option<PathBuf> {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(d) if d.is_empty() => None,
        // a relative directory would land in the bundle (the shim's cwd): no cache
        Some(d) => Some(PathBuf::from(d)).filter(|p| p.is_absolute()),
        None => Some(PathBuf::from(DEFAULT_CACHE_DIR)),
    }
}

fn entry(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    dir.join(format!(
        "{hex}-s{SCHEMA}-v{}.bin",
        env!("CARGO_PKG_VERSION")
    ))
}

fn trusted(meta: &fs::Metadata, owner: u32, want_dir: bool) -> bool {
    let kind_ok = if want_dir {
        meta.file_type().is_dir()
    } else {
        meta.file_type().is_file()
    };
    kind_ok && meta.uid() == owner && meta.mode() & 0o022 == 0
}

/// The cached policy for `digest`, if present and trustworthy.
pub(crate) fn lookup(dir: &Path, digest: &str, owner: u32) -> Option<Policy> {
    let dmeta = fs::symlink_metadata(dir).ok()?;
    if !trusted(&dmeta, owner, true) {
        return None;
    }
    let path = entry(dir, digest);
    let fmeta = fs::symlink_metadata(&path).ok()?;
    if !trusted(&fmeta, owner, false) {
        return None;
    }
    let bytes = fs::read(&path).ok()?;
    let policy = crate::codec::decode(&bytes)?;
    (policy.digest == digest).then_some(policy)
}

/// Stores a validated policy; failures are ignored (the cache is an optimisation).
pub(crate) fn store(dir: &Path, policy: &Policy, owner: u32) {
    let _ = try_store(dir, policy, owner);
}

fn try_store(dir: &Path, policy: &Policy, owner: u32) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let dmeta = fs::symlink_metadata(dir)?;
    if !trusted(&dmeta, owner, true) {
        return Ok(());
    }
    prune(dir);
    let path = entry(dir, &policy.digest);
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), SCHEMA));
    let bytes = crate::codec::encode(policy);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?; // create_new (O_EXCL) never follows a symlink
    let res = f.write_all(&bytes).and_then(|()| fs::rename(&tmp, &path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

fn prune(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, e.path()))
        })
        .collect();
    if entries.len() < MAX_ENTRIES {
        return;
    }
    entries.sort();
    for (_, p) in entries.iter().take(entries.len() + 1 - MAX_ENTRIES) {
        let _ = fs::remove_file(p);
    }
}
