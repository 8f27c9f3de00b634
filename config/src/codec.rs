//! A compact binary encoding of a validated `Policy` for the policy cache, decoded with bounds
//! checks only (a damaged entry decodes to `None`, never a panic). Several times cheaper to load
//! than JSON, which matters on the `start` path.
//!
//! Layout: magic, the length of a string table, the table (every string of the policy,
//! concatenated in the order they are read back, so it is UTF-8-checked once, not string by
//! string), then the structure: counts, codes, and each string's length.

use std::collections::BTreeMap;
use std::path::PathBuf;

use compact_str::CompactString;

use crate::model::{
    Backend, BackendKind, DenyRule, Handler, Isolation, PodSecurity, Policy, PolicySource, Tenant,
};

const MAGIC: &[u8; 4] = b"RRP2";

/// Encodes a policy (its `source` is not stored: the loader sets it).
pub(crate) fn encode(p: &Policy) -> Vec<u8> {
    let mut w = Writer {
        structure: Vec::with_capacity(2048),
        table: Vec::with_capacity(8192),
    };
    encode_into(&mut w, p);
    let mut out = Vec::with_capacity(8 + w.table.len() + w.structure.len());
    out.extend_from_slice(MAGIC);
    put_len(&mut out, w.table.len());
    out.extend_from_slice(&w.table);
    out.extend_from_slice(&w.structure);
    out
}

fn encode_into(w: &mut Writer, p: &Policy) {
    w.u32(p.version);
    match &p.audit_log {
        None => w.u8(0),
        Some(a) => {
            w.u8(1);
            w.str(&a.to_string_lossy());
        }
    }
    w.u64(p.audit_log_max_bytes);
    w.u32(p.audit_log_keep);
    w.str(&p.default_tenant);
    w.strs(&p.allowed_host_paths);
    w.str(&p.digest);
    w.len(p.backends.len());
    for b in p.backends.values() {
        w.str(&b.name);
        w.u8(iso_code(b.isolation));
        match &b.kind {
            BackendKind::Builtin {
                runtime,
                runtime_args,
            } => {
                w.u8(0);
                w.str(&runtime.to_string_lossy());
                w.strs(runtime_args);
            }
            BackendKind::Shim { binary, env } => {
                w.u8(1);
                w.str(binary);
                w.len(env.len());
                for (k, v) in env {
                    w.str(k);
                    w.str(v);
                }
            }
        }
    }
    w.len(p.tenants.len());
    for t in p.tenants.values() {
        w.str(&t.name);
        w.strs(&t.namespaces);
        w.strs(&t.containerd_namespaces);
        w.str(&t.backend);
        w.len(t.deny.len());
        for d in &t.deny {
            w.u8(deny_code(*d));
        }
        w.u8(match t.pod_security {
            None => 0,
            Some(PodSecurity::Baseline) => 1,
            Some(PodSecurity::Restricted) => 2,
        });
        w.strs(&t.allow_annotations);
    }
    w.len(p.handlers.len());
    for h in p.handlers.values() {
        w.str(&h.name);
        w.u8(iso_code(h.reserves));
        match &h.backend {
            None => w.u8(0),
            Some(b) => {
                w.u8(1);
                w.str(b);
            }
        }
        w.str(&h.runtime_class);
    }
    w.u8(iso_code(p.unnamed_handler_reserves));
    w.len(p.unaccounted_tiers.len());
    for t in &p.unaccounted_tiers {
        w.u8(iso_code(*t));
    }
}

/// Decodes what `encode` wrote; `None` for anything else.
pub(crate) fn decode(bytes: &[u8]) -> Option<Policy> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (table_len, rest) = rest.split_first_chunk::<4>()?;
    let table_len = usize::try_from(u32::from_le_bytes(*table_len)).ok()?;
    let table = std::str::from_utf8(rest.get(..table_len)?).ok()?;
    let b = rest.get(table_len..)?;
    let mut r = Reader {
        b,
        at: 0,
        table,
        text_at: 0,
    };
    let version = r.u32()?;
    let audit_log = match r.u8()? {
        0 => None,
        1 => Some(PathBuf::from(r.str()?)),
        _ => return None,
    };
    let audit_log_max_bytes = r.u64()?;
    let audit_log_keep = r.u32()?;
    let default_tenant = r.name()?;
    let allowed_host_paths = r.texts()?;
    let digest = r.str()?;
    let mut backends = BTreeMap::new();
    for _ in 0..r.len()? {
        let name = r.name()?;
        let isolation = iso_from(r.u8()?)?;
        let kind = match r.u8()? {
            0 => BackendKind::Builtin {
                runtime: PathBuf::from(r.str()?),
                runtime_args: r.texts()?,
            },
            1 => {
                let binary = r.str()?;
                let mut env = BTreeMap::new();
                for _ in 0..r.len()? {
                    let k = r.str()?;
                    env.insert(k, r.str()?);
                }
                BackendKind::Shim { binary, env }
            }
            _ => return None,
        };
        backends.insert(
            name.clone(),
            Backend {
                name,
                kind,
                isolation,
            },
        );
    }
    let mut tenants = BTreeMap::new();
    for _ in 0..r.len()? {
        let name = r.name()?;
        let namespaces = r.texts()?;
        let containerd_namespaces = r.texts()?;
        let backend = r.name()?;
        let mut deny = Vec::new();
        for _ in 0..r.len()? {
            deny.push(deny_from(r.u8()?)?);
        }
        let pod_security = match r.u8()? {
            0 => None,
            1 => Some(PodSecurity::Baseline),
            2 => Some(PodSecurity::Restricted),
            _ => return None,
        };
        let allow_annotations = r.texts()?;
        tenants.insert(
            name.clone(),
            Tenant {
                name,
                namespaces,
                containerd_namespaces,
                backend,
                deny,
                pod_security,
                allow_annotations,
            },
        );
    }
    let mut handlers = BTreeMap::new();
    for _ in 0..r.len()? {
        let name = r.name()?;
        let reserves = iso_from(r.u8()?)?;
        let backend = match r.u8()? {
            0 => None,
            1 => Some(r.name()?),
            _ => return None,
        };
        let runtime_class = r.name()?;
        handlers.insert(
            name.clone(),
            Handler {
                name,
                reserves,
                backend,
                runtime_class,
            },
        );
    }
    let unnamed_handler_reserves = iso_from(r.u8()?)?;
    let mut unaccounted_tiers = Vec::new();
    for _ in 0..r.len()? {
        unaccounted_tiers.push(iso_from(r.u8()?)?);
    }
    if r.at != r.b.len() || r.text_at != r.table.len() {
        return None;
    }
    Some(Policy {
        version,
        audit_log,
        audit_log_max_bytes,
        audit_log_keep,
        default_tenant,
        allowed_host_paths,
        backends,
        tenants,
        handlers,
        unnamed_handler_reserves,
        unaccounted_tiers,
        source: PolicySource::Embedded,
        digest,
    })
}

fn iso_code(i: Isolation) -> u8 {
    match i {
        Isolation::Container => 0,
        Isolation::Sandbox => 1,
        Isolation::Vm => 2,
    }
}

fn iso_from(c: u8) -> Option<Isolation> {
    [Isolation::Container, Isolation::Sandbox, Isolation::Vm]
        .get(usize::from(c))
        .copied()
}

fn deny_code(d: DenyRule) -> u8 {
    DenyRule::ALL
        .iter()
        .position(|x| *x == d)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

fn deny_from(c: u8) -> Option<DenyRule> {
    DenyRule::ALL.get(usize::from(c)).copied()
}

fn put_len(w: &mut Vec<u8>, n: usize) {
    w.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

struct Writer {
    structure: Vec<u8>,
    table: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.structure.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.structure.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.structure.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        put_len(&mut self.structure, n);
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.table.extend_from_slice(s.as_bytes());
    }
    fn strs<S: AsRef<str>>(&mut self, v: &[S]) {
        self.len(v.len());
        for s in v {
            self.str(s.as_ref());
        }
    }
}

struct Reader<'a> {
    /// The structure.
    b: &'a [u8],
    at: usize,
    /// The string table and how much of it has been read.
    table: &'a str,
    text_at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let s: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_le_bytes(s))
    }
    /// A count; bounded by the bytes left so a damaged entry cannot ask for a huge allocation.
    fn len(&mut self) -> Option<usize> {
        let n = usize::try_from(self.u32()?).ok()?;
        (n <= self.b.len() - self.at).then_some(n)
    }
    /// The next string of the table (`get` refuses a range that splits a character).
    fn text(&mut self) -> Option<&'a str> {
        let n = usize::try_from(self.u32()?).ok()?;
        let end = self.text_at.checked_add(n)?;
        let s = self.table.get(self.text_at..end)?;
        self.text_at = end;
        Some(s)
    }
    fn str(&mut self) -> Option<String> {
        self.text().map(String::from)
    }
    /// A name or pattern: short ones are stored inline, without an allocation.
    fn name(&mut self) -> Option<CompactString> {
        self.text().map(CompactString::from)
    }
    /// A counted list of strings, as `String`s or `CompactString`s.
    fn texts<T: From<&'a str>>(&mut self) -> Option<Vec<T>> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::from(self.text()?));
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let mut p = crate::embedded_default();
        p.source = PolicySource::Embedded;
        let bytes = encode(&p);
        assert_eq!(decode(&bytes).as_ref(), Some(&p));
        // every truncation and every single-byte flip decodes to None or some policy, never panics
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = decode(&b);
        }
    }
}
