//! Property: no byte a pod can write changes which binary runs as root. A pod that reaches
//! containerd's state (a host path the per-pod policy now refuses, but an operator's policy may
//! still allow) can write anything into its own bundles: the sandbox's and its containers'
//! `router-decision.json`, `address`, pid files, and the fields of a container spec that the pod's
//! author controls (annotations, mounts, capabilities). Whatever it writes, a container's start
//! either is refused or hands over to exactly the backend recorded for its sandbox in the state
//! dir; and a sandbox's start either is refused or picks one of the policy's own backends, the
//! same one as with a clean bundle.

use std::path::Path;

use proptest::prelude::*;
use serde_json::json;

use super::*;

const POLICY: &str = r#"
version = 1
default_tenant = "untrusted"
allowed_host_paths = ["/var/lib/kubelet/pods/{pod_uid}/"]
[backends.trusted]
kind = "shim"
binary = "/bin/false"
isolation = "container"
[backends.vm]
kind = "shim"
binary = "/bin/true"
isolation = "vm"
[tenants.provider]
namespaces = ["kube-system"]
backend = "trusted"
[tenants.untrusted]
backend = "vm"
deny = ["host-network", "privileged", "host-path", "capabilities", "host-devices"]
"#;

fn args(id: &str) -> ShimArgs {
    ShimArgs::parse(
        [
            "-namespace",
            "k8s.io",
            "-address",
            "/run/test.sock",
            "-id",
            id,
            "start",
        ]
        .iter()
        .map(std::ffi::OsString::from)
        .collect(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn route_in(dir: &Path, id: &str) -> Result<RecordedBackend, StartError> {
    let a = args(id);
    let env = Env {
        bundle: dir.join("bundles").join(id),
        state: dir.join("state"),
        policy: Some(dir.join("policy.toml")),
    };
    let mut ctx = Ctx {
        args: &a,
        started: Instant::now(),
        inputs: None,
        policy: None,
        decision: None,
    };
    let routed = route(&mut ctx, &env)?;
    if matches!(ctx.inputs.as_ref().map(|i| &i.role), Some(Role::Sandbox)) {
        write_records(&env, &a, &sandbox_rec(&routed), &[])?;
    }
    Ok(routed.target)
}

fn sandbox_rec(routed: &Routed) -> DecisionRecord {
    DecisionRecord {
        version: RECORD_VERSION,
        id: "sb1".into(),
        namespace: "k8s.io".into(),
        role: "sandbox".into(),
        sandbox_id: "sb1".into(),
        tenant: routed.decision.tenant.clone(),
        backend: routed.decision.backend.clone(),
        isolation: routed.decision.isolation.as_str().into(),
        rule: routed.decision.rule.clone(),
        reasons: vec![],
        refused_overrides: vec![],
        policy_digest: String::new(),
        policy_source: String::new(),
        k8s_namespace: Some("web".into()),
        pod_name: None,
        pod_uid: Some("uid-1".into()),
        decided_at: String::new(),
        target: routed.target.clone(),
        relay_to: None,
        handler: None,
    }
}

/// A CRI spec of pod `sb1` (namespace `web`, uid `uid-1`): the fields containerd writes itself,
/// then whatever the pod's author chose.
fn spec(
    role: &str,
    extra_annotations: &[(String, String)],
    mounts: &[String],
    caps: &[String],
) -> Vec<u8> {
    let mut annotations = serde_json::Map::new();
    for (k, v) in extra_annotations {
        annotations.insert(k.clone(), json!(v));
    }
    // written by containerd after the pod's own annotations
    annotations.insert("io.kubernetes.cri.container-type".into(), json!(role));
    annotations.insert("io.kubernetes.cri.sandbox-id".into(), json!("sb1"));
    annotations.insert("io.kubernetes.cri.sandbox-namespace".into(), json!("web"));
    annotations.insert("io.kubernetes.cri.sandbox-uid".into(), json!("uid-1"));
    let mounts: Vec<_> = mounts
        .iter()
        .map(|m| json!({"destination": "/m", "type": "bind", "source": m, "options": ["rbind"]}))
        .collect();
    serde_json::to_vec(&json!({
        "ociVersion": "1.0.2",
        "process": {"capabilities": {"bounding": caps}},
        "mounts": mounts,
        "annotations": annotations,
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}]}
    }))
    .unwrap_or_default()
}

fn annotation() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("runtime-router.io/backend".to_string()),
            Just("io.kubernetes.cri.sandbox-namespace".to_string()),
            Just("io.kubernetes.cri.untrusted-workload".to_string()),
            "[a-z./-]{1,20}",
        ],
        prop_oneof![
            Just("trusted".to_string()),
            Just("vm".to_string()),
            Just("kube-system".to_string()),
            Just("true".to_string()),
            "[a-z/-]{0,12}",
        ],
    )
}

fn junk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"version":1,"id":"sb1","namespace":"k8s.io","role":"sandbox","sandbox_id":"sb1","tenant":"provider","backend":"trusted","isolation":"container","rule":"x","policy_digest":"","policy_source":"","decided_at":"","target":{"kind":"shim","binary":"/bin/false"}}"#.to_vec()),
        Just(b"unix:///tmp/evil.sock".to_vec()),
        Just(b"1".to_vec()),
    ]
}

/// Files a pod with the bundle in reach could write, besides the container's config.json.
const POD_WRITABLE: [&str; 4] = ["router-decision.json", "address", "init.pid", "log.json"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn no_pod_writable_byte_changes_the_binary(
        annotations in proptest::collection::vec(annotation(), 0..4),
        mounts in proptest::collection::vec(prop_oneof![
            Just("/var/lib/kubelet/pods/uid-1/volumes/v".to_string()),
            Just("/run/containerd/containerd.sock".to_string()),
            Just("/etc".to_string()),
        ], 0..2),
        caps in proptest::collection::vec(prop_oneof![
            Just("CAP_CHOWN".to_string()),
            Just("CAP_NET_ADMIN".to_string()),
            Just("CAP_SYS_ADMIN".to_string()),
        ], 0..3),
        sandbox_files in proptest::collection::vec(junk(), POD_WRITABLE.len()),
        container_files in proptest::collection::vec(junk(), POD_WRITABLE.len()),
    ) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        std::fs::write(d.join("policy.toml"), POLICY).unwrap_or_else(|e| panic!("{e}"));
        let sb = d.join("bundles/sb1");
        let c = d.join("bundles/c1");
        std::fs::create_dir_all(&sb).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&c).unwrap_or_else(|e| panic!("{e}"));

        // The sandbox as containerd wrote it: routed by the policy alone.
        std::fs::write(sb.join("config.json"), spec("sandbox", &[], &[], &[])).unwrap_or_else(|e| panic!("{e}"));
        let clean = route_in(d, "sb1").unwrap_or_else(|e| panic!("{e}"));
        let vm = RecordedBackend::Shim { binary: "/bin/true".into(), env: Default::default() };
        prop_assert_eq!(&clean, &vm);

        // The pod now writes what it likes into both bundles.
        for (name, bytes) in POD_WRITABLE.iter().zip(&sandbox_files) {
            std::fs::write(sb.join(name), bytes).unwrap_or_else(|e| panic!("{e}"));
        }
        for (name, bytes) in POD_WRITABLE.iter().zip(&container_files) {
            std::fs::write(c.join(name), bytes).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(c.join("config.json"), spec("container", &annotations, &mounts, &caps)).unwrap_or_else(|e| panic!("{e}"));
        match route_in(d, "c1") {
            Ok(target) => prop_assert_eq!(&target, &vm),
            Err(e) => prop_assert!(matches!(e, StartError::Refused(_)), "unexpected error: {}", e),
        }
        // A sandbox restarted over a dirty bundle is decided the same.
        std::fs::write(sb.join("config.json"), spec("sandbox", &annotations, &mounts, &caps)).unwrap_or_else(|e| panic!("{e}"));
        match route_in(d, "sb1") {
            Ok(target) => prop_assert_eq!(&target, &vm),
            Err(e) => prop_assert!(matches!(e, StartError::Refused(_)), "unexpected error: {}", e),
        }
    }
}
