//! The generated admission objects, checked offline: against Kubernetes' own API types (the
//! `k8s-openapi` crate's 1.36 types, with a round trip that fails on any field they do not know)
//! and by evaluating their CEL with a real CEL implementation (`cel-interpreter`) on sample Pods,
//! compared with the node's own decision for the same namespace.

use std::collections::HashMap;
use std::path::Path;

use cel_interpreter::{Context, Program, Value};
use k8s_openapi::api::admissionregistration::v1 as ar;
use proptest::prelude::*;
use router_integration::PolicyText;
use serde_json::json;

use super::*;

/// Tenants with exact names and globs that compete (`sdewan-edge-?` against `sdewan-*`, `s*`
/// against `shop-*`), one per tier, three handlers, sandbox accepted unaccounted.
fn policy_text() -> String {
    PolicyText::bare("untrusted")
        .list("unaccounted_tiers", &["sandbox"])
        .runc()
        .gvisor()
        .shim("kata", "containerd-shim-kata-v2", &[], "vm")
        .tenant(
            "provider",
            &["kube-system", "telemetry", "sdewan-*"],
            "runc",
        )
        .tenant("batch", &["batch-*", "sdewan-edge-?"], "gvisor")
        .tenant("shop", &["shop", "shop-*", "s*"], "kata")
        .tenant("untrusted", &[], "kata")
        .handler("router", "container", None)
        .handler("router-sandbox", "sandbox", None)
        .key("runtime_class", "sandboxed")
        .handler("router-vm", "vm", None)
        .into()
}

fn policy() -> Policy {
    router_config::parse(&policy_text(), Path::new("/t/policy.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What the policies' CEL makes of one Pod.
#[derive(Debug)]
struct Outcome {
    tenant: String,
    wanted: String,
    set_class: bool,
    accounted: bool,
    message: String,
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => panic!("not a string: {other:?}"),
    }
}

fn bool_of(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        other => panic!("not a bool: {other:?}"),
    }
}

/// Evaluates every variable in order, then the validation and its message.
fn admit(policy: &Policy, ns: &str, pod: &serde_json::Value) -> Outcome {
    let mut vars: HashMap<String, Value> = HashMap::new();
    let run = |expr: &str, vars: &HashMap<String, Value>| -> Value {
        let program = Program::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e:?}"));
        let mut ctx = Context::default();
        ctx.add_variable("request", json!({"namespace": ns, "operation": "CREATE"}))
            .unwrap_or_else(|e| panic!("{e}"));
        ctx.add_variable("object", pod)
            .unwrap_or_else(|e| panic!("{e}"));
        ctx.add_variable_from_value("variables", vars.clone());
        program
            .execute(&ctx)
            .unwrap_or_else(|e| panic!("{expr}: {e:?}"))
    };
    for (name, expr) in variables(policy).unwrap_or_else(|e| panic!("{e}")) {
        let v = run(&expr, &vars);
        vars.insert(name, v);
    }
    Outcome {
        tenant: str_of(&vars["tenant"]),
        wanted: str_of(&vars["wanted"]),
        set_class: bool_of(&vars["setClass"]),
        accounted: bool_of(&run(VALID, &vars)),
        message: str_of(&run(MESSAGE, &vars)),
    }
}

fn pod(class: Option<&str>, annotations: &[(&str, &str)]) -> serde_json::Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    if let Some(c) = class {
        p["spec"]["runtimeClassName"] = json!(c);
    }
    if !annotations.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        p["metadata"]["annotations"] = serde_json::Value::Object(m);
    }
    p
}

/// The node's tenant and tier for a pod sandbox of namespace `ns` (with `annotations`), or its
/// refusal.
fn node(
    policy: &Policy,
    ns: &str,
    annotations: &[(&str, &str)],
) -> Result<(String, Isolation), String> {
    let mut a = HashMap::new();
    a.insert(
        router_core::annotations::CONTAINER_TYPE,
        router_core::annotations::CONTAINER_TYPE_SANDBOX,
    );
    a.insert(router_core::annotations::SANDBOX_ID, "sb");
    a.insert(router_core::annotations::SANDBOX_NAMESPACE, ns);
    for (k, v) in annotations {
        a.insert(k, v);
    }
    let spec = json!({"ociVersion": "1.0.2", "process": {"args": ["/pause"], "cwd": "/"}, "root": {"path": "rootfs"}, "annotations": a, "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "network"}, {"type": "mount"}]}});
    let inputs = router_core::inputs_from_config_json(
        &serde_json::to_vec(&spec).unwrap_or_default(),
        "k8s.io",
        "sb",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // the node's decision without handler accounting: the tier the tenant (and override) asks for
    let mut plain = policy.clone();
    plain.handlers.clear();
    router_core::decide_sandbox(&plain, &inputs)
        .map(|d| (d.tenant, d.isolation))
        .map_err(|e| e.to_string())
}

#[test]
fn objects_are_kubernetes_1_36_types_and_nothing_else() {
    let items = objects(&policy()).unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| i["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    // a field the types do not know would be dropped by the round trip: unknown fields denied
    fn exact<T: serde::de::DeserializeOwned + serde::Serialize>(v: &serde_json::Value) {
        let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
        assert_eq!(&serde_json::to_value(&typed).unwrap_or_default(), v);
    }
    for item in &items {
        assert_eq!(item["apiVersion"], "admissionregistration.k8s.io/v1");
        match item["kind"].as_str().unwrap_or("") {
            "MutatingAdmissionPolicy" => exact::<ar::MutatingAdmissionPolicy>(item),
            "MutatingAdmissionPolicyBinding" => exact::<ar::MutatingAdmissionPolicyBinding>(item),
            "ValidatingAdmissionPolicy" => exact::<ar::ValidatingAdmissionPolicy>(item),
            "ValidatingAdmissionPolicyBinding" => {
                exact::<ar::ValidatingAdmissionPolicyBinding>(item)
            }
            k => panic!("{k}"),
        }
    }
    // the check itself catches an unknown field
    let mut bad = items[2].clone();
    bad["spec"]["validationz"] = json!([]);
    let typed: ar::ValidatingAdmissionPolicy =
        serde_json::from_value(bad.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(serde_json::to_value(&typed).unwrap_or_default(), bad);
    // every expression of both policies parses as CEL (the JSONPatch literal included)
    for item in [&items[0], &items[2]] {
        for v in item["spec"]["variables"].as_array().into_iter().flatten() {
            Program::compile(v["expression"].as_str().unwrap_or(""))
                .unwrap_or_else(|e| panic!("{v}: {e:?}"));
        }
    }
    Program::compile(PATCH).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        items[0]["spec"]["mutations"][0]["jsonPatch"]["expression"],
        PATCH
    );
    assert_eq!(items[2]["spec"]["validations"][0]["expression"], VALID);
    assert_eq!(items[3]["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(items[1]["spec"]["policyName"], items[0]["metadata"]["name"]);
}

#[test]
fn every_namespace_pattern_gets_its_tenants_class() {
    let pol = policy();
    // (namespace, tenant, class the mutation sets)
    let cases = [
        ("kube-system", "provider", "router"),
        ("telemetry", "provider", "router"),
        ("sdewan-core", "provider", "router"),
        // `sdewan-edge-?` (batch) is more specific than `sdewan-*` (provider)
        ("sdewan-edge-1", "batch", "sandboxed"),
        ("sdewan-edge-12", "provider", "router"),
        ("batch-nightly", "batch", "sandboxed"),
        ("shop", "shop", "router-vm"),
        ("shop-eu", "shop", "router-vm"),
        ("sales", "shop", "router-vm"),
        // `s*` vs nothing else: shop; a namespace no pattern names: the default tenant
        ("web", "untrusted", "router-vm"),
        ("kube-public", "untrusted", "router-vm"),
    ];
    for (ns, tenant, class) in cases {
        let o = admit(&pol, ns, &pod(None, &[]));
        assert_eq!(
            (o.tenant.as_str(), o.wanted.as_str()),
            (tenant, class),
            "{ns}"
        );
        assert!(o.set_class, "{ns}: a pod without a class gets one");
        assert_eq!(
            node(&pol, ns, &[]).map(|n| n.0).as_deref(),
            Ok(tenant),
            "{ns}: the node disagrees"
        );
    }
}

/// (namespace, class, annotations, set_class, accounted, message part)
type Case = (
    &'static str,
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
    bool,
    bool,
    &'static str,
);

#[test]
fn weaker_classes_are_rejected_with_the_nodes_message_stronger_ones_kept() {
    let pol = policy();
    let cases: [Case; 9] = [
        ("web", Some("router"), &[], true, false, "pod of tenant `untrusted` in namespace `web` runs on the vm tier, but its RuntimeClass `router` reserves only container: use RuntimeClass `router-vm`"),
        ("web", Some("router-vm"), &[], false, true, ""),
        // no class: containerd's default handler `router`, which reserves container
        ("web", None, &[], true, false, "RuntimeClass `router` reserves only container"),
        // a stronger class is kept and accepted
        ("kube-system", Some("router-vm"), &[], false, true, ""),
        ("kube-system", Some("sandboxed"), &[], false, true, ""),
        // the override annotation raises, as on the node
        ("kube-system", Some("router"), &[("runtime-router.io/backend", "kata")], true, false, "runs on the vm tier"),
        ("kube-system", Some("router"), &[("runtime-router.io/backend", "nope")], false, true, ""),
        // sandbox is accepted unaccounted by this policy: a container-tier class passes, the
        // mutation still asks for the right class
        ("batch-a", Some("router"), &[], true, true, ""),
        // not a class of the router's
        ("kube-system", Some("gpu"), &[], true, false, "RuntimeClass `gpu` is not one of runtime-router's"),
    ];
    for (ns, class, ann, set, ok, part) in cases {
        let o = admit(&pol, ns, &pod(class, ann));
        assert_eq!(
            (o.set_class, o.accounted),
            (set, ok),
            "{ns} {class:?} {ann:?}: {o:?}"
        );
        assert!(
            o.message.starts_with("runtime-router refused: "),
            "{}",
            o.message
        );
        assert!(o.message.contains(part), "{ns} {class:?}: {}", o.message);
    }
}

#[test]
fn policies_without_handlers_or_classes_are_errors() {
    let full = policy_text();
    let text = full.split("\n[handlers.router]").next().unwrap_or_default();
    let bare = router_config::parse(text, Path::new("/t/p.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(objects(&bare), Err(AdmissionError::NoHandlers)));
    let no_vm = format!("{text}[handlers.router]\nreserves = \"container\"\n");
    let p = router_config::parse(&no_vm, Path::new("/t/p.toml")).unwrap_or_else(|e| panic!("{e}"));
    let e = objects(&p).unwrap_err();
    assert!(e.to_string().contains("tier vm has no handler"), "{e}");
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("kube-system".to_string()),
        "sdewan-[a-z0-9]{0,3}",
        "sdewan-edge-[a-z0-9]{0,2}",
        "batch-[a-z]{0,3}",
        "s[a-z-]{0,6}",
        "[a-z][a-z0-9-]{0,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
    /// For any namespace and override, admission's tenant and tier are the node's, and the class
    /// it sets reserves that tier.
    #[test]
    fn admission_agrees_with_the_node(ns in namespace(), over in prop_oneof![Just(None), Just(Some("kata")), Just(Some("gvisor")), Just(Some("runc"))]) {
        let pol = policy();
        let ann: Vec<(&str, &str)> = over.iter().map(|b| ("runtime-router.io/backend", *b)).collect();
        let o = admit(&pol, &ns, &pod(None, &ann));
        // the node refuses a weaker override; admission then asks for the tenant's own tier
        let own = node(&pol, &ns, &[]).map_err(TestCaseError::fail)?;
        let (tenant, tier) = node(&pol, &ns, &ann).unwrap_or(own);
        prop_assert_eq!(&o.tenant, &tenant);
        let class = pol.handler_for(tier).map(|h| h.runtime_class.to_string()).unwrap_or_default();
        prop_assert_eq!(&o.wanted, &class, "{} {:?}", ns, over);
    }
}
