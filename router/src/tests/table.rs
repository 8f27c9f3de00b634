//! Table of sandbox and container decisions.

use serde_json::{json, Value};

use super::fixtures::*;
use crate::{decide_container, decide_sandbox, inputs_from_spec, parse_spec, Role};
use router_config::Isolation;

type Edit = fn(&mut Value);

fn ann(s: &mut Value, k: &str, v: &str) {
    s["annotations"][k] = json!(v);
}

fn drop_ns(s: &mut Value, ty: &str) {
    if let Some(list) = s["linux"]["namespaces"].as_array_mut() {
        list.retain(|n| n["type"] != ty);
    }
}

fn add_mount(s: &mut Value, m: Value) {
    if let Some(list) = s["mounts"].as_array_mut() {
        list.push(m);
    }
}

fn bind(src: &str) -> Value {
    json!({"destination": "/host", "type": "bind", "source": src, "options": ["rbind", "rw"]})
}

/// (name, k8s namespace, edit, expected Ok((tenant, backend, rule)) or Err((rule, field part)))
type Case = (
    &'static str,
    &'static str,
    Edit,
    Result<(&'static str, &'static str, &'static str), (&'static str, &'static str)>,
);

#[test]
fn sandbox_table() {
    let cases: Vec<Case> = vec![
        (
            "exact namespace",
            "kube-system",
            |_| {},
            Ok((
                "provider",
                "runc",
                "tenants.provider.namespaces[kube-system]",
            )),
        ),
        (
            "glob namespace",
            "sdewan-a",
            |_| {},
            Ok(("provider", "runc", "tenants.provider.namespaces[sdewan-*]")),
        ),
        (
            "longer glob prefix wins",
            "sdewan-edge-1",
            |_| {},
            Ok((
                "sandboxed",
                "gvisor",
                "tenants.sandboxed.namespaces[sdewan-edge-*]",
            )),
        ),
        (
            "exact beats glob",
            "web",
            |_| {},
            Ok(("web", "kata", "tenants.web.namespaces[web]")),
        ),
        (
            "web glob",
            "web-shop",
            |_| {},
            Ok(("web", "kata", "tenants.web.namespaces[web-*]")),
        ),
        (
            "unknown namespace fails closed",
            "team-x",
            |_| {},
            Ok(("untrusted", "kata", "default_tenant")),
        ),
        (
            "missing k8s namespace on a CRI task fails closed",
            "x",
            |s| {
                s["annotations"]
                    .as_object_mut()
                    .map(|a| a.remove("io.kubernetes.cri.sandbox-namespace"));
            },
            Ok(("untrusted", "kata", "default_tenant")),
        ),
        // overrides: raise only
        (
            "override raises to vm",
            "kube-system",
            |s| ann(s, "runtime-router.io/backend", "kata"),
            Ok((
                "provider",
                "kata",
                "tenants.provider.namespaces[kube-system]",
            )),
        ),
        (
            "override raises to sandbox",
            "kube-system",
            |s| ann(s, "runtime-router.io/backend", "gvisor"),
            Ok((
                "provider",
                "gvisor",
                "tenants.provider.namespaces[kube-system]",
            )),
        ),
        (
            "override to same tier",
            "web",
            |s| ann(s, "runtime-router.io/backend", "kata-clh"),
            Ok(("web", "kata-clh", "tenants.web.namespaces[web]")),
        ),
        (
            "override to weaker refused",
            "web",
            |s| ann(s, "runtime-router.io/backend", "runc"),
            Err(("override", "annotations[runtime-router.io/backend]")),
        ),
        (
            "override sandbox->container refused",
            "sandbox-1",
            |s| ann(s, "runtime-router.io/backend", "runc"),
            Err(("override", "annotations[runtime-router.io/backend]")),
        ),
        (
            "override to unknown backend refused",
            "kube-system",
            |s| ann(s, "runtime-router.io/backend", "kata2"),
            Err(("override", "annotations[runtime-router.io/backend]")),
        ),
        // traps
        (
            "untrusted-workload=false grants nothing",
            "team-x",
            |s| ann(s, "io.kubernetes.cri.untrusted-workload", "false"),
            Ok(("untrusted", "kata", "default_tenant")),
        ),
        (
            "cri-o trusted annotation grants nothing",
            "team-x",
            |s| ann(s, "io.kubernetes.cri-o.TrustedSandbox", "true"),
            Ok(("untrusted", "kata", "default_tenant")),
        ),
        (
            "labels saying trusted grant nothing",
            "team-x",
            |s| {
                ann(s, "trusted", "true");
                ann(s, "runtime-router.io/trusted", "true");
                ann(s, "runtime-router.io/tenant", "provider");
            },
            Ok(("untrusted", "kata", "default_tenant")),
        ),
        (
            "containerd namespace ignored for CRI tasks",
            "team-x",
            |_| {},
            Ok(("untrusted", "kata", "default_tenant")),
        ),
        // deny rules
        (
            "host network refused",
            "web",
            |s| drop_ns(s, "network"),
            Err(("deny:host-network", "linux.namespaces[network]")),
        ),
        (
            "host pid refused",
            "web",
            |s| drop_ns(s, "pid"),
            Err(("deny:host-pid", "linux.namespaces[pid]")),
        ),
        (
            "host ipc refused",
            "web",
            |s| drop_ns(s, "ipc"),
            Err(("deny:host-ipc", "linux.namespaces[ipc]")),
        ),
        (
            "joining pid 1's netns is host network",
            "web",
            |s| {
                drop_ns(s, "network");
                if let Some(l) = s["linux"]["namespaces"].as_array_mut() {
                    l.push(json!({"type": "network", "path": "/proc/1/ns/net"}));
                }
            },
            Err(("deny:host-network", "linux.namespaces[network]")),
        ),
        (
            "no linux section means host namespaces",
            "web",
            |s| {
                s.as_object_mut().map(|o| o.remove("linux"));
            },
            Err(("deny:host-network", "linux.namespaces[network]")),
        ),
        (
            "host network allowed for provider",
            "kube-system",
            |s| drop_ns(s, "network"),
            Ok((
                "provider",
                "runc",
                "tenants.provider.namespaces[kube-system]",
            )),
        ),
        (
            "privileged by capabilities",
            "web",
            |s| s["process"]["capabilities"]["bounding"] = all_caps(),
            Err(("deny:privileged", "process.capabilities.bounding")),
        ),
        (
            "privileged by devices",
            "web",
            |s| {
                s["linux"]["resources"]["devices"] =
                    json!([{"allow": false, "access": "rwm"}, {"allow": true, "access": "rwm"}])
            },
            Err(("deny:privileged", "linux.resources.devices")),
        ),
        (
            "allow-all then deny-all is not privileged",
            "web",
            |s| s["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}, {"allow": false, "type": "a", "major": -1, "minor": -1, "access": "rwm"}]),
            Ok(("web", "kata", "tenants.web.namespaces[web]")),
        ),
        (
            "all capabilities but one the host lacks is still privileged (CAP_SYS_ADMIN)",
            "web",
            |s| {
                let mut c = all_caps();
                if let Some(a) = c.as_array_mut() {
                    a.retain(|x| x != "CAP_SYS_RESOURCE");
                }
                s["process"]["capabilities"]["bounding"] = c;
            },
            Err(("deny:privileged", "process.capabilities.bounding")),
        ),
        (
            "the default capabilities and devices pass the capabilities and host-devices rules",
            "customer",
            |s| {
                s["linux"]["devices"] =
                    json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]);
                s["linux"]["resources"]["devices"] = json!([
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                    {"allow": true, "type": "c", "access": "m"},
                    {"allow": true, "type": "b", "access": "m"}
                ]);
            },
            Ok(("untrusted", "kata", "default_tenant")),
        ),
        (
            "a capability beyond the baseline",
            "customer",
            |s| s["process"]["capabilities"]["bounding"] = json!(["CAP_CHOWN", "CAP_NET_ADMIN"]),
            Err(("deny:capabilities", "process.capabilities.bounding")),
        ),
        (
            "a capability only in the ambient set",
            "customer",
            |s| s["process"]["capabilities"]["ambient"] = json!(["CAP_SYS_PTRACE"]),
            Err(("deny:capabilities", "process.capabilities.ambient")),
        ),
        (
            "a host device node",
            "customer",
            |s| {
                s["linux"]["devices"] =
                    json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
            },
            Err(("deny:host-devices", "linux.devices[0]")),
        ),
        (
            "a block device node",
            "customer",
            |s| {
                s["linux"]["devices"] =
                    json!([{"path": "/dev/vda", "type": "b", "major": 254, "minor": 0}])
            },
            Err(("deny:host-devices", "linux.devices[0]")),
        ),
        (
            "a device cgroup rule reading every GPU",
            "customer",
            |s| s["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 195, "access": "rw"}]),
            Err(("deny:host-devices", "linux.resources.devices[1]")),
        ),
        (
            "containerd's socket as a host path",
            "customer",
            |s| {
                s["mounts"].as_array_mut().into_iter().for_each(|m| m.push(json!({"destination": "/c.sock", "type": "bind", "source": "/run/containerd/containerd.sock", "options": ["rbind"]})))
            },
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "another pod's kubelet dir",
            "customer",
            |s| {
                s["mounts"].as_array_mut().into_iter().for_each(|m| m.push(json!({"destination": "/x", "type": "bind", "source": "/var/lib/kubelet/pods/11111111-2222-3333-4444-555555555555/volumes", "options": ["rbind"]})))
            },
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "another sandbox's containerd files",
            "customer",
            |s| {
                s["mounts"].as_array_mut().into_iter().for_each(|m| m.push(json!({"destination": "/x", "type": "bind", "source": "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb2/shm", "options": ["rbind"]})))
            },
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "containerd's task state dir (every bundle)",
            "customer",
            |s| {
                s["mounts"].as_array_mut().into_iter().for_each(|m| m.push(json!({"destination": "/x", "type": "bind", "source": "/run/containerd/io.containerd.runtime.v2.task/k8s.io", "options": ["rbind"]})))
            },
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "CAP_SYS_ADMIN alone is privileged",
            "web",
            |s| s["process"]["capabilities"]["effective"] = json!(["CAP_SYS_ADMIN"]),
            Err(("deny:privileged", "process.capabilities.effective")),
        ),
        (
            "many capabilities without SYS_ADMIN are not privileged",
            "web",
            |s| {
                let mut c = all_caps();
                if let Some(a) = c.as_array_mut() {
                    a.retain(|x| x != "CAP_SYS_ADMIN");
                }
                s["process"]["capabilities"]["bounding"] = c;
            },
            Ok(("web", "kata", "tenants.web.namespaces[web]")),
        ),
        (
            "privileged never to a vm backend",
            "kube-system",
            |s| {
                s["process"]["capabilities"]["effective"] = all_caps();
                ann(s, "runtime-router.io/backend", "kata");
            },
            Err(("privileged-vm", "process.capabilities.effective")),
        ),
        (
            "privileged on runc for provider",
            "kube-system",
            |s| s["process"]["capabilities"]["permitted"] = all_caps(),
            Ok((
                "provider",
                "runc",
                "tenants.provider.namespaces[kube-system]",
            )),
        ),
        (
            "privileged to gvisor tenant denied by rule",
            "sandbox-1",
            |s| s["process"]["capabilities"]["bounding"] = all_caps(),
            Err(("deny:privileged", "process.capabilities.bounding")),
        ),
        (
            "host path refused",
            "web",
            |s| add_mount(s, bind("/etc")),
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "host path with dot-dot refused",
            "web",
            |s| add_mount(s, bind("/var/lib/kubelet/pods/../../../etc")),
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "host path sibling prefix refused",
            "web",
            |s| add_mount(s, bind("/var/lib/kubelet/pods-x/a")),
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "all pods dir refused",
            "web",
            |s| add_mount(s, bind("/var/lib/kubelet/pods")),
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "bind by option refused",
            "web",
            |s| {
                add_mount(
                    s,
                    json!({"destination": "/h", "type": "none", "source": "/", "options": ["bind"]}),
                )
            },
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "relative bind refused",
            "web",
            |s| add_mount(s, bind("etc")),
            Err(("deny:host-path", "mounts[7].source")),
        ),
        (
            "block device mount refused",
            "web",
            |s| {
                add_mount(
                    s,
                    json!({"destination": "/d", "type": "ext4", "source": "/dev/sda1"}),
                )
            },
            Err(("deny:host-path", "mounts[7].type")),
        ),
        (
            "overlay mount refused",
            "web",
            |s| {
                add_mount(
                    s,
                    json!({"destination": "/d", "type": "overlay", "source": "overlay", "options": ["lowerdir=/etc"]}),
                )
            },
            Err(("deny:host-path", "mounts[7].type")),
        ),
        (
            "kubelet volume allowed",
            "web",
            |s| {
                add_mount(
                    s,
                    bind("/var/lib/kubelet/pods/0d4c2d86-7d1d-4a4b-9c2e-6f1c8f1f7d11/volumes/kubernetes.io~configmap/cfg"),
                )
            },
            Ok(("web", "kata", "tenants.web.namespaces[web]")),
        ),
        (
            "host path allowed for provider",
            "telemetry",
            |s| add_mount(s, bind("/etc")),
            Ok(("provider", "runc", "tenants.provider.namespaces[telemetry]")),
        ),
        (
            "runtime annotation refused",
            "web",
            |s| ann(s, "io.katacontainers.config.agent.kernel_modules", "x"),
            Err((
                "deny:runtime-annotations",
                "annotations[io.katacontainers.config.agent.kernel_modules]",
            )),
        ),
        (
            "guest seccomp annotation refused",
            "team-x",
            |s| {
                ann(
                    s,
                    "io.katacontainers.config.runtime.disable_guest_seccomp",
                    "true",
                )
            },
            Err((
                "deny:runtime-annotations",
                "annotations[io.katacontainers.config.runtime.disable_guest_seccomp]",
            )),
        ),
        (
            "gvisor annotation refused",
            "web",
            |s| ann(s, "dev.gvisor.spec.mount.x", "y"),
            Err((
                "deny:runtime-annotations",
                "annotations[dev.gvisor.spec.mount.x]",
            )),
        ),
        (
            "allowed exact runtime annotation",
            "web",
            |s| {
                ann(
                    s,
                    "io.katacontainers.config.hypervisor.default_memory",
                    "4096",
                )
            },
            Ok(("web", "kata", "tenants.web.namespaces[web]")),
        ),
        (
            "allowed prefix runtime annotation",
            "web",
            |s| ann(s, "io.katacontainers.config.hypervisor.default_vcpus", "2"),
            Ok(("web", "kata", "tenants.web.namespaces[web]")),
        ),
        (
            "exact allow is not a prefix",
            "web",
            |s| {
                ann(
                    s,
                    "io.katacontainers.config.hypervisor.default_memory_x",
                    "1",
                )
            },
            Err((
                "deny:runtime-annotations",
                "annotations[io.katacontainers.config.hypervisor.default_memory_x]",
            )),
        ),
        (
            "default tenant allows none",
            "team-x",
            |s| {
                ann(
                    s,
                    "io.katacontainers.config.hypervisor.default_memory",
                    "4096",
                )
            },
            Err((
                "deny:runtime-annotations",
                "annotations[io.katacontainers.config.hypervisor.default_memory]",
            )),
        ),
    ];
    let pol = policy();
    let mut failures = Vec::new();
    for (name, ns, edit, want) in cases {
        let mut spec = sandbox_spec(ns);
        edit(&mut spec);
        let got = decide_sandbox(&pol, &inputs(&spec, "k8s.io"));
        let ok = match (&got, &want) {
            (Ok(d), Ok((t, b, r))) => {
                d.tenant == *t
                    && d.backend == *b
                    && d.rule == *r
                    && d.isolation == pol.backends[*b].isolation
            }
            (Err(e), Err((rule, field))) => {
                e.rule == *rule && e.field.contains(field) && !e.message.is_empty()
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn forged_namespace_annotation_cannot_pick_tenant() {
    // containerd applies pass-through pod annotations first and its own CRI keys after, so a
    // forged `io.kubernetes.cri.sandbox-namespace` pod annotation is overwritten in config.json.
    // What reaches the router is kubelet's namespace; the forgery can only survive under another
    // key, which the router never reads.
    let pol = policy();
    let mut spec = sandbox_spec("team-x");
    ann(
        &mut spec,
        "io.kubernetes.cri.sandbox-namespace ",
        "kube-system",
    );
    ann(
        &mut spec,
        "IO.KUBERNETES.CRI.SANDBOX-NAMESPACE",
        "kube-system",
    );
    ann(&mut spec, "runtime-router.io/namespace", "kube-system");
    let d = decide_sandbox(&pol, &inputs(&spec, "k8s.io")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (d.tenant.as_str(), d.isolation),
        ("untrusted", Isolation::Vm)
    );
}

#[test]
fn ctr_tasks_match_containerd_namespace() {
    let pol = policy();
    let spec = ctr_spec();
    let cases = [
        (
            "infra",
            "provider",
            "tenants.provider.containerd_namespaces[infra]",
        ),
        (
            "build-1",
            "web",
            "tenants.web.containerd_namespaces[build*]",
        ),
        ("default", "untrusted", "default_tenant"),
        ("k8s.io", "untrusted", "default_tenant"),
    ];
    for (cns, tenant, rule) in cases {
        let i = inputs(&spec, cns);
        assert!(!i.is_cri());
        assert_eq!(i.role, Role::Sandbox);
        let d = decide_sandbox(&pol, &i).unwrap_or_else(|e| panic!("{cns}: {e}"));
        assert_eq!(
            (d.tenant.as_str(), d.rule.as_str()),
            (tenant, rule),
            "{cns}"
        );
    }
    // a CRI task is never matched by containerd namespace, even if it is `infra`
    let d = decide_sandbox(&pol, &inputs(&sandbox_spec("team-x"), "infra"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.tenant, "untrusted");
}

#[test]
fn container_follows_sandbox_and_is_checked() {
    let pol = policy();
    let base = container_spec("web");
    let i = inputs(&base, "k8s.io");
    assert_eq!(
        i.role,
        Role::Container {
            sandbox_id: "sb1".into()
        }
    );
    let d = decide_container(&pol, &i, "web", "kata-clh").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (d.tenant.as_str(), d.backend.as_str(), d.rule.as_str()),
        ("web", "kata-clh", "sandbox[sb1]")
    );

    // a container cannot pick its own backend
    let mut s = base.clone();
    ann(&mut s, "runtime-router.io/backend", "runc");
    let d = decide_container(&pol, &inputs(&s, "k8s.io"), "web", "kata")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.backend, "kata");
    assert_eq!(d.refused_overrides.len(), 1);

    // its own spec is checked against the tenant's rules
    let mut s = base.clone();
    add_mount(&mut s, bind("/var/run/docker.sock"));
    let e = decide_container(&pol, &inputs(&s, "k8s.io"), "web", "kata")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.rule, "deny:host-path");
    let mut s = base.clone();
    s["process"]["capabilities"]["bounding"] = all_caps();
    let e = decide_container(&pol, &inputs(&s, "k8s.io"), "provider", "kata")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.rule, "privileged-vm");
    let d = decide_container(&pol, &inputs(&s, "k8s.io"), "provider", "runc")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.backend, "runc");

    // tenant gone from the policy: default tenant's rules; backend gone: refused
    let mut s = base.clone();
    drop_ns(&mut s, "network");
    let e = decide_container(&pol, &inputs(&s, "k8s.io"), "gone", "runc")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(
        (e.rule.as_str(), e.tenant.as_deref()),
        ("deny:host-network", Some("untrusted"))
    );
    let e = decide_container(&pol, &i, "web", "gone")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.rule, "policy");
    assert!(e.message.contains("`gone`"), "{e}");
}

#[test]
fn embedded_default_routes_kube_system_to_runc_and_rest_to_kata() {
    let pol = router_config::embedded_default();
    let d = decide_sandbox(&pol, &inputs(&sandbox_spec("kube-system"), "k8s.io"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (d.backend.as_str(), d.isolation),
        ("runc", Isolation::Container)
    );
    let d = decide_sandbox(&pol, &inputs(&sandbox_spec("default"), "k8s.io"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((d.backend.as_str(), d.isolation), ("kata", Isolation::Vm));
    // a task without CRI is its own pod, held to the untrusted tenant's baseline level: as `ctr
    // run` writes it without --seccomp it is refused; with a filter and the default masks it runs
    let e = decide_sandbox(&pol, &inputs(&ctr_spec(), "default")).expect_err("baseline");
    assert_eq!(e.rule, "deny:proc-mount", "{e}");
    let mut task = ctr_spec();
    task["linux"]["maskedPaths"] = serde_json::json!(crate::podsecurity::DEFAULT_MASKED_PATHS);
    task["linux"]["readonlyPaths"] = serde_json::json!(crate::podsecurity::DEFAULT_READONLY_PATHS);
    let e = decide_sandbox(&pol, &inputs(&task, "default")).expect_err("no seccomp");
    assert_eq!(e.rule, "deny:seccomp", "{e}");
    task["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO"});
    let d = decide_sandbox(&pol, &inputs(&task, "default")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.backend, "kata");
}

#[test]
fn refusal_display_is_one_clear_line() {
    let pol = policy();
    let mut s = sandbox_spec("web");
    drop_ns(&mut s, "network");
    let e = decide_sandbox(&pol, &inputs(&s, "k8s.io"))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    let line = e.to_string();
    assert!(!line.contains('\n'));
    assert!(
        line.contains("deny:host-network")
            && line.contains("linux.namespaces[network]")
            && line.contains("tenant web"),
        "{line}"
    );
}

#[test]
fn spec_paths_agree() {
    let mut privileged = container_spec("web");
    privileged["process"]["capabilities"]["effective"] = all_caps();
    privileged["linux"]["resources"]["devices"] =
        json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "a", "access": "rwm"}]);
    let mut no_linux = sandbox_spec("web");
    if let Some(o) = no_linux.as_object_mut() {
        o.remove("linux");
    }
    for spec in [
        sandbox_spec("web"),
        container_spec("kube-system"),
        ctr_spec(),
        privileged,
        no_linux,
    ] {
        let bytes = serde_json::to_vec(&spec).unwrap_or_default();
        let full = parse_spec(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            inputs_from_spec(&full, "k8s.io", "id").unwrap_or_else(|e| panic!("{e}")),
            crate::inputs_from_config_json(&bytes, "k8s.io", "id")
                .unwrap_or_else(|e| panic!("{e}"))
        );
    }
    assert!(crate::inputs_from_config_json(b"{not json", "k8s.io", "id").is_err());
    assert!(crate::inputs_from_config_json(b"[]", "k8s.io", "id").is_err());
}

#[test]
fn equally_specific_globs_resolve_to_stronger_isolation() {
    let text = POLICY
        .replace(
            "[tenants.untrusted]",
            "[tenants.alax]\nnamespaces = [\"x*y*\"]\nbackend = \"runc\"\n\n[tenants.strict]\nnamespaces = [\"x*z*\"]\nbackend = \"kata\"\n\n[tenants.untrusted]",
        );
    let pol = router_config::parse(&text, std::path::Path::new("/t.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let d = decide_sandbox(&pol, &inputs(&sandbox_spec("xyz"), "k8s.io"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((d.tenant.as_str(), d.isolation), ("strict", Isolation::Vm));
    // otherwise the longer literal prefix decides
    let d = decide_sandbox(&pol, &inputs(&sandbox_spec("sdewan-edge-x"), "k8s.io"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.tenant, "sandboxed");
}
