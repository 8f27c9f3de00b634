//! Reading a file the router does not own (the policy, a spec, a record) without blocking and
//! without unbounded memory: opened `O_NONBLOCK` (a FIFO planted at the path cannot hang the
//! reader), it must be a regular file (not a FIFO, socket or device such as `/dev/zero`), and it
//! is read only up to a limit, past which the read fails naming the limit.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Largest policy file read. A 1000-tenant policy is about 150 KiB; a larger file is a mistake
/// or an attack, and parsing it at every pod start would cost tens of milliseconds.
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("is a directory")]
    Directory,
    #[error("not a regular file (a FIFO, socket or device is never read)")]
    NotRegular,
    #[error("larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

impl ReadError {
    /// The error as an `io::Error` (for callers whose error type wraps one).
    pub fn into_io(self) -> io::Error {
        match self {
            ReadError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        }
    }
}

/// Opens `path` for reading without blocking; it must be a regular file. `follow_symlinks`:
/// whether a symlink at the last component is followed (`O_NOFOLLOW` when false).
pub fn open_regular(path: &Path, follow_symlinks: bool) -> Result<(File, u64), ReadError> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(ReadError::Directory);
    }
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    Ok((file, meta.len()))
}

/// Reads at most `limit` bytes of an already opened regular file of (fstat) size `size`.
pub fn read_opened(file: File, size: u64, limit: u64) -> Result<Vec<u8>, ReadError> {
    if size > limit {
        return Err(ReadError::TooLarge { limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        // the file grew between fstat and read
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// Reads a whole regular file of at most `limit` bytes. `Ok(None)` when it does not exist.
pub fn read_limited(
    path: &Path,
    limit: u64,
    follow_symlinks: bool,
) -> Result<Option<Vec<u8>>, ReadError> {
    match open_regular(path, follow_symlinks) {
        Ok((file, size)) => read_opened(file, size, limit).map(Some),
        Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(ReadError::Io(e)) if e.raw_os_error() == Some(libc::ELOOP) => {
            Err(ReadError::NotRegular)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(read_limited(&p, 3, true).unwrap(), Some(b"abc".to_vec()));
        assert!(matches!(
            read_limited(&p, 2, true),
            Err(ReadError::TooLarge { limit: 2 })
        ));
        assert_eq!(
            read_limited(&dir.path().join("none"), 9, true).unwrap(),
            None
        );
        assert!(matches!(
            read_limited(dir.path(), 9, true),
            Err(ReadError::Directory)
        ));
    }

    #[test]
    fn fifos_devices_and_symlinks_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let t = Instant::now();
        assert!(matches!(
            read_limited(&fifo, 9, true),
            Err(ReadError::NotRegular)
        ));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(matches!(
            read_limited(Path::new("/dev/zero"), 9, true),
            Err(ReadError::NotRegular)
        ));
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(
            read_limited(&link, 9, true),
            Err(ReadError::NotRegular)
        ));
        let target = dir.path().join("t");
        std::fs::write(&target, b"x").unwrap();
        let l2 = dir.path().join("l2");
        std::os::unix::fs::symlink(&target, &l2).unwrap();
        assert!(matches!(
            read_limited(&l2, 9, false),
            Err(ReadError::NotRegular)
        ));
        assert_eq!(read_limited(&l2, 9, true).unwrap(), Some(b"x".to_vec()));
    }
}
