//! The runtime handler's part in the decision (issue 22): the handler a pod was started through
//! is what its RuntimeClass reserved in Kubernetes (overhead, nodes). It is a request, never a
//! grant: it can raise a pod's tier, as the override annotation does, and never lower it; and a
//! pod whose final tier is above what its handler reserved is refused, naming the RuntimeClass to
//! use, unless the policy accepts that tier unaccounted (`unaccounted_tiers`).
//!
//! A policy without a `[handlers]` table does no handler accounting.

use router_config::{Backend, Policy, Tenant};

use crate::decision::Refusal;
use crate::inputs::Inputs;

/// The handler's name as messages print it.
fn shown(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("`{n}`"),
        None => "(none: the router was started under another name)".to_string(),
    }
}

/// Raises `backend` to the tier the pod's handler reserves, then refuses a final tier above
/// that reservation. Returns the backend the pod runs on.
pub fn account<'p>(
    policy: &'p Policy,
    inputs: &Inputs,
    tenant: &Tenant,
    backend: &'p Backend,
    what: &str,
    reasons: &mut Vec<String>,
) -> Result<&'p Backend, Refusal> {
    if policy.handlers.is_empty() {
        return Ok(backend);
    }
    let name = inputs.handler.as_deref();
    let (reserves, entry) = policy.handler_reserves(name);
    let mut backend = backend;
    if reserves > backend.isolation {
        // a named handler above `container` has a backend (validation); an unnamed one raises as
        // the policy's handler for that tier does
        let raised = entry
            .or_else(|| policy.handler_for(reserves))
            .and_then(|h| h.backend.as_ref())
            .and_then(|b| policy.backends.get(b.as_str()));
        let Some(raised) = raised else {
            return Err(Refusal {
                tenant: Some(tenant.name.to_string()),
                rule: "handler".to_string(),
                field: "runtime handler".to_string(),
                message: format!(
                    "{what}: runtime handler {} reserves {reserves} but the policy names no backend for it",
                    shown(name)
                ),
            });
        };
        reasons.push(format!(
            "runtime handler {} (RuntimeClass `{}`) raises isolation from {} to {} (backend `{}`)",
            shown(name),
            entry.map(|h| h.runtime_class.as_str()).unwrap_or("-"),
            backend.isolation,
            raised.isolation,
            raised.name
        ));
        backend = raised;
    }
    let tier = backend.isolation;
    if tier > reserves && !policy.unaccounted_tiers.contains(&tier) {
        let class = match policy.handler_for(tier) {
            Some(h) => format!(
                "use RuntimeClass `{}` (handler `{}`)",
                h.runtime_class, h.name
            ),
            None => format!("no handler of the policy reserves {tier}"),
        };
        return Err(Refusal {
            tenant: Some(tenant.name.to_string()),
            rule: "handler".to_string(),
            field: "runtime handler".to_string(),
            message: format!(
                "{what} of tenant `{}` runs on the {tier} tier (backend `{}`), but its runtime handler {} reserves only {reserves}: {class}",
                tenant.name,
                backend.name,
                shown(name)
            ),
        });
    }
    if tier > reserves {
        reasons.push(format!(
            "tier {tier} is above what runtime handler {} reserves ({reserves}): accepted unaccounted (unaccounted_tiers)",
            shown(name)
        ));
    } else {
        reasons.push(format!(
            "runtime handler {} reserves {reserves}: covers tier {tier}",
            shown(name)
        ));
    }
    Ok(backend)
}

/// A container runs under the handler its sandbox was started through: another handler is
/// refused (its RuntimeClass did not reserve this pod). A sandbox record from before the router
/// recorded handlers counts as the SPEC's one handler, `router`.
pub fn check_container(
    policy: &Policy,
    inputs: &Inputs,
    tenant: &str,
    sandbox_handler: Option<&str>,
) -> Result<(), Refusal> {
    if policy.handlers.is_empty() {
        return Ok(());
    }
    let sandbox = sandbox_handler.unwrap_or("router");
    let own = inputs.handler.as_deref();
    if own == Some(sandbox) {
        return Ok(());
    }
    Err(Refusal {
        tenant: Some(tenant.to_string()),
        rule: "handler".to_string(),
        field: "runtime handler".to_string(),
        message: format!(
            "container {} is started through runtime handler {}, its pod {} through `{sandbox}`: a container runs under its pod's handler",
            inputs.id,
            shown(own),
            inputs.sandbox_id()
        ),
    })
}
