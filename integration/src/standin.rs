//! The Kata stand-in. These machines have no `/dev/kvm`, so Kata cannot run; the VM tier in tests
//! is `containerd-shim-kata-standin-v2`, a **copy** of containerd's `containerd-shim-runc-v2` under
//! another name. It isolates nothing more than runc: it only lets tests prove that a pod was handed
//! to the VM tier's shim (its daemon shows up under the stand-in's name). Tests relying on it say
//! `standin` in their name. It is copied from the runc shim of the containerd under test
//! ([`crate::binaries::runc_shim_path`]), so it answers `start` the way that version's shim does.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File name of the stand-in shim binary.
pub const STANDIN_BINARY: &str = "containerd-shim-kata-standin-v2";
/// Copies the runc shim of the containerd under test ([`crate::binaries::runc_shim_path`]) to
/// `<dir>/containerd-shim-kata-standin-v2` (mode 0755) and returns its path. Re-running it
/// replaces the copy.
pub fn install_standin(dir: &Path) -> Result<PathBuf> {
    install_standin_from(&crate::binaries::runc_shim_path(), dir)
}

/// Like [`install_standin`] with another source binary.
pub fn install_standin_from(source: &Path, dir: &Path) -> Result<PathBuf> {
    if !source.is_file() {
        return Err(Error::Invalid(format!(
            "cannot install the Kata stand-in: {} is missing (install the `containerd` package)",
            source.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let target = dir.join(STANDIN_BINARY);
    let tmp = dir.join(format!(".{STANDIN_BINARY}.tmp"));
    std::fs::copy(source, &tmp)
        .map_err(|e| Error::io(format!("copy {} to {}", source.display(), tmp.display()), e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(format!("chmod {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &target)
        .map_err(|e| Error::io(format!("rename to {}", target.display()), e))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_under_the_standin_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src-bin");
        std::fs::write(&src, b"#!/bin/sh\n").expect("write");
        let got = install_standin_from(&src, &dir.path().join("bin")).expect("install");
        assert_eq!(
            got.file_name().and_then(|n| n.to_str()),
            Some(STANDIN_BINARY)
        );
        assert_eq!(std::fs::read(&got).expect("read"), b"#!/bin/sh\n");
    }

    #[test]
    fn missing_source_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = install_standin_from(Path::new("/nonexistent/shim"), dir.path())
            .expect_err("must fail");
        assert!(err.to_string().contains("/nonexistent/shim"), "{err}");
    }
}
