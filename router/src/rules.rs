//! The `deny` rules and the privileged-to-VM rule, checked against one task's inputs.

use router_config::{
    Backend, BackendKind, DenyRule, Isolation, Policy, Tenant, RUNTIME_ANNOTATION_PREFIXES,
};

use crate::decision::Refusal;
use crate::hostpath::{self, PodIds};
use crate::inputs::Inputs;
use crate::podsecurity;
use crate::specflags::BASELINE_CAPABILITIES;

/// Non-bind mount types that carry no host path (kernel pseudo-filesystems and memory-backed ones).
pub const PSEUDO_FS_TYPES: [&str; 10] = [
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm", "ramfs", "devtmpfs",
];

/// Whether `key` is let through by an `allow_annotations` entry (exact key, or `prefix*`).
pub fn annotation_allowed<S: AsRef<str>>(key: &str, allow: &[S]) -> bool {
    allow
        .iter()
        .map(AsRef::as_ref)
        .any(|a| match a.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => a == key,
        })
}

/// Whether `key` is an annotation that steers a sandbox runtime.
pub fn is_runtime_annotation(key: &str) -> bool {
    RUNTIME_ANNOTATION_PREFIXES
        .iter()
        .any(|p| key.starts_with(p))
}

/// Checks every rule the tenant denies, in the tenant's order; returns the first violation.
/// On success returns one reason line per rule checked.
pub fn check_deny(
    policy: &Policy,
    tenant: &Tenant,
    inputs: &Inputs,
    what: &str,
) -> Result<Vec<String>, Refusal> {
    for rule in tenant.rules() {
        if !podsecurity::applies(rule, inputs) {
            continue;
        }
        if let Some((field, mut message)) = violation(policy, tenant, rule, inputs, what) {
            if let Some(level) = tenant.level_of(rule) {
                message.push_str(&format!(
                    " (pod_security `{level}`: control \"{}\" of the Pod Security Standards)",
                    podsecurity::control(rule)
                ));
            }
            return Err(Refusal {
                tenant: Some(tenant.name.to_string()),
                rule: format!("deny:{rule}"),
                field,
                message,
            });
        }
    }
    let list: Vec<&str> = tenant.rules().map(|r| r.as_str()).collect();
    Ok(if list.is_empty() {
        Vec::new()
    } else {
        let level = tenant
            .pod_security
            .map(|l| format!(" (pod_security `{l}`)"))
            .unwrap_or_default();
        vec![format!(
            "{what} passes tenant `{}`'s deny rules{level}: {}",
            tenant.name,
            list.join(", ")
        )]
    })
}

fn violation(
    policy: &Policy,
    tenant: &Tenant,
    rule: DenyRule,
    inputs: &Inputs,
    what: &str,
) -> Option<(String, String)> {
    let ns = |flag: bool, ty: &str, name: &str| {
        flag.then(|| {
            (
                format!("linux.namespaces[{ty}]"),
                format!(
                    "{what} asks for the host {name} namespace (no private `{ty}` namespace in linux.namespaces), denied for tenant `{}`",
                    tenant.name
                ),
            )
        })
    };
    match rule {
        DenyRule::HostNetwork => ns(inputs.host_network, "network", "network"),
        DenyRule::HostPid => ns(inputs.host_pid, "pid", "PID"),
        DenyRule::HostIpc => ns(inputs.host_ipc, "ipc", "IPC"),
        DenyRule::Privileged => inputs.privileged.then(|| {
            let field = inputs
                .privileged_field
                .clone()
                .unwrap_or_else(|| "process.capabilities".to_string());
            (
                field.clone(),
                format!(
                    "{what} is privileged ({field} grants everything), denied for tenant `{}`",
                    tenant.name
                ),
            )
        }),
        DenyRule::HostPath => host_path_violation(policy, tenant, inputs, what),
        DenyRule::Capabilities => inputs.extra_capability.as_ref().map(|f| {
            (
                f.field.clone(),
                format!(
                    "{what} adds {} beyond the baseline capabilities ({}), denied for tenant `{}`",
                    f.what,
                    BASELINE_CAPABILITIES.map(|c| &c[4..]).join(", "),
                    tenant.name
                ),
            )
        }),
        DenyRule::HostDevices => inputs.host_device.as_ref().map(|f| {
            (
                f.field.clone(),
                format!(
                    "{what} asks for host device `{}` beyond the default devices, denied for tenant `{}`",
                    f.what, tenant.name
                ),
            )
        }),
        DenyRule::Apparmor
        | DenyRule::Selinux
        | DenyRule::ProcMount
        | DenyRule::Seccomp
        | DenyRule::Sysctls
        | DenyRule::RestrictedCapabilities
        | DenyRule::PrivilegeEscalation
        | DenyRule::RunAsRoot => podsecurity::violation(rule, inputs).map(|(field, problem)| {
            (
                field,
                format!("{what} {problem}, denied for tenant `{}`", tenant.name),
            )
        }),
        DenyRule::RuntimeAnnotations => inputs
            .annotations
            .keys()
            .find(|k| is_runtime_annotation(k) && !annotation_allowed(k, &tenant.allow_annotations))
            .map(|k| {
                (
                    format!("annotations[{k}]"),
                    format!(
                        "{what} carries runtime annotation `{k}`, which tenant `{}` does not list in allow_annotations",
                        tenant.name
                    ),
                )
            }),
    }
}

fn host_path_violation(
    policy: &Policy,
    tenant: &Tenant,
    inputs: &Inputs,
    what: &str,
) -> Option<(String, String)> {
    let ids = PodIds {
        pod_uid: inputs.pod_uid.as_deref(),
        sandbox_id: Some(inputs.sandbox_id()).filter(|s| !s.is_empty()),
    };
    for (i, m) in inputs.mounts.iter().enumerate() {
        let field = format!("mounts[{i}].source");
        if m.bind {
            // the floor first: what no entry opens is named as such
            let lexical = hostpath::normalize(&m.source);
            let resolved = inputs.host.resolved.get(&i);
            let floor = inputs.host.protected.iter().find(|p| {
                lexical
                    .iter()
                    .chain(resolved)
                    .any(|src| hostpath::reaches(src, &p.path, p.pod_dirs, ids.sandbox_id))
            });
            if let Some(p) = floor {
                return Some((
                    field,
                    format!(
                        "{what} bind-mounts host path `{}` at `{}`, which reaches {} (`{}`): no allowed_host_paths entry opens that, denied for tenant `{}`",
                        m.source, m.destination, p.what, p.path, tenant.name
                    ),
                ));
            }
            if !hostpath::is_allowed_for(&m.source, &policy.allowed_host_paths, ids) {
                return Some((
                    field,
                    format!(
                        "{what} bind-mounts host path `{}` at `{}`, outside allowed_host_paths, denied for tenant `{}`",
                        m.source, m.destination, tenant.name
                    ),
                ));
            }
            if let Some(why) = inputs.host.unsafe_sources.get(&i) {
                return Some((
                    field,
                    format!(
                        "{what} bind-mounts host path `{}` at `{}`: {why}; a path inside an allowed directory is walked without following symlinks (a pod can write its own volumes), denied for tenant `{}`",
                        m.source, m.destination, tenant.name
                    ),
                ));
            }
        } else if !PSEUDO_FS_TYPES.contains(&m.kind.as_str()) {
            return Some((
                format!("mounts[{i}].type"),
                format!(
                    "{what} mounts `{}` of type `{}` at `{}`: only bind mounts from allowed_host_paths and pseudo filesystems are allowed for tenant `{}`",
                    m.source, m.kind, m.destination, tenant.name
                ),
            ));
        }
    }
    None
}

/// For a tenant that denies `host-path`: a bind source strictly inside a directory the pod can
/// write (`Inputs::host.inside_pod_dirs`) reaches a hand-off backend only after the router's
/// check, and the pod could swap a directory on the way for a symlink in between. The built-in
/// backend pins what `start` walked (`shim/src/builtin/pin.rs`); another shim cannot be given
/// that, so such a source is refused there.
pub fn check_pinnable(
    tenant: &Tenant,
    backend: &Backend,
    inputs: &Inputs,
    what: &str,
) -> Result<(), Refusal> {
    if !tenant.denies(DenyRule::HostPath) || matches!(backend.kind, BackendKind::Builtin { .. }) {
        return Ok(());
    }
    let Some((i, dir)) = inputs.host.inside_pod_dirs.iter().next() else {
        return Ok(());
    };
    let (source, destination) = inputs
        .mounts
        .get(*i)
        .map(|m| (m.source.as_str(), m.destination.as_str()))
        .unwrap_or_default();
    Err(Refusal {
        tenant: Some(tenant.name.to_string()),
        rule: format!("deny:{}", DenyRule::HostPath),
        field: format!("mounts[{i}].source"),
        message: format!(
            "{what} bind-mounts host path `{source}` at `{destination}`, inside `{dir}`, which this pod can write: backend `{}` mounts it after the router's check, so the pod could swap a directory on the way for a symlink; mount `{dir}` itself, or use a built-in backend, which pins what was checked; denied for tenant `{}`",
            backend.name, tenant.name
        ),
    })
}

/// A privileged task never goes to a `vm` backend (the VM would be given every host device).
pub fn check_privileged_vm(
    inputs: &Inputs,
    tenant: Option<&str>,
    backend: &str,
    isolation: Isolation,
    what: &str,
) -> Result<(), Refusal> {
    if inputs.privileged && isolation == Isolation::Vm {
        let field = inputs
            .privileged_field
            .clone()
            .unwrap_or_else(|| "process.capabilities".to_string());
        return Err(Refusal {
            tenant: tenant.map(str::to_string),
            rule: "privileged-vm".to_string(),
            field: field.clone(),
            message: format!(
                "{what} is privileged ({field}) and backend `{backend}` is a VM: a privileged pod is never handed to a VM backend"
            ),
        });
    }
    Ok(())
}
