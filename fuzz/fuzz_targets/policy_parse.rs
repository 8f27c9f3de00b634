//! Fuzz target: any bytes as a policy file. `parse` must return Ok or a located error, never
//! panic; a policy that parses must be self-consistent (its default tenant and every tenant's
//! backend exist) and every error must carry a 1-based location.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match router_config::parse(text, Path::new("/fuzz/policy.toml")) {
        Ok(p) => {
            let default = p.tenants.get(&p.default_tenant);
            assert!(
                default.is_some(),
                "default tenant missing from a valid policy"
            );
            for t in p.tenants.values() {
                assert!(
                    p.backends.contains_key(&t.backend),
                    "dangling backend in a valid policy"
                );
            }
            assert!(p.digest.starts_with("sha256:"));
        }
        Err(e) => {
            for d in e.diagnostics() {
                assert!(d.line >= 1 && d.column >= 1, "unlocated diagnostic: {d}");
            }
            assert!(!e.to_string().is_empty());
        }
    }
});
