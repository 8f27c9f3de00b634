//! `<shim> -info` (containerd 2.x): a protobuf `containerd.types.RuntimeInfo` on stdout.
//! containerd 2.0/2.1 ask for it for idmapped mounts; 2.2 and 2.3 on the first task of every
//! runtime that is not `io.containerd.runc.v2` (their `loadShimInfo`, reading only the optional
//! `annotations` map for mounts the shim handles itself) and in CRI's runtime-feature
//! introspection; each parses stdout as `RuntimeInfo` and fails the task if it does not parse.

use crate::wire;

/// The `RuntimeInfo` printed for `-info`: `name` (field 1) and `version` (field 2, a
/// `RuntimeVersion` with `version` = 1 and `revision` = 2). No `options`, `features` or
/// `annotations`: the router declares no OCI features of its own (containerd reads that as "none
/// known" and offers no idmapped mounts) and handles no mount types itself.
pub fn runtime_info(name: &str, version: &str) -> Vec<u8> {
    let mut runtime_version = Vec::new();
    wire::put_string(&mut runtime_version, 1, version);
    let mut out = Vec::new();
    wire::put_string(&mut out, 1, name);
    wire::put_bytes(&mut out, 2, &runtime_version);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_info_is_protobuf() {
        let b = runtime_info("io.containerd.router.v2", "0.1.0");
        // field 1 (name), length 23
        assert_eq!(&b[..2], &[0x0a, 23]);
        assert_eq!(&b[2..25], b"io.containerd.router.v2");
        // field 2 (version): a message holding field 1 = "0.1.0"
        assert_eq!(&b[25..], &[0x12, 7, 0x0a, 5, b'0', b'.', b'1', b'.', b'0']);
        // no field 5 (annotations): 2.2+ finds no mounts the shim handles itself
        let mut r = wire::Reader::new(&b);
        let mut fields = Vec::new();
        while let Some((f, _)) = r.next_field().unwrap() {
            fields.push(f);
        }
        assert_eq!(fields, [1, 2]);
    }
}
