//! Test support: OCI bundles built from the host's `/bin/busybox` (busybox-static) in a temporary
//! directory, and a [`Pod`] guard that force-deletes every container it created through runsc
//! (and kills a sandbox process left behind) when the test ends, pass or fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "uname", "dmesg", "ip", "ps", "true", "false", "kill", "head",
];

/// Write a bundle at `dir` running `args`, with the CRI annotations of `role`
/// (`"sandbox"` or `"container"`) and `sandbox_id`.
pub fn write_bundle(dir: &Path, role: &str, sandbox_id: &str, args: &[&str]) {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let caps = [
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_CHOWN",
        "CAP_SETUID",
        "CAP_SETGID",
    ];
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0}, "args": args,
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "pod",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "annotations": {
            "io.kubernetes.cri.container-type": role,
            "io.kubernetes.cri.sandbox-id": sandbox_id
        },
        "linux": {"namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}
        ]}
    });
    std::fs::write(dir.join("config.json"), spec.to_string()).unwrap();
}

/// A pod's worth of runsc containers under a private `--root`, cleaned up on drop.
pub struct Pod {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub runtime_args: Vec<String>,
    /// Makes ids unique on the host: runsc names a sandbox's control socket (an abstract unix
    /// socket) after its id, so two sandboxes with one id collide even under different roots.
    suffix: String,
    /// Created container ids, sandbox first.
    ids: Vec<String>,
    sandbox_pid: Option<i32>,
}

impl Pod {
    pub fn new(runtime_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let suffix = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches('.').to_lowercase())
            .unwrap_or_default();
        Self {
            dir,
            root,
            runtime_args: runtime_args.iter().map(|s| s.to_string()).collect(),
            suffix,
            ids: Vec::new(),
            sandbox_pid: None,
        }
    }

    pub fn runsc(&self) -> Command {
        let mut c = Command::new("/usr/bin/runsc");
        c.arg("--root").arg(&self.root).args(&self.runtime_args);
        c
    }

    /// The runsc container id of the test's short name.
    pub fn cid(&self, name: &str) -> String {
        format!("{name}-{}", self.suffix)
    }

    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    /// `runsc create` of container `id` (a short name, see [`Pod::cid`]) in the sandbox
    /// `sandbox` (short name too), stdio on /dev/null (as good as any here: runsc takes a
    /// joining container's stdio at `start`); returns the pid file's pid.
    pub fn create(&mut self, id: &str, role: &str, sandbox: &str, args: &[&str]) -> i32 {
        let bundle = self.bundle(id);
        std::fs::create_dir(&bundle).unwrap();
        write_bundle(&bundle, role, &self.cid(sandbox), args);
        let pid_file = self.dir.path().join(format!("{id}.pid"));
        self.ids.push(self.cid(id));
        // Never a pipe: the sandbox keeps create's stdio, so reading it to its end would block
        // for the sandbox's lifetime.
        let err_name = format!("{id}.create.err");
        let err = std::fs::File::create(self.dir.path().join(&err_name)).unwrap();
        let status = self
            .runsc()
            .arg("create")
            .arg("--bundle")
            .arg(&bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(self.cid(id))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .unwrap();
        assert!(status.success(), "create {id}: {}", self.read(&err_name));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if role == "sandbox" {
            self.sandbox_pid = Some(pid);
        }
        pid
    }

    /// `runsc start` with the container's stdout/stderr going to files `<id>.out`/`<id>.err`
    /// (what the daemon must do for a container joining a sandbox).
    pub fn start(&self, id: &str) {
        let out = std::fs::File::create(self.dir.path().join(format!("{id}.out"))).unwrap();
        let err = std::fs::File::create(self.dir.path().join(format!("{id}.err"))).unwrap();
        let status = self
            .runsc()
            .arg("start")
            .arg(self.cid(id))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "start {id}: {}",
            self.read(&format!("{id}.err"))
        );
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Wait (bounded) until `name` contains `needle`.
    pub fn wait_for_text(&self, name: &str, needle: &str) -> bool {
        for _ in 0..300 {
            if self.read(name).contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Whether the sandbox process is still there.
    pub fn sandbox_alive(&self) -> bool {
        self.sandbox_pid
            .is_some_and(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(p))
    }

    /// SIGKILL the sandbox process (started by this test).
    pub fn kill_sandbox(&self) {
        if let Some(p) = self.sandbox_pid {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Containers first, the sandbox last.
        for id in self.ids.iter().rev() {
            let _ = self
                .runsc()
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if self.sandbox_alive() {
            self.kill_sandbox();
        }
    }
}
