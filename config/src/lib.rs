//! Policy schema, parsing, validation and the embedded default.
//!
//! `parse` is pure; `load` reads the file named explicitly, by `$RUNTIME_ROUTER_CONFIG`, or the
//! default path, and falls back to the embedded default only when that file does not exist.
//! Anything else that goes wrong is an error: the caller refuses the pod (fail closed).

pub mod auditfiles;
mod cache;
mod codec;
mod error;
mod fieldpath;
mod model;
pub mod pattern;
mod raw;
pub mod safefile;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub use cache::{CACHE_DIR_ENV, DEFAULT_CACHE_DIR};
pub use compact_str::CompactString;
pub use error::{ConfigError, Diagnostic};
pub use model::{
    Backend, BackendKind, DenyRule, Handler, Isolation, PodSecurity, Policy, PolicySource, Tenant,
    DEFAULT_AUDIT_LOG_KEEP, DEFAULT_AUDIT_LOG_MAX_BYTES, MAX_AUDIT_LOG_KEEP,
};
pub use validate::{
    DEFAULT_ALLOWED_HOST_PATHS, HOST_PATH_PLACEHOLDERS, MIN_AUDIT_LOG_MAX_BYTES,
    RUNTIME_ANNOTATION_PREFIXES,
};

/// Where the node policy lives unless `$RUNTIME_ROUTER_CONFIG` says otherwise.
pub const DEFAULT_POLICY_PATH: &str = "/etc/containerd/runtime-router.toml";
/// Environment variable naming the policy file.
pub const POLICY_ENV: &str = "RUNTIME_ROUTER_CONFIG";
/// The embedded default policy text.
pub const EMBEDDED_POLICY: &str = include_str!("default.toml");

/// Parses and validates policy text. `origin` is only used to name the file in errors and as
/// the policy's source.
pub fn parse(text: &str, origin: &Path) -> Result<Policy, ConfigError> {
    parse_with_source(text, origin, PolicySource::File(origin.to_path_buf()))
}

fn parse_with_source(
    text: &str,
    origin: &Path,
    source: PolicySource,
) -> Result<Policy, ConfigError> {
    let mut policy = validate::parse_policy(text, origin, source)?;
    policy.digest = digest(text.as_bytes());
    Ok(policy)
}

/// `"sha256:<hex>"` of the given bytes.
pub fn digest(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in sum {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// The embedded default policy: `kube-system` on the built-in runc backend, everything else on
/// the `kata` shim backend with the untrusted deny list.
pub fn embedded_default() -> Policy {
    static CELL: OnceLock<Policy> = OnceLock::new();
    CELL.get_or_init(|| {
        match parse_with_source(
            EMBEDDED_POLICY,
            Path::new("<embedded default>"),
            PolicySource::Embedded,
        ) {
            Ok(p) => p,
            // The text is a compile-time constant covered by tests; failing here is a build bug.
            Err(e) => panic!("embedded default policy is invalid: {e}"),
        }
    })
    .clone()
}

/// The policy path that `load(explicit)` would read.
pub fn policy_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(POLICY_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_POLICY_PATH),
    }
}

/// Explicit path, else `$RUNTIME_ROUTER_CONFIG`, else `DEFAULT_POLICY_PATH`. A file that does not
/// exist (ENOENT) → embedded default; any other read/parse/validation failure → `Err` (fail closed).
/// The file is read every time; its validated form is memoised per file and checked against the
/// text just read (see `cache`).
pub fn load(explicit: Option<&Path>) -> Result<Policy, ConfigError> {
    let path = policy_path(explicit);
    let read_err = |source: std::io::Error| ConfigError::Read {
        path: path.clone(),
        source,
    };
    // Never blocks (a FIFO at the path), never reads a device (`/dev/zero`), never more than
    // MAX_POLICY_BYTES: every failure names the file and refuses the pod.
    let (file, size) = match safefile::open_regular(&path, true) {
        Ok(f) => f,
        Err(safefile::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(embedded_default())
        }
        Err(e) => return Err(read_err(e.into_io())),
    };
    let meta = file.metadata().map_err(read_err)?;
    let bytes = safefile::read_opened(file, size, safefile::MAX_POLICY_BYTES)
        .map_err(|e| read_err(e.into_io()))?;
    let id = cache::FileId::of(&meta);
    let cache_dir = cache::dir_from_env();
    if let Some(dir) = &cache_dir {
        if let Some(mut p) = cache::lookup(dir, &id, &bytes) {
            p.source = PolicySource::File(path);
            return Ok(p);
        }
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.utf8_error(),
        ))
    })?;
    let mut policy = validate::parse_policy(&text, &path, PolicySource::File(path.clone()))?;
    policy.digest = digest(text.as_bytes());
    if let Some(dir) = &cache_dir {
        cache::store(dir, &id, text.as_bytes(), &policy);
    }
    Ok(policy)
}

#[cfg(test)]
mod tests;
