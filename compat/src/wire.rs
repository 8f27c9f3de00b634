//! The protobuf wire format, as much of it as the bootstrap and `-info` messages use: varints,
//! length-delimited fields, and skipping the fields a message does not know. Written from the
//! protobuf encoding reference; no generated code, so the shim's start path links no protobuf
//! runtime for three small messages.

/// The wire types a field can have. Groups (3, 4) are deprecated and never used by the
/// messages here: a reader refuses them.
pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const I32: u8 = 5;

/// Bytes that are not a well-formed protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("varint longer than 10 bytes at byte {0}")]
    LongVarint(usize),
    #[error("field number 0 at byte {0}")]
    FieldZero(usize),
    #[error("wire type {ty} at byte {at} (groups and unknown types are not read)")]
    WireType { ty: u8, at: usize },
    #[error("field {field} has wire type {ty}, expected {want}")]
    Mismatch { field: u32, ty: u8, want: u8 },
    #[error("field {0} is not valid UTF-8")]
    Utf8(u32),
}

/// Appends `v` as a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, ty: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(ty));
}

/// A length-delimited field (strings, bytes, embedded messages). proto3 leaves out an empty
/// singular string; callers that must send one anyway (an `optional` field) use this directly.
pub fn put_bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// A proto3 string field: nothing when empty (the default).
pub fn put_string(out: &mut Vec<u8>, field: u32, value: &str) {
    if !value.is_empty() {
        put_bytes(out, field, value.as_bytes());
    }
}

/// A proto3 `int32`/`int64`/enum field: nothing when zero. Negative values take ten bytes
/// (two's complement as a 64-bit varint), as protobuf sends them.
pub fn put_int(out: &mut Vec<u8>, field: u32, value: i64) {
    if value != 0 {
        put_key(out, field, VARINT);
        put_varint(out, value as u64);
    }
}

/// One field of a message as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed 32- or 64-bit field (no message here has one; skipped as unknown).
    Fixed,
}

/// Reads the fields of one message in order. Every byte must belong to a field: a message that
/// ends inside a field, or holds a group or an unknown wire type, is an error.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(WireError::Truncated(start))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::LongVarint(start))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let at = self.pos;
        let end = at
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(WireError::Truncated(at))?;
        self.pos = end;
        Ok(&self.buf[at..end])
    }

    /// The next field: `(number, value)`, or `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let ty = (key & 7) as u8;
        let field = u32::try_from(key >> 3).map_err(|_| WireError::WireType { ty, at })?;
        if field == 0 {
            return Err(WireError::FieldZero(at));
        }
        let value = match ty {
            VARINT => Value::Varint(self.varint()?),
            I64 => {
                self.take(8)?;
                Value::Fixed
            }
            LEN => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| WireError::Truncated(self.pos))?;
                Value::Bytes(self.take(n)?)
            }
            I32 => {
                self.take(4)?;
                Value::Fixed
            }
            ty => return Err(WireError::WireType { ty, at }),
        };
        Ok(Some((field, value)))
    }
}

/// The string a length-delimited field holds.
pub fn string(field: u32, v: Value<'_>) -> Result<String, WireError> {
    match v {
        Value::Bytes(b) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| WireError::Utf8(field)),
        other => Err(mismatch(field, other, LEN)),
    }
}

/// The bytes a length-delimited field holds (an embedded message).
pub fn bytes(field: u32, v: Value<'_>) -> Result<&[u8], WireError> {
    match v {
        Value::Bytes(b) => Ok(b),
        other => Err(mismatch(field, other, LEN)),
    }
}

/// The integer a varint field holds, as protobuf's `int32`/enum reads it (the low 32 bits,
/// sign included).
pub fn int32(field: u32, v: Value<'_>) -> Result<i32, WireError> {
    match v {
        Value::Varint(n) => Ok(n as i32),
        other => Err(mismatch(field, other, VARINT)),
    }
}

fn mismatch(field: u32, v: Value<'_>, want: u8) -> WireError {
    let ty = match v {
        Value::Varint(_) => VARINT,
        Value::Bytes(_) => LEN,
        Value::Fixed => I32,
    };
    WireError::Mismatch { field, ty, want }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_their_edges() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut r = Reader { buf: &b, pos: 0 };
            assert_eq!(r.varint().unwrap(), v);
            assert_eq!(r.pos, b.len());
        }
        // 300 is the protobuf guide's own example
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: [(&[u8], &str); 6] = [
            (&[0x0a, 5, b'a'], "truncated"),
            (&[0x08], "truncated"),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
                "longer",
            ),
            (&[0x0b], "wire type 3"),
            (&[0x0f], "wire type 7"),
            (&[0x00, 0x01], "field number 0"),
        ];
        for (bytes, want) in cases {
            let mut r = Reader::new(bytes);
            let e = loop {
                match r.next_field() {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("{bytes:?} read as a message"),
                    Err(e) => break e,
                }
            };
            assert!(e.to_string().contains(want), "{bytes:?}: {e}");
        }
    }

    #[test]
    fn negative_ints_take_ten_bytes_and_read_back() {
        let mut b = Vec::new();
        put_int(&mut b, 3, -4);
        assert_eq!(b.len(), 11);
        let mut r = Reader::new(&b);
        let (f, v) = r.next_field().unwrap().unwrap();
        assert_eq!((f, int32(f, v).unwrap()), (3, -4));
    }
}
