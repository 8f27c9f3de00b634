//! Reading the files routerctl is pointed at (a policy, a containerd config, a bundle's spec)
//! the way the shim does: never blocking on a FIFO, never a device or other non-regular file,
//! never more than a limit — each failure is one message naming the file.

use std::path::Path;

use router_config::safefile;

/// Largest containerd config or spec read.
pub const MAX_OTHER_BYTES: u64 = 16 << 20;

/// The text of `path`; `Ok(None)` when it does not exist.
pub fn read_text(path: &Path, limit: u64) -> Result<Option<String>, String> {
    match safefile::read_limited(path, limit, true) {
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "not UTF-8 text".to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The bytes of `path` (which must exist).
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    bytes(path, limit, true)
}

/// The bytes of `path` (which must exist), never read through a symlink (the router's own state).
pub fn read_bytes_no_follow(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    bytes(path, limit, false)
}

fn bytes(path: &Path, limit: u64, follow_symlinks: bool) -> Result<Vec<u8>, String> {
    match safefile::read_limited(path, limit, follow_symlinks) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err("No such file or directory".to_string()),
        Err(e) => Err(e.to_string()),
    }
}
