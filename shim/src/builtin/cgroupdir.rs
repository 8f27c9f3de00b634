//! Removal of the cgroups a task's runtime made, once the runtime is done with the task. runc
//! removes them itself at `delete`; runsc does not always (a container of a gVisor pod whose
//! sandbox died with its daemon keeps its cgroup after `runsc delete --force`). Only empty
//! cgroups are removed (`rmdir` refuses one with processes in it), and only the cgroup named by
//! the bundle's own `linux.cgroupsPath` (cgroupfs form, `/k8s.io/<id>`), in every hierarchy.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How long an `rmdir` refused with EBUSY (processes still leaving) is retried.
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// The cgroupfs path of a bundle's spec, if it is one (`slice:prefix:name` systemd paths and
/// paths climbing with `..` are not) and it names task `id` (its last component is the id): the
/// bundle may be written by a pod, so it must not make root remove another task's cgroup. The
/// read is bounded and never blocks.
pub fn cgroups_path(bundle: &Path, id: &str) -> Option<PathBuf> {
    let bytes = router_config::safefile::read_limited(&bundle.join("config.json"), 16 << 20, false)
        .ok()
        .flatten()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let p = v.pointer("/linux/cgroupsPath")?.as_str()?;
    let path = Path::new(p);
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let names_task = path
        .file_name()
        .is_some_and(|n| n == std::ffi::OsStr::new(id));
    (path.is_absolute() && plain && names_task && !p.contains(':') && path.components().count() > 1)
        .then(|| path.to_owned())
}

/// Remove the (empty) cgroup `path` from every hierarchy under `root`; returns what could not
/// be removed.
pub fn remove_from(root: &Path, path: &Path) -> Vec<String> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut dirs = vec![root.join(rel)];
    if let Ok(rd) = std::fs::read_dir(root) {
        dirs.extend(rd.filter_map(|e| e.ok()).map(|e| e.path().join(rel)));
    }
    let mut left = Vec::new();
    for dir in dirs {
        let deadline = Instant::now() + BUSY_WAIT;
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    left.push(format!("remove cgroup {}: {e}", dir.display()));
                    break;
                }
            }
        }
    }
    left
}

/// [`remove_from`] the system's cgroup root.
pub fn remove(path: &Path) -> Vec<String> {
    remove_from(Path::new(CGROUP_ROOT), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_cgroupfs_paths_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let spec = |p: &str| {
            std::fs::write(
                dir.path().join("config.json"),
                format!(r#"{{"linux":{{"cgroupsPath":"{p}"}}}}"#),
            )
            .unwrap();
            cgroups_path(dir.path(), "abc")
        };
        assert_eq!(spec("/k8s.io/abc"), Some(PathBuf::from("/k8s.io/abc")));
        // a pod-written spec naming another task's cgroup is not taken
        assert_eq!(spec("/k8s.io/other"), None);
        assert_eq!(spec("/k8s.io/../etc"), None);
        assert_eq!(spec("system.slice:cri:abc"), None);
        assert_eq!(spec("/"), None);
        assert_eq!(spec("relative/x"), None);
    }

    #[test]
    fn empty_dirs_go_in_every_hierarchy_busy_ones_are_reported() {
        let root = tempfile::tempdir().unwrap();
        for h in ["cpu", "memory"] {
            std::fs::create_dir_all(root.path().join(h).join("k8s.io/abc")).unwrap();
        }
        std::fs::create_dir_all(root.path().join("pids/k8s.io/abc/child")).unwrap();
        let left = remove_from(root.path(), Path::new("/k8s.io/abc"));
        assert!(!root.path().join("cpu/k8s.io/abc").exists());
        assert!(!root.path().join("memory/k8s.io/abc").exists());
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].contains("pids/k8s.io/abc"), "{left:?}");
    }
}
