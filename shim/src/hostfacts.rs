//! What `start` learns on the host about a task's bind sources before the decision (SPEC §3.6),
//! handed to the pure decision as `Inputs::host`:
//! - the floor: where containerd's socket, state and root dirs, the router's state, the policy
//!   and its cache, and the audit log are on this node (from `-address`, the bundle's place,
//!   containerd's own command line and config, the router's environment), each also under its
//!   real path;
//! - for each bind source that an `allowed_host_paths` entry allows, a walk from that entry's
//!   directory one component at a time without following any symlink: a source holding a
//!   symlink, a `..` or a missing component is marked unsafe (an emptyDir is written by the pod,
//!   so a symlink planted there would lead the OCI runtime anywhere on the host); a clean walk
//!   gives the source's real path, which the floor is checked against too.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use router_config::Policy;
use router_core::hostpath::{self, PodIds};
use router_core::{HostFacts, Inputs, Protected};

use crate::args::ShimArgs;
use crate::sys::{self, Step};

/// containerd's defaults, protected whatever its configuration says.
const CONTAINERD_STATE: &str = "/run/containerd";
const CONTAINERD_ROOT: &str = "/var/lib/containerd";
const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The bundles dir of containerd's task service, below its state dir.
const TASKS_DIR: &str = "io.containerd.runtime.v2.task";
/// Largest containerd config read for its `root` and `state`.
const MAX_CONTAINERD_CONFIG: u64 = 1 << 20;

/// Whether this host's kernel enforces AppArmor (then a task without a profile runs
/// unconfined); read only when some tenant of the policy enforces the `apparmor` rule.
fn apparmor_enabled(policy: &Policy) -> bool {
    use router_core::podsecurity::{apparmor_enabled_from, APPARMOR_ENABLED_PATH};
    policy
        .tenants
        .values()
        .any(|t| t.denies(router_config::DenyRule::Apparmor))
        && std::fs::read(APPARMOR_ENABLED_PATH).is_ok_and(|b| apparmor_enabled_from(&b))
}

/// The host facts of one task; `pod_sources` are the bind sources earlier tasks of its pod
/// were given (`RecordStore::read_binds`).
pub fn gather(
    inputs: &Inputs,
    policy: &Policy,
    args: &ShimArgs,
    bundle: &Path,
    pod_sources: &[String],
) -> HostFacts {
    let mut facts = HostFacts {
        protected: protected(policy, args, bundle),
        apparmor_enabled: apparmor_enabled(policy),
        ..HostFacts::default()
    };
    let ids = PodIds {
        pod_uid: inputs.pod_uid.as_deref(),
        sandbox_id: Some(inputs.sandbox_id()).filter(|s| !s.is_empty()),
    };
    for (i, m) in inputs.mounts.iter().enumerate() {
        if !m.bind {
            continue;
        }
        let Some(entry) = hostpath::allowing_entry(&m.source, &policy.allowed_host_paths, ids)
        else {
            continue;
        };
        match walk(&m.source, &entry) {
            Ok(real) => {
                facts.resolved.insert(i, real);
            }
            Err(why) => {
                facts.unsafe_sources.insert(i, why);
            }
        }
    }
    // what the pod can write: its earlier tasks' bind sources and this task's other ones
    let own = |i: usize| source_paths(inputs, &facts.resolved, i);
    let binds: Vec<usize> = (0..inputs.mounts.len())
        .filter(|i| inputs.mounts[*i].bind)
        .collect();
    let mut inside = std::collections::BTreeMap::new();
    for &i in &binds {
        let others = binds
            .iter()
            .filter(|j| **j != i)
            .flat_map(|j| own(*j))
            .chain(pod_sources.iter().cloned());
        let mine = own(i);
        let found = others.into_iter().find(|dir| {
            mine.iter()
                .any(|src| src != dir && hostpath::allowed_by(src, &format!("{dir}/")))
        });
        if let Some(dir) = found {
            inside.insert(i, dir);
        }
    }
    facts.inside_pod_dirs = inside;
    facts
}

/// The bind sources of a task as the pod's list of writable dirs keeps them: each source
/// normalised, and its real path where it was walked.
pub fn bind_sources(inputs: &Inputs) -> Vec<String> {
    let mut out = Vec::new();
    for (i, m) in inputs.mounts.iter().enumerate() {
        if !m.bind {
            continue;
        }
        for s in source_paths(inputs, &inputs.host.resolved, i) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// Mount `i`'s source as the pod can reach it: normalised, and its real path where walked.
fn source_paths(
    inputs: &Inputs,
    resolved: &std::collections::BTreeMap<usize, String>,
    i: usize,
) -> Vec<String> {
    hostpath::normalize(&inputs.mounts[i].source)
        .into_iter()
        .chain(resolved.get(&i).cloned())
        .collect()
}

/// Walks `source` from the directory of `entry` (which allows it lexically) without following a
/// symlink; returns the source's real path, or why it is refused.
pub fn walk(source: &str, entry: &str) -> Result<String, String> {
    walk_open(source, entry).map(|(real, _)| real)
}

/// [`walk`], also returning the walked source held open (`O_PATH`): a bind mount made from it
/// (`crate::builtin::pin`) is of this very inode, whatever is renamed meanwhile.
pub fn walk_open(source: &str, entry: &str) -> Result<(String, OwnedFd), String> {
    let comps: Vec<&str> = source
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.contains(&"..") {
        return Err("it holds `..`, which could climb out through a symlink".into());
    }
    let base: Vec<&str> = entry.split('/').filter(|c| !c.is_empty()).collect();
    let Some(rest) = comps.strip_prefix(base.as_slice()) else {
        return Err(format!("it is not below `{entry}`"));
    };
    let base_path = format!("/{}", base.join("/"));
    let real_base = std::fs::canonicalize(&base_path)
        .map_err(|e| format!("the allowed directory `{base_path}` cannot be opened: {e}"))?;
    let mut dir = sys::open_walk_root(&real_base)
        .map_err(|e| format!("the allowed directory `{base_path}` cannot be opened: {e}"))?;
    let mut walked = real_base.to_string_lossy().trim_end_matches('/').to_owned();
    for comp in rest {
        walked.push('/');
        walked.push_str(comp);
        match sys::walk_step(dir.as_fd(), comp) {
            Ok(Step::Found(next)) => dir = next,
            Ok(Step::Symlink) => return Err(format!("`{walked}` is a symlink")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("`{walked}` does not exist"))
            }
            Err(e) => return Err(format!("`{walked}` cannot be opened: {e}")),
        }
    }
    if walked.is_empty() {
        walked.push('/');
    }
    Ok((walked, dir))
}

/// Where the things no policy opens are on this node.
fn protected(policy: &Policy, args: &ShimArgs, bundle: &Path) -> Vec<Protected> {
    let mut out: Vec<Protected> = Vec::new();
    let mut add = |path: &Path, what: &str, pod_dirs: bool| {
        let mut paths = vec![path.to_path_buf()];
        if let Ok(real) = std::fs::canonicalize(path) {
            paths.push(real);
        }
        for p in paths {
            let Some(n) = p.to_str().and_then(hostpath::normalize) else {
                continue;
            };
            if !out.iter().any(|o| o.path == n) {
                out.push(Protected {
                    path: n,
                    what: what.to_owned(),
                    pod_dirs,
                });
            }
        }
    };
    let socket = args
        .address
        .strip_prefix("unix://")
        .unwrap_or(&args.address);
    if socket.starts_with('/') {
        add(Path::new(socket), "containerd's socket", false);
        add(
            Path::new(&format!("{socket}.ttrpc")),
            "containerd's socket",
            false,
        );
    }
    if let Some(ttrpc) = std::env::var_os("TTRPC_ADDRESS") {
        let t = PathBuf::from(ttrpc);
        let t = t.strip_prefix("unix://").unwrap_or(&t).to_path_buf();
        if t.is_absolute() {
            add(&t, "containerd's socket", false);
        }
    }
    // <state>/io.containerd.runtime.v2.task/<namespace>/<id>
    if let Some(state) = bundle
        .parent()
        .and_then(Path::parent)
        .filter(|d| d.file_name().is_some_and(|n| n == TASKS_DIR))
        .and_then(Path::parent)
    {
        add(state, "containerd's state dir", true);
    }
    add(Path::new(CONTAINERD_STATE), "containerd's state dir", true);
    add(Path::new(CONTAINERD_ROOT), "containerd's root dir", true);
    let (root, state) = containerd_dirs(std::os::unix::process::parent_id());
    if let Some(root) = root {
        add(&root, "containerd's root dir", true);
    }
    if let Some(state) = state {
        add(&state, "containerd's state dir", true);
    }
    add(
        &crate::statedir::state_dir(),
        "the router's state and records",
        false,
    );
    add(&router_config::policy_path(None), "the node policy", false);
    if let router_config::PolicySource::File(f) = &policy.source {
        add(f, "the node policy", false);
    }
    let cache = std::env::var_os(router_config::CACHE_DIR_ENV)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from(router_config::DEFAULT_CACHE_DIR));
    add(&cache, "the policy cache", false);
    let audit = policy
        .audit_log
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::audit::DEFAULT_AUDIT_LOG));
    add(&audit, "the router's audit log", false);
    out
}

/// containerd's `root` and `state` as the process `pid` (the containerd that ran this `start`)
/// was given them: `--root`/`--state` on its command line, else its config file's top-level
/// keys (`--config`/`-c`, else containerd's default config path).
fn containerd_dirs(pid: u32) -> (Option<PathBuf>, Option<PathBuf>) {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return (None, None);
    };
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let flag = |names: &[&str]| {
        args.iter().enumerate().find_map(|(i, a)| {
            names.iter().find_map(|n| {
                a.strip_prefix(n)
                    .and_then(|rest| match rest.strip_prefix('=') {
                        Some(v) => Some(v.to_owned()),
                        None if rest.is_empty() => args.get(i + 1).cloned(),
                        None => None,
                    })
            })
        })
    };
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| "/".into());
    let abs = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            cwd.join(p)
        }
    };
    let mut root = flag(&["--root", "-root"]).map(abs);
    let mut state = flag(&["--state", "-state"]).map(abs);
    if root.is_none() || state.is_none() {
        let config = flag(&["--config", "-config", "-c"])
            .map(abs)
            .unwrap_or_else(|| PathBuf::from(CONTAINERD_CONFIG));
        let (r, s) = config_dirs(&config);
        root = root.or(r);
        state = state.or(s);
    }
    (root, state)
}

/// The top-level `root` and `state` of a containerd config file (they come before any table).
fn config_dirs(path: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    #[derive(serde::Deserialize)]
    struct Top {
        root: Option<PathBuf>,
        state: Option<PathBuf>,
    }
    let Ok(Some(bytes)) = router_config::safefile::read_limited(path, MAX_CONTAINERD_CONFIG, true)
    else {
        return (None, None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let head: String = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(|l| format!("{l}\n"))
        .collect();
    match toml::from_str::<Top>(&head) {
        Ok(t) => (
            t.root.filter(|p| p.is_absolute()),
            t.state.filter(|p| p.is_absolute()),
        ),
        Err(_) => (None, None),
    }
}

#[cfg(test)]
#[path = "hostfacts_tests.rs"]
mod tests;
