//! containerd releases and the quirks of each line that the router must know.

use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A containerd release, from `containerd --version` (e.g. `containerd
/// github.com/containerd/containerd/v2 2.1.9+unknown`, `... 1.6.20~ds1 1.6.20~ds1-1+b1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ContainerdVersion {
    /// The first `X.Y.Z` word of `containerd --version`'s output (a leading `v` allowed).
    pub fn from_version_output(out: &str) -> Option<ContainerdVersion> {
        out.split_whitespace().find_map(|word| {
            let word = word.strip_prefix('v').unwrap_or(word);
            let mut nums = word.splitn(3, '.');
            let major = nums.next()?.parse().ok()?;
            let minor = nums.next()?.parse().ok()?;
            let rest = nums.next()?;
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let patch = rest[..end].parse().ok()?;
            Some(ContainerdVersion {
                major,
                minor,
                patch,
            })
        })
    }

    /// containerd 2.0.0–2.0.5 never call `start` for a pod's app containers, whatever the
    /// sandbox's shim answered (fixed in 2.0.6 and 2.1.0): the router cannot check their specs.
    pub fn skips_every_container_start(&self) -> bool {
        self.major == 2 && self.minor == 0 && self.patch <= 5
    }

    /// containerd 2.1.2+ sends `Shutdown` to the shim of each container of a version-2 shim.
    pub fn shuts_down_per_container(&self) -> bool {
        (self.major, self.minor, self.patch) >= (2, 1, 2)
    }

    /// containerd 2.3+ writes protobuf `BootstrapParams` on a shim's stdin and reads a protobuf
    /// `BootstrapResult` before the older replies (`crate::bootstrap`).
    pub fn speaks_protobuf_bootstrap(&self) -> bool {
        (self.major, self.minor) >= (2, 3)
    }
}

impl std::fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// How long `containerd --version` may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks containerd's binary (`-publish-binary`) for its version; `None` if it cannot tell within
/// a few seconds. Only for explaining a refusal: it costs a process.
///
/// Only the output is read, never the exit status: the built-in backend's daemon is a child
/// subreaper whose reaper takes every exited child with `waitpid(-1)`, so a `wait` here may find
/// the child already reaped (that race made the 2.0.0–2.0.5 refusal lose its version in three
/// runs of four). stdout reaching EOF says the child is done.
pub fn query_version(binary: &str) -> Option<ContainerdVersion> {
    if binary.is_empty() {
        return None;
    }
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let out = child
        .stdout
        .take()
        .map(|s| read_until_eof(s, deadline))
        .unwrap_or_default();
    loop {
        match child.try_wait() {
            // exited, or already reaped by a subreaper (ECHILD): either way it is gone
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                // still ours (not reaped), so the pid is still this child's
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
    ContainerdVersion::from_version_output(&String::from_utf8_lossy(&out))
}

/// Up to 4 KiB of a pipe, until EOF or the deadline.
fn read_until_eof(mut pipe: std::process::ChildStdout, deadline: Instant) -> Vec<u8> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    while out.len() < 4096 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn versions_from_containerd_version_output() {
        fn v(s: &str) -> ContainerdVersion {
            ContainerdVersion::from_version_output(s).unwrap()
        }
        assert_eq!(
            v("containerd github.com/containerd/containerd/v2 2.1.9+unknown "),
            ContainerdVersion {
                major: 2,
                minor: 1,
                patch: 9
            }
        );
        assert_eq!(
            v("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1").to_string(),
            "1.6.20"
        );
        assert_eq!(v("containerd x v2.0.3 abc").to_string(), "2.0.3");
        assert!(ContainerdVersion::from_version_output("no version").is_none());
        let table = [
            ("2.0.0", true, false, false),
            ("2.0.5", true, false, false),
            ("2.0.6", false, false, false),
            ("2.1.0", false, false, false),
            ("2.1.1", false, false, false),
            ("2.1.2", false, true, false),
            ("2.2.7", false, true, false),
            ("2.3.0", false, true, true),
            ("1.7.24", false, false, false),
            ("1.6.20", false, false, false),
        ];
        for (s, skips_all, shuts_down, protobuf) in table {
            let x = v(&format!("containerd x {s}"));
            assert_eq!(x.skips_every_container_start(), skips_all, "{s}");
            assert_eq!(x.shuts_down_per_container(), shuts_down, "{s}");
            assert_eq!(x.speaks_protobuf_bootstrap(), protobuf, "{s}");
        }
    }

    fn fake_containerd(dir: &std::path::Path, body: &str) -> String {
        let fake = dir.join("containerd");
        std::fs::write(&fake, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        fake.to_str().unwrap().to_owned()
    }

    #[test]
    fn version_of_a_binary() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_containerd(
            dir.path(),
            "echo 'containerd github.com/containerd/containerd/v2 v2.0.4 abc'",
        );
        let v = query_version(&fake).unwrap();
        assert!(v.skips_every_container_start(), "{v}");
        // the exit status does not matter, only what it printed
        let failing = fake_containerd(dir.path(), "echo 'containerd x 2.0.5'; exit 3");
        assert_eq!(query_version(&failing).unwrap().to_string(), "2.0.5");
        assert_eq!(query_version("/nonexistent/containerd"), None);
        assert_eq!(query_version(""), None);
    }

    /// The race behind "the version is named in 1 run of 4": a subreaper in the same process
    /// reaps the `--version` child before `query_version` can wait for it. Run in a child
    /// process of its own (the reaper thread would take other tests' children).
    #[test]
    fn version_is_read_when_a_reaper_takes_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_containerd(dir.path(), "echo 'containerd x v2.0.5'");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "version::tests::helper_query_under_a_reaper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("COMPAT_TEST_FAKE_CONTAINERD", &fake)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    #[ignore = "run by version_is_read_when_a_reaper_takes_the_child in a process of its own"]
    fn helper_query_under_a_reaper() {
        let fake = std::env::var("COMPAT_TEST_FAKE_CONTAINERD").unwrap();
        std::thread::spawn(|| loop {
            // what the built-in daemon's reaper does on every SIGCHLD
            match nix::sys::wait::wait() {
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        });
        for i in 0..20 {
            let v = query_version(&fake);
            assert_eq!(
                v.map(|v| v.to_string()).as_deref(),
                Some("2.0.5"),
                "run {i}"
            );
        }
    }
}
