//! Table and property tests of the bootstrap formats: every encoding a delegate may answer in,
//! each read the same way, and everything else refused by name.

use super::*;
use proptest::prelude::*;

const ADDR: &str = "unix:///run/containerd/s/0123abcd";

fn proto(version: i32, address: &str, protocol: &str) -> Vec<u8> {
    encode_result(&BootstrapResult {
        version,
        address: address.into(),
        protocol: protocol.into(),
    })
}

#[test]
fn each_encoding_of_each_version_is_read() {
    let json3 = format!(r#"{{"version":3,"address":"{ADDR}","protocol":"ttrpc"}}"#);
    let json2 = format!(r#"{{"version":2,"address":"{ADDR}","protocol":"ttrpc"}}"#);
    let cases: Vec<(Vec<u8>, u32, Encoding)> = vec![
        (proto(3, ADDR, "ttrpc"), 3, Encoding::Protobuf),
        (proto(2, ADDR, "ttrpc"), 2, Encoding::Protobuf),
        (json3.clone().into_bytes(), 3, Encoding::Json),
        (format!("{json3}\n").into_bytes(), 3, Encoding::Json),
        (json2.into_bytes(), 2, Encoding::Json),
        (
            format!(r#"{{"version":2,"address":"{ADDR}"}}"#).into_bytes(),
            2,
            Encoding::Json,
        ),
        (ADDR.as_bytes().to_vec(), 2, Encoding::Plain),
        (format!("{ADDR}\n").into_bytes(), 2, Encoding::Plain),
    ];
    for (bytes, version, encoding) in cases {
        let r = classify(&bytes).unwrap_or_else(|e| panic!("{bytes:?}: {e}"));
        assert_eq!(
            r,
            BootstrapReply {
                version,
                address: ADDR.into(),
                encoding
            },
            "{bytes:?}"
        );
        assert_eq!(r.skips_container_start(), version == 3);
    }
}

#[test]
fn protobuf_with_capabilities_and_metadata_is_read() {
    // fields 4 (repeated enum) and 5 (map entry) are read past
    let mut b = proto(3, ADDR, "ttrpc");
    wire::put_int(&mut b, 4, 0);
    b.extend_from_slice(&[0x20, 0x00]);
    let mut entry = Vec::new();
    wire::put_string(&mut entry, 1, "k");
    wire::put_string(&mut entry, 2, "v");
    wire::put_bytes(&mut b, 5, &entry);
    assert_eq!(classify(&b).unwrap().version, 3);
}

#[test]
fn what_cannot_be_classified_is_refused_by_name() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "printed no address"),
        (b" \n\t".to_vec(), "printed no address"),
        (b"garbage from a shim".to_vec(), "\"garbage from a shim\""),
        (vec![0xff, 0xfe, 0x00], "\\xff\\xfe\\x00"),
        (b"tcp://10.0.0.1:1234".to_vec(), "tcp://"),
        (b"unix://".to_vec(), "none of the replies"),
        (b"unix:///a b".to_vec(), "none of the replies"),
        (b"unix:///a\nunix:///b".to_vec(), "none of the replies"),
        (b"{not json".to_vec(), "JSON"),
        (br#"{"address":"unix:///x"}"#.to_vec(), "integer `version`"),
        (br#"{"version":3}"#.to_vec(), "string `address`"),
        (
            br#"{"version":"3","address":"unix:///x"}"#.to_vec(),
            "integer `version`",
        ),
        (
            br#"{"version":3,"address":"unix:///x","protocol":7}"#.to_vec(),
            "not a string",
        ),
        (
            br#"{"version":9,"address":"unix:///x","protocol":"ttrpc"}"#.to_vec(),
            "version 9 (JSON)",
        ),
        (
            br#"{"version":1,"address":"unix:///x"}"#.to_vec(),
            "version 1 (JSON)",
        ),
        (
            proto(9, ADDR, "ttrpc"),
            "version 9 (protobuf BootstrapResult)",
        ),
        (proto(-1, ADDR, "ttrpc"), "version -1 (protobuf"),
        (proto(3, "", "ttrpc"), "not a unix:// socket"),
        (proto(3, "vsock://3:1024", "ttrpc"), "vsock://3:1024"),
        (proto(3, ADDR, ""), "over ``"),
        (proto(3, ADDR, "grpc"), "over `grpc`"),
        (proto(2, ADDR, "grpc"), "protocol 2 over `grpc`"),
        (
            br#"{"version":3,"address":"unix:///x","protocol":"grpc"}"#.to_vec(),
            "over `grpc` (JSON)",
        ),
    ];
    for (bytes, want) in cases {
        let e = classify(&bytes).expect_err(&format!("{bytes:?} was classified"));
        let msg = e.to_string();
        assert!(msg.contains(want), "{bytes:?}: {msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}

#[test]
fn a_long_reply_is_shown_cut() {
    let e = classify(&[b'x'; 500]).unwrap_err().to_string();
    assert!(e.contains("(500 bytes)") && e.contains('…'), "{e}");
}

#[test]
fn params_round_trip() {
    let p = BootstrapParams {
        instance_id: "pod-1".into(),
        namespace: "k8s.io".into(),
        log_level: -4,
        containerd_version: "2.3.4".into(),
        containerd_ttrpc_address: "/run/containerd/containerd.sock.ttrpc".into(),
        containerd_grpc_address: "/run/containerd/containerd.sock".into(),
        containerd_binary: "/usr/bin/containerd".into(),
        extensions: vec![Extension {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![0x08, 0x01],
        }],
        socket_dir: Some(String::new()),
    };
    let b = encode_params(&p);
    assert_eq!(decode_params(&b).unwrap(), p);
    // an `optional` empty socket_dir is still sent; an absent one is not
    assert!(b.ends_with(&[0x4a, 0x00]));
    let none = BootstrapParams {
        socket_dir: None,
        ..p
    };
    assert!(!encode_params(&none).ends_with(&[0x4a, 0x00]));
    assert_eq!(decode_params(&encode_params(&none)).unwrap(), none);
}

#[test]
fn params_are_not_a_reply() {
    // stdin is never mistaken for stdout: BootstrapParams carry no version or address fields
    // that BootstrapResult would read as a usable reply
    let b = encode_params(&BootstrapParams {
        instance_id: "x".into(),
        ..Default::default()
    });
    assert!(classify(&b).is_err());
}

proptest! {
    /// What the router prints is read as task API v2 by every containerd line: a `unix://`
    /// address is never a protobuf message (the `/` after `unix:` is wire type 7), so 2.3's
    /// protobuf-first parse falls through to the plain address.
    #[test]
    fn the_routers_reply_is_version_2_everywhere(path in "/[!-~]{1,100}") {
        let a = format!("unix://{path}");
        let out = plain_reply(&a);
        prop_assert!(decode_result(out.as_bytes()).is_err());
        let r = classify(out.as_bytes()).unwrap();
        prop_assert_eq!(r.version, 2);
        prop_assert_eq!(r.address, a);
    }

    /// A protobuf reply reads back as what was encoded, whatever the address.
    #[test]
    fn protobuf_replies_round_trip(path in "/[!-~]{1,100}", v3 in any::<bool>()) {
        let a = format!("unix://{path}");
        let version = if v3 { 3 } else { 2 };
        let r = classify(&proto(version, &a, "ttrpc")).unwrap();
        prop_assert_eq!(r, BootstrapReply { version: version as u32, address: a, encoding: Encoding::Protobuf });
    }

    /// No input panics, and whatever is accepted has a version the router knows and a unix
    /// address.
    #[test]
    fn any_bytes_are_classified_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(r) = classify(&bytes) {
            prop_assert!(r.version == 2 || r.version == 3);
            prop_assert!(r.address.starts_with("unix://"));
        }
    }
}
