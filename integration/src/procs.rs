//! Finding and killing processes through `/proc`: the shims that belong to one harness (their
//! command line carries `-address <this socket>`), everything they started, and any process whose
//! command line mentions a path (used by tests to prove nothing was left behind).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One process as seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Command line, one entry per argument.
    pub cmdline: Vec<String>,
}

/// Every process currently visible in `/proc` (processes that vanish while being read are
/// skipped).
pub fn list() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter_map(read_proc)
        .collect()
}

fn read_proc(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ppid = parse_ppid(&stat)?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(ProcInfo { pid, ppid, cmdline })
}

/// The parent pid from the text of `/proc/PID/stat` (the command name may contain spaces and
/// parentheses, so fields are counted after the last `)`).
fn parse_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Processes started with `-address <socket>`: the shims serving a containerd listening on
/// `socket`.
pub fn shims_of(socket: &Path) -> Vec<ProcInfo> {
    let want = socket.to_string_lossy();
    list()
        .into_iter()
        .filter(|p| {
            p.cmdline
                .windows(2)
                .any(|w| w[0].trim_start_matches('-') == "address" && w[1] == want)
        })
        .collect()
}

/// Processes whose command line mentions `needle` in any argument.
pub fn referencing(needle: &str) -> Vec<ProcInfo> {
    let me = std::process::id() as i32;
    list()
        .into_iter()
        .filter(|p| p.pid != me && p.cmdline.iter().any(|a| a.contains(needle)))
        .collect()
}

/// `roots` and all their descendants, parents before children.
pub fn with_descendants(roots: &[i32], procs: &[ProcInfo]) -> Vec<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue: Vec<i32> = roots.to_vec();
    while let Some(pid) = queue.pop() {
        if pid <= 1 || !seen.insert(pid) {
            continue;
        }
        out.push(pid);
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids.iter().copied());
        }
    }
    out
}

/// One process by pid (`None` if it is gone).
pub fn info(pid: i32) -> Option<ProcInfo> {
    read_proc(pid)
}

/// The parent pid of a process (`None` if it is gone).
pub fn ppid(pid: i32) -> Option<i32> {
    read_proc(pid).map(|p| p.ppid)
}

/// The executable of a process (`/proc/PID/exe`; `None` if it is gone or unreadable).
pub fn exe(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Waits up to `timeout` for a process to be gone; true if it is.
pub async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// True while `/proc/PID` exists and the process is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends SIGKILL to every pid (errors for processes that are already gone are ignored) and waits
/// up to `wait` for them to disappear. Returns the pids still alive.
pub fn kill_all(pids: &[i32], wait: Duration) -> Vec<i32> {
    for &pid in pids {
        if pid > 1 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + wait;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_survives_odd_command_names() {
        assert_eq!(parse_ppid("42 (a) b (c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("42 (sleep) S 1 42"), Some(1));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn descendants_follow_parent_links() {
        let p = |pid, ppid| ProcInfo {
            pid,
            ppid,
            cmdline: vec![],
        };
        let procs = [p(10, 1), p(11, 10), p(12, 11), p(20, 1), p(13, 10)];
        let mut got = with_descendants(&[10], &procs);
        got.sort();
        assert_eq!(got, vec![10, 11, 12, 13]);
    }

    #[test]
    fn finds_own_child_by_argument() {
        let marker = format!("/nonexistent/harness-procs-test-{}", std::process::id());
        let mut child = std::process::Command::new("/bin/busybox")
            .args(["sh", "-c", "sleep 30; true", "-address", &marker])
            .spawn()
            .expect("spawn busybox");
        let pid = child.id() as i32;
        // Right after fork the child still shows the parent's command line: wait for the exec.
        let deadline = Instant::now() + Duration::from_secs(10);
        while shims_of(Path::new(&marker)).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let shims = shims_of(Path::new(&marker));
        let refs = referencing(&marker);
        let parent = ppid(pid);
        let binary = exe(pid);
        let tree = with_descendants(&[pid], &list());
        let left = kill_all(&tree, Duration::from_secs(5));
        let _ = child.wait();
        assert_eq!(shims.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![pid]);
        assert_eq!(refs.len(), 1);
        assert_eq!(parent, Some(std::process::id() as i32));
        assert!(binary.is_some_and(|e| e.ends_with("busybox")));

        assert!(tree.len() >= 2, "sh and its sleep: {tree:?}");
        assert!(left.is_empty(), "{left:?}");
    }
}
