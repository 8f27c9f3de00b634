//! Tenant matching: which tenant a task belongs to, from what the pod's author cannot forge.
//!
//! A task with CRI annotations is matched by its Kubernetes namespace against `namespaces`; a task
//! without them (ctr, nerdctl) by its containerd namespace against `containerd_namespaces`. The most
//! specific pattern wins (see `router_config::pattern`); if two tenants' patterns are equally
//! specific, the tenant whose backend isolates more wins, then the tenant name sorting first.
//! No match → `default_tenant` (fail closed).

use router_config::pattern::{self, Specificity};
use router_config::{Isolation, Policy, Tenant};

use crate::inputs::Inputs;

/// The matched tenant and the policy rule that matched it.
pub struct TenantMatch<'p> {
    pub tenant: &'p Tenant,
    /// e.g. `tenants.provider.namespaces[sdewan-*]`, or `default_tenant`.
    pub rule: String,
    /// One sentence saying why.
    pub reason: String,
}

/// Finds the tenant for `inputs`. `None` only for an invalid policy whose default tenant is missing.
pub fn match_tenant<'p>(policy: &'p Policy, inputs: &Inputs) -> Option<TenantMatch<'p>> {
    let (key, field, what) = if inputs.is_cri() {
        (
            inputs.k8s_namespace.as_deref(),
            "namespaces",
            "Kubernetes namespace",
        )
    } else {
        (
            Some(inputs.containerd_namespace.as_str()),
            "containerd_namespaces",
            "containerd namespace (no CRI annotations)",
        )
    };
    if let Some(name) = key {
        let mut best: Option<(Specificity, Isolation, &Tenant, &str)> = None;
        for tenant in policy.tenants.values() {
            let list = if field == "namespaces" {
                &tenant.namespaces
            } else {
                &tenant.containerd_namespaces
            };
            let iso = policy
                .tenant_backend(tenant)
                .map(|b| b.isolation)
                .unwrap_or(Isolation::Vm);
            for pat in list {
                if !pattern::matches(pat, name) {
                    continue;
                }
                let spec = Specificity::of(pat);
                let better = match &best {
                    None => true,
                    // BTreeMap iterates tenants by name, so on a full tie the first name stays.
                    Some((bs, bi, _, _)) => (spec, iso) > (*bs, *bi),
                };
                if better {
                    best = Some((spec, iso, tenant, pat));
                }
            }
        }
        if let Some((spec, _, tenant, pat)) = best {
            let how = if spec.is_exact() {
                "is listed in"
            } else {
                "matches"
            };
            return Some(TenantMatch {
                tenant,
                rule: format!("tenants.{}.{field}[{pat}]", tenant.name),
                reason: format!(
                    "{what} `{name}` {how} tenant `{}` ({field} pattern `{pat}`)",
                    tenant.name
                ),
            });
        }
    }
    let tenant = policy.default_tenant()?;
    let reason = match key {
        Some(name) => format!(
            "{what} `{name}` matches no tenant: default tenant `{}`",
            tenant.name
        ),
        None => format!(
            "CRI task without {} annotation: default tenant `{}`",
            crate::annotations::SANDBOX_NAMESPACE,
            tenant.name
        ),
    };
    Some(TenantMatch {
        tenant,
        rule: "default_tenant".to_string(),
        reason,
    })
}
