//! `rule_kind`: every rule a decision or a failed start writes maps to a bounded kind.

use crate::{all_rule_kinds, rule_kind};
use proptest::prelude::*;

#[test]
fn rules_map_to_their_kind() {
    let id = "a".repeat(64);
    let cases = [
        ("tenants.provider.namespaces[kube-system]", "namespace"),
        ("tenants.provider.namespaces[sdewan-*]", "namespace"),
        (
            "tenants.infra.containerd_namespaces[infra]",
            "containerd_namespace",
        ),
        ("tenants.x.backend", "other"),
        ("default_tenant", "default_tenant"),
        (&format!("sandbox[{id}]"), "sandbox"),
        ("sandbox[", "other"),
        ("deny:host-network", "deny:host-network"),
        ("deny:sysctls", "deny:sysctls"),
        ("deny:made-up", "other"),
        ("override", "override"),
        ("handler", "handler"),
        ("privileged-vm", "privileged-vm"),
        ("policy", "policy"),
        ("spec", "spec"),
        ("sandbox-record", "sandbox-record"),
        ("internal", "internal"),
        ("handoff", "handoff"),
        ("backend-missing", "backend-missing"),
        ("backend", "backend"),
        ("", "other"),
        ("something new", "other"),
    ];
    for (rule, kind) in cases {
        assert_eq!(rule_kind(rule), kind, "{rule}");
    }
}

proptest! {
    /// Whatever the rule text, its kind is one of the fixed set.
    #[test]
    fn kinds_are_a_fixed_set(rule in ".{0,80}", id in "[0-9a-f]{64}", pat in "[a-z*-]{1,20}") {
        let all = all_rule_kinds();
        for r in [rule, format!("sandbox[{id}]"), format!("tenants.t{id}.namespaces[{pat}]"), format!("deny:{pat}")] {
            let k = rule_kind(&r);
            prop_assert!(all.contains(&k), "{} -> {}", r, k);
        }
    }
}
