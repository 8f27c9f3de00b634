//! Extraction of routing inputs from an OCI runtime spec (`config.json`): CRI annotations, the
//! override annotation, host namespaces, privilege, mounts. `inputs_from_config_json` is the hot
//! path of `start`: one serde pass over the bytes into just the fields the decision reads.

use std::collections::BTreeMap;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::annotations as ann;
use crate::specflags::{BindOption, CapSet};

/// What the task is within its pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A pod sandbox, or a task started without CRI (it is its own pod).
    Sandbox,
    /// An application container of the pod whose sandbox has this id.
    Container { sandbox_id: String },
}

/// One mount of the spec, as the `host-path` rule sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInput {
    /// Empty when the spec gives none.
    pub source: String,
    pub destination: String,
    /// The mount `type` (empty when the spec gives none).
    pub kind: String,
    /// A bind mount: type `bind` or an option `bind`/`rbind`.
    pub bind: bool,
}

/// One spec field a deny rule may refuse, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The spec field, e.g. `process.capabilities.bounding` or `linux.devices[0]`.
    pub field: String,
    /// What it holds, e.g. `CAP_NET_ADMIN` or `c 195:0 /dev/nvidia0`.
    pub what: String,
}

/// A host path no pod of a tenant that denies `host-path` may reach, whatever
/// `allowed_host_paths` says (SPEC §3.6): containerd's socket, state and root dirs, the router's
/// state and records, the policy and its cache. Known only at the edge (`start` reads where
/// they are), so given to the decision as a fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protected {
    /// Absolute, normalised.
    pub path: String,
    /// What it is, for the refusal (`containerd's socket`, ...).
    pub what: String,
    /// A containerd state or root dir: below it, this pod's own CRI sandbox dir
    /// (`io.containerd.grpc.v1.cri/sandboxes/<sandbox id>/`: its hosts, hostname, resolv.conf and
    /// shm) stays allowed.
    pub pod_dirs: bool,
}

/// What `start` learned on the host about a task's bind sources before deciding (the decision
/// itself does no I/O). Empty when nobody looked (tools, table tests): then only the lexical
/// checks apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Paths no policy opens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<Protected>,
    /// Per mount index: why its source cannot be trusted (a symlink on the way from the allowed
    /// directory, a `..`, a missing component).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unsafe_sources: BTreeMap<usize, String>,
    /// Per mount index: the source as the host resolves it (the allowed directory's real path
    /// and the rest, walked without following any symlink).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resolved: BTreeMap<usize, String>,
    /// Per mount index: a bind source of this pod (of this task or an earlier one) that the
    /// source lies strictly inside. The pod can write there, so it can swap a directory on the
    /// way for a symlink after `start` walked it: only a backend that pins what was walked (the
    /// built-in one) may mount such a source.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inside_pod_dirs: BTreeMap<usize, String>,
    /// The host enforces AppArmor: there an empty `process.apparmorProfile` means unconfined.
    #[serde(default)]
    pub apparmor_enabled: bool,
}

/// Everything the decision reads about one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub containerd_namespace: String,
    pub id: String,
    pub role: Role,
    pub k8s_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// The network namespace is missing from `linux.namespaces` (or joins pid 1's).
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    /// All capabilities in some set, `CAP_SYS_ADMIN` in some set, or all devices allowed.
    pub privileged: bool,
    /// Why `privileged` is true: the spec field, e.g. `process.capabilities.bounding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged_field: Option<String>,
    pub mounts: Vec<MountInput>,
    /// The first capability beyond the baseline set, in any capability set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_capability: Option<Finding>,
    /// The first device node or device cgroup allow rule beyond the default set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_device: Option<Finding>,
    /// What the Pod Security Standards' controls read (docs/pod-security.md).
    #[serde(default)]
    pub security: SecurityInputs,
    /// Facts from the host about the bind sources (filled by `start`, not from the spec).
    #[serde(default)]
    pub host: HostFacts,
    /// The runtime handler containerd started the router under (filled by `start` from its
    /// binary name, not from the spec): a request made through the pod's RuntimeClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
}

/// The spec fields the Pod Security Standards' controls read, as the runtime will apply them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityInputs {
    /// `process.user.uid` (0 when absent: what every runtime then runs as).
    pub uid: u32,
    /// `process.noNewPrivileges`.
    pub no_new_privileges: bool,
    /// `process.apparmorProfile` (empty when absent).
    pub apparmor_profile: String,
    /// `process.selinuxLabel` (empty when absent).
    pub selinux_label: String,
    /// `linux.seccomp`; `None` when absent.
    pub seccomp: Option<SeccompInputs>,
    /// The keys of `linux.sysctl`, as written.
    pub sysctls: Vec<String>,
    /// `linux.maskedPaths`.
    pub masked_paths: Vec<String>,
    /// `linux.readonlyPaths`.
    pub readonly_paths: Vec<String>,
    /// The first capability beyond `CAP_NET_BIND_SERVICE`, in any capability set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beyond_restricted: Option<Finding>,
}

/// A seccomp filter, reduced to whether it refuses anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompInputs {
    /// `linux.seccomp.defaultAction`, as written.
    pub default_action: String,
    /// Some action (the default or a rule's) is one of `REFUSING_SECCOMP_ACTIONS`.
    pub refuses_something: bool,
}

impl Inputs {
    /// Whether the spec carries CRI annotations (then the Kubernetes namespace alone names the
    /// tenant; the containerd namespace is used only for tasks without them).
    pub fn is_cri(&self) -> bool {
        self.k8s_namespace.is_some()
            || self.annotations.contains_key(ann::CONTAINER_TYPE)
            || self.annotations.contains_key(ann::SANDBOX_ID)
    }

    /// The pod's sandbox id: its own id for a sandbox.
    pub fn sandbox_id(&self) -> &str {
        match &self.role {
            Role::Sandbox => &self.id,
            Role::Container { sandbox_id } => sandbox_id,
        }
    }
}

/// `config.json` could not be read as an OCI runtime spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("config.json is not a valid OCI runtime spec: {0}")]
    Json(#[from] serde_json::Error),
    #[error("config.json is not a valid OCI runtime spec: not a JSON object")]
    NotAnObject,
}

/// Parses `config.json` into the full `oci-spec` model (for tools; `start` uses
/// `inputs_from_config_json`).
pub fn parse_spec(bytes: &[u8]) -> Result<Spec, SpecError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Routing inputs from a parsed spec: the spec is written back to JSON and read by the same
/// extraction as `inputs_from_config_json` (tools only; `start` has the bytes).
pub fn inputs_from_spec(
    spec: &Spec,
    containerd_namespace: &str,
    id: &str,
) -> Result<Inputs, SpecError> {
    let value = serde_json::to_value(spec)?;
    let light = LightSpec::deserialize(value)?;
    Ok(light.into_inputs(containerd_namespace, id))
}

/// Routing inputs straight from the bytes of `config.json`, in one parse.
pub fn inputs_from_config_json(
    bytes: &[u8],
    containerd_namespace: &str,
    id: &str,
) -> Result<Inputs, SpecError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(SpecError::NotAnObject);
    }
    let light: LightSpec = serde_json::from_slice(bytes)?;
    Ok(light.into_inputs(containerd_namespace, id))
}

// ---- the subset of the OCI spec the decision reads; unknown fields are skipped ----

#[derive(Deserialize)]
struct LightSpec {
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    mounts: Option<Vec<LightMount>>,
    #[serde(default)]
    process: Option<LightProcess>,
    #[serde(default)]
    linux: Option<LightLinux>,
}

#[derive(Deserialize)]
struct LightMount {
    #[serde(default)]
    destination: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// Only whether `bind`/`rbind` is among them.
    #[serde(default)]
    options: Option<BindOption>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LightProcess {
    #[serde(default)]
    capabilities: Option<LightCaps>,
    #[serde(default)]
    user: Option<LightUser>,
    #[serde(default)]
    no_new_privileges: Option<bool>,
    #[serde(default)]
    apparmor_profile: Option<String>,
    #[serde(default)]
    selinux_label: Option<String>,
}

#[derive(Deserialize)]
struct LightUser {
    #[serde(default)]
    uid: u32,
}

/// `linux.seccomp`, reduced to its actions (the syscall names are skipped unread).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LightSeccomp {
    #[serde(default)]
    default_action: String,
    #[serde(default)]
    syscalls: Option<Vec<LightSyscall>>,
}

#[derive(Deserialize)]
struct LightSyscall {
    #[serde(default)]
    action: String,
}

#[derive(Deserialize)]
struct LightCaps {
    #[serde(default)]
    bounding: Option<CapSet>,
    #[serde(default)]
    effective: Option<CapSet>,
    #[serde(default)]
    permitted: Option<CapSet>,
    #[serde(default)]
    inheritable: Option<CapSet>,
    #[serde(default)]
    ambient: Option<CapSet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LightLinux {
    #[serde(default)]
    devices: Option<Vec<LightDeviceNode>>,
    #[serde(default)]
    seccomp: Option<LightSeccomp>,
    #[serde(default)]
    sysctl: Option<BTreeMap<String, String>>,
    #[serde(default)]
    masked_paths: Option<Vec<String>>,
    #[serde(default)]
    readonly_paths: Option<Vec<String>>,
    #[serde(default)]
    namespaces: Option<Vec<LightNamespace>>,
    #[serde(default)]
    resources: Option<LightResources>,
}

#[derive(Deserialize)]
struct LightNamespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize)]
struct LightResources {
    #[serde(default)]
    devices: Option<Vec<LightDevice>>,
}

#[derive(Deserialize)]
struct LightDevice {
    #[serde(default)]
    allow: bool,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    major: Option<i64>,
    #[serde(default)]
    minor: Option<i64>,
    #[serde(default)]
    access: Option<String>,
}

/// A device node the runtime creates in the container (`linux.devices`).
#[derive(Deserialize)]
struct LightDeviceNode {
    #[serde(default)]
    path: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    major: i64,
    #[serde(default)]
    minor: i64,
}

/// The character devices every container gets (runc's and containerd's defaults): null, zero,
/// full, random, urandom, tty, console, ptmx, the pty slaves (136:*) and tun (10:200). Anything
/// else is a host device.
const DEFAULT_CHAR_DEVICES: [(i64, Option<i64>); 10] = [
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(1)),
    (5, Some(2)),
    (136, None),
    (10, Some(200)),
];

fn is_default_char_device(major: i64, minor: Option<i64>) -> bool {
    DEFAULT_CHAR_DEVICES
        .iter()
        .any(|(ma, mi)| *ma == major && (mi.is_none() || *mi == minor))
}

/// The first device node beyond the default set (`linux.devices`), or device cgroup allow rule
/// granting read or write beyond it (`linux.resources.devices`; an `m`-only rule creates no
/// access).
fn first_host_device(linux: &LightLinux) -> Option<Finding> {
    for (i, d) in linux.devices.iter().flatten().enumerate() {
        let default =
            d.kind == "p" || (d.kind == "c" && is_default_char_device(d.major, Some(d.minor)));
        if !default {
            return Some(Finding {
                field: format!("linux.devices[{i}]"),
                what: format!("{} {}:{} {}", d.kind, d.major, d.minor, d.path),
            });
        }
    }
    let rules = linux.resources.as_ref().and_then(|r| r.devices.as_ref());
    for (i, d) in rules.into_iter().flatten().enumerate() {
        let access = d.access.as_deref().unwrap_or("rwm");
        if !d.allow || !(access.contains('r') || access.contains('w')) {
            continue;
        }
        let kind = d.kind.as_deref().unwrap_or("a");
        let major = d.major.filter(|m| *m != -1);
        let minor = d.minor.filter(|m| *m != -1);
        let default = kind == "c" && major.is_some_and(|ma| is_default_char_device(ma, minor));
        if !default {
            let num = |v: Option<i64>| v.map_or("*".to_string(), |n| n.to_string());
            return Some(Finding {
                field: format!("linux.resources.devices[{i}]"),
                what: format!("allow {kind} {}:{} {access}", num(major), num(minor)),
            });
        }
    }
    None
}

fn is_wildcard(v: Option<i64>) -> bool {
    matches!(v, None | Some(-1))
}

/// Device cgroup rules are applied in order: all devices are allowed when the last rule that
/// covers every device (no type/`a`, any major and minor) is an allow rule.
fn all_devices_allowed(devices: &[LightDevice]) -> bool {
    devices
        .iter()
        .rev()
        .find(|d| {
            matches!(d.kind.as_deref(), None | Some("a") | Some(""))
                && is_wildcard(d.major)
                && is_wildcard(d.minor)
        })
        .is_some_and(|d| d.allow && d.access.as_deref().is_none_or(|a| !a.is_empty()))
}

/// A namespace joined by path `/proc/1/ns/*` (or via `/proc/self/..` of the runtime) is the
/// host's own.
fn joins_host(path: Option<&str>) -> bool {
    match path {
        None => false,
        Some(p) => {
            let p = p.trim_end_matches('/');
            p.starts_with("/proc/1/")
                || p.starts_with("/proc/self/")
                || p.starts_with("/proc/thread-self/")
        }
    }
}

impl LightSpec {
    fn into_inputs(self, containerd_namespace: &str, id: &str) -> Inputs {
        let annotations = self.annotations.unwrap_or_default();
        let role = match annotations.get(ann::CONTAINER_TYPE).map(String::as_str) {
            Some(ann::CONTAINER_TYPE_CONTAINER) => Role::Container {
                sandbox_id: annotations
                    .get(ann::SANDBOX_ID)
                    .cloned()
                    .unwrap_or_default(),
            },
            _ => Role::Sandbox,
        };
        let (mut host_network, mut host_pid, mut host_ipc) = (true, true, true);
        let mut privileged_field = None;
        let mut host_device = None;
        if let Some(linux) = &self.linux {
            host_device = first_host_device(linux);
            for ns in linux.namespaces.iter().flatten() {
                let own = !joins_host(ns.path.as_deref());
                match ns.kind.as_str() {
                    "network" => host_network &= !own,
                    "pid" => host_pid &= !own,
                    "ipc" => host_ipc &= !own,
                    _ => {}
                }
            }
            if let Some(devs) = linux.resources.as_ref().and_then(|r| r.devices.as_ref()) {
                if all_devices_allowed(devs) {
                    privileged_field = Some("linux.resources.devices".to_string());
                }
            }
        }
        let mut extra_capability = None;
        let mut beyond_restricted = None;
        if let Some(caps) = self.process.as_ref().and_then(|p| p.capabilities.as_ref()) {
            let sets = [
                ("bounding", &caps.bounding),
                ("effective", &caps.effective),
                ("permitted", &caps.permitted),
                ("inheritable", &caps.inheritable),
                ("ambient", &caps.ambient),
            ];
            for (name, set) in sets {
                let Some(set) = set else { continue };
                // all capabilities, or the one that is root on the host whatever the rest: this
                // does not depend on the host's bounding set (add_capabilities ALL on a host
                // lacking one capability is still privileged)
                if privileged_field.is_none() && (set.is_all() || set.holds_root_equivalent()) {
                    privileged_field = Some(format!("process.capabilities.{name}"));
                }
                if extra_capability.is_none() {
                    extra_capability = set.first_beyond_baseline().map(|cap| Finding {
                        field: format!("process.capabilities.{name}"),
                        what: cap.to_string(),
                    });
                }
                if beyond_restricted.is_none() {
                    beyond_restricted = set.first_beyond_restricted().map(|cap| Finding {
                        field: format!("process.capabilities.{name}"),
                        what: cap.to_string(),
                    });
                }
            }
        }
        let security = security_inputs(
            self.process.as_ref(),
            self.linux.as_ref(),
            beyond_restricted,
        );
        let mounts = self
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let kind = m.kind.unwrap_or_default();
                let bind = kind == "bind" || m.options.is_some_and(|o| o.0);
                MountInput {
                    source: m.source.unwrap_or_default(),
                    destination: m.destination,
                    kind,
                    bind,
                }
            })
            .collect();
        Inputs {
            containerd_namespace: containerd_namespace.to_string(),
            id: id.to_string(),
            role,
            k8s_namespace: annotations.get(ann::SANDBOX_NAMESPACE).cloned(),
            pod_name: annotations.get(ann::SANDBOX_NAME).cloned(),
            pod_uid: annotations.get(ann::SANDBOX_UID).cloned(),
            host_network,
            host_pid,
            host_ipc,
            privileged: privileged_field.is_some(),
            privileged_field,
            mounts,
            annotations,
            extra_capability,
            host_device,
            security,
            host: HostFacts::default(),
            handler: None,
        }
    }
}

/// Seccomp actions that refuse a call (the OCI runtime spec's list, but `SCMP_ACT_ALLOW` and
/// `SCMP_ACT_LOG`). Any other string, empty or unknown, counts as refusing nothing: an action
/// the router cannot classify never makes a filter pass.
const REFUSING_SECCOMP_ACTIONS: [&str; 7] = [
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_NOTIFY",
];

fn security_inputs(
    process: Option<&LightProcess>,
    linux: Option<&LightLinux>,
    beyond_restricted: Option<Finding>,
) -> SecurityInputs {
    let text = |v: Option<&String>| v.cloned().unwrap_or_default();
    let seccomp = linux.and_then(|l| l.seccomp.as_ref()).map(|s| {
        let refuses = |a: &str| REFUSING_SECCOMP_ACTIONS.contains(&a);
        SeccompInputs {
            default_action: s.default_action.clone(),
            refuses_something: refuses(&s.default_action)
                || s.syscalls.iter().flatten().any(|r| refuses(&r.action)),
        }
    });
    SecurityInputs {
        uid: process.and_then(|p| p.user.as_ref()).map_or(0, |u| u.uid),
        no_new_privileges: process.and_then(|p| p.no_new_privileges) == Some(true),
        apparmor_profile: text(process.and_then(|p| p.apparmor_profile.as_ref())),
        selinux_label: text(process.and_then(|p| p.selinux_label.as_ref())),
        seccomp,
        sysctls: linux
            .and_then(|l| l.sysctl.as_ref())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        masked_paths: linux
            .and_then(|l| l.masked_paths.clone())
            .unwrap_or_default(),
        readonly_paths: linux
            .and_then(|l| l.readonly_paths.clone())
            .unwrap_or_default(),
        beyond_restricted,
    }
}
