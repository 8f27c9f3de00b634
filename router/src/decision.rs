//! The pure routing decision for sandboxes and containers, and its two outcomes.

use std::fmt;

use router_config::{Backend, Isolation, Policy, Tenant};
use serde::{Deserialize, Serialize};

use crate::annotations as ann;
use crate::inputs::{Inputs, Role};
use crate::rules;
use crate::tenant::match_tenant;

/// Where a task goes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub tenant: String,
    pub backend: String,
    pub isolation: Isolation,
    /// The policy rule that chose the tenant, e.g. `tenants.provider.namespaces[sdewan-*]`,
    /// `default_tenant`, or `sandbox[<id>]` for a container.
    pub rule: String,
    pub reasons: Vec<String>,
    /// Override annotations that were present and not applied, each with why.
    pub refused_overrides: Vec<String>,
}

/// Why a task is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub tenant: Option<String>,
    /// `deny:<rule>`, `override`, `privileged-vm`, `policy`.
    pub rule: String,
    /// The offending spec field, e.g. `linux.namespaces[network]`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "runtime-router refused: {} [rule {}",
            self.message, self.rule
        )?;
        if !self.field.is_empty() {
            write!(f, ", field {}", self.field)?;
        }
        if let Some(t) = &self.tenant {
            write!(f, ", tenant {t}")?;
        }
        f.write_str("]")
    }
}

impl std::error::Error for Refusal {}

fn what(inputs: &Inputs) -> String {
    match &inputs.role {
        Role::Sandbox => format!("pod sandbox {}", inputs.id),
        Role::Container { .. } => format!("container {}", inputs.id),
    }
}

/// Sandbox (or a task with no CRI annotations): choose tenant and backend, apply deny rules.
pub fn decide_sandbox(policy: &Policy, inputs: &Inputs) -> Result<Decision, Refusal> {
    let what = what(inputs);
    let Some(m) = match_tenant(policy, inputs) else {
        return Err(policy_refusal(
            None,
            format!(
                "default tenant `{}` is not defined in the policy",
                policy.default_tenant
            ),
        ));
    };
    let tenant = m.tenant;
    let Some(own) = policy.tenant_backend(tenant) else {
        return Err(policy_refusal(
            Some(&tenant.name),
            format!(
                "tenant `{}` names undefined backend `{}`",
                tenant.name, tenant.backend
            ),
        ));
    };
    let mut reasons = vec![m.reason];
    reasons.push(format!(
        "tenant `{}` uses backend `{}` (isolation {})",
        tenant.name, own.name, own.isolation
    ));
    let mut backend = own;
    if let Some(asked) = inputs.annotations.get(ann::BACKEND_OVERRIDE) {
        let field = format!("annotations[{}]", ann::BACKEND_OVERRIDE);
        let Some(b) = policy.backends.get(asked.as_str()) else {
            return Err(Refusal {
                tenant: Some(tenant.name.to_string()),
                rule: "override".to_string(),
                field,
                message: format!(
                    "{what} asks for backend `{asked}` ({}), which the policy does not define",
                    ann::BACKEND_OVERRIDE
                ),
            });
        };
        if b.isolation < own.isolation {
            return Err(Refusal {
                tenant: Some(tenant.name.to_string()),
                rule: "override".to_string(),
                field,
                message: format!(
                    "{what} asks for backend `{}` (isolation {}), weaker than tenant `{}`'s backend `{}` (isolation {}): annotations can only raise isolation",
                    b.name, b.isolation, tenant.name, own.name, own.isolation
                ),
            });
        }
        if b.isolation > own.isolation {
            reasons.push(format!(
                "annotation {}={} raises isolation from {} to {}",
                ann::BACKEND_OVERRIDE,
                b.name,
                own.isolation,
                b.isolation
            ));
        } else if b.name != own.name {
            reasons.push(format!(
                "annotation {}={} picks another backend of the same isolation ({})",
                ann::BACKEND_OVERRIDE,
                b.name,
                b.isolation
            ));
        } else {
            reasons.push(format!(
                "annotation {}={} names the tenant's own backend",
                ann::BACKEND_OVERRIDE,
                b.name
            ));
        }
        backend = b;
    }
    let backend = crate::handler::account(policy, inputs, tenant, backend, &what, &mut reasons)?;
    checked(
        policy,
        inputs,
        Chosen {
            tenant,
            backend,
            what: &what,
            rule: m.rule,
        },
        reasons,
        Vec::new(),
    )
}

/// A container of an existing pod: backend = the sandbox's recorded backend (never decided alone);
/// the container's own spec is checked against the tenant's deny rules. If the recorded tenant is
/// no longer in the policy, the default tenant's deny rules apply; if the recorded backend is no
/// longer in the policy, the container is refused.
pub fn decide_container(
    policy: &Policy,
    inputs: &Inputs,
    sandbox_tenant: &str,
    sandbox_backend: &str,
) -> Result<Decision, Refusal> {
    let what = what(inputs);
    let mut reasons = Vec::new();
    let tenant = match policy.tenants.get(sandbox_tenant) {
        Some(t) => {
            reasons.push(format!(
                "container of pod {} follows its sandbox: tenant `{}`, backend `{}`",
                inputs.sandbox_id(),
                t.name,
                sandbox_backend
            ));
            t
        }
        None => {
            let Some(d) = policy.default_tenant() else {
                return Err(policy_refusal(
                    None,
                    format!(
                        "default tenant `{}` is not defined in the policy",
                        policy.default_tenant
                    ),
                ));
            };
            reasons.push(format!(
                "sandbox's tenant `{sandbox_tenant}` is no longer in the policy: checking against default tenant `{}`",
                d.name
            ));
            d
        }
    };
    let Some(backend) = policy.backends.get(sandbox_backend) else {
        return Err(policy_refusal(
            Some(&tenant.name),
            format!(
                "{what}: its pod's backend `{sandbox_backend}` is no longer defined in the policy"
            ),
        ));
    };
    let mut refused_overrides = Vec::new();
    if let Some(asked) = inputs.annotations.get(ann::BACKEND_OVERRIDE) {
        if asked != sandbox_backend {
            refused_overrides.push(format!(
                "{}={asked} ignored: a container always runs on its pod's backend `{sandbox_backend}`",
                ann::BACKEND_OVERRIDE
            ));
        }
    }
    checked(
        policy,
        inputs,
        Chosen {
            tenant,
            backend,
            what: &what,
            rule: format!("sandbox[{}]", inputs.sandbox_id()),
        },
        reasons,
        refused_overrides,
    )
}

/// A tenant and backend chosen for a pod or container, before the checks every one of them passes.
struct Chosen<'a> {
    tenant: &'a Tenant,
    backend: &'a Backend,
    /// "pod sandbox ID" / "container ID", for messages.
    what: &'a str,
    rule: String,
}

/// The checks shared by sandboxes and containers once tenant and backend are known: ignored
/// trust annotations are noted, the tenant's deny rules apply, and nothing privileged reaches a
/// `vm` backend.
fn checked(
    policy: &Policy,
    inputs: &Inputs,
    chosen: Chosen<'_>,
    mut reasons: Vec<String>,
    refused_overrides: Vec<String>,
) -> Result<Decision, Refusal> {
    let Chosen {
        tenant,
        backend,
        what,
        rule,
    } = chosen;
    note_ignored(inputs, &mut reasons);
    reasons.extend(rules::check_deny(policy, tenant, inputs, what)?);
    rules::check_pinnable(tenant, backend, inputs, what)?;
    rules::check_privileged_vm(
        inputs,
        Some(&tenant.name),
        &backend.name,
        backend.isolation,
        what,
    )?;
    Ok(Decision {
        tenant: tenant.name.to_string(),
        backend: backend.name.to_string(),
        isolation: backend.isolation,
        rule,
        reasons,
        refused_overrides,
    })
}

fn policy_refusal(tenant: Option<&str>, message: String) -> Refusal {
    Refusal {
        tenant: tenant.map(str::to_string),
        rule: "policy".to_string(),
        field: String::new(),
        message,
    }
}

/// Notes annotations that look like trust switches elsewhere but mean nothing here.
fn note_ignored(inputs: &Inputs, reasons: &mut Vec<String>) {
    for key in ann::LEGACY_TRUST_KEYS {
        if let Some(v) = inputs.annotations.get(key) {
            reasons.push(format!(
                "annotation {key}={v} ignored: annotations never grant trust or lower isolation"
            ));
        }
    }
    for key in inputs.annotations.keys() {
        if key.starts_with(ann::ROUTER_PREFIX) && key != ann::BACKEND_OVERRIDE {
            reasons.push(format!(
                "annotation {key} ignored: not a runtime-router key"
            ));
        }
    }
}
