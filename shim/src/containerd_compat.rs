//! Everything the router knows about differences between containerd versions, in one place
//! (SPEC §2): the shape of a shim's bootstrap reply to `start`, whether a reply makes containerd
//! skip `start` for a pod's later containers, which containerd versions skip `start` for every
//! app container whatever the reply, and the protobuf `RuntimeInfo` containerd 2.x asks for
//! with `<shim> -info`. Callers ask questions here; no other module compares version numbers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The task service containerd calls on a shim whose `start` gave a version-2 reply (plain
/// address or JSON version 2): every containerd from 1.6 on.
pub const TASK_SERVICE_V2: &str = "containerd.task.v2.Task";
/// The task service of a shim that answered bootstrap protocol 3 (containerd 2.x's own runc
/// shim serves only this one); the messages are the same as v2's.
pub const TASK_SERVICE_V3: &str = "containerd.task.v3.Task";

/// What a shim printed on stdout in answer to `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapReply {
    /// A plain address (task API v2): every containerd reads it; containerd 2.x calls `start`
    /// again for each container of the pod.
    Plain(String),
    /// JSON `{"version":N,"address":...,"protocol":...}` (containerd 2.0+).
    Json {
        version: u32,
        address: String,
        protocol: String,
    },
}

#[derive(serde::Deserialize)]
struct JsonReply {
    version: u32,
    address: String,
    #[serde(default)]
    protocol: String,
}

impl BootstrapReply {
    /// Parses a `start` reply the way containerd 2.x does: JSON if it parses as the bootstrap
    /// object, else the trimmed text is a plain address. `None` for an empty reply.
    pub fn parse(out: &[u8]) -> Option<BootstrapReply> {
        let text = String::from_utf8_lossy(out);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if text.starts_with('{') {
            if let Ok(j) = serde_json::from_str::<JsonReply>(text) {
                return Some(BootstrapReply::Json {
                    version: j.version,
                    address: j.address,
                    protocol: j.protocol,
                });
            }
        }
        Some(BootstrapReply::Plain(text.to_owned()))
    }

    /// Whether containerd 2.x, given this reply for a pod sandbox, connects the pod's app
    /// containers straight to that shim without calling `start` for them (task API v3).
    pub fn skips_container_start(&self) -> bool {
        matches!(self, BootstrapReply::Json { version, .. } if *version >= 3)
    }
}

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
    #[allow(dead_code)] // knowledge for readers and tests: the daemons stay up until empty
    pub fn shuts_down_per_container(&self) -> bool {
        (self.major, self.minor, self.patch) >= (2, 1, 2)
    }
}

impl std::fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Asks containerd's binary (`-publish-binary`) for its version; `None` if it cannot tell within
/// two seconds. Only for explaining a refusal: it costs a process.
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
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()?
        .take(4096)
        .read_to_string(&mut out)
        .ok()?;
    ContainerdVersion::from_version_output(&out)
}

/// The protobuf `containerd.types.RuntimeInfo` printed for `<shim> -info` (containerd 2.x):
/// `name` (field 1) and `version` (field 2, a `RuntimeVersion` with `version` = 1 and
/// `revision` = 2). No `options` or `features`: the router declares no OCI features of its own,
/// which containerd reads as "none known" (idmapped mounts are not offered).
pub fn runtime_info(name: &str, version: &str) -> Vec<u8> {
    let mut runtime_version = Vec::new();
    put_string(&mut runtime_version, 1, version);
    let mut out = Vec::new();
    put_string(&mut out, 1, name);
    put_bytes(&mut out, 2, &runtime_version);
    out
}

fn put_string(out: &mut Vec<u8>, field: u32, value: &str) {
    put_bytes(out, field, value.as_bytes());
}

/// A length-delimited field (wire type 2).
fn put_bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    put_varint(out, u64::from(field) << 3 | 2);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_each_containerd_line() {
        let plain = BootstrapReply::parse(b"unix:///run/containerd/s/abc\n").unwrap();
        assert_eq!(
            plain,
            BootstrapReply::Plain("unix:///run/containerd/s/abc".into())
        );
        assert!(!plain.skips_container_start());
        let v3 = BootstrapReply::parse(
            br#"{"version":3,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}"#,
        )
        .unwrap();
        assert!(v3.skips_container_start());
        let v2 = BootstrapReply::parse(br#"{"version":2,"address":"unix:///x"}"#).unwrap();
        assert!(!v2.skips_container_start());
        assert_eq!(BootstrapReply::parse(b"  \n"), None);
    }

    #[test]
    fn versions_from_containerd_version_output() {
        let v = |s| ContainerdVersion::from_version_output(s).unwrap();
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
        assert!(v("c x 2.0.0").skips_every_container_start());
        assert!(v("c x 2.0.5").skips_every_container_start());
        assert!(!v("c x 2.0.6").skips_every_container_start());
        assert!(!v("c x 2.1.0").skips_every_container_start());
        assert!(!v("c x 1.7.24").skips_every_container_start());
        assert!(v("c x 2.1.2").shuts_down_per_container());
        assert!(!v("c x 2.1.1").shuts_down_per_container());
    }

    #[test]
    fn version_of_a_binary() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("containerd");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'containerd github.com/containerd/containerd/v2 v2.0.4 abc'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let v = query_version(fake.to_str().unwrap()).unwrap();
        assert!(v.skips_every_container_start(), "{v}");
        assert_eq!(query_version("/nonexistent/containerd"), None);
        assert_eq!(query_version(""), None);
    }

    #[test]
    fn runtime_info_is_protobuf() {
        let b = runtime_info("io.containerd.router.v2", "0.1.0");
        // field 1 (name), length 23
        assert_eq!(&b[..2], &[0x0a, 23]);
        assert_eq!(&b[2..25], b"io.containerd.router.v2");
        // field 2 (version): a message holding field 1 = "0.1.0"
        assert_eq!(&b[25..], &[0x12, 7, 0x0a, 5, b'0', b'.', b'1', b'.', b'0']);
    }
}
