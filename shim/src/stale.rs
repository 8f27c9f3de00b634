//! Removal of the ttrpc socket a killed shim leaves behind. A shim v2 daemon removes its socket
//! when it shuts down cleanly; after `kill -9` the socket file stays in `/run/containerd/s/`,
//! and neither containerd 1.6 nor the Go runc shim's `delete` removes it. `delete` runs when the
//! shim is gone, so the router removes the socket a shim of this task would serve — derived from
//! containerd's address, the namespace and the pod's sandbox id (or the task id), as containerd's
//! shim helpers name it, never read from the bundle's `address` file (a pod may write that) — and
//! only if it is a socket file that refuses connections (nothing serves it any more).

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::args::ShimArgs;

/// What happened to the socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Stale {
    /// No address file, or not a filesystem unix socket address.
    NoSocket,
    /// A shim still answers on it: left alone.
    Alive(PathBuf),
    /// Removed.
    Removed(PathBuf),
}

/// `unix:///run/containerd/s/x` → `/run/containerd/s/x`; abstract and non-unix addresses → None.
pub fn socket_path(address: &str) -> Option<PathBuf> {
    let path = address.trim().strip_prefix("unix://")?;
    let path = Path::new(path);
    path.is_absolute().then(|| path.to_owned())
}

/// Remove the dead socket of the shim that served task `args.id` of pod `sandbox_id` (grouped
/// by the sandbox id, or alone by its own id, or the pod's task API relay), if nothing serves it.
pub fn remove_dead_socket(args: &ShimArgs, sandbox_id: &str) -> io::Result<Stale> {
    let mut outcome = Stale::NoSocket;
    let mut addresses = Vec::with_capacity(3);
    for grouping in [sandbox_id, args.id.as_str()] {
        if !grouping.is_empty() {
            addresses.push(containerd_shim::socket_address(
                &args.address,
                &args.namespace,
                grouping,
            ));
        }
    }
    if !sandbox_id.is_empty() {
        addresses.push(crate::relay::relay_address(args, sandbox_id));
    }
    for address in addresses {
        if let Some(path) = socket_path(&address) {
            match remove_if_dead(&path)? {
                Stale::NoSocket => {}
                other => outcome = other,
            }
        }
    }
    Ok(outcome)
}

/// Remove `path` if it is a socket file nothing serves.
pub fn remove_if_dead(path: &Path) -> io::Result<Stale> {
    let path = path.to_owned();
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(_) => return Ok(Stale::NoSocket),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Stale::NoSocket),
        Err(e) => return Err(e),
    }
    match UnixStream::connect(&path) {
        Ok(_) => Ok(Stale::Alive(path)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(Stale::Removed(path)),
                // a concurrent delete of another task of the same pod got there first
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Stale::NoSocket),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn addresses() {
        assert_eq!(
            socket_path("unix:///run/containerd/s/ab\n"),
            Some(PathBuf::from("/run/containerd/s/ab"))
        );
        assert_eq!(socket_path("unix://@abstract"), None);
        assert_eq!(socket_path("/run/x"), None);
        assert_eq!(socket_path("unix://relative"), None);
    }

    #[test]
    fn removes_only_dead_sockets() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            remove_if_dead(&dir.path().join("none")).unwrap(),
            Stale::NoSocket
        );

        let sock = dir.path().join("s.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        assert_eq!(remove_if_dead(&sock).unwrap(), Stale::Alive(sock.clone()));
        assert!(sock.exists());
        drop(listener); // the file stays, like after kill -9
        assert!(sock.exists());
        assert_eq!(remove_if_dead(&sock).unwrap(), Stale::Removed(sock.clone()));
        assert!(!sock.exists());
        assert_eq!(remove_if_dead(&sock).unwrap(), Stale::NoSocket);

        // a regular file is never removed
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        assert_eq!(remove_if_dead(&plain).unwrap(), Stale::NoSocket);
        assert!(plain.exists());
    }

    #[test]
    fn the_socket_is_derived_never_read_from_the_bundle() {
        let args = ShimArgs::parse(
            [
                "-namespace",
                "k8s.io",
                "-address",
                "/run/c.sock",
                "-id",
                "c1",
                "delete",
            ]
            .iter()
            .map(std::ffi::OsString::from)
            .collect(),
        )
        .unwrap();
        // nothing there: no error, nothing removed, whatever a bundle's address file says
        assert_eq!(remove_dead_socket(&args, "sb1").unwrap(), Stale::NoSocket);
    }
}
