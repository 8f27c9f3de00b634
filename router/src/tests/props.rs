//! Property tests: annotations and labels never lower isolation; unnamed namespaces never get
//! `container` isolation unless the default tenant's backend is `container`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::fixtures::*;
use crate::{decide_sandbox, Inputs};
use router_config::{Isolation, Policy};

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("runtime-router.io/backend".to_string()),
        Just("runtime-router.io/tenant".to_string()),
        Just("runtime-router.io/trusted".to_string()),
        Just("io.kubernetes.cri.untrusted-workload".to_string()),
        Just("io.kubernetes.cri-o.TrustedSandbox".to_string()),
        Just("io.katacontainers.config.hypervisor.default_memory".to_string()),
        Just("io.katacontainers.config.runtime.disable_guest_seccomp".to_string()),
        Just("trusted".to_string()),
        Just("tenant".to_string()),
        "[a-z./-]{1,24}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("runc".to_string()),
        Just("gvisor".to_string()),
        Just("kata".to_string()),
        Just("kata-clh".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("provider".to_string()),
        Just("kube-system".to_string()),
        "[a-z0-9-]{0,12}",
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("kube-system".to_string()),
        Just("telemetry".to_string()),
        Just("sdewan-a".to_string()),
        Just("sdewan-edge-1".to_string()),
        Just("sandbox-x".to_string()),
        Just("web".to_string()),
        Just("web-shop".to_string()),
        "[a-z][a-z0-9-]{0,20}",
    ]
}

/// Annotations and labels are both written by the pod's author; a label can only reach the
/// router as an annotation, so both go into the spec's annotations.
fn with_author_keys(
    ns: &str,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Value {
    let mut spec = sandbox_spec(ns);
    let cri: Vec<String> = spec["annotations"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    for (k, v) in annotations.iter().chain(labels.iter()) {
        // containerd writes its own CRI keys after pass-through annotations: they always win
        if !cri.contains(k) {
            spec["annotations"][k] = json!(v);
        }
    }
    spec
}

fn own_isolation(policy: &Policy, tenant: &str) -> Isolation {
    let t = &policy.tenants[tenant];
    policy.backends[&t.backend].isolation
}

fn plain(ns: &str) -> Inputs {
    inputs(&sandbox_spec(ns), "k8s.io")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn annotations_and_labels_never_lower_isolation(
        ns in namespace(),
        annotations in proptest::collection::btree_map(key(), value(), 0..6),
        labels in proptest::collection::btree_map(key(), value(), 0..4),
    ) {
        let pol = policy();
        let baseline = decide_sandbox(&pol, &plain(&ns));
        let spec = with_author_keys(&ns, &annotations, &labels);
        let got = decide_sandbox(&pol, &inputs(&spec, "k8s.io"));
        if let Ok(d) = &got {
            prop_assert!(d.isolation >= own_isolation(&pol, &d.tenant), "{d:?}");
            // the tenant is a function of the namespace alone
            if let Ok(b) = &baseline {
                prop_assert_eq!(&d.tenant, &b.tenant);
                prop_assert!(d.isolation >= b.isolation);
            }
        }
    }

    #[test]
    fn unnamed_namespaces_never_get_container_isolation(
        ns in "[a-z][a-z0-9-]{0,20}",
        annotations in proptest::collection::btree_map(key(), value(), 0..6),
        labels in proptest::collection::btree_map(key(), value(), 0..4),
    ) {
        let pol = policy();
        let named = pol.tenants.values().any(|t| t.namespaces.iter().any(|p| router_config::pattern::matches(p, &ns)));
        prop_assume!(!named);
        let spec = with_author_keys(&ns, &annotations, &labels);
        if let Ok(d) = decide_sandbox(&pol, &inputs(&spec, "k8s.io")) {
            prop_assert_eq!(&d.tenant, &pol.default_tenant);
            prop_assert!(d.isolation != Isolation::Container, "{d:?}");
        }
        // and with a policy whose default tenant is on runc, container isolation is what it says
        let lax = router_config::parse(&POLICY.replace("default_tenant = \"untrusted\"", "default_tenant = \"provider\""), std::path::Path::new("/lax.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        if let Ok(d) = decide_sandbox(&lax, &inputs(&spec, "k8s.io")) {
            prop_assert!(d.isolation >= Isolation::Container);
            prop_assert_eq!(&d.tenant, "provider");
        }
    }

    #[test]
    fn ctr_tasks_never_below_their_tenant(
        cns in prop_oneof![Just("infra".to_string()), Just("build-1".to_string()), Just("default".to_string()), "[a-z]{1,10}"],
        annotations in proptest::collection::btree_map(key(), value(), 0..6),
    ) {
        let pol = policy();
        let mut spec = ctr_spec();
        for (k, v) in &annotations {
            if !k.starts_with("io.kubernetes.cri.") {
                spec["annotations"][k] = json!(v);
            }
        }
        if let Ok(d) = decide_sandbox(&pol, &inputs(&spec, &cns)) {
            prop_assert!(d.isolation >= own_isolation(&pol, &d.tenant));
        }
    }
}
