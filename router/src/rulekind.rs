//! The kind of a decision's `rule`, a bounded label for metrics: the rule itself names pods
//! (`sandbox[<id>]`) and namespace patterns, its kind never does.

use router_config::DenyRule;

/// Fixed rule names written as they are: refusal rules (`override`, `privileged-vm`, …) and
/// the failure classes of `start` (`policy`, `spec`, …).
const FIXED: [&str; 10] = [
    "default_tenant",
    "handler",
    "override",
    "privileged-vm",
    "policy",
    "spec",
    "sandbox-record",
    "handoff",
    "backend-missing",
    "backend",
];

/// `rule` reduced to its kind:
/// - `tenants.<t>.namespaces[<pattern>]` → `namespace`,
///   `tenants.<t>.containerd_namespaces[<pattern>]` → `containerd_namespace`;
/// - `sandbox[<id>]` (a container following its pod) → `sandbox`;
/// - `deny:<rule>` for a rule the policy language has → itself;
/// - the fixed names above, and `internal` → themselves;
/// - anything else → `other`.
///
/// The result is one of a fixed set whatever the input, so a label built from it cannot grow
/// with the number of pods, tenants or patterns.
pub fn rule_kind(rule: &str) -> String {
    if let Some(rest) = rule.strip_prefix("tenants.") {
        let field = rest.split_once('.').map(|(_, f)| f).unwrap_or_default();
        if field.starts_with("namespaces[") {
            return "namespace".into();
        }
        if field.starts_with("containerd_namespaces[") {
            return "containerd_namespace".into();
        }
        return "other".into();
    }
    if rule.starts_with("sandbox[") && rule.ends_with(']') {
        return "sandbox".into();
    }
    if let Some(name) = rule.strip_prefix("deny:") {
        return match DenyRule::from_name(name) {
            Some(r) => format!("deny:{}", r.as_str()),
            None => "other".into(),
        };
    }
    if FIXED.contains(&rule) || rule == "internal" {
        return rule.into();
    }
    "other".into()
}

/// Every value [`rule_kind`] can return.
pub fn all_rule_kinds() -> Vec<String> {
    let mut v: Vec<String> = [
        "namespace",
        "containerd_namespace",
        "sandbox",
        "internal",
        "other",
    ]
    .into_iter()
    .chain(FIXED)
    .map(String::from)
    .collect();
    v.extend(DenyRule::ALL.iter().map(|r| format!("deny:{}", r.as_str())));
    v
}
