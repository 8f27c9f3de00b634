//! Removal of the ttrpc socket a killed shim leaves behind. A shim v2 daemon removes its socket
//! when it shuts down cleanly; after `kill -9` the socket file stays in `/run/containerd/s/`,
//! and neither containerd 1.6 nor the Go runc shim's `delete` removes it. `delete` runs when the
//! shim is gone, so the router removes the socket named by the bundle's `address` file — only if
//! it is a socket file that refuses connections (nothing serves it any more).

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Longest `address` file read.
const MAX_ADDRESS_BYTES: u64 = 4096;

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

/// Remove the socket named by `bundle/address` if nothing serves it.
pub fn remove_dead_socket(bundle: &Path) -> io::Result<Stale> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(bundle.join("address"))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Stale::NoSocket),
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Ok(Stale::NoSocket);
    }
    let mut text = String::new();
    f.take(MAX_ADDRESS_BYTES).read_to_string(&mut text)?;
    let Some(path) = socket_path(&text) else {
        return Ok(Stale::NoSocket);
    };
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
        let bundle = dir.path();
        assert_eq!(remove_dead_socket(bundle).unwrap(), Stale::NoSocket);

        let sock = dir.path().join("s.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::fs::write(bundle.join("address"), format!("unix://{}", sock.display())).unwrap();
        assert_eq!(
            remove_dead_socket(bundle).unwrap(),
            Stale::Alive(sock.clone())
        );
        assert!(sock.exists());
        drop(listener); // the file stays, like after kill -9
        assert!(sock.exists());
        assert_eq!(
            remove_dead_socket(bundle).unwrap(),
            Stale::Removed(sock.clone())
        );
        assert!(!sock.exists());
        assert_eq!(remove_dead_socket(bundle).unwrap(), Stale::NoSocket);

        // a regular file named by the address is never removed
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        std::fs::write(
            bundle.join("address"),
            format!("unix://{}", plain.display()),
        )
        .unwrap();
        assert_eq!(remove_dead_socket(bundle).unwrap(), Stale::NoSocket);
        assert!(plain.exists());
    }
}
