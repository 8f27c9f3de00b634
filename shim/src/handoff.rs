//! Hand-off to another shim v2 binary: find it (a name on `PATH` or an absolute path) and replace
//! this process with it, passing the same argv, working directory, stdin/stdout/stderr and
//! environment plus the backend's `env`. After `start`, containerd talks to that shim directly.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The backend's binary cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("backend `{backend}`: shim binary `{binary}` not found on PATH ({path})")]
    NotOnPath {
        backend: String,
        binary: String,
        path: String,
    },
    #[error("backend `{backend}`: shim binary `{binary}` is missing or not an executable file")]
    NotExecutable { backend: String, binary: String },
    #[error(
        "backend `{backend}`: shim binary `{binary}` must be a name on PATH or an absolute path"
    )]
    Relative { backend: String, binary: String },
    #[error("could not run shim binary {binary}: {source}")]
    Exec { binary: PathBuf, source: io::Error },
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolve a backend's `binary` against `path_var` (the `PATH` containerd gave us).
/// Relative `PATH` entries are skipped: the working directory is the bundle.
pub fn resolve(
    backend: &str,
    binary: &str,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, HandoffError> {
    if binary.contains('/') {
        let p = Path::new(binary);
        if !p.is_absolute() {
            return Err(HandoffError::Relative {
                backend: backend.into(),
                binary: binary.into(),
            });
        }
        if is_executable_file(p) {
            return Ok(p.to_owned());
        }
        return Err(HandoffError::NotExecutable {
            backend: backend.into(),
            binary: binary.into(),
        });
    }
    if binary.is_empty() {
        return Err(HandoffError::NotExecutable {
            backend: backend.into(),
            binary: binary.into(),
        });
    }
    let path_var = path_var.map(OsStr::to_owned).unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        if !dir.is_absolute() {
            continue;
        }
        let cand = dir.join(binary);
        if is_executable_file(&cand) {
            return Ok(cand);
        }
    }
    Err(HandoffError::NotOnPath {
        backend: backend.into(),
        binary: binary.into(),
        path: path_var.to_string_lossy().into_owned(),
    })
}

/// Replace this process with `binary`, passing `argv` (argv\[1..\] as received), the current
/// working directory, stdio and environment, plus `env`. Returns only on failure.
pub fn exec(binary: &Path, argv: &[OsString], env: &BTreeMap<String, String>) -> HandoffError {
    log::debug!("handing off to {} {:?}", binary.display(), argv);
    let source = Command::new(binary).args(argv).envs(env).exec();
    HandoffError::Exec {
        binary: binary.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exe(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn resolves_names_on_path_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        exe(a.path(), "shim-x", 0o644); // not executable: skipped
        let want = exe(b.path(), "shim-x", 0o755);
        let path = std::env::join_paths(["relative/dir".as_ref(), a.path(), b.path()]).unwrap();
        assert_eq!(resolve("k", "shim-x", Some(&path)).unwrap(), want);
        let e = resolve("kata", "containerd-shim-nope-v2", Some(&path)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`containerd-shim-nope-v2`") && msg.contains("`kata`"),
            "{msg}"
        );
        assert!(resolve("k", "shim-x", None).is_err());
    }

    #[test]
    fn absolute_and_relative_paths() {
        let a = tempfile::tempdir().unwrap();
        let p = exe(a.path(), "s", 0o755);
        assert_eq!(resolve("k", p.to_str().unwrap(), None).unwrap(), p);
        assert!(matches!(
            resolve("k", "bin/s", None),
            Err(HandoffError::Relative { .. })
        ));
        assert!(matches!(
            resolve("k", "/nonexistent/s", None),
            Err(HandoffError::NotExecutable { .. })
        ));
        assert!(matches!(
            resolve("k", a.path().to_str().unwrap(), None),
            Err(HandoffError::NotExecutable { .. })
        ));
    }
}
