//! The names of the audit log's files, shared by the shim that writes and rotates the log and by
//! `routerctl metrics`, which follows it: `<log>.lock` (the rotation lock) and `<log>.<n>` (the
//! n-th newest rotated file).

use std::path::{Path, PathBuf};

fn with_suffix(log: &Path, suffix: &str) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// `<log>.lock`: the lock every writer takes exclusively and the follower shared.
pub fn lock_path(log: &Path) -> PathBuf {
    with_suffix(log, ".lock")
}

/// `<log>.<n>`: the n-th newest rotated file (`n` from 1).
pub fn rotated_path(log: &Path, n: u32) -> PathBuf {
    with_suffix(log, &format!(".{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let log = Path::new("/var/log/rr/d.jsonl");
        assert_eq!(lock_path(log), Path::new("/var/log/rr/d.jsonl.lock"));
        assert_eq!(rotated_path(log, 3), Path::new("/var/log/rr/d.jsonl.3"));
    }
}
