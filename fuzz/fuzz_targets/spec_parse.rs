//! Fuzz target: any bytes as a bundle's `config.json`. Input extraction must return Ok or an
//! error, never panic; whatever it extracts, the decision (sandbox and container) must not panic
//! and never give isolation below the matched tenant's own backend.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(inputs) = router_core::inputs_from_config_json(data, "k8s.io", "fuzz") else {
        return;
    };
    let policy = router_config::embedded_default();
    if let Ok(d) = router_core::decide_sandbox(&policy, &inputs) {
        let own = policy
            .tenants
            .get(d.tenant.as_str())
            .and_then(|t| policy.backends.get(&t.backend))
            .map(|b| b.isolation);
        assert!(Some(d.isolation) >= own, "isolation lowered: {d:?}");
    }
    let _ = router_core::decide_container(&policy, &inputs, "untrusted", "kata");
    let _ = router_core::decide_container(&policy, &inputs, "gone", "runc");
    // the full oci-spec parse must not panic either
    let _ = router_core::parse_spec(data);
});
