//! The Pod Security Standards' controls as the node sees them in the OCI spec: one check per
//! rule (`apparmor`, `selinux`, `proc-mount`, `seccomp`, `sysctls`, `restricted-capabilities`,
//! `privilege-escalation`, `run-as-root`), the sets the Standards allow, and which control of
//! the Standards each deny rule stands for. `docs/pod-security.md` is the table of all of them;
//! a test checks it against `control` and the rule tests.
//!
//! The Standards are those of Kubernetes v1.34
//! (<https://kubernetes.io/docs/concepts/security/pod-security-standards/>).

use router_config::DenyRule;

use crate::annotations as ann;
use crate::inputs::{Inputs, Role};

/// The sysctls the Standards call safe (baseline's "Sysctls" control, v1.34): every other key of
/// `linux.sysctl` is refused. Keys are compared with `/` read as `.`, as runc writes them.
pub const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// The SELinux types the Standards allow in `seLinuxOptions.type`.
pub const SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// The SELinux user and role containerd writes when the pod sets none (the host's default
/// container context): the node cannot tell them from a pod that names them itself, so only
/// these pass, and any other user or role is a custom one.
pub const SELINUX_DEFAULT_USER: &str = "system_u";
/// See `SELINUX_DEFAULT_USER`.
pub const SELINUX_DEFAULT_ROLE: &str = "system_r";

/// The paths every containerd line (1.6 to 2.x) and kubelet mask for procMount `Default`: a spec
/// without one of them was made with procMount `Unmasked` (or by hand).
pub const DEFAULT_MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// The paths every containerd line and kubelet make read-only for procMount `Default`.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where the kernel says whether it enforces AppArmor (`Y`/`N`; absent without the module). Read at
/// the edge (`start`, `routerctl explain`) into `HostFacts::apparmor_enabled`.
pub const APPARMOR_ENABLED_PATH: &str = "/sys/module/apparmor/parameters/enabled";

/// What the kernel's AppArmor switch file holds means "enforced".
pub fn apparmor_enabled_from(contents: &[u8]) -> bool {
    contents.first() == Some(&b'Y')
}

/// The control of the Standards a deny rule enforces, as the Standards' page names it.
pub fn control(rule: DenyRule) -> &'static str {
    match rule {
        DenyRule::HostNetwork | DenyRule::HostPid | DenyRule::HostIpc => "Host Namespaces",
        DenyRule::Privileged => "Privileged Containers",
        DenyRule::Capabilities => "Capabilities (baseline)",
        DenyRule::HostPath => "HostPath Volumes",
        DenyRule::HostDevices => "Privileged Containers (host devices)",
        DenyRule::Apparmor => "AppArmor",
        DenyRule::Selinux => "SELinux",
        DenyRule::ProcMount => "/proc Mount Type",
        DenyRule::Seccomp => "Seccomp",
        DenyRule::Sysctls => "Sysctls",
        DenyRule::RestrictedCapabilities => "Capabilities (restricted)",
        DenyRule::PrivilegeEscalation => "Privilege Escalation",
        DenyRule::RunAsRoot => "Running as Non-root",
        DenyRule::RuntimeAnnotations => "none (runtime-router's own rule)",
    }
}

/// Whether a rule reads the task's process (user, capabilities, seccomp, LSM labels, /proc
/// masking) rather than the pod's shared setup.
fn reads_process(rule: DenyRule) -> bool {
    matches!(
        rule,
        DenyRule::Apparmor
            | DenyRule::Selinux
            | DenyRule::ProcMount
            | DenyRule::Seccomp
            | DenyRule::RestrictedCapabilities
            | DenyRule::PrivilegeEscalation
            | DenyRule::RunAsRoot
    )
}

/// A CRI pod sandbox runs containerd's `sandbox_image` (pause), never the tenant's code, and
/// containerd gives it no seccomp, AppArmor or masked paths of the pod's choosing: the process
/// rules apply to each container of the pod (which carries the pod-level settings too) and to
/// tasks started without CRI, not to the pause process. The pod-wide controls (namespaces,
/// sysctls) apply to the sandbox.
pub fn applies(rule: DenyRule, inputs: &Inputs) -> bool {
    let pause = inputs.role == Role::Sandbox
        && inputs
            .annotations
            .get(ann::CONTAINER_TYPE)
            .map(String::as_str)
            == Some(ann::CONTAINER_TYPE_SANDBOX);
    !(pause && reads_process(rule))
}

/// `/` and `.` name the same sysctl (runc writes `a.b` to `/proc/sys/a/b`).
fn sysctl_name(key: &str) -> String {
    key.replace('/', ".")
}

/// The field and what is wrong with it, for a rule of this module; `None` when the task passes
/// (or the rule is not one of this module's).
pub fn violation(rule: DenyRule, inputs: &Inputs) -> Option<(String, String)> {
    let sec = &inputs.security;
    match rule {
        DenyRule::Apparmor => {
            let p = sec.apparmor_profile.as_str();
            if p == "unconfined" {
                Some(("process.apparmorProfile".into(), "runs with AppArmor profile `unconfined`".into()))
            } else if p.is_empty() && inputs.host.apparmor_enabled {
                Some((
                    "process.apparmorProfile".into(),
                    "has no AppArmor profile on a host that enforces AppArmor (unconfined)".into(),
                ))
            } else {
                None
            }
        }
        DenyRule::Selinux => selinux_problem(&sec.selinux_label)
            .map(|why| ("process.selinuxLabel".into(), why)),
        DenyRule::ProcMount => {
            let missing = |have: &[String], want: &[&str]| {
                want.iter()
                    .find(|w| !have.iter().any(|h| h.trim_end_matches('/') == **w))
                    .map(|w| w.to_string())
            };
            if let Some(p) = missing(&sec.masked_paths, &DEFAULT_MASKED_PATHS) {
                Some((
                    "linux.maskedPaths".into(),
                    format!("does not mask `{p}` (procMount is not Default)"),
                ))
            } else {
                missing(&sec.readonly_paths, &DEFAULT_READONLY_PATHS).map(|p| {
                    (
                        "linux.readonlyPaths".into(),
                        format!("does not make `{p}` read-only (procMount is not Default)"),
                    )
                })
            }
        }
        DenyRule::Seccomp => match &sec.seccomp {
            None => Some((
                "linux.seccomp".into(),
                "runs without a seccomp filter (seccomp unset and Unconfined look the same to the node: set RuntimeDefault or Localhost, or run kubelet with --seccomp-default)".into(),
            )),
            Some(s) if !s.refuses_something => Some((
                "linux.seccomp".into(),
                format!(
                    "runs a seccomp filter that refuses nothing (defaultAction `{}` and no refusing rule)",
                    s.default_action
                ),
            )),
            Some(_) => None,
        },
        DenyRule::Sysctls => sec
            .sysctls
            .iter()
            .find(|k| !SAFE_SYSCTLS.contains(&sysctl_name(k).as_str()))
            .map(|k| {
                (
                    format!("linux.sysctl[{k}]"),
                    format!("sets sysctl `{k}`, outside the Standards' safe set"),
                )
            }),
        DenyRule::RestrictedCapabilities => sec.beyond_restricted.as_ref().map(|f| {
            (
                f.field.clone(),
                format!(
                    "keeps {} (restricted drops ALL and adds back at most NET_BIND_SERVICE)",
                    f.what
                ),
            )
        }),
        DenyRule::PrivilegeEscalation => (!sec.no_new_privileges).then(|| {
            (
                "process.noNewPrivileges".into(),
                "may gain privileges (noNewPrivileges not set: allowPrivilegeEscalation is not false)"
                    .into(),
            )
        }),
        DenyRule::RunAsRoot => (sec.uid == 0).then(|| {
            (
                "process.user.uid".into(),
                "runs as uid 0 (root)".into(),
            )
        }),
        _ => None,
    }
}

/// Why an SELinux label is not one the Standards allow, `None` if it is.
fn selinux_problem(label: &str) -> Option<String> {
    if label.is_empty() {
        return None;
    }
    let mut parts = label.splitn(4, ':');
    let (user, role, ty) = (parts.next(), parts.next(), parts.next());
    let (Some(user), Some(role), Some(ty)) = (user, role, ty) else {
        return Some(format!(
            "has SELinux label `{label}`, which is not user:role:type[:level]"
        ));
    };
    if user != SELINUX_DEFAULT_USER || role != SELINUX_DEFAULT_ROLE {
        return Some(format!(
            "has SELinux label `{label}` with a custom user or role (only the default `{SELINUX_DEFAULT_USER}:{SELINUX_DEFAULT_ROLE}` passes)"
        ));
    }
    if !SELINUX_TYPES.contains(&ty) {
        return Some(format!(
            "has SELinux type `{ty}` (label `{label}`), outside {}",
            SELINUX_TYPES.join(", ")
        ));
    }
    None
}
