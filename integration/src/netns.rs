//! Named network namespaces left behind by CRI (`/var/run/netns/cni-*`) when a pod could not be
//! removed through CRI (e.g. containerd crashed): found by matching the namespace of this
//! harness's leftover processes, then unmounted and deleted.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// Where CRI (containerd 1.6) pins pod network namespaces.
pub const NETNS_DIRS: [&str; 2] = ["/var/run/netns", "/run/netns"];

/// The network-namespace inode of a process (`/proc/PID/ns/net` → `net:[INODE]`).
pub fn net_ns_of(pid: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let text = link.to_string_lossy();
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Named namespace files whose namespace is one of `inodes` (the host's own is never included).
pub fn pinned_files(inodes: &BTreeSet<u64>) -> Vec<PathBuf> {
    let host = net_ns_of(std::process::id() as i32);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for dir in NETNS_DIRS {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            let ino = md.ino();
            if Some(ino) != host && inodes.contains(&ino) {
                // /run and /var/run are usually the same directory: report each file once.
                let canonical = std::fs::canonicalize(&path).unwrap_or(path);
                if seen.insert(canonical.clone()) {
                    out.push(canonical);
                }
            }
        }
    }
    out
}

/// Unmounts and deletes a pinned namespace file. Returns an error message on failure.
pub fn remove_pinned(path: &Path) -> Result<(), String> {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    std::fs::remove_file(path).map_err(|e| format!("remove {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_readable_and_never_matched() {
        let me = net_ns_of(std::process::id() as i32).expect("own netns");
        let set: BTreeSet<u64> = [me].into_iter().collect();
        assert!(pinned_files(&set).is_empty());
    }
}
