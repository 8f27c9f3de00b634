//! The Pod Security Standards' controls (issue 23): per control, at baseline and at restricted,
//! the violating spec is refused naming the rule, the field and the level, and its compliant
//! twin passes. `docs/pod-security.md`'s table is checked against these cases.

use std::collections::BTreeSet;
use std::path::Path;

use router_config::{DenyRule, PodSecurity, Policy};
use serde_json::{json, Value};

use super::fixtures::{container_spec, ctr_spec, inputs, sandbox_spec, POLICY};
use crate::podsecurity::{control, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, SAFE_SYSCTLS};
use crate::{decide_container, decide_sandbox, Decision, Inputs, Refusal};

const TENANTS: &str = r#"
[tenants.base]
namespaces = ["pss-base"]
containerd_namespaces = ["pss-base"]
backend = "runc"
pod_security = "baseline"

[tenants.strict]
namespaces = ["pss-strict"]
containerd_namespaces = ["pss-strict"]
backend = "runc"
pod_security = "restricted"

[tenants.one]
namespaces = ["pss-one"]
backend = "runc"
deny = ["seccomp", "run-as-root"]
"#;

fn policy() -> Policy {
    router_config::parse(&format!("{POLICY}{TENANTS}"), Path::new("/test/pss.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn caps(names: &[&str]) -> Value {
    json!({"bounding": names, "effective": names, "permitted": names})
}

/// containerd's RuntimeDefault profile, in short: refuse by default, allow a list.
fn runtime_default() -> Value {
    json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["read", "write", "exit"], "action": "SCMP_ACT_ALLOW"}]})
}

/// A container as containerd writes it for a pod that asks for nothing: uid 0, the default
/// capabilities, RuntimeDefault seccomp (kubelet's --seccomp-default), the default masked and
/// read-only paths. Baseline-compliant, not restricted-compliant.
fn baseline_container(ns: &str) -> Value {
    let mut s = container_spec(ns);
    s["process"]["user"] = json!({"uid": 0, "gid": 0});
    s["process"]["noNewPrivileges"] = json!(false);
    s["process"]["capabilities"] = caps(&DEFAULT_CAPS);
    s["linux"]["seccomp"] = runtime_default();
    s["linux"]["maskedPaths"] = json!(DEFAULT_MASKED_PATHS);
    s["linux"]["readonlyPaths"] = json!(DEFAULT_READONLY_PATHS);
    s
}

/// The restricted twin: uid 1000, no_new_privs, capabilities dropped to NET_BIND_SERVICE.
fn restricted_container(ns: &str) -> Value {
    let mut s = baseline_container(ns);
    s["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    s["process"]["noNewPrivileges"] = json!(true);
    s["process"]["capabilities"] = caps(&["CAP_NET_BIND_SERVICE"]);
    s
}

/// What to change in the compliant spec, and the host's AppArmor.
type Change = fn(&mut Value);

struct Case {
    name: &'static str,
    level: PodSecurity,
    change: Change,
    apparmor_host: bool,
    /// `None`: runs; `Some((rule, field))`: refused.
    refused: Option<(DenyRule, &'static str)>,
}

const fn case(
    name: &'static str,
    level: PodSecurity,
    change: Change,
    refused: Option<(DenyRule, &'static str)>,
) -> Case {
    Case {
        name,
        level,
        change,
        apparmor_host: false,
        refused,
    }
}

use DenyRule as R;
use PodSecurity::{Baseline as B, Restricted as S};

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    for level in [B, S] {
        all.extend([
            case("compliant twin", level, |_| {}, None),
            case(
                "apparmor unconfined",
                level,
                |s| s["process"]["apparmorProfile"] = json!("unconfined"),
                Some((R::Apparmor, "process.apparmorProfile")),
            ),
            case(
                "apparmor runtime default",
                level,
                |s| s["process"]["apparmorProfile"] = json!("cri-containerd.apparmor.d"),
                None,
            ),
            Case {
                apparmor_host: true,
                ..case(
                    "no apparmor profile where the host enforces AppArmor",
                    level,
                    |_| {},
                    Some((R::Apparmor, "process.apparmorProfile")),
                )
            },
            Case {
                apparmor_host: true,
                ..case(
                    "a profile where the host enforces AppArmor",
                    level,
                    |s| s["process"]["apparmorProfile"] = json!("localhost-profile"),
                    None,
                )
            },
            case(
                "selinux container_t with the default user and role",
                level,
                |s| s["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2"),
                None,
            ),
            case(
                "selinux spc_t",
                level,
                |s| s["process"]["selinuxLabel"] = json!("system_u:system_r:spc_t:s0"),
                Some((R::Selinux, "process.selinuxLabel")),
            ),
            case(
                "selinux custom user",
                level,
                |s| s["process"]["selinuxLabel"] = json!("staff_u:system_r:container_t:s0"),
                Some((R::Selinux, "process.selinuxLabel")),
            ),
            case(
                "selinux custom role",
                level,
                |s| s["process"]["selinuxLabel"] = json!("system_u:sysadm_r:container_t:s0"),
                Some((R::Selinux, "process.selinuxLabel")),
            ),
            case(
                "selinux label that is no label",
                level,
                |s| s["process"]["selinuxLabel"] = json!("container_t"),
                Some((R::Selinux, "process.selinuxLabel")),
            ),
            case(
                "procMount Unmasked: a masked path missing",
                level,
                |s| s["linux"]["maskedPaths"] = json!(["/proc/acpi", "/proc/asound"]),
                Some((R::ProcMount, "linux.maskedPaths")),
            ),
            case(
                "procMount Unmasked: no masked paths at all",
                level,
                |s| {
                    if let Some(l) = s["linux"].as_object_mut() {
                        l.remove("maskedPaths");
                    }
                },
                Some((R::ProcMount, "linux.maskedPaths")),
            ),
            case(
                "a read-only path missing",
                level,
                |s| s["linux"]["readonlyPaths"] = json!(["/proc/bus"]),
                Some((R::ProcMount, "linux.readonlyPaths")),
            ),
            case(
                "more masked paths than the default (2.x's powercap)",
                level,
                |s| {
                    let mut m: Vec<&str> = DEFAULT_MASKED_PATHS.to_vec();
                    m.push("/sys/devices/virtual/powercap");
                    m.push("/proc/interrupts");
                    s["linux"]["maskedPaths"] = json!(m);
                },
                None,
            ),
            case(
                "no seccomp (unset or Unconfined)",
                level,
                |s| {
                    if let Some(l) = s["linux"].as_object_mut() {
                        l.remove("seccomp");
                    }
                },
                Some((R::Seccomp, "linux.seccomp")),
            ),
            case(
                "seccomp that allows everything",
                level,
                |s| s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW"}),
                Some((R::Seccomp, "linux.seccomp")),
            ),
            case(
                "seccomp that only logs",
                level,
                |s| {
                    s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_LOG",
                    "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW"}]})
                },
                Some((R::Seccomp, "linux.seccomp")),
            ),
            case(
                "seccomp whose only refusing-looking action is unknown",
                level,
                |s| s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_WHATEVER"}),
                Some((R::Seccomp, "linux.seccomp")),
            ),
            case(
                "seccomp without a default action",
                level,
                |s| s["linux"]["seccomp"] = json!({"syscalls": []}),
                Some((R::Seccomp, "linux.seccomp")),
            ),
            case(
                "a Localhost profile that refuses a list",
                level,
                |s| {
                    s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["unshare", "mount"], "action": "SCMP_ACT_ERRNO"}]})
                },
                None,
            ),
            case(
                "an unsafe sysctl",
                level,
                |s| {
                    s["linux"]["sysctl"] =
                        json!({"net.ipv4.ping_group_range": "0 1", "kernel.msgmax": "65536"})
                },
                Some((R::Sysctls, "linux.sysctl[kernel.msgmax]")),
            ),
            case(
                "an unsafe sysctl written with slashes",
                level,
                |s| s["linux"]["sysctl"] = json!({"kernel/msgmax": "65536"}),
                Some((R::Sysctls, "linux.sysctl[kernel/msgmax]")),
            ),
            case(
                "safe sysctls, one with slashes",
                level,
                |s| {
                    s["linux"]["sysctl"] = json!({"net.ipv4.ping_group_range": "0 1",
                    "net/ipv4/ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"})
                },
                None,
            ),
            case(
                "a capability beyond baseline",
                level,
                |s| {
                    s["process"]["capabilities"]["bounding"] =
                        json!(["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"])
                },
                Some((R::Capabilities, "process.capabilities.bounding")),
            ),
        ]);
    }
    all.extend([
        // what baseline lets through and restricted does not
        case(
            "uid 0 under baseline",
            B,
            |s| s["process"]["user"]["uid"] = json!(0),
            None,
        ),
        case(
            "uid 0",
            S,
            |s| s["process"]["user"]["uid"] = json!(0),
            Some((R::RunAsRoot, "process.user.uid")),
        ),
        case(
            "no user at all (runs as root)",
            S,
            |s| {
                if let Some(p) = s["process"].as_object_mut() {
                    p.remove("user");
                }
            },
            Some((R::RunAsRoot, "process.user.uid")),
        ),
        case(
            "no_new_privs off",
            S,
            |s| s["process"]["noNewPrivileges"] = json!(false),
            Some((R::PrivilegeEscalation, "process.noNewPrivileges")),
        ),
        case(
            "no_new_privs absent",
            S,
            |s| {
                if let Some(p) = s["process"].as_object_mut() {
                    p.remove("noNewPrivileges");
                }
            },
            Some((R::PrivilegeEscalation, "process.noNewPrivileges")),
        ),
        case(
            "the default capabilities kept",
            S,
            |s| s["process"]["capabilities"] = caps(&DEFAULT_CAPS),
            Some((R::RestrictedCapabilities, "process.capabilities.bounding")),
        ),
        case(
            "NET_RAW kept in ambient only",
            S,
            |s| s["process"]["capabilities"]["ambient"] = json!(["CAP_NET_RAW"]),
            Some((R::RestrictedCapabilities, "process.capabilities.ambient")),
        ),
        case(
            "every capability dropped",
            S,
            |s| s["process"]["capabilities"] = caps(&[]),
            None,
        ),
    ]);
    all
}

fn decide(
    policy: &Policy,
    ns: &str,
    spec: &Value,
    apparmor_host: bool,
) -> Result<Decision, Refusal> {
    let mut i: Inputs = inputs(spec, "k8s.io");
    i.host.apparmor_enabled = apparmor_host;
    let tenant = policy
        .tenants
        .values()
        .find(|t| t.namespaces.iter().any(|n| n == ns))
        .map(|t| t.name.to_string())
        .unwrap_or_default();
    decide_container(policy, &i, &tenant, "runc")
}

#[test]
fn each_control_refuses_its_violation_and_passes_its_twin() {
    let policy = policy();
    for c in cases() {
        let (ns, mut spec) = match c.level {
            B => ("pss-base", baseline_container("pss-base")),
            S => ("pss-strict", restricted_container("pss-strict")),
        };
        (c.change)(&mut spec);
        let got = decide(&policy, ns, &spec, c.apparmor_host);
        let label = format!("{} ({})", c.name, c.level);
        match (c.refused, got) {
            (None, Ok(_)) => {}
            (None, Err(r)) => panic!("{label}: refused: {r}"),
            (Some((rule, _)), Ok(d)) => panic!("{label}: passed, expected deny:{rule}: {d:?}"),
            (Some((rule, field)), Err(r)) => {
                assert_eq!(r.rule, format!("deny:{rule}"), "{label}: {r}");
                assert_eq!(r.field, field, "{label}: {r}");
                let text = r.to_string();
                assert!(
                    text.contains(&format!("pod_security `{}`", c.level))
                        && text.contains(control(rule)),
                    "{label}: refusal does not name the level and control: {text}"
                );
                assert!(
                    c.level.enforces(rule),
                    "{label}: {rule} is not {}'s",
                    c.level
                );
            }
        }
    }
}

/// A rule taken alone (no level) refuses the same and names no level.
#[test]
fn a_rule_beside_no_level() {
    let policy = policy();
    let mut spec = baseline_container("pss-one");
    if let Some(l) = spec["linux"].as_object_mut() {
        l.remove("seccomp");
    }
    let r = decide(&policy, "pss-one", &spec, false).expect_err("no seccomp");
    assert_eq!(
        (r.rule.as_str(), r.field.as_str()),
        ("deny:seccomp", "linux.seccomp")
    );
    assert!(!r.to_string().contains("pod_security"), "{r}");
    // only the rules listed: unsafe sysctls and kept capabilities pass here
    let mut spec = baseline_container("pss-one");
    spec["process"]["user"]["uid"] = json!(7);
    spec["linux"]["sysctl"] = json!({"kernel.msgmax": "1"});
    assert!(decide(&policy, "pss-one", &spec, false).is_ok());
}

/// The pause process runs containerd's sandbox image, not the tenant's code: the process rules
/// skip it (its containers carry the pod's settings), the pod-wide ones do not. A task started
/// without CRI runs the tenant's image: every rule applies.
#[test]
fn sandboxes_and_tasks_without_cri() {
    let policy = policy();
    let pause = sandbox_spec("pss-strict");
    let i = inputs(&pause, "k8s.io");
    assert!(
        decide_sandbox(&policy, &i).is_ok(),
        "pause under restricted"
    );
    let mut unsafe_pod = sandbox_spec("pss-strict");
    unsafe_pod["linux"]["sysctl"] = json!({"kernel.msgmax": "1"});
    let r = decide_sandbox(&policy, &inputs(&unsafe_pod, "k8s.io")).expect_err("sysctl");
    assert_eq!(r.field, "linux.sysctl[kernel.msgmax]");
    let mut host_net = sandbox_spec("pss-base");
    host_net["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}]);
    let r = decide_sandbox(&policy, &inputs(&host_net, "k8s.io")).expect_err("host network");
    assert_eq!(r.rule, "deny:host-network");
    assert!(r.message.contains("Host Namespaces"), "{r}");
    // a ctr task: its own pod, its own code
    let task = ctr_spec();
    let r = decide_sandbox(&policy, &inputs(&task, "pss-base")).expect_err("ctr task");
    assert_eq!(r.rule, "deny:proc-mount", "{r}");
    let mut task = restricted_container("x");
    task["annotations"] = json!({});
    task["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    assert!(decide_sandbox(&policy, &inputs(&task, "pss-strict")).is_ok());
    task["process"]["user"]["uid"] = json!(0);
    let r = decide_sandbox(&policy, &inputs(&task, "pss-strict")).expect_err("root task");
    assert_eq!(r.rule, "deny:run-as-root");
}

/// The kernel's AppArmor switch: only `Y` means enforced.
#[test]
fn apparmor_switch_reads_y_only() {
    use crate::podsecurity::apparmor_enabled_from;
    assert!(apparmor_enabled_from(b"Y\n"));
    for off in [&b"N\n"[..], b"", b"y", b"\nY"] {
        assert!(!apparmor_enabled_from(off), "{off:?}");
    }
}

/// Every rule a level enforces has a refused case and a passing twin at that level.
#[test]
fn every_level_rule_is_tested() {
    let all = cases();
    for level in [B, S] {
        for rule in level.rules() {
            if matches!(
                rule,
                R::HostNetwork
                    | R::HostPid
                    | R::HostIpc
                    | R::Privileged
                    | R::HostPath
                    | R::HostDevices
            ) {
                // the rules that predate the levels have their own tables (table.rs, floor.rs)
                continue;
            }
            assert!(
                all.iter()
                    .any(|c| c.level == level && c.refused.is_some_and(|(r, _)| r == rule)),
                "{rule} has no refused case at {level}"
            );
        }
    }
}

/// `docs/pod-security.md`'s table: every control marked enforced names a rule that exists, that
/// `control()` names the same way, that its level enforces and that has a case here (or in the
/// older tables); every rule of either level is in the table.
#[test]
fn the_docs_table_matches_the_code() {
    let doc = include_str!("../../../docs/pod-security.md");
    let tested: BTreeSet<DenyRule> = cases()
        .iter()
        .filter_map(|c| c.refused.map(|(r, _)| r))
        .collect();
    let older = [
        R::HostNetwork,
        R::HostPid,
        R::HostIpc,
        R::Privileged,
        R::HostPath,
        R::HostDevices,
    ];
    let mut listed = BTreeSet::new();
    let mut rows = 0;
    for line in doc
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Level"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | Level | Control | Rule | OCI field | At the node |
        let [_, level, ctl, rule, _field, status, ..] = cells[..] else {
            continue;
        };
        if level.starts_with('-') {
            continue;
        }
        rows += 1;
        if !status.starts_with("enforced") {
            assert!(rule == "—", "{ctl}: not enforced yet names rule {rule}");
            continue;
        }
        let name = rule.trim_matches('`');
        let r = DenyRule::from_name(name).unwrap_or_else(|| panic!("{ctl}: no rule `{name}`"));
        assert_eq!(
            control(r),
            ctl,
            "docs and code name {r}'s control differently"
        );
        let lvl = match level {
            "baseline" => B,
            "restricted" => S,
            other => panic!("{ctl}: level {other}"),
        };
        assert!(
            lvl.enforces(r),
            "docs say {lvl} enforces {r}; code does not"
        );
        assert!(tested.contains(&r) || older.contains(&r), "{r} has no test");
        listed.insert(r);
    }
    assert!(rows >= 20, "table not found ({rows} rows)");
    for r in S.rules() {
        assert!(
            listed.contains(&r),
            "{r} is enforced but not in docs/pod-security.md"
        );
    }
    // the safe sysctls the docs list are the code's
    for s in SAFE_SYSCTLS {
        assert!(doc.contains(&format!("`{s}`")), "docs lack safe sysctl {s}");
    }
}

mod props {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const ALL_CAPS: [&str; 41] = {
        let mut all = [""; 41];
        let mut i = 0;
        while i < crate::BASE_CAPABILITIES.len() {
            all[i] = crate::BASE_CAPABILITIES[i];
            i += 1;
        }
        all[38] = "CAP_PERFMON";
        all[39] = "CAP_BPF";
        all[40] = "CAP_CHECKPOINT_RESTORE";
        all
    };

    fn restricted_outcome(spec: &Value) -> Result<Decision, Refusal> {
        decide(&policy(), "pss-strict", spec, false)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        /// A sysctl key is let through exactly when it names a safe sysctl (with `/` or `.`).
        #[test]
        fn sysctls_pass_only_from_the_safe_set(
            key in prop_oneof![
                proptest::sample::select(SAFE_SYSCTLS.to_vec()).prop_map(str::to_string),
                proptest::sample::select(SAFE_SYSCTLS.to_vec()).prop_map(|k| k.replace('.', "/")),
                "[a-z]{1,8}(\\.[a-z_]{1,12}){1,3}",
            ],
        ) {
            let mut spec = restricted_container("pss-strict");
            spec["linux"]["sysctl"] = json!({ key.clone(): "1" });
            let safe = SAFE_SYSCTLS.contains(&key.replace('/', ".").as_str());
            match restricted_outcome(&spec) {
                Ok(_) => prop_assert!(safe, "{key} passed"),
                Err(r) => {
                    prop_assert!(!safe, "{key} refused: {r}");
                    prop_assert_eq!(r.field, format!("linux.sysctl[{key}]"));
                }
            }
        }

        /// Under restricted, any capability set passes exactly when it holds nothing but
        /// NET_BIND_SERVICE, in whichever set it is.
        #[test]
        fn restricted_capabilities_hold_net_bind_service_at_most(
            caps in proptest::sample::subsequence(ALL_CAPS.to_vec(), 0..4),
            set in proptest::sample::select(vec!["bounding", "effective", "permitted", "inheritable", "ambient"]),
        ) {
            let mut spec = restricted_container("pss-strict");
            spec["process"]["capabilities"][set] = json!(caps);
            let ok = caps.iter().all(|c| *c == "CAP_NET_BIND_SERVICE");
            let got = restricted_outcome(&spec);
            prop_assert_eq!(got.is_ok(), ok, "{:?} in {}: {:?}", caps, set, got);
        }

        /// Under restricted, the uid passes exactly when it is not 0.
        #[test]
        fn restricted_refuses_uid_zero_only(uid in prop_oneof![Just(0u32), any::<u32>()]) {
            let mut spec = restricted_container("pss-strict");
            spec["process"]["user"]["uid"] = json!(uid);
            let got = restricted_outcome(&spec);
            prop_assert_eq!(got.is_ok(), uid != 0, "{:?}", got);
        }

        /// A seccomp filter passes exactly when some action (default or rule) refuses.
        #[test]
        fn seccomp_passes_only_a_filter_that_refuses(
            default in proptest::sample::select(vec!["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "", "SCMP_ACT_FUTURE"]),
            rules in proptest::collection::vec(
                proptest::sample::select(vec!["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "scmp_act_errno"]), 0..4),
        ) {
            let mut spec = restricted_container("pss-strict");
            let syscalls: Vec<Value> = rules.iter().map(|a| json!({"names": ["read"], "action": a})).collect();
            spec["linux"]["seccomp"] = json!({"defaultAction": default, "syscalls": syscalls});
            // only the spec's refusing actions count; empty, unknown or misspelt ones do not
            let known = |a: &str| ["SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_TRACE"].contains(&a);
            let refuses = known(default) || rules.iter().any(|a| known(a));
            let got = restricted_outcome(&spec);
            prop_assert_eq!(got.is_ok(), refuses, "{} {:?}: {:?}", default, rules, got);
        }
    }
}
