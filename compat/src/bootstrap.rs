//! The bootstrap exchange of a shim's `start`, as each containerd line speaks it (SPEC §2):
//!
//! | containerd | sends on stdin                        | reads on stdout                          |
//! |------------|---------------------------------------|------------------------------------------|
//! | 1.6, 1.7   | runtime options (`Any`), if any       | a plain address (task API v2)            |
//! | 2.0 – 2.2  | runtime options (`Any`), if any       | JSON `{"version","address","protocol"}`, else a plain address |
//! | 2.3+       | protobuf `BootstrapParams`            | protobuf `BootstrapResult` first, then JSON, then a plain address |
//!
//! The router never passes a delegate's reply on unread: [`classify`] reads it in any of those
//! encodings, strictly (an address must be a `unix://` socket, a version 2 or 3, a protocol
//! `ttrpc`), and anything else is an error naming what was printed. What the router prints for
//! containerd is always a plain address ([`plain_reply`]): every line from 1.6 to 2.3 reads it
//! as task API v2 (a `unix://` address is never a valid protobuf message, so 2.3's protobuf-first
//! parse falls through to it), and a version-2 reply is what keeps containerd 2.x calling
//! `start` for every container of the pod.
//!
//! The messages are written from containerd's `api/runtime/bootstrap/v1/bootstrap.proto`:
//! `BootstrapResult { int32 version = 1; string address = 2; string protocol = 3; repeated
//! Capability capabilities = 4; map<string,string> metadata = 5; }` and `BootstrapParams {
//! string instance_id = 1; string namespace = 2; LogLevel log_level = 3; string
//! containerd_version = 4; string containerd_ttrpc_address = 5; string containerd_grpc_address
//! = 6; string containerd_binary = 7; repeated Extension extensions = 8; optional string
//! socket_dir = 9; }` with `Extension { google.protobuf.Any value = 1; }`.

use crate::wire::{self, Reader, WireError};

/// How a reply was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// protobuf `BootstrapResult` (containerd 2.3's shim library).
    Protobuf,
    /// JSON bootstrap object (containerd 2.0–2.2's shim library).
    Json,
    /// A plain address (containerd 1.x's shim library; task API v2).
    Plain,
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::Protobuf => "protobuf BootstrapResult",
            Encoding::Json => "JSON",
            Encoding::Plain => "plain address",
        })
    }
}

/// A `start` reply the router has classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapReply {
    /// 2 (containerd calls `start` for every container) or 3 (containerd 2.x connects the pod's
    /// containers straight to this shim).
    pub version: u32,
    /// A `unix://` socket address.
    pub address: String,
    pub encoding: Encoding,
}

impl BootstrapReply {
    /// Whether containerd 2.x, given this reply for a pod sandbox, connects the pod's app
    /// containers straight to that shim without calling `start` for them (task API v3).
    pub fn skips_container_start(&self) -> bool {
        self.version >= 3
    }
}

/// A reply the router refuses to pass on: it names what was printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("printed no address")]
    Empty,
    #[error("printed {shown}, which is none of the replies containerd reads (a protobuf BootstrapResult, a JSON bootstrap object, or a plain unix:// address){why}")]
    Unclassified { shown: String, why: String },
    #[error("answered bootstrap protocol version {version} ({encoding}); the router knows versions 2 and 3 only")]
    UnknownVersion { version: i64, encoding: Encoding },
    #[error("answered address {address:?} ({encoding}), which is not a unix:// socket")]
    BadAddress { address: String, encoding: Encoding },
    #[error("answered bootstrap protocol {version} over `{protocol}` ({encoding}); the router can only front ttrpc, and must not let containerd skip its `start` for the pod's containers")]
    Protocol {
        version: u32,
        protocol: String,
        encoding: Encoding,
    },
}

/// Longest address accepted (a unix socket path is at most 108 bytes; room for a scheme).
const MAX_ADDRESS: usize = 4096;

/// Reads a shim's `start` reply in whichever encoding it came, the way containerd 2.3 does
/// (protobuf first, then JSON, then a plain address), but strictly: every field must make sense,
/// or the reply is refused naming what it held.
pub fn classify(out: &[u8]) -> Result<BootstrapReply, ReplyError> {
    if out.iter().all(u8::is_ascii_whitespace) {
        return Err(ReplyError::Empty);
    }
    if let Ok(r) = decode_result(out) {
        if r.version != 0 || !r.address.is_empty() {
            return check(
                i64::from(r.version),
                r.address,
                r.protocol,
                Encoding::Protobuf,
            );
        }
    }
    let unclassified = |why: String| ReplyError::Unclassified {
        shown: show(out),
        why,
    };
    let text = std::str::from_utf8(out)
        .map_err(|_| unclassified(String::new()))?
        .trim();
    if text.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| unclassified(format!(" (JSON: {e})")))?;
        let version = v
            .get("version")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| unclassified(" (JSON without an integer `version`)".into()))?;
        let address = v
            .get("address")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| unclassified(" (JSON without a string `address`)".into()))?;
        let protocol = match v.get("protocol") {
            None => "ttrpc",
            Some(p) => p
                .as_str()
                .ok_or_else(|| unclassified(" (JSON `protocol` is not a string)".into()))?,
        };
        return check(version, address.into(), protocol.into(), Encoding::Json);
    }
    if valid_address(text) {
        return Ok(BootstrapReply {
            version: 2,
            address: text.to_owned(),
            encoding: Encoding::Plain,
        });
    }
    Err(unclassified(String::new()))
}

fn check(
    version: i64,
    address: String,
    protocol: String,
    encoding: Encoding,
) -> Result<BootstrapReply, ReplyError> {
    let version = match version {
        2 | 3 => version as u32,
        _ => return Err(ReplyError::UnknownVersion { version, encoding }),
    };
    if !valid_address(&address) {
        return Err(ReplyError::BadAddress { address, encoding });
    }
    if protocol != "ttrpc" {
        return Err(ReplyError::Protocol {
            version,
            protocol,
            encoding,
        });
    }
    Ok(BootstrapReply {
        version,
        address,
        encoding,
    })
}

/// `unix://` and a path of printable characters, no white space.
fn valid_address(a: &str) -> bool {
    a.len() <= MAX_ADDRESS
        && a.strip_prefix("unix://")
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_graphic()))
}

/// At most 64 bytes of what was printed, printable ASCII as is and the rest as `\xNN`, with the
/// total length.
fn show(out: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in out.iter().take(64) {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    if out.len() > 64 {
        s.push('…');
    }
    format!("{s} ({} bytes)", out.len())
}

/// What the router prints for containerd: the address alone, which every containerd line reads
/// as task API v2 (so containerd 2.x keeps calling `start` for each container).
pub fn plain_reply(address: &str) -> String {
    address.to_owned()
}

/// The fields of a `BootstrapResult` (capabilities and metadata are read past, not kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapResult {
    pub version: i32,
    pub address: String,
    pub protocol: String,
}

/// Encodes a `BootstrapResult` as containerd 2.3's shim library prints it.
pub fn encode_result(r: &BootstrapResult) -> Vec<u8> {
    let mut out = Vec::new();
    wire::put_int(&mut out, 1, i64::from(r.version));
    wire::put_string(&mut out, 2, &r.address);
    wire::put_string(&mut out, 3, &r.protocol);
    out
}

/// Decodes a `BootstrapResult`; unknown fields are skipped, as protobuf readers do.
pub fn decode_result(b: &[u8]) -> Result<BootstrapResult, WireError> {
    let mut r = BootstrapResult::default();
    let mut rd = Reader::new(b);
    while let Some((field, v)) = rd.next_field()? {
        match field {
            1 => r.version = wire::int32(field, v)?,
            2 => r.address = wire::string(field, v)?,
            3 => r.protocol = wire::string(field, v)?,
            _ => {}
        }
    }
    Ok(r)
}

/// One `Extension`: a `google.protobuf.Any`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extension {
    pub type_url: String,
    pub value: Vec<u8>,
}

/// What containerd 2.3 writes on a shim's stdin for `start`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapParams {
    pub instance_id: String,
    pub namespace: String,
    pub log_level: i32,
    pub containerd_version: String,
    pub containerd_ttrpc_address: String,
    pub containerd_grpc_address: String,
    pub containerd_binary: String,
    pub extensions: Vec<Extension>,
    /// `optional`: `Some("")` is sent, `None` is not.
    pub socket_dir: Option<String>,
}

/// Encodes `BootstrapParams` as containerd 2.3 writes them.
pub fn encode_params(p: &BootstrapParams) -> Vec<u8> {
    let mut out = Vec::new();
    wire::put_string(&mut out, 1, &p.instance_id);
    wire::put_string(&mut out, 2, &p.namespace);
    wire::put_int(&mut out, 3, i64::from(p.log_level));
    wire::put_string(&mut out, 4, &p.containerd_version);
    wire::put_string(&mut out, 5, &p.containerd_ttrpc_address);
    wire::put_string(&mut out, 6, &p.containerd_grpc_address);
    wire::put_string(&mut out, 7, &p.containerd_binary);
    for e in &p.extensions {
        let mut any = Vec::new();
        wire::put_string(&mut any, 1, &e.type_url);
        if !e.value.is_empty() {
            wire::put_bytes(&mut any, 2, &e.value);
        }
        let mut ext = Vec::new();
        wire::put_bytes(&mut ext, 1, &any);
        wire::put_bytes(&mut out, 8, &ext);
    }
    if let Some(dir) = &p.socket_dir {
        wire::put_bytes(&mut out, 9, dir.as_bytes());
    }
    out
}

/// Decodes `BootstrapParams`.
pub fn decode_params(b: &[u8]) -> Result<BootstrapParams, WireError> {
    let mut p = BootstrapParams::default();
    let mut rd = Reader::new(b);
    while let Some((field, v)) = rd.next_field()? {
        match field {
            1 => p.instance_id = wire::string(field, v)?,
            2 => p.namespace = wire::string(field, v)?,
            3 => p.log_level = wire::int32(field, v)?,
            4 => p.containerd_version = wire::string(field, v)?,
            5 => p.containerd_ttrpc_address = wire::string(field, v)?,
            6 => p.containerd_grpc_address = wire::string(field, v)?,
            7 => p.containerd_binary = wire::string(field, v)?,
            8 => p.extensions.push(decode_extension(wire::bytes(field, v)?)?),
            9 => p.socket_dir = Some(wire::string(field, v)?),
            _ => {}
        }
    }
    Ok(p)
}

fn decode_extension(b: &[u8]) -> Result<Extension, WireError> {
    let mut e = Extension::default();
    let mut rd = Reader::new(b);
    while let Some((field, v)) = rd.next_field()? {
        if field == 1 {
            let mut any = Reader::new(wire::bytes(field, v)?);
            while let Some((f, v)) = any.next_field()? {
                match f {
                    1 => e.type_url = wire::string(f, v)?,
                    2 => e.value = wire::bytes(f, v)?.to_vec(),
                    _ => {}
                }
            }
        }
    }
    Ok(e)
}

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
mod tests;
