//! The authoritative decision records, kept where no pod can write:
//! `<state>/records/<containerd>/<namespace>/<id>.json`, below the router's root-only state dir
//! (`crate::statedir`), one directory per containerd instance (a hash of its `-address`) and
//! namespace. A container's backend and `delete`'s cleanup come only from here; the copy in the
//! bundle (`router-decision.json`) is for operators and is never read for a decision: a bundle
//! can be written by anything that reaches containerd's state, a pod with the wrong host path
//! included.
//!
//! Trust: every directory from the state dir down must be a real directory (not a symlink), owned
//! by this process's user, and writable by nobody else; anything else refuses the task, naming
//! the directory. Records are removed by `delete` and, at each sandbox start, for every task
//! whose bundle containerd has removed (containerd removes a bundle only after its task is gone;
//! a record is written only once its bundle exists). Beside a sandbox's record,
//! `<sandbox id>.binds` lists the bind sources of every task of its pod: the host directories
//! the pod can write, which a hand-off backend must not be given a path inside (SPEC §3.6).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::record::{self, DecisionRecord, RecordError};

/// Subdirectory of the state dir holding the records.
const RECORDS_DIR: &str = "records";
/// A pod's bind sources (`<sandbox id>.binds`) beside its sandbox's record.
const BINDS_SUFFIX: &str = ".binds";
/// The largest bind-source list read (a pod's mounts are a few KiB).
const MAX_BINDS_BYTES: u64 = 1 << 20;

/// The records of one containerd namespace.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: {why}; the router's decision records must live in a directory only root can write"
    )]
    Untrusted { path: PathBuf, why: String },
    #[error("task id {0:?} cannot name a record (not one plain path component)")]
    BadId(String),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// A task id or namespace names one path component.
pub fn plain_component(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains('/') && !id.contains('\0')
}

fn containerd_key(address: &str) -> String {
    let sum = Sha256::digest(address.as_bytes());
    sum.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Checks that `path` is a directory owned by `uid` that nobody else can write.
fn check_trusted(path: &Path, uid: u32) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })?;
    let why = if meta.file_type().is_symlink() {
        Some("is a symlink".to_string())
    } else if !meta.is_dir() {
        Some("is not a directory".to_string())
    } else if meta.uid() != uid {
        Some(format!("is owned by uid {}, not {uid}", meta.uid()))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "is writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(StoreError::Untrusted {
            path: path.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// Creates `path` (mode 0700) if missing, then checks it.
fn ensure_dir(path: &Path, uid: u32) -> Result<(), StoreError> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_owned(),
                source,
            })
        }
    }
    check_trusted(path, uid)
}

impl RecordStore {
    /// The store of `namespace` for the containerd at `address`, below `state`. With `create`,
    /// missing directories are made (mode 0700); without, a missing store is `Ok(None)`.
    pub fn open(
        state: &Path,
        address: &str,
        namespace: &str,
        create: bool,
    ) -> Result<Option<RecordStore>, StoreError> {
        if !plain_component(namespace) {
            return Err(StoreError::BadId(namespace.to_owned()));
        }
        let uid = nix::unistd::geteuid().as_raw();
        let chain = [
            state.to_path_buf(),
            state.join(RECORDS_DIR),
            state.join(RECORDS_DIR).join(containerd_key(address)),
            state
                .join(RECORDS_DIR)
                .join(containerd_key(address))
                .join(namespace),
        ];
        if create {
            if let Some(parent) = state.parent() {
                fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                    path: parent.to_owned(),
                    source,
                })?;
            }
        }
        for dir in &chain {
            if create {
                ensure_dir(dir, uid)?;
            } else {
                match check_trusted(dir, uid) {
                    Err(StoreError::Io { source, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        return Ok(None)
                    }
                    r => r?,
                }
            }
        }
        Ok(chain.last().map(|d| RecordStore { dir: d.clone() }))
    }

    /// Where the record of task `id` lives.
    pub fn path_of(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !plain_component(id) {
            return Err(StoreError::BadId(id.to_owned()));
        }
        Ok(self.dir.join(format!("{id}.json")))
    }

    /// Writes the record of task `id` (atomically, never through a symlink).
    pub fn write(&self, id: &str, rec: &DecisionRecord) -> Result<(), StoreError> {
        let path = self.path_of(id)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        record::write_named(&self.dir, &name, rec)?;
        Ok(())
    }

    /// The record of task `id`, if any.
    pub fn read(&self, id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(record::read_file(&self.path_of(id)?)?)
    }

    /// Removes the record of task `id`, and the bind sources of the pod it is the sandbox of
    /// (no error if there is none).
    pub fn remove(&self, id: &str) {
        if let Ok(p) = self.path_of(id) {
            let _ = fs::remove_file(p);
        }
        if let Ok(p) = self.binds_path(id) {
            let _ = fs::remove_file(p);
        }
    }

    fn binds_path(&self, sandbox_id: &str) -> Result<PathBuf, StoreError> {
        if !plain_component(sandbox_id) {
            return Err(StoreError::BadId(sandbox_id.to_owned()));
        }
        Ok(self.dir.join(format!("{sandbox_id}{BINDS_SUFFIX}")))
    }

    /// Adds `sources` (host paths, one per line) to the bind sources of the pod of `sandbox_id`:
    /// every directory a container of the pod may write. Appends are atomic (`O_APPEND`, one
    /// write), so containers starting at once lose none.
    pub fn append_binds(&self, sandbox_id: &str, sources: &[String]) -> Result<(), StoreError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.binds_path(sandbox_id)?;
        let mut text = String::new();
        for s in sources.iter().filter(|s| !s.contains('\n')) {
            text.push_str(s);
            text.push('\n');
        }
        if text.is_empty() {
            return Ok(());
        }
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(io_err)
    }

    /// The bind sources of the pod of `sandbox_id` so far.
    pub fn read_binds(&self, sandbox_id: &str) -> Result<Vec<String>, StoreError> {
        let path = self.binds_path(sandbox_id)?;
        match router_config::safefile::read_limited(&path, MAX_BINDS_BYTES, false) {
            Ok(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(StoreError::Io {
                path,
                source: io::Error::other(format!("{e:?}")),
            }),
        }
    }

    /// Removes the records of tasks whose bundle (`<bundles>/<id>`) no longer exists.
    pub fn collect_garbage(&self, bundles: &Path) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| {
                n.strip_suffix(".json")
                    .or_else(|| n.strip_suffix(BINDS_SUFFIX))
            }) else {
                continue;
            };
            if matches!(fs::symlink_metadata(bundles.join(id)), Err(ref err) if err.kind() == io::ErrorKind::NotFound)
            {
                log::debug!("removing the record of gone task {id}");
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// The directory holding the records.
    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stores_are_per_containerd_and_namespace_and_trusted_only() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        assert!(RecordStore::open(&state, "/run/c.sock", "k8s.io", false)
            .unwrap()
            .is_none());
        let a = RecordStore::open(&state, "/run/c.sock", "k8s.io", true)
            .unwrap()
            .unwrap();
        let b = RecordStore::open(&state, "/run/other.sock", "k8s.io", true)
            .unwrap()
            .unwrap();
        assert_ne!(a.dir(), b.dir());
        let mode = fs::metadata(a.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // a directory others can write is refused, naming it
        fs::set_permissions(a.dir(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = RecordStore::open(&state, "/run/c.sock", "k8s.io", false).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        fs::set_permissions(a.dir(), fs::Permissions::from_mode(0o700)).unwrap();
        // a symlinked state dir is refused
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        let e = RecordStore::open(&link, "/run/c.sock", "k8s.io", true).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        for bad in ["", "..", "a/b"] {
            assert!(a.read(bad).is_err());
            assert!(RecordStore::open(&state, "/run/c.sock", bad, true).is_err());
        }
    }

    #[test]
    fn garbage_is_what_has_no_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordStore::open(&tmp.path().join("s"), "a", "ns", true)
            .unwrap()
            .unwrap();
        let bundles = tmp.path().join("bundles");
        fs::create_dir_all(bundles.join("live")).unwrap();
        for id in ["live", "gone"] {
            fs::write(store.dir().join(format!("{id}.json")), b"{}").unwrap();
        }
        store.collect_garbage(&bundles);
        assert!(store.dir().join("live.json").exists());
        assert!(!store.dir().join("gone.json").exists());
    }
}
