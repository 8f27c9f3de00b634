//! The decision record (SPEC §4): its format, and atomic writing and bounded reading of one.
//!
//! Written for every sandbox and container that `start` lets through (a container copies its
//! sandbox's backend) twice: the authoritative copy in the router's root-only state dir
//! (`crate::records`), read by a container's `start` and by `delete`, and an operator's copy,
//! `bundle/router-decision.json`, that is never read for a decision (a bundle can be written by
//! anything that reaches containerd's state). It carries the backend as resolved at decision time
//! (binary path and env, or OCI runtime), so `delete` and later containers never depend on the
//! policy file still saying the same thing. Written atomically (temp file created exclusively,
//! then renamed over the name; no fsync, see `write_named`) and never through a symlink.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the record inside a bundle.
pub const RECORD_FILE: &str = "router-decision.json";
/// Format version of the record.
pub const RECORD_VERSION: u32 = 1;
/// A record larger than this is refused as corrupt.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// The backend that serves the pod, as resolved when the sandbox was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RecordedBackend {
    /// Another shim v2 binary: absolute path and the extra environment it was started with.
    Shim {
        binary: PathBuf,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
    /// This binary's built-in backend driving an OCI runtime CLI.
    Builtin {
        runtime: PathBuf,
        #[serde(default)]
        runtime_args: Vec<String>,
    },
}

/// What `bundle/router-decision.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub version: u32,
    /// containerd task id of this bundle.
    pub id: String,
    /// containerd namespace.
    pub namespace: String,
    /// `sandbox` (also a task without CRI annotations) or `container`.
    pub role: String,
    /// The pod's sandbox id (equal to `id` for a sandbox).
    pub sandbox_id: String,
    pub tenant: String,
    /// Backend name in the policy.
    pub backend: String,
    pub isolation: String,
    /// Policy rule that chose the tenant/backend.
    pub rule: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub refused_overrides: Vec<String>,
    pub policy_digest: String,
    /// Policy file path, or `embedded`.
    pub policy_source: String,
    #[serde(default)]
    pub k8s_namespace: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
    #[serde(default)]
    pub pod_uid: Option<String>,
    /// RFC 3339 time of the decision.
    pub decided_at: String,
    /// The resolved backend.
    pub target: RecordedBackend,
    /// For a sandbox whose delegate shim answered bootstrap protocol 3 (and each container of
    /// its pod): the delegate's address, which the pod's task API relay (`crate::relay`)
    /// fronts. A sandbox's is set once its relay runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_to: Option<String>,
    /// The runtime handler that started the task (`crate::args::handler_from_argv0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
}

/// A container record of pod `sandbox` on a shim backend (tests).
#[cfg(test)]
pub fn test_record(id: &str, sandbox: &str) -> DecisionRecord {
    DecisionRecord {
        version: RECORD_VERSION,
        id: id.into(),
        namespace: "k8s.io".into(),
        role: "container".into(),
        sandbox_id: sandbox.into(),
        tenant: "t".into(),
        backend: "b".into(),
        isolation: "vm".into(),
        rule: "default".into(),
        reasons: vec![],
        refused_overrides: vec![],
        policy_digest: String::new(),
        policy_source: String::new(),
        k8s_namespace: None,
        pod_name: None,
        pod_uid: None,
        decided_at: String::new(),
        target: RecordedBackend::Shim {
            binary: "/bin/true".into(),
            env: Default::default(),
        },
        relay_to: None,
        handler: None,
    }
}

/// Reading or writing a record failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: is a symlink or not a regular file; refusing to use it")]
    NotRegular { path: PathBuf },
    #[error("{path}: larger than {MAX_RECORD_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: not a valid decision record: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: unsupported record version {version}")]
    Version { path: PathBuf, version: u32 },
    #[error("could not encode the decision record: {0}")]
    Encode(serde_json::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Path of the record in `bundle`.
pub fn path_in(bundle: &Path) -> PathBuf {
    bundle.join(RECORD_FILE)
}

/// Write `rec` as `bundle/router-decision.json`, atomically, never following a symlink.
pub fn write(bundle: &Path, rec: &DecisionRecord) -> Result<(), RecordError> {
    write_named(bundle, RECORD_FILE, rec)
}

/// Write `rec` as `dir/name`, atomically, never following a symlink.
pub fn write_named(dir: &Path, name: &str, rec: &DecisionRecord) -> Result<(), RecordError> {
    let mut body = serde_json::to_vec_pretty(rec).map_err(RecordError::Encode)?;
    body.push(b'\n');
    replace_file(dir, name, &body, 0o600)
}

/// Replaces `dir/name` with `body` atomically (a temp file created exclusively, then renamed
/// over it: a symlink at the name is replaced, never followed).
pub fn replace_file(dir: &Path, name: &str, body: &[u8], mode: u32) -> Result<(), RecordError> {
    let target = dir.join(name);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = write_tmp(&tmp, body, mode).and_then(|()| {
        // rename replaces a symlink at the target instead of following it
        std::fs::rename(&tmp, &target).map_err(io_err(&target))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // No fsync of the file or the directory: the bundle lives in containerd's state dir (tmpfs,
    // `/run/containerd`), which does not survive a reboot, so durability buys nothing and costs
    // the hot start path a disk flush. The rename alone gives readers a complete record or none.
    Ok(())
}

fn write_tmp(tmp: &Path, body: &[u8], mode: u32) -> Result<(), RecordError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT|O_EXCL: never reuses or follows an existing name
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)
        .map_err(io_err(tmp))?;
    f.write_all(body).map_err(io_err(tmp))
}

/// Read `bundle/router-decision.json` (tests: the operator's copy is never read for a decision).
#[cfg(test)]
pub fn read(bundle: &Path) -> Result<Option<DecisionRecord>, RecordError> {
    read_file(&path_in(bundle))
}

/// Read a record file; `Ok(None)` when it does not exist.
pub fn read_file(path: &Path) -> Result<Option<DecisionRecord>, RecordError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path);
    let f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(RecordError::NotRegular {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let meta = f.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(RecordError::NotRegular {
            path: path.to_owned(),
        });
    }
    if meta.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut body = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(io_err(path))?;
    let rec: DecisionRecord =
        serde_json::from_slice(&body).map_err(|source| RecordError::Parse {
            path: path.to_owned(),
            source,
        })?;
    if rec.version != RECORD_VERSION {
        return Err(RecordError::Version {
            path: path.to_owned(),
            version: rec.version,
        });
    }
    Ok(Some(rec))
}

/// Remove the record (after a start that failed once the record was written).
pub fn remove(bundle: &Path) {
    let _ = std::fs::remove_file(path_in(bundle));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DecisionRecord {
        DecisionRecord {
            version: RECORD_VERSION,
            id: "sb1".into(),
            namespace: "k8s.io".into(),
            role: "sandbox".into(),
            sandbox_id: "sb1".into(),
            tenant: "provider".into(),
            backend: "runc".into(),
            isolation: "container".into(),
            rule: "tenants.provider.namespaces[kube-system]".into(),
            reasons: vec![],
            refused_overrides: vec![],
            policy_digest: "sha256:00".into(),
            policy_source: "embedded".into(),
            k8s_namespace: Some("kube-system".into()),
            pod_name: Some("p".into()),
            pod_uid: None,
            decided_at: "1970-01-01T00:00:00.000000000Z".into(),
            target: RecordedBackend::Shim {
                binary: "/usr/bin/containerd-shim-runc-v2".into(),
                env: BTreeMap::from([("A".into(), "b".into())]),
            },
            relay_to: None,
            handler: None,
        }
    }

    #[test]
    fn round_trip_and_no_temp_left() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        write(dir.path(), &sample()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(sample()));
        // overwrite works and leaves exactly one file
        write(dir.path(), &sample()).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(RECORD_FILE)]);
    }

    #[test]
    fn symlinked_record_is_replaced_not_followed_and_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, path_in(dir.path())).unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(RecordError::NotRegular { .. })
        ));
        write(dir.path(), &sample()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(read(dir.path()).unwrap(), Some(sample()));
    }

    #[test]
    fn corrupt_or_foreign_records_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path_in(dir.path()), b"{not json").unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains(RECORD_FILE), "{e}");
        let mut v = serde_json::to_value(sample()).unwrap();
        v["version"] = 9.into();
        std::fs::write(path_in(dir.path()), v.to_string()).unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(RecordError::Version { version: 9, .. })
        ));
        std::fs::remove_file(path_in(dir.path())).unwrap();
        std::fs::create_dir(path_in(dir.path())).unwrap();
        assert!(read(dir.path()).is_err());
    }
}
