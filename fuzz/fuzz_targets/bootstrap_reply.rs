//! Fuzz target: any bytes as a delegate shim's `start` reply, and as containerd 2.3's
//! `BootstrapParams` on stdin. Classification returns a reply or a refusal, never panics; what it
//! accepts has a version the router knows and a unix address; and the router's own plain reply
//! for an accepted address reads back as version 2.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router_compat::bootstrap;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = router_compat::classify(data) {
        assert!(r.version == 2 || r.version == 3, "{r:?}");
        assert!(r.address.starts_with("unix://"), "{r:?}");
        let again = router_compat::classify(router_compat::plain_reply(&r.address).as_bytes());
        assert_eq!(again.map(|a| (a.version, a.address)), Ok((2, r.address.clone())));
    }
    if let Ok(p) = bootstrap::decode_params(data) {
        assert_eq!(bootstrap::decode_params(&bootstrap::encode_params(&p)), Ok(p));
    }
});
