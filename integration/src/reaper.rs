//! Reaping harnesses whose test process died without tearing down (killed, aborted): every
//! harness holds an advisory lock on `<dir>/harness.lock` for its lifetime, so a harness dir
//! whose lock can be taken belongs to nobody. Its containerd, shims, containers, mounts, bridge and
//! dir are removed the same way a teardown would.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};

use crate::cleanup;
use crate::error::{Error, Result};
use crate::procs;

/// Prefix of harness temp dirs (in the system temp dir).
pub const DIR_PREFIX: &str = "rr-ctd-";
/// Lock file inside a harness dir.
pub const LOCK_FILE: &str = "harness.lock";
/// A dir whose lock is free is only reaped when the lock file is at least this old (a harness
/// takes its lock milliseconds after creating it).
const MIN_AGE: Duration = Duration::from_secs(60);
/// A harness dir with no lock file at all is reaped when older than this.
const MIN_AGE_UNLOCKED: Duration = Duration::from_secs(600);

/// Takes the lifetime lock of a new harness dir.
pub fn lock_dir(dir: &Path) -> Result<Flock<File>> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| Error::io(format!("lock {}", path.display()), errno.into()))
}

/// True while a live harness holds the lock of `dir`.
pub fn is_held(dir: &Path) -> bool {
    match File::options().write(true).open(dir.join(LOCK_FILE)) {
        Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
        Err(_) => false,
    }
}

/// Reaps every abandoned harness in the system temp dir. Returns the dirs removed.
pub fn reap_stale_harnesses() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let dir = e.path();
        let is_harness = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX))
            && dir.join("config.toml").is_file();
        if !is_harness {
            continue;
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = if lock_path.exists() {
            if age(&lock_path) < MIN_AGE {
                continue;
            }
            match File::options().write(true).open(&lock_path) {
                Ok(f) => match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                    Ok(l) => Some(l),
                    Err(_) => continue, // held: its owner is alive
                },
                Err(_) => continue,
            }
        } else if age(&dir) >= MIN_AGE_UNLOCKED {
            None
        } else {
            continue;
        };
        log::warn!("reaping abandoned harness {}", dir.display());
        for problem in reap(&dir) {
            log::warn!("reaping {}: {problem}", dir.display());
        }
        drop(lock);
        if std::fs::remove_dir_all(&dir).is_ok() {
            reaped.push(dir);
        }
    }
    reaped
}

/// Kills the containerd started with `<dir>/config.toml`, then cleans up like a teardown.
fn reap(dir: &Path) -> Vec<String> {
    let config = dir.join("config.toml");
    let config = config.to_string_lossy();
    let daemons: Vec<i32> = procs::list()
        .into_iter()
        .filter(|p| p.cmdline.iter().any(|a| a == config.as_ref()))
        .map(|p| p.pid)
        .collect();
    let mut left = Vec::new();
    let alive = procs::kill_all(&daemons, Duration::from_secs(15));
    if !alive.is_empty() {
        left.push(format!("containerd survived SIGKILL: {alive:?}"));
    }
    let bridge = bridge_of(dir).unwrap_or_default();
    left.extend(cleanup::after_containerd(
        dir,
        &dir.join("containerd.sock"),
        &dir.join("state"),
        &bridge,
    ));
    left
}

/// The bridge name from the harness's CNI config.
fn bridge_of(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("cni/conf.d/10-harness.conflist")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["plugins"][0]["bridge"].as_str().map(String::from)
}

fn age(path: &Path) -> Duration {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}
