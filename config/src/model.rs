//! The validated policy model: backends, tenants, deny rules and isolation levels.
//! Everything here is plain data; parsing and validation live in `validate.rs`. Names, patterns
//! and annotation keys are `CompactString`s (inline up to 24 bytes), so the `start` path builds a
//! 50-tenant policy from its cached form with a few hundred fewer allocations.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Isolation tiers, ordered from weakest to strongest: `Container < Sandbox < Vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Namespaces and cgroups on the host kernel (runc).
    Container,
    /// A user-space kernel or similar sandbox (gVisor).
    Sandbox,
    /// A hardware-virtualised guest (Kata).
    Vm,
}

impl Isolation {
    /// The spelling used in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Container => "container",
            Isolation::Sandbox => "sandbox",
            Isolation::Vm => "vm",
        }
    }

    /// Parses the policy spelling.
    pub fn from_name(name: &str) -> Option<Isolation> {
        match name {
            "container" => Some(Isolation::Container),
            "sandbox" => Some(Isolation::Sandbox),
            "vm" => Some(Isolation::Vm),
            _ => None,
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a backend serves a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendKind {
    /// Served by the router binary itself, driving an OCI runtime CLI.
    Builtin {
        /// The OCI runtime CLI (absolute path or a name on PATH).
        runtime: PathBuf,
        /// Extra global arguments given to the runtime before the command.
        runtime_args: Vec<String>,
    },
    /// Handed off to another shim v2 binary.
    Shim {
        /// A name on PATH or an absolute path.
        binary: String,
        /// Extra environment for the delegate.
        env: BTreeMap<String, String>,
    },
}

impl BackendKind {
    /// `"builtin"` or `"shim"`, as spelled in the policy.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendKind::Builtin { .. } => "builtin",
            BackendKind::Shim { .. } => "shim",
        }
    }
}

/// One entry of `[backends.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub name: CompactString,
    pub kind: BackendKind,
    pub isolation: Isolation,
}

/// One entry of `[handlers.NAME]`: a containerd runtime handler served by the router
/// (`runtime_type = "io.containerd.NAME.v2"`, binary `containerd-shim-NAME-v2`) and what a pod
/// started through it has reserved in Kubernetes (its RuntimeClass's overhead and nodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handler {
    pub name: CompactString,
    /// The tier the handler's RuntimeClass accounts for.
    pub reserves: Isolation,
    /// The backend a pod raised to `reserves` by this handler runs on; `None` only for the
    /// `container` tier, which never raises.
    pub backend: Option<CompactString>,
    /// The RuntimeClass whose `handler` this is (default: the handler's name).
    pub runtime_class: CompactString,
}

/// A rule a tenant can list in `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenyRule {
    HostNetwork,
    HostPid,
    HostIpc,
    Privileged,
    HostPath,
    RuntimeAnnotations,
    /// A capability beyond the Pod Security Standards' baseline set, in any capability set.
    Capabilities,
    /// A device node, or a device cgroup allow rule, beyond the default set every container gets.
    HostDevices,
    /// `process.apparmorProfile` is `unconfined` (or empty on a host that enforces AppArmor).
    Apparmor,
    /// `process.selinuxLabel` with a type outside the Standards' set, or a custom user or role.
    Selinux,
    /// `linux.maskedPaths`/`linux.readonlyPaths` lack a default entry (procMount not Default).
    ProcMount,
    /// No seccomp filter, or one that refuses nothing.
    Seccomp,
    /// A `linux.sysctl` key outside the Standards' safe set.
    Sysctls,
    /// A capability other than `CAP_NET_BIND_SERVICE` in any set (restricted: drop ALL).
    RestrictedCapabilities,
    /// `process.noNewPrivileges` not set (restricted: allowPrivilegeEscalation false).
    PrivilegeEscalation,
    /// `process.user.uid` 0 (restricted: runAsNonRoot).
    RunAsRoot,
}

impl DenyRule {
    /// Every rule, in the order they are documented.
    /// The first eight keep their codes in the policy cache's encoding; new rules go at the end.
    pub const ALL: [DenyRule; 16] = [
        DenyRule::HostNetwork,
        DenyRule::HostPid,
        DenyRule::HostIpc,
        DenyRule::Privileged,
        DenyRule::HostPath,
        DenyRule::RuntimeAnnotations,
        DenyRule::Capabilities,
        DenyRule::HostDevices,
        DenyRule::Apparmor,
        DenyRule::Selinux,
        DenyRule::ProcMount,
        DenyRule::Seccomp,
        DenyRule::Sysctls,
        DenyRule::RestrictedCapabilities,
        DenyRule::PrivilegeEscalation,
        DenyRule::RunAsRoot,
    ];

    /// The spelling used in the policy file, e.g. `"host-network"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyRule::HostNetwork => "host-network",
            DenyRule::HostPid => "host-pid",
            DenyRule::HostIpc => "host-ipc",
            DenyRule::Privileged => "privileged",
            DenyRule::HostPath => "host-path",
            DenyRule::RuntimeAnnotations => "runtime-annotations",
            DenyRule::Capabilities => "capabilities",
            DenyRule::HostDevices => "host-devices",
            DenyRule::Apparmor => "apparmor",
            DenyRule::Selinux => "selinux",
            DenyRule::ProcMount => "proc-mount",
            DenyRule::Seccomp => "seccomp",
            DenyRule::Sysctls => "sysctls",
            DenyRule::RestrictedCapabilities => "restricted-capabilities",
            DenyRule::PrivilegeEscalation => "privilege-escalation",
            DenyRule::RunAsRoot => "run-as-root",
        }
    }

    /// Parses the policy spelling.
    pub fn from_name(name: &str) -> Option<DenyRule> {
        DenyRule::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A Pod Security Standards level a tenant takes as a whole (`pod_security = "baseline"`): the
/// rules of its controls the node can see in the OCI spec (docs/pod-security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurity {
    Baseline,
    Restricted,
}

impl PodSecurity {
    /// Baseline's controls, in the Standards' order.
    pub const BASELINE: [DenyRule; 12] = [
        DenyRule::HostNetwork,
        DenyRule::HostPid,
        DenyRule::HostIpc,
        DenyRule::Privileged,
        DenyRule::Capabilities,
        DenyRule::HostPath,
        DenyRule::HostDevices,
        DenyRule::Apparmor,
        DenyRule::Selinux,
        DenyRule::ProcMount,
        DenyRule::Seccomp,
        DenyRule::Sysctls,
    ];
    /// What restricted adds to baseline.
    pub const RESTRICTED_EXTRA: [DenyRule; 3] = [
        DenyRule::PrivilegeEscalation,
        DenyRule::RunAsRoot,
        DenyRule::RestrictedCapabilities,
    ];

    /// The spelling used in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurity::Baseline => "baseline",
            PodSecurity::Restricted => "restricted",
        }
    }

    /// Parses the policy spelling.
    pub fn from_name(name: &str) -> Option<PodSecurity> {
        match name {
            "baseline" => Some(PodSecurity::Baseline),
            "restricted" => Some(PodSecurity::Restricted),
            _ => None,
        }
    }

    /// Every rule the level enforces.
    pub fn rules(self) -> impl Iterator<Item = DenyRule> {
        let extra: &[DenyRule] = match self {
            PodSecurity::Baseline => &[],
            PodSecurity::Restricted => &Self::RESTRICTED_EXTRA,
        };
        Self::BASELINE.into_iter().chain(extra.iter().copied())
    }

    /// Whether the level enforces `rule`.
    pub fn enforces(self, rule: DenyRule) -> bool {
        self.rules().any(|r| r == rule)
    }
}

impl fmt::Display for PodSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DenyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `[tenants.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: CompactString,
    /// Kubernetes namespaces: exact names or globs (`*` any run of characters, `?` one character).
    pub namespaces: Vec<CompactString>,
    /// containerd namespaces, for tasks started without CRI; same pattern syntax.
    pub containerd_namespaces: Vec<CompactString>,
    /// Name of a key of `Policy::backends`.
    pub backend: CompactString,
    /// The rules listed in `deny`, in the file's order (see `rules` for all that apply).
    pub deny: Vec<DenyRule>,
    /// A Pod Security Standards level whose rules apply beside `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurity>,
    /// Runtime annotations let through despite `deny = ["runtime-annotations"]`: exact keys or `prefix*`.
    pub allow_annotations: Vec<CompactString>,
}

impl Tenant {
    /// Whether the tenant enforces `rule`: listed in `deny`, or part of its `pod_security` level.
    pub fn denies(&self, rule: DenyRule) -> bool {
        self.deny.contains(&rule) || self.pod_security.is_some_and(|p| p.enforces(rule))
    }

    /// Every rule the tenant enforces: `deny` in its order, then the level's other rules.
    pub fn rules(&self) -> impl Iterator<Item = DenyRule> + '_ {
        let level = self.pod_security.into_iter().flat_map(PodSecurity::rules);
        self.deny
            .iter()
            .copied()
            .chain(level.filter(|r| !self.deny.contains(r)))
    }

    /// The level that enforces `rule` for this tenant, if any (for refusals: "baseline's
    /// seccomp control").
    pub fn level_of(&self, rule: DenyRule) -> Option<PodSecurity> {
        self.pod_security.filter(|p| p.enforces(rule))
    }
}

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicySource {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::File(p) => write!(f, "{}", p.display()),
            PolicySource::Embedded => f.write_str("<embedded default>"),
        }
    }
}

/// `audit_log_max_bytes` when the policy does not say.
pub const DEFAULT_AUDIT_LOG_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// `audit_log_keep` when the policy does not say.
pub const DEFAULT_AUDIT_LOG_KEEP: u32 = 4;
/// The most rotated audit files a policy may keep.
pub const MAX_AUDIT_LOG_KEEP: u32 = 100;

/// A parsed and validated node policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub version: u32,
    pub audit_log: Option<PathBuf>,
    /// Size at which the router rotates the audit log itself (`audit_log_max_bytes`); 0 leaves
    /// rotation to someone else (logrotate).
    pub audit_log_max_bytes: u64,
    /// Rotated audit files kept (`<log>.1` … `<log>.N`, newest first).
    pub audit_log_keep: u32,
    pub default_tenant: CompactString,
    pub allowed_host_paths: Vec<CompactString>,
    pub backends: BTreeMap<CompactString, Backend>,
    pub tenants: BTreeMap<CompactString, Tenant>,
    /// `[handlers]`: empty when the policy has no table (no handler accounting).
    pub handlers: BTreeMap<CompactString, Handler>,
    /// What a handler the table does not name reserves.
    pub unnamed_handler_reserves: Isolation,
    /// Tiers a pod may get above what its handler reserved (overhead Kubernetes does not see).
    pub unaccounted_tiers: Vec<Isolation>,
    pub source: PolicySource,
    /// `"sha256:<hex>"` of the policy text.
    pub digest: String,
}

impl Policy {
    /// The backend a tenant uses. Always `Some` for a validated policy.
    pub fn tenant_backend(&self, tenant: &Tenant) -> Option<&Backend> {
        self.backends.get(&tenant.backend)
    }

    /// What runtime handler `name` reserves (`None`: started under no handler name), and the
    /// entry when the table names it.
    pub fn handler_reserves(&self, name: Option<&str>) -> (Isolation, Option<&Handler>) {
        match name.and_then(|n| self.handlers.get(n)) {
            Some(h) => (h.reserves, Some(h)),
            None => (self.unnamed_handler_reserves, None),
        }
    }

    /// The handler to use for `tier`: the one reserving exactly it, else the weakest reserving
    /// more (first by name on a tie).
    pub fn handler_for(&self, tier: Isolation) -> Option<&Handler> {
        self.handlers
            .values()
            .filter(|h| h.reserves >= tier)
            .min_by_key(|h| h.reserves)
    }

    /// The default tenant. Always `Some` for a validated policy.
    pub fn default_tenant(&self) -> Option<&Tenant> {
        self.tenants.get(&self.default_tenant)
    }
}
