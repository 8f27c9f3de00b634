//! Cache of validated policies, so `start` does not re-parse an unchanged TOML file (parsing a
//! 50-tenant policy costs several hundred µs; loading its cached binary form (`codec`), a few
//! tens).
//!
//! An entry is named after the policy file's identity (device and inode) and holds the exact text
//! it was made from, then the encoded policy (with its SHA-256 digest). It is used only when its
//! text is byte-for-byte the file's current text, so an edit applies to the next pod with no
//! invalidation logic and no timestamp races, and the hot path compares bytes instead of hashing
//! them. Only policies that validated are stored. The directory (`$RUNTIME_ROUTER_CACHE_DIR`,
//! default `/run/runtime-router/policy-cache`; empty or relative disables the cache) and each
//! entry are trusted only if owned by the policy file's owner and writable by nobody else; any
//! cache problem falls back to parsing.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::model::Policy;

/// Environment variable naming the cache directory (empty: no cache).
pub const CACHE_DIR_ENV: &str = "RUNTIME_ROUTER_CACHE_DIR";
/// Default cache directory (tmpfs on most distributions: gone at reboot).
pub const DEFAULT_CACHE_DIR: &str = "/run/runtime-router/policy-cache";
/// Bumped whenever the entry layout or the serialized `Policy` changes shape.
const SCHEMA: u32 = 8;
/// First bytes of an entry.
const MAGIC: &[u8; 4] = b"RRC4";
/// Entries kept before old ones are pruned.
const MAX_ENTRIES: usize = 32;
/// An entry larger than this is not read (a policy file is a few tens of KiB).
const MAX_ENTRY_BYTES: u64 = 8 << 20;

/// The policy file an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// The file's owner: the cache must belong to the same user.
    pub owner: u32,
}

impl FileId {
    pub(crate) fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            owner: meta.uid(),
        }
    }
}

/// The cache directory from the environment, `None` when disabled.
pub(crate) fn dir_from_env() -> Option<PathBuf> {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(d) if d.is_empty() => None,
        // a relative directory would land in the bundle (the shim's cwd): no cache
        Some(d) => Some(PathBuf::from(d)).filter(|p| p.is_absolute()),
        None => Some(PathBuf::from(DEFAULT_CACHE_DIR)),
    }
}

fn entry(dir: &Path, id: &FileId) -> PathBuf {
    dir.join(format!(
        "{:x}-{:x}-s{SCHEMA}-v{}.bin",
        id.dev,
        id.ino,
        env!("CARGO_PKG_VERSION")
    ))
}

fn trusted(meta: &fs::Metadata, owner: u32, want_dir: bool) -> bool {
    let kind_ok = if want_dir {
        meta.file_type().is_dir()
    } else {
        meta.file_type().is_file()
    };
    kind_ok && meta.uid() == owner && meta.mode() & 0o022 == 0
}

/// The cached policy for the file `id` whose current text is `text`, if an entry made from
/// exactly that text is present and trustworthy.
pub(crate) fn lookup(dir: &Path, id: &FileId, text: &[u8]) -> Option<Policy> {
    let dmeta = fs::symlink_metadata(dir).ok()?;
    if !trusted(&dmeta, id.owner, true) {
        return None;
    }
    let mut f = fs::OpenOptions::new()
        .read(true)
        // never through a symlink, never blocking on a fifo planted under the name
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(entry(dir, id))
        .ok()?;
    let fmeta = f.metadata().ok()?;
    if !trusted(&fmeta, id.owner, false) || fmeta.len() > MAX_ENTRY_BYTES {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(fmeta.len()).ok()?);
    f.read_to_end(&mut bytes).ok()?;
    let rest = bytes.strip_prefix(MAGIC)?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    if len != text.len() || rest.get(..len)? != text {
        return None;
    }
    crate::codec::decode(rest.get(len..)?)
}

/// Stores a validated policy made from `text`; failures are ignored (the cache is an
/// optimisation).
pub(crate) fn store(dir: &Path, id: &FileId, text: &[u8], policy: &Policy) {
    let _ = try_store(dir, id, text, policy);
}

fn try_store(dir: &Path, id: &FileId, text: &[u8], policy: &Policy) -> std::io::Result<()> {
    let len = u32::try_from(text.len()).map_err(std::io::Error::other)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let dmeta = fs::symlink_metadata(dir)?;
    if !trusted(&dmeta, id.owner, true) {
        return Ok(());
    }
    prune(dir);
    let path = entry(dir, id);
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), SCHEMA));
    let mut bytes = Vec::with_capacity(text.len() * 2);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(text);
    bytes.extend_from_slice(&crate::codec::encode(policy));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?; // create_new (O_EXCL) never follows a symlink
    let res = f.write_all(&bytes).and_then(|()| fs::rename(&tmp, &path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

fn prune(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, e.path()))
        })
        .collect();
    if entries.len() < MAX_ENTRIES {
        return;
    }
    entries.sort();
    for (_, p) in entries.iter().take(entries.len() + 1 - MAX_ENTRIES) {
        let _ = fs::remove_file(p);
    }
}
