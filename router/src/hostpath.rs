//! The `host-path` rule's path logic: lexical normalisation (so `..` cannot climb out of an
//! allowed directory) and prefix matching on path-component boundaries.
//!
//! An `allowed_host_paths` entry ending in `/` allows only paths strictly below it
//! (`/var/lib/kubelet/pods/` allows `/var/lib/kubelet/pods/<uid>/volumes/...` but not the
//! directory holding every pod); an entry without the trailing `/` allows the path itself too.
//! Symlinks are not resolved (the decision does no I/O): the allowed directories are owned by
//! kubelet and containerd, not by pods.

/// Lexically normalises an absolute path: collapses `//`, drops `.`, resolves `..` (never above
/// `/`). Returns `None` for a relative path or one containing NUL.
pub fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Whether `normalized` (output of `normalize`) is allowed by `entry`.
pub fn allowed_by(normalized: &str, entry: &str) -> bool {
    let strictly_below = entry.ends_with('/');
    let base = entry.trim_end_matches('/');
    if base.is_empty() {
        return false;
    }
    match normalized.strip_prefix(base) {
        Some("") => !strictly_below,
        Some(rest) => rest.starts_with('/') && rest.len() > 1,
        None => false,
    }
}

/// Whether the host path `source` is inside one of the `allowed` entries.
pub fn is_allowed<S: AsRef<str>>(source: &str, allowed: &[S]) -> bool {
    match normalize(source) {
        Some(n) => allowed.iter().any(|e| allowed_by(&n, e.as_ref())),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        [
            "/var/lib/kubelet/pods/",
            "/var/lib/containerd/",
            "/run/containerd/",
            "/data/shared",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn normalize_table() {
        let cases = [
            ("/a/b/../c", Some("/a/c")),
            ("//a///b/./c/", Some("/a/b/c")),
            ("/../../etc", Some("/etc")),
            ("/", Some("/")),
            ("a/b", None),
            ("", None),
            ("/a\0b", None),
        ];
        for (i, want) in cases {
            assert_eq!(normalize(i).as_deref(), want, "{i:?}");
        }
    }

    #[test]
    fn host_path_table() {
        let cases = [
            (
                "/var/lib/kubelet/pods/123/volumes/kubernetes.io~empty-dir/x",
                true,
            ),
            ("/var/lib/kubelet/pods/123/etc-hosts", true),
            (
                "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/hostname",
                true,
            ),
            (
                "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/shm",
                true,
            ),
            // the directory of all pods itself is not a per-pod dir
            ("/var/lib/kubelet/pods", false),
            ("/var/lib/kubelet/pods/", false),
            // component boundary
            ("/var/lib/kubelet/pods-evil/x", false),
            ("/run/containerdX/y", false),
            // dot-dot tricks
            ("/var/lib/kubelet/pods/../../../etc/shadow", false),
            ("/var/lib/kubelet/pods/123/../../../../", false),
            ("/run/containerd/../../etc", false),
            ("/var/lib/kubelet/pods/./123/../456/x", true),
            // entry without trailing slash allows itself
            ("/data/shared", true),
            ("/data/shared/a", true),
            ("/data/sharedX", false),
            ("/etc", false),
            ("/", false),
            ("relative/path", false),
            ("", false),
        ];
        for (src, want) in cases {
            assert_eq!(is_allowed(src, &allowed()), want, "{src:?}");
        }
    }
}
