//! The leak check every harness runs at teardown, after CRI removed its pods and before anything
//! is force-cleaned: whatever of this harness is still there is a leak, and the test fails with
//! the list. Several harnesses (and other people's tests) run at once on one machine and share
//! `/run/runtime-router/<runtime>/<ns>`, `/run/containerd/s` and the cgroup trees, so the check
//! only looks for what THIS harness made:
//! - the ids of its tasks: every 64-hex-digit id in its containerd log (sandbox and container ids,
//!   failed ones included) and every task bundle still in its state dir;
//! - processes whose command line names its temp dir or socket, whose working directory is below
//!   its temp dir, or whose cgroup path names one of its ids;
//! - OCI runtime state (router roots, the router's pid dirs, containerd's runc shim root) named
//!   by one of its ids or whose state file names its temp dir, and the built-in daemon's
//!   bind-source pins of one of its tasks;
//! - shim sockets derived from its containerd socket ([`cleanup::shim_socket_path`]);
//! - mounts below its temp dir or naming one of its ids; cgroups named by one of its ids.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::procs;

/// Default router state dir (`RUNTIME_ROUTER_STATE_DIR` unset).
pub const ROUTER_STATE_DIR: &str = "/run/runtime-router";
/// The variable naming another router state dir.
pub const ROUTER_STATE_DIR_ENV: &str = "RUNTIME_ROUTER_STATE_DIR";
/// Subdirectories of the router state dir that are not OCI runtime roots.
const NOT_RUNTIME_ROOTS: [&str; 4] = ["records", "pids", "policy-cache", "pins"];
/// The cgroup hierarchies are searched this deep for cgroups named by an id.
const CGROUP_DEPTH: usize = 4;
/// Longest state file read when looking for the harness dir in it.
const STATE_FILE_LIMIT: u64 = 1 << 20;

/// What one harness owns, to look for.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The harness temp dir.
    pub dir: PathBuf,
    /// containerd's socket.
    pub socket: PathBuf,
    /// containerd's state dir.
    pub state: PathBuf,
    /// containerd's log file (read for ids).
    pub log: PathBuf,
    /// The router state dir the harness's shims use.
    pub router_state: PathBuf,
    /// Processes that are the harness's own while it runs (its containerd).
    pub ignore_pids: Vec<i32>,
    /// Tasks kept on purpose while checking (e.g. a long-lived pod of a soak run): nothing
    /// naming one of these ids is reported.
    pub keep_ids: BTreeSet<String>,
}

impl Scope {
    /// The task bundles dir of containerd's state.
    fn tasks_dir(&self) -> PathBuf {
        self.state.join("io.containerd.runtime.v2.task")
    }

    /// Every id this harness's containerd has dealt with, and the namespaces of its tasks.
    pub fn ids(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut ids = ids_in_text(&std::fs::read_to_string(&self.log).unwrap_or_default());
        let mut namespaces: BTreeSet<String> = ["k8s.io", "default", "infra"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for ns in dir_names(&self.tasks_dir()) {
            ids.extend(dir_names(&self.tasks_dir().join(&ns)));
            namespaces.insert(ns);
        }
        (ids, namespaces)
    }
}

/// Every 64-hex-digit token of a text that is not a digest (`sha256:<hex>`).
pub fn ids_in_text(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        let token = &text[start..i];
        let digest = text[..start].ends_with("sha256:");
        if token.len() == 64 && !digest && token.bytes().all(|b| !b.is_ascii_uppercase()) {
            out.insert(token.to_owned());
        }
    }
    out
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything of the harness still there, one line each (empty: no leak).
pub fn find(scope: &Scope) -> Vec<String> {
    let (mut ids, namespaces) = scope.ids();
    ids.retain(|id| !scope.keep_ids.contains(id));
    let mut out = Vec::new();
    out.extend(processes(scope, &ids));
    out.extend(task_bundles(scope));
    out.extend(runtime_state(scope, &ids));
    out.extend(sockets(scope, &ids, &namespaces));
    out.extend(mounts(scope, &ids));
    out.extend(cgroups(&ids));
    out.retain(|line| !scope.keep_ids.iter().any(|k| line.contains(k.as_str())));
    out
}

/// What is left of the tasks `ids` alone (a pod and its containers), for a harness other tests
/// share while it runs: their processes (command line, working directory or cgroup naming an
/// id), bundles, runtime state, pid dirs, shim and relay sockets, mounts and cgroups.
pub fn find_of(scope: &Scope, ids: &BTreeSet<String>) -> Vec<String> {
    let (_, namespaces) = scope.ids();
    let names_one = |line: &String| {
        ids.iter()
            .any(|id| line.contains(id.as_str()) || line.contains(short(id)))
    };
    let mut out = processes_of(scope, ids);
    let mut rest = task_bundles(scope);
    rest.extend(runtime_state(scope, ids));
    rest.extend(sockets(scope, ids, &namespaces));
    rest.extend(mounts(scope, ids));
    rest.extend(cgroups(ids));
    out.extend(rest.into_iter().filter(names_one));
    out
}

/// [`find_of`] until it comes back empty or `timeout` passes; returns the last findings.
pub fn wait_clean_of(scope: &Scope, ids: &BTreeSet<String>, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = find_of(scope, ids);
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn processes_of(scope: &Scope, ids: &BTreeSet<String>) -> Vec<String> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for p in procs::list() {
        if p.pid == me || scope.ignore_pids.contains(&p.pid) || !procs::alive(p.pid) {
            continue;
        }
        let cwd = std::fs::read_link(format!("/proc/{}/cwd", p.pid))
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid)).unwrap_or_default();
        let named = ids.iter().find(|id| {
            p.cmdline.iter().any(|a| a.contains(id.as_str()))
                || cwd.contains(id.as_str())
                || cg.contains(id.as_str())
        });
        if let Some(id) = named {
            out.push(format!(
                "process {} `{}` (names task {})",
                p.pid,
                p.cmdline.join(" ").chars().take(160).collect::<String>(),
                short(id)
            ));
        }
    }
    out
}

/// [`find`] until it comes back empty or `timeout` passes (processes take a moment to exit after
/// their pod is removed); returns the last findings.
pub fn wait_clean(scope: &Scope, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = find(scope);
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until containerd has finished cleaning up after the dead shims of tasks `ids` in
/// namespace `ns`: containerd removes a task's bundle only once the shim's `delete` action
/// returned, and (1.6) runs that cleanup asynchronously: CRI sees a dead shim's tasks as gone at
/// once, so RemoveContainer/RemovePodSandbox do not wait for it. Returns the bundles still there
/// after `timeout`.
pub async fn wait_dead_shim_cleanup(
    h: &crate::Containerd,
    ns: &str,
    ids: &[&str],
    timeout: Duration,
) -> Vec<PathBuf> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<PathBuf> = ids
            .iter()
            .map(|id| h.bundle_dir(ns, id))
            .filter(|b| b.exists())
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`wait_dead_shim_cleanup`] as an error naming the bundles left, for callers that require the
/// cleanup to finish (the pod and container of a killed shim, in the order kubelet removes them).
pub async fn dead_shim_cleaned_up(
    h: &crate::Containerd,
    ns: &str,
    ids: &[&str],
    timeout: Duration,
) -> crate::Result<()> {
    let left = wait_dead_shim_cleanup(h, ns, ids, timeout).await;
    if left.is_empty() {
        return Ok(());
    }
    Err(crate::Error::Invalid(format!(
        "containerd never finished the dead-shim cleanup of {left:?}"
    )))
}

/// After a leak was reported: force-deletes, through the runtime that made it, the OCI runtime
/// state this harness left in the router's roots (`runc`/`runsc --root R delete --force ID`),
/// and removes its pid dirs, so one leaking test does not leave state for every later run.
/// Processes, mounts and sockets are the teardown's usual cleanup. Returns what failed.
pub fn force_clean_runtime_state(scope: &Scope) -> Vec<String> {
    let (mut ids, _) = scope.ids();
    ids.retain(|id| !scope.keep_ids.contains(id));
    let dir = scope.dir.to_string_lossy().into_owned();
    let mut left = Vec::new();
    for runtime in dir_names(&scope.router_state) {
        let program = match runtime.as_str() {
            "runc" => "/usr/sbin/runc",
            "runsc" => "/usr/bin/runsc",
            _ => continue,
        };
        for ns in dir_names(&scope.router_state.join(&runtime)) {
            let root = scope.router_state.join(&runtime).join(&ns);
            for name in dir_names(&root) {
                let id = name.split('_').next().unwrap_or(&name).to_owned();
                let path = root.join(&name);
                if !(ids.contains(&id) || names_harness(&path, &dir)) {
                    continue;
                }
                // runsc keeps each pod in a root of its own, named by the sandbox id
                let (pod_root, ids_in) = if path.is_dir() {
                    let inner = dir_names(&path)
                        .iter()
                        .map(|n| n.split('_').next().unwrap_or(n).to_owned())
                        .collect::<BTreeSet<_>>();
                    (path.clone(), inner)
                } else {
                    (root.clone(), BTreeSet::from([id]))
                };
                for id in ids_in {
                    let mut cmd = std::process::Command::new(program);
                    cmd.arg("--root")
                        .arg(&pod_root)
                        .args(["delete", "--force", &id]);
                    if let Err(e) = crate::command::run(&mut cmd, Duration::from_secs(60)) {
                        left.push(e.to_string());
                    }
                }
                if path.is_dir() {
                    if let Err(e) = std::fs::remove_dir_all(&path) {
                        left.push(format!("remove {}: {e}", path.display()));
                    }
                }
            }
        }
    }
    // leftover bind-source pins: unmounted (they are mounts of a pod's volume), then removed
    let pins = scope.router_state.join("pins");
    for name in dir_names(&pins) {
        if !ids.iter().any(|id| name.ends_with(id.as_str())) {
            continue;
        }
        let dir = pins.join(&name);
        for pin in dir_names(&dir) {
            let _ = nix::mount::umount2(&dir.join(&pin), nix::mount::MntFlags::MNT_DETACH);
            let p = dir.join(&pin);
            let _ = std::fs::remove_dir(&p).or_else(|_| std::fs::remove_file(&p));
        }
        if let Err(e) = std::fs::remove_dir(&dir) {
            left.push(format!("remove {}: {e}", dir.display()));
        }
    }
    let pids = scope.router_state.join("pids");
    for ns in dir_names(&pids) {
        for id in dir_names(&pids.join(&ns))
            .into_iter()
            .filter(|i| ids.contains(i))
        {
            let _ = std::fs::remove_dir_all(pids.join(&ns).join(id));
        }
    }
    left
}

/// After a leak was reported and the teardown killed what was left: removes the (now empty)
/// cgroups named by this harness's ids. Returns what could not be removed.
pub fn remove_cgroups(scope: &Scope) -> Vec<String> {
    let (mut ids, _) = scope.ids();
    ids.retain(|id| !scope.keep_ids.contains(id));
    let mut left = Vec::new();
    for line in cgroups(&ids) {
        let Some(path) = line.strip_prefix("cgroup ") else {
            continue;
        };
        if let Err(e) = std::fs::remove_dir(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                left.push(format!("remove cgroup {path}: {e}"));
            }
        }
    }
    left
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn processes(scope: &Scope, ids: &BTreeSet<String>) -> Vec<String> {
    let me = std::process::id() as i32;
    let dir = scope.dir.to_string_lossy().into_owned();
    let socket = scope.socket.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for p in procs::list() {
        if p.pid == me || scope.ignore_pids.contains(&p.pid) || !procs::alive(p.pid) {
            continue;
        }
        let cwd = std::fs::read_link(format!("/proc/{}/cwd", p.pid)).ok();
        let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid)).unwrap_or_default();
        let kept = scope.keep_ids.iter().any(|k| {
            p.cmdline.iter().any(|a| a.contains(k.as_str()))
                || cg.contains(k.as_str())
                || cwd
                    .as_ref()
                    .is_some_and(|c| c.to_string_lossy().contains(k.as_str()))
        });
        if kept {
            continue;
        }
        let why = if p
            .cmdline
            .iter()
            .any(|a| a.contains(&dir) || a.contains(&socket))
        {
            Some("its command line names the harness".to_owned())
        } else if cwd.as_ref().is_some_and(|c| c.starts_with(&scope.dir)) {
            Some("its working directory is in the harness".to_owned())
        } else {
            ids.iter()
                .find(|id| cg.contains(id.as_str()))
                .map(|id| format!("it is in the cgroup of {}", short(id)))
        };
        if let Some(why) = why {
            out.push(format!(
                "process {} `{}` ({why})",
                p.pid,
                p.cmdline.join(" ").chars().take(160).collect::<String>()
            ));
        }
    }
    out
}

fn task_bundles(scope: &Scope) -> Vec<String> {
    let tasks = scope.tasks_dir();
    let mut out = Vec::new();
    for ns in dir_names(&tasks) {
        for id in dir_names(&tasks.join(&ns)) {
            out.push(format!(
                "task bundle {}",
                tasks.join(&ns).join(&id).display()
            ));
        }
    }
    out
}

/// Whether a runtime state entry (a dir with `state.json`, or a file) names the harness dir.
fn names_harness(entry: &Path, dir: &str) -> bool {
    let file = if entry.is_dir() {
        entry.join("state.json")
    } else {
        entry.to_path_buf()
    };
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(STATE_FILE_LIMIT).read_to_string(&mut text))
        .is_ok()
        && text.contains(dir)
}

fn runtime_state(scope: &Scope, ids: &BTreeSet<String>) -> Vec<String> {
    let dir = scope.dir.to_string_lossy().into_owned();
    let mut roots: Vec<PathBuf> = Vec::new();
    for runtime in dir_names(&scope.router_state) {
        if NOT_RUNTIME_ROOTS.contains(&runtime.as_str()) {
            continue;
        }
        for ns in dir_names(&scope.router_state.join(&runtime)) {
            roots.push(scope.router_state.join(&runtime).join(ns));
        }
    }
    for ns in dir_names(Path::new(cleanup::RUNC_SHIM_ROOT)) {
        roots.push(Path::new(cleanup::RUNC_SHIM_ROOT).join(ns));
    }
    let mut out = Vec::new();
    for root in roots {
        for name in dir_names(&root) {
            let path = root.join(&name);
            let ours = ids.iter().any(|id| name.starts_with(id.as_str()));
            if ours || names_harness(&path, &dir) {
                // a pod's own runsc root: say what kept it, so a leak report can be read
                let held = if path.is_dir() {
                    format!(" holding {:?}", dir_names(&path))
                } else {
                    String::new()
                };
                out.push(format!("runtime state {}{held}", path.display()));
            }
        }
    }
    // the built-in daemon's bind-source pins (`<pid>-<task id>`), unmounted right after the
    // runtime's create: one still there is a leak (and a mount into a pod's volume)
    let pins = scope.router_state.join("pins");
    for name in dir_names(&pins) {
        if ids.iter().any(|id| name.ends_with(id.as_str())) {
            out.push(format!("bind-source pins {}", pins.join(name).display()));
        }
    }
    // the built-in daemon's bind-source pins (`<pid>-<task id>`), unmounted right after the
    // runtime's create: one still there is a leak (and a mount into a pod's volume)
    let pins = scope.router_state.join("pins");
    for name in dir_names(&pins) {
        if ids.iter().any(|id| name.ends_with(id.as_str())) {
            out.push(format!("bind-source pins {}", pins.join(name).display()));
        }
    }
    let pids = scope.router_state.join("pids");
    for ns in dir_names(&pids) {
        for id in dir_names(&pids.join(&ns)) {
            if ids.contains(&id) {
                out.push(format!("pid dir {}", pids.join(&ns).join(id).display()));
            }
        }
    }
    out
}

fn sockets(scope: &Scope, ids: &BTreeSet<String>, namespaces: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for ns in namespaces {
        for id in ids {
            // the task's (or pod's) shim, and the router's task API relay of a pod (2.x)
            let relay = format!("{id}/router-relay");
            for (what, key) in [
                ("shim socket", id.as_str()),
                ("relay socket", relay.as_str()),
            ] {
                let path = cleanup::shim_socket_path(&scope.socket, ns, key);
                if path.exists() {
                    out.push(format!(
                        "{what} {} (task {} in {ns})",
                        path.display(),
                        short(id)
                    ));
                }
            }
        }
    }
    out
}

fn mounts(scope: &Scope, ids: &BTreeSet<String>) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = BTreeSet::new();
    for point in text.lines().filter_map(|l| l.split(' ').nth(4)) {
        // The harness's own state tmpfs is the harness's, not a pod's.
        if Path::new(point) == scope.state {
            continue;
        }
        if Path::new(point).starts_with(&scope.dir) || ids.iter().any(|id| point.contains(id)) {
            out.insert(format!("mount {point}"));
        }
    }
    out.into_iter().collect()
}

fn cgroups(ids: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    if ids.is_empty() {
        return out;
    }
    let mut stack: Vec<(PathBuf, usize)> = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if ids.iter().any(|id| name.contains(id.as_str())) {
                out.push(format!("cgroup {}", path.display()));
            } else if depth < CGROUP_DEPTH {
                stack.push((path, depth + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_digits_but_not_digests() {
        let a = "a".repeat(64);
        let b = "0123456789abcdef".repeat(4);
        let text = format!(
            "returns sandbox id \\\"{a}\\\" id={b} ImageCreate sha256:{} short {}",
            "c".repeat(64),
            "d".repeat(63)
        );
        let ids = ids_in_text(&text);
        assert_eq!(ids, [a, b].into_iter().collect());
    }

    #[test]
    fn an_empty_harness_leaks_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let scope = Scope {
            dir: dir.path().to_path_buf(),
            socket: dir.path().join("containerd.sock"),
            state: dir.path().join("state"),
            log: dir.path().join("containerd.log"),
            router_state: dir.path().join("router"),
            ignore_pids: Vec::new(),
            keep_ids: BTreeSet::new(),
        };
        assert_eq!(find(&scope), Vec::<String>::new());
    }
}
