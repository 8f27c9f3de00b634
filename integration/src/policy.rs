//! Node policies for tests, benchmarks and the demo, as TOML text built from named parts, so no
//! suite writes a backend or tenant table of its own. `{dir}`, `{root}` and `{state}` stay in the
//! text for the harness to fill when it writes the policy file
//! ([`crate::ContainerdOptions::with_policy`], [`crate::Containerd::set_policy`]).

use std::fmt;

/// The runc binary every backend of the tests drives (Debian's path).
pub const RUNC: &str = "/usr/sbin/runc";
/// Debian's runsc.
pub const RUNSC: &str = "/usr/bin/runsc";
/// The flags Debian 12's runsc needs on this host (docs/gvisor.md).
pub const RUNSC_ARGS: [&str; 2] = ["--platform=ptrace", "--network=host"];
/// The Kata config a VM-tier backend names in its environment.
pub const KATA_CONF: &str = "/etc/kata-containers/configuration-qemu.toml";

/// Every rule an untrusted tenant of the tests denies.
pub const UNTRUSTED_DENY: [&str; 8] = [
    "host-network",
    "host-pid",
    "host-ipc",
    "privileged",
    "host-path",
    "runtime-annotations",
    "capabilities",
    "host-devices",
];

/// A policy being written: the header, then tables in the order they are added.
#[derive(Debug, Clone)]
pub struct PolicyText(String);

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl PolicyText {
    /// `version = 1`, the audit log in the harness's dir and `default_tenant`.
    pub fn new(default_tenant: &str) -> PolicyText {
        PolicyText(format!(
            "version = 1\naudit_log = \"{{dir}}/audit/decisions.jsonl\"\ndefault_tenant = \"{default_tenant}\"\n"
        ))
    }

    /// The per-pod `allowed_host_paths` of a harness: the pod's own dir below `kubelet_pods`
    /// (the harness's `{dir}/kubelet/pods`, or the node's `/var/lib/kubelet/pods`) and its
    /// sandbox's dirs below the harness containerd's root and state.
    pub fn pod_paths(self, kubelet_pods: &str) -> PolicyText {
        self.allowed_host_paths(&[
            &format!("{kubelet_pods}/{{pod_uid}}/"),
            "{root}/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
            "{state}/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
        ])
    }

    /// Tables to add after an existing policy's text (e.g. a suite's base policy).
    pub fn after(text: impl Into<String>) -> PolicyText {
        PolicyText(text.into())
    }

    /// A policy with only `version` and `default_tenant` (no audit log, default host paths).
    pub fn bare(default_tenant: &str) -> PolicyText {
        PolicyText(format!(
            "version = 1\ndefault_tenant = \"{default_tenant}\"\n"
        ))
    }

    /// Sets `audit_log_max_bytes` and `audit_log_keep` (top-level keys: call before any table).
    pub fn audit_cap(mut self, max_bytes: u64, keep: u32) -> PolicyText {
        self.0.push_str(&format!(
            "audit_log_max_bytes = {max_bytes}\naudit_log_keep = {keep}\n"
        ));
        self
    }

    /// Sets `allowed_host_paths` (a top-level key: call before any table).
    pub fn allowed_host_paths(mut self, entries: &[&str]) -> PolicyText {
        self.0
            .push_str(&format!("allowed_host_paths = {}\n", list(entries)));
        self
    }

    /// `[backends.NAME]` served by the router, driving `runtime`.
    pub fn builtin(
        mut self,
        name: &str,
        runtime: &str,
        args: &[&str],
        isolation: &str,
    ) -> PolicyText {
        self.0.push_str(&format!(
            "\n[backends.{name}]\nkind = \"builtin\"\nruntime = \"{runtime}\"\n"
        ));
        if !args.is_empty() {
            self.0.push_str(&format!("runtime_args = {}\n", list(args)));
        }
        self.0.push_str(&format!("isolation = \"{isolation}\"\n"));
        self
    }

    /// `[backends.runc]`: the built-in backend driving runc.
    pub fn runc(self) -> PolicyText {
        self.builtin("runc", RUNC, &[], "container")
    }

    /// `[backends.gvisor]`: the built-in backend driving runsc with this host's flags.
    pub fn gvisor(self) -> PolicyText {
        self.builtin("gvisor", RUNSC, &RUNSC_ARGS, "sandbox")
    }

    /// `[backends.NAME]` handed off to another shim `binary`, with `env`.
    pub fn shim(
        mut self,
        name: &str,
        binary: &str,
        env: &[(&str, &str)],
        isolation: &str,
    ) -> PolicyText {
        self.0.push_str(&format!(
            "\n[backends.{name}]\nkind = \"shim\"\nbinary = \"{binary}\"\n"
        ));
        if !env.is_empty() {
            let pairs: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
            self.0
                .push_str(&format!("env = {{ {} }}\n", pairs.join(", ")));
        }
        self.0.push_str(&format!("isolation = \"{isolation}\"\n"));
        self
    }

    /// `[tenants.NAME]` with its Kubernetes namespaces (none: only the default) and backend.
    pub fn tenant(mut self, name: &str, namespaces: &[&str], backend: &str) -> PolicyText {
        self.0.push_str(&format!("\n[tenants.{name}]\n"));
        if !namespaces.is_empty() {
            self.0
                .push_str(&format!("namespaces = {}\n", list(namespaces)));
        }
        self.0.push_str(&format!("backend = \"{backend}\"\n"));
        self
    }

    /// A list key of the last table, e.g. `deny`, `containerd_namespaces`, `allow_annotations`.
    pub fn list(mut self, key: &str, items: &[&str]) -> PolicyText {
        self.0.push_str(&format!("{key} = {}\n", list(items)));
        self
    }

    /// A string key of the last table, e.g. `pod_security`.
    pub fn key(mut self, key: &str, value: &str) -> PolicyText {
        self.0.push_str(&format!("{key} = {value:?}\n"));
        self
    }

    /// `[handlers.NAME]`: a runtime handler reserving `reserves`, served by `backend` when given.
    pub fn handler(mut self, name: &str, reserves: &str, backend: Option<&str>) -> PolicyText {
        self.0
            .push_str(&format!("\n[handlers.{name}]\nreserves = \"{reserves}\"\n"));
        if let Some(b) = backend {
            self.0.push_str(&format!("backend = \"{b}\"\n"));
        }
        self
    }

    /// `deny` with every rule of [`UNTRUSTED_DENY`].
    pub fn untrusted_deny(self) -> PolicyText {
        self.list("deny", &UNTRUSTED_DENY)
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<PolicyText> for String {
    fn from(p: PolicyText) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_in_order_with_lists_and_env() {
        let p = PolicyText::bare("u")
            .runc()
            .gvisor()
            .shim(
                "kata",
                "containerd-shim-kata-v2",
                &[("KATA_CONF_FILE", KATA_CONF)],
                "vm",
            )
            .tenant("provider", &["kube-system"], "runc")
            .list("containerd_namespaces", &["infra"])
            .tenant("u", &[], "kata")
            .key("pod_security", "baseline")
            .untrusted_deny();
        let t = p.text();
        assert!(
            t.starts_with("version = 1\ndefault_tenant = \"u\"\n"),
            "{t}"
        );
        assert!(
            t.contains("runtime_args = [\"--platform=ptrace\", \"--network=host\"]"),
            "{t}"
        );
        assert!(
            t.contains(
                "env = { KATA_CONF_FILE = \"/etc/kata-containers/configuration-qemu.toml\" }"
            ),
            "{t}"
        );
        assert!(t.contains("[tenants.u]\nbackend = \"kata\"\npod_security = \"baseline\"\ndeny = [\"host-network\""), "{t}");
        let parsed: toml::Table = t.parse().unwrap_or_else(|e| panic!("{e}\n{t}"));
        assert_eq!(
            parsed["tenants"]["provider"]["containerd_namespaces"][0].as_str(),
            Some("infra")
        );
        let full = PolicyText::new("u")
            .pod_paths("{dir}/kubelet/pods")
            .text()
            .to_string();
        assert!(full.contains("{dir}/audit/decisions.jsonl"), "{full}");
        assert!(
            full.contains("[\"{dir}/kubelet/pods/{pod_uid}/\", \"{root}/io.containerd"),
            "{full}"
        );
    }
}
