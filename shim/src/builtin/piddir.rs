//! Where the OCI runtime writes a task's pid files: `<state>/pids/<namespace>/<id>/` below the
//! router's root-only state dir ([`crate::statedir::state_dir`]), never the bundle. A bundle is
//! reachable from pods (a hostPath into containerd's state): a pid file there could be rewritten
//! between the runtime writing it and the daemon reading it, steering which host pid the daemon
//! signals and reports. The dir is made 0700 by the daemon before `create`, holds `init.pid` and
//! each exec's `exec-N.json` (its process spec), `exec-N.pid` and `exec-N.ipid` (runsc's
//! sandbox-internal pid), and is removed with the task (and on every failed create, and by the
//! `delete` action after a dead daemon).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use super::BuiltinError;

/// The pid dir of task `id` in containerd namespace `namespace`.
pub fn path(namespace: &str, id: &str) -> Result<PathBuf, BuiltinError> {
    let bad = |s: &str| s.is_empty() || s == "." || s == ".." || s.contains('/');
    if bad(namespace) || bad(id) {
        return Err(BuiltinError::Invocation(format!(
            "no pid dir for task {id:?} in namespace {namespace:?}: not a plain name"
        )));
    }
    Ok(crate::statedir::state_dir()
        .join("pids")
        .join(namespace)
        .join(id))
}

/// Create (or take over) the pid dir of a task: mode 0700, owned by us, a real directory.
pub fn create(namespace: &str, id: &str) -> Result<PathBuf, BuiltinError> {
    let dir = path(namespace, id)?;
    let io = |what: &str, e| BuiltinError::Io {
        what: format!("{what} {}", dir.display()),
        source: e,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io("create pid dir", e))?;
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| io("inspect pid dir", e))?;
    if !meta.is_dir() || meta.uid() != own_uid() {
        return Err(BuiltinError::Invocation(format!(
            "pid dir {} is not a directory of ours",
            dir.display()
        )));
    }
    if meta.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("chmod pid dir", e))?;
    }
    Ok(dir)
}

/// Remove the pid dir of a task (nothing to do if it is gone).
pub fn remove(namespace: &str, id: &str) {
    let Ok(dir) = path(namespace, id) else { return };
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("remove pid dir {}: {e}", dir.display()),
    }
}

/// Our effective uid (the owner of `/proc/self`).
fn own_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_not_plain_names_are_refused() {
        assert!(path("k8s.io", "../x").is_err());
        assert!(path("..", "x").is_err());
        assert!(path("k8s.io", "").is_err());
        let p = path("k8s.io", "abc").unwrap();
        assert!(p.ends_with("pids/k8s.io/abc"), "{}", p.display());
    }
}
