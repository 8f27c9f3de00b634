//! The `host-path` rule's path logic: lexical normalisation (so `..` cannot climb out of an
//! allowed directory) and prefix matching on path-component boundaries.
//!
//! An `allowed_host_paths` entry ending in `/` allows only paths strictly below it
//! (`/var/lib/kubelet/pods/` allows `/var/lib/kubelet/pods/<uid>/volumes/...` but not the
//! directory holding every pod); an entry without the trailing `/` allows the path itself too.
//! Symlinks are not resolved here (the decision does no I/O): `start` walks every source that an
//! entry allows from that entry's directory without following a symlink, before deciding, and
//! gives the decision what it found (`Inputs::host`): an allowed directory such as an emptyDir
//! volume is written by the pod itself.
//!
//! Below every entry lies a floor no policy opens ([`reaches`]): for a tenant that denies
//! `host-path`, a source that reaches containerd's socket, state or root dir, the router's state,
//! or the policy and its cache is refused whatever the entries say.
//!
//! Entries are per pod: `{pod_uid}` and `{sandbox_id}` stand for the pod being decided (its
//! Kubernetes uid, its sandbox id), so `/var/lib/kubelet/pods/{pod_uid}/` allows this pod's
//! volumes and no other pod's. A placeholder whose value is unknown (a task without CRI
//! annotations has no pod uid) or is not one plain path component makes its entry allow nothing.
//! [`unsafe_entries`] names entries that let a pod reach what every pod shares (containerd's
//! state, its socket, the router's state, every pod's kubelet dir): `routerctl check` warns.

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
    // `/` allows everything below it (what the floor, `reaches`, does not forbid)
    let base = entry.trim_end_matches('/');
    match normalized.strip_prefix(base) {
        Some("") => !strictly_below,
        Some(rest) => rest.starts_with('/') && rest.len() > 1,
        None => false,
    }
}

/// The pod an entry's placeholders stand for.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodIds<'a> {
    pub pod_uid: Option<&'a str>,
    pub sandbox_id: Option<&'a str>,
}

/// A placeholder value must be one plain path component.
fn plain_component(v: &str) -> bool {
    !v.is_empty() && v != "." && v != ".." && !v.contains('/') && !v.contains('\0')
}

/// `entry` with its placeholders replaced by the pod's ids; `None` when a placeholder's value is
/// unknown or not a plain path component (the entry then allows nothing).
pub fn expand(entry: &str, ids: PodIds<'_>) -> Option<String> {
    let mut out = entry.to_string();
    for (ph, value) in [("{pod_uid}", ids.pod_uid), ("{sandbox_id}", ids.sandbox_id)] {
        if out.contains(ph) {
            let v = value.filter(|v| plain_component(v))?;
            out = out.replace(ph, v);
        }
    }
    Some(out)
}

/// Whether the host path `source` is inside one of the `allowed` entries, placeholders expanded
/// for the pod `ids`.
pub fn is_allowed_for<S: AsRef<str>>(source: &str, allowed: &[S], ids: PodIds<'_>) -> bool {
    allowing_entry(source, allowed, ids).is_some()
}

/// The first entry of `allowed` (placeholders expanded for `ids`) that allows `source`.
pub fn allowing_entry<S: AsRef<str>>(
    source: &str,
    allowed: &[S],
    ids: PodIds<'_>,
) -> Option<String> {
    let n = normalize(source)?;
    allowed.iter().find_map(|e| {
        let e = e.as_ref();
        let e = if e.contains('{') {
            expand(e, ids)?
        } else {
            e.to_owned()
        };
        allowed_by(&n, &e).then_some(e)
    })
}

/// The CRI plugin's per-pod dir below a containerd state or root dir.
const CRI_SANDBOXES: &str = "io.containerd.grpc.v1.cri/sandboxes";

/// Whether the normalised host path `source` reaches `protected`: it is that path, a directory
/// above it, or a path below it — except, below a containerd state or root dir
/// (`pod_dirs`), this pod's own CRI sandbox dir (`sandbox_id` a plain path component).
pub fn reaches(source: &str, protected: &str, pod_dirs: bool, sandbox_id: Option<&str>) -> bool {
    let protected = protected.trim_end_matches('/');
    let below = |path: &str, dir: &str| {
        path.strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    };
    if source == protected || source == "/" || below(protected, source.trim_end_matches('/')) {
        return true;
    }
    if !below(source, protected) {
        return false;
    }
    let own = sandbox_id
        .filter(|s| plain_component(s))
        .map(|s| format!("{protected}/{CRI_SANDBOXES}/{s}"));
    !(pod_dirs && own.is_some_and(|own| below(source, &own)))
}

/// Whether the host path `source` is inside one of the `allowed` entries (entries with a
/// placeholder allow nothing: no pod is named).
pub fn is_allowed<S: AsRef<str>>(source: &str, allowed: &[S]) -> bool {
    is_allowed_for(source, allowed, PodIds::default())
}

/// Host paths that every pod shares: a pod that may bind-mount one reaches other pods, containerd
/// or the router. Each is probed as `(path, what)`; `OTHER` stands for another pod's id.
const SHARED_PROBES: [(&str, &str); 10] = [
    ("/run/containerd/containerd.sock", "containerd's socket"),
    ("/var/run/containerd/containerd.sock", "containerd's socket"),
    (
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/OTHER/config.json",
        "containerd's task state (every pod's bundle)",
    ),
    (
        "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/OTHER/shm",
        "another pod's containerd state",
    ),
    (
        "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/OTHER/hosts",
        "another pod's containerd files",
    ),
    (
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs",
        "containerd's root (every pod's rootfs)",
    ),
    (
        "/var/lib/kubelet/pods/OTHER/volumes/kubernetes.io~secret/token",
        "another pod's kubelet dir (its volumes and secrets)",
    ),
    ("/var/lib/kubelet/pods", "kubelet's dir of every pod"),
    ("/run/runtime-router/records/x", "the router's own state"),
    ("/etc/containerd/runtime-router.toml", "the node policy"),
];

/// Entries of `allowed` that let some pod reach what every pod shares, with the reason: an
/// entry is probed with the pod's own ids set to `THIS` against paths of another pod (`OTHER`)
/// and the shared runtime dirs. `extra_dirs` adds an operator's own state dirs (e.g. a
/// non-default containerd root) to probe below.
pub fn unsafe_entries<S: AsRef<str>>(allowed: &[S], extra_dirs: &[&str]) -> Vec<(usize, String)> {
    let ids = PodIds {
        pod_uid: Some("THIS"),
        sandbox_id: Some("THIS"),
    };
    let mut out = Vec::new();
    for (i, e) in allowed.iter().enumerate() {
        let one = [e.as_ref()];
        let extra: Vec<(String, String)> = extra_dirs
            .iter()
            .map(|d| {
                (
                    format!("{}/OTHER/x", d.trim_end_matches('/')),
                    format!("everything below {d}"),
                )
            })
            .collect();
        let hit = SHARED_PROBES
            .iter()
            .map(|(p, w)| (p.to_string(), w.to_string()))
            .chain(extra)
            .find(|(p, _)| is_allowed_for(p, &one, ids));
        if let Some((p, what)) = hit {
            out.push((i, format!("`{}` lets a pod bind-mount {what} (e.g. `{p}`); allow only this pod's own dirs, e.g. `/var/lib/kubelet/pods/{{pod_uid}}/`", e.as_ref())));
        }
    }
    out
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
    fn placeholders_allow_only_this_pod() {
        let allowed = [
            "/var/lib/kubelet/pods/{pod_uid}/",
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
        ];
        let me = PodIds {
            pod_uid: Some("uid-1"),
            sandbox_id: Some("sb1"),
        };
        let ok = |p: &str, ids| is_allowed_for(p, &allowed, ids);
        assert!(ok("/var/lib/kubelet/pods/uid-1/volumes/v", me));
        assert!(!ok("/var/lib/kubelet/pods/uid-2/volumes/v", me));
        assert!(!ok("/var/lib/kubelet/pods/uid-1", me));
        assert!(!ok("/var/lib/kubelet/pods/uid-1/../uid-2/x", me));
        assert!(ok(
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm",
            me
        ));
        assert!(!ok(
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb2/shm",
            me
        ));
        // unknown or unsafe ids allow nothing
        assert!(!ok("/var/lib/kubelet/pods/x/volumes", PodIds::default()));
        for bad in ["", ".", "..", "a/b"] {
            let ids = PodIds {
                pod_uid: Some(bad),
                sandbox_id: Some(bad),
            };
            assert!(!ok("/var/lib/kubelet/pods/a/b/c", ids), "{bad:?}");
            assert!(!ok("/var/lib/kubelet/pods/x", ids), "{bad:?}");
        }
    }

    #[test]
    fn unsafe_entries_are_named() {
        let old = [
            "/var/lib/kubelet/pods/",
            "/var/lib/containerd/",
            "/run/containerd/",
            "/data",
        ];
        let found: Vec<usize> = unsafe_entries(&old, &[])
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found, vec![0, 1, 2]);
        let per_pod = [
            "/var/lib/kubelet/pods/{pod_uid}/",
            "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
        ];
        assert!(unsafe_entries(&per_pod, &[]).is_empty());
        assert_eq!(unsafe_entries(&["/run/"], &[]).len(), 1);
        assert_eq!(unsafe_entries(&["/srv/ctd/"], &["/srv/ctd"]).len(), 1);
        let msg = &unsafe_entries(&["/run/containerd/"], &[])[0].1;
        assert!(msg.contains("containerd's socket"), "{msg}");
    }

    #[test]
    fn the_floor_table() {
        let sid = Some("sb1");
        let cases = [
            // (source, protected, pod_dirs, reaches)
            (
                "/run/containerd/containerd.sock",
                "/run/containerd/containerd.sock",
                false,
                true,
            ),
            (
                "/run/containerd",
                "/run/containerd/containerd.sock",
                false,
                true,
            ),
            ("/run", "/run/containerd/containerd.sock", false, true),
            ("/", "/run/containerd/containerd.sock", false, true),
            (
                "/run/containerd2",
                "/run/containerd/containerd.sock",
                false,
                false,
            ),
            (
                "/run/containerd/containerd.sock.ttrpc",
                "/run/containerd/containerd.sock",
                false,
                false,
            ),
            (
                "/run/runtime-router/records/x",
                "/run/runtime-router",
                false,
                true,
            ),
            (
                "/etc/containerd",
                "/etc/containerd/runtime-router.toml",
                false,
                true,
            ),
            (
                "/etc/containerd/other.toml",
                "/etc/containerd/runtime-router.toml",
                false,
                false,
            ),
            // a state dir: this pod's own sandbox dir stays allowed, nothing else below it
            (
                "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm",
                "/run/containerd",
                true,
                false,
            ),
            (
                "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1",
                "/run/containerd",
                true,
                true,
            ),
            (
                "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb2/shm",
                "/run/containerd",
                true,
                true,
            ),
            (
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/x",
                "/run/containerd",
                true,
                true,
            ),
            ("/run/containerd/s/abc", "/run/containerd", true, true),
            (
                "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm",
                "/run/containerd",
                false,
                true,
            ),
            (
                "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/hosts",
                "/var/lib/containerd",
                true,
                false,
            ),
            (
                "/var/lib/kubelet/pods/u/volumes",
                "/var/lib/containerd",
                true,
                false,
            ),
        ];
        for (src, prot, pod_dirs, want) in cases {
            assert_eq!(reaches(src, prot, pod_dirs, sid), want, "{src} vs {prot}");
        }
        // no sandbox id: no exception
        assert!(reaches(
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm",
            "/run/containerd",
            true,
            None
        ));
        assert!(reaches(
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/../x",
            "/run/containerd",
            true,
            Some("..")
        ));
    }

    #[test]
    fn root_entry_allows_everything_below_it() {
        assert!(is_allowed("/etc/hostname", &["/"]));
        assert!(!is_allowed("/", &["/"]));
        assert_eq!(
            allowing_entry(
                "/var/lib/kubelet/pods/u1/volumes/v",
                &["/data/", "/var/lib/kubelet/pods/{pod_uid}/"],
                PodIds {
                    pod_uid: Some("u1"),
                    sandbox_id: None
                }
            )
            .as_deref(),
            Some("/var/lib/kubelet/pods/u1/")
        );
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
