//! The ttrpc wire format, as much as the relay needs: frames (a 10-byte header — payload length
//! and stream id, big-endian u32 each, then message type and flags — and the payload), the
//! protobuf `Request` envelope whose service name the relay rewrites and whose `Create` payload
//! it inspects, and an error `Response` it can answer by itself. Everything here is parsing of
//! bytes from a socket: malformed input is an error, never a panic.

use std::io::{self, Read, Write};

/// Frame header length.
pub const HEADER_LEN: usize = 10;
/// Largest payload accepted (ttrpc's own limit is 4 MiB).
pub const MAX_PAYLOAD: usize = 4 << 20;
/// Message type of a request frame.
pub const TYPE_REQUEST: u8 = 1;
/// Message type of a response frame.
pub const TYPE_RESPONSE: u8 = 2;

/// One ttrpc frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream_id: u32,
    pub kind: u8,
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// Reads one frame; `Ok(None)` on end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("ttrpc frame of {len} bytes (limit {MAX_PAYLOAD})"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame {
        stream_id: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        kind: header[8],
        flags: header[9],
        payload,
    }))
}

/// Writes one frame with a single `write_all` (header and payload together).
pub fn write_frame(w: &mut impl Write, f: &Frame) -> io::Result<()> {
    let len = u32::try_from(f.payload.len())
        .ok()
        .filter(|l| *l as usize <= MAX_PAYLOAD)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ttrpc frame too large"))?;
    let mut buf = Vec::with_capacity(HEADER_LEN + f.payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&f.stream_id.to_be_bytes());
    buf.push(f.kind);
    buf.push(f.flags);
    buf.extend_from_slice(&f.payload);
    w.write_all(&buf)
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_field(out: &mut Vec<u8>, num: u32, bytes: &[u8]) {
    put_varint(out, u64::from(num) << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One field of a protobuf message: its number, the whole encoded field, and for
/// length-delimited fields the contents.
struct Field<'a> {
    num: u64,
    raw: &'a [u8],
    bytes: Option<&'a [u8]>,
}

/// The fields of a protobuf message, in order; `None` if the bytes are not a message.
fn fields(msg: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let start = pos;
        let key = read_varint(msg, &mut pos)?;
        let mut bytes = None;
        match key & 7 {
            0 => {
                read_varint(msg, &mut pos)?;
            }
            1 => pos = pos.checked_add(8).filter(|p| *p <= msg.len())?,
            2 => {
                let len = usize::try_from(read_varint(msg, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= msg.len())?;
                bytes = Some(&msg[pos..end]);
                pos = end;
            }
            5 => pos = pos.checked_add(4).filter(|p| *p <= msg.len())?,
            _ => return None,
        }
        out.push(Field {
            num: key >> 3,
            raw: &msg[start..pos],
            bytes,
        });
    }
    Some(out)
}

/// The last value of length-delimited field `num` (protobuf: the last one wins), as UTF-8.
fn string_field(msg: &[u8], num: u64) -> Option<&str> {
    fields(msg)?
        .iter()
        .rev()
        .find(|f| f.num == num)
        .and_then(|f| f.bytes)
        .and_then(|b| std::str::from_utf8(b).ok())
}

/// The parts of a ttrpc `Request` (service = 1, method = 2, payload = 3) the relay looks at.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub service: &'a str,
    pub method: &'a str,
    pub payload: &'a [u8],
}

/// Parses a request frame's payload.
pub fn parse_request(msg: &[u8]) -> Option<Request<'_>> {
    let fs = fields(msg)?;
    let last = |num| fs.iter().rev().find(|f| f.num == num).and_then(|f| f.bytes);
    Some(Request {
        service: std::str::from_utf8(last(1)?).ok()?,
        method: std::str::from_utf8(last(2)?).ok()?,
        payload: last(3).unwrap_or_default(),
    })
}

/// The request with its service name replaced by `service`; every other field is kept as
/// it was, byte for byte.
pub fn with_service(msg: &[u8], service: &str) -> Option<Vec<u8>> {
    let fs = fields(msg)?;
    let mut out = Vec::with_capacity(msg.len() + service.len());
    put_len_field(&mut out, 1, service.as_bytes());
    for f in fs.iter().filter(|f| f.num != 1) {
        out.extend_from_slice(f.raw);
    }
    Some(out)
}

/// The task id of a `CreateTaskRequest` (field 1), if the payload is one.
pub fn create_task_id(payload: &[u8]) -> Option<&str> {
    string_field(payload, 1)
}

/// The last value of varint field `num`.
pub fn varint_field(msg: &[u8], num: u64) -> Option<u64> {
    let f = fields(msg)?.into_iter().rev().find(|f| f.num == num)?;
    if f.bytes.is_some() {
        return None;
    }
    let mut pos = 0;
    read_varint(f.raw, &mut pos)?;
    read_varint(f.raw, &mut pos)
}

/// A ttrpc `Request` for `service`/`method` carrying `payload`.
pub fn request(service: &str, method: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_len_field(&mut out, 1, service.as_bytes());
    put_len_field(&mut out, 2, method.as_bytes());
    put_len_field(&mut out, 3, payload);
    out
}

/// A message holding one string field (e.g. `ConnectRequest{id}`).
pub fn string_message(num: u32, value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    put_len_field(&mut out, num, value.as_bytes());
    out
}

/// The payload of a ttrpc `Response` (field 2) if its status (field 1) is OK.
pub fn response_payload(msg: &[u8]) -> Option<&[u8]> {
    let fs = fields(msg)?;
    if let Some(status) = fs.iter().rev().find(|f| f.num == 1).and_then(|f| f.bytes) {
        if varint_field(status, 1).unwrap_or(0) != 0 {
            return None;
        }
    }
    Some(
        fs.iter()
            .rev()
            .find(|f| f.num == 2)
            .and_then(|f| f.bytes)
            .unwrap_or_default(),
    )
}

/// A ttrpc `Response` carrying only a `google.rpc.Status` (code = 1, message = 2).
pub fn error_response(code: u32, message: &str) -> Vec<u8> {
    let mut status = Vec::new();
    put_varint(&mut status, 1 << 3);
    put_varint(&mut status, u64::from(code));
    put_len_field(&mut status, 2, message.as_bytes());
    let mut out = Vec::new();
    put_len_field(&mut out, 1, &status);
    out
}

/// gRPC status code `FailedPrecondition`.
pub const CODE_FAILED_PRECONDITION: u32 = 9;

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with_metadata(service: &str, method: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = request(service, method, payload);
        // timeout_nano = 4 (varint)
        put_varint(&mut out, 4 << 3);
        put_varint(&mut out, 5_000_000_000);
        // metadata = 5 (a KeyValue)
        let mut kv = Vec::new();
        put_len_field(&mut kv, 1, b"containerd-namespace");
        put_len_field(&mut kv, 2, b"k8s.io");
        put_len_field(&mut out, 5, &kv);
        out
    }

    #[test]
    fn frames_round_trip_and_stop_cleanly_at_end_of_stream() {
        let f = Frame {
            stream_id: 7,
            kind: TYPE_REQUEST,
            flags: 0,
            payload: b"hello".to_vec(),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &f).unwrap();
        write_frame(&mut buf, &f).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some(f.clone()));
        assert_eq!(read_frame(&mut r).unwrap(), Some(f));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        // cut inside a frame: an error, not a clean end
        let mut r = &buf[..12];
        assert!(read_frame(&mut r).is_err());
        // an oversized length is refused before anything is allocated
        let mut huge = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0];
        huge.extend_from_slice(b"x");
        assert!(read_frame(&mut &huge[..]).is_err());
    }

    #[test]
    fn service_rename_keeps_every_other_field() {
        let mut create = Vec::new();
        put_len_field(&mut create, 1, b"ctr-1");
        put_len_field(&mut create, 2, b"/run/bundle/ctr-1");
        let msg = request_with_metadata("containerd.task.v2.Task", "Create", &create);
        let req = parse_request(&msg).unwrap();
        assert_eq!(req.service, "containerd.task.v2.Task");
        assert_eq!(req.method, "Create");
        assert_eq!(create_task_id(req.payload), Some("ctr-1"));

        let renamed = with_service(&msg, "containerd.task.v3.Task").unwrap();
        let req2 = parse_request(&renamed).unwrap();
        assert_eq!(req2.service, "containerd.task.v3.Task");
        assert_eq!(req2.method, "Create");
        assert_eq!(req2.payload, &create[..]);
        // the same bytes after the service field
        let tail = |m: &[u8]| {
            let fs = fields(m).unwrap();
            fs.iter()
                .filter(|f| f.num != 1)
                .flat_map(|f| f.raw.to_vec())
                .collect::<Vec<u8>>()
        };
        assert_eq!(tail(&msg), tail(&renamed));
    }

    #[test]
    fn garbage_is_not_a_request() {
        assert_eq!(parse_request(&[0xff]), None);
        assert_eq!(parse_request(&[0x0a, 0x05, b'a']), None); // length past the end
        assert_eq!(parse_request(&[]), None); // no service, no method
        assert_eq!(with_service(&[0x0f], "s"), None); // wire type 7
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            let _ = parse_request(&junk);
            let _ = create_task_id(&junk);
        }
    }

    #[test]
    fn responses_and_varints() {
        let mut connect = Vec::new();
        put_varint(&mut connect, 1 << 3);
        put_varint(&mut connect, 4242);
        let mut ok = Vec::new();
        put_len_field(&mut ok, 2, &connect);
        let payload = response_payload(&ok).unwrap();
        assert_eq!(varint_field(payload, 1), Some(4242));
        assert_eq!(response_payload(&error_response(9, "no")), None);
        assert_eq!(varint_field(&string_message(1, "x"), 1), None);
    }

    #[test]
    fn error_response_is_a_status() {
        let r = error_response(CODE_FAILED_PRECONDITION, "refused");
        let fs = fields(&r).unwrap();
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].num, 1);
        let status = fs[0].bytes.unwrap();
        assert_eq!(string_field(status, 2), Some("refused"));
        let code = fields(status).unwrap();
        assert_eq!(code[0].num, 1);
        assert_eq!(code[0].raw, &[0x08, 9]);
    }
}
