//! `routerctl admission [--config FILE]`: Kubernetes admission objects generated from the node
//! policy, CEL only (no webhook server):
//! - a MutatingAdmissionPolicy and its binding: sets a Pod's `runtimeClassName` to the class of
//!   the tier its namespace's tenant gets (exact names, globs and the default tenant, chosen as the
//!   node chooses: `router_config::pattern::Specificity`, then the stronger backend, then the
//!   tenant's name), raised by a `runtime-router.io/backend` annotation as the node raises it; a
//!   class that already reserves as much is kept;
//! - a ValidatingAdmissionPolicy and its binding: rejects a Pod whose class reserves less than
//!   that tier, with the node's message.
//!
//! Early feedback and convenience only: the node decides and enforces at every `start`, so a
//! static pod, a deleted policy or an admission outage changes nothing there. Both policies fail
//! open (`failurePolicy: Ignore`) for that reason. Objects are built with `k8s-openapi`'s
//! Kubernetes 1.36 types (`admissionregistration.k8s.io/v1`) and printed as one JSON `List` for
//! `kubectl apply -f -`.

use k8s_openapi::api::admissionregistration::v1 as ar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use router_config::{pattern::Specificity, Isolation, Policy};

/// Names of the generated objects.
pub const MUTATING: &str = "runtime-router-runtime-class";
pub const VALIDATING: &str = "runtime-router-runtime-class";

const TIERS: [Isolation; 3] = [Isolation::Container, Isolation::Sandbox, Isolation::Vm];

/// Why no admission objects can be generated from a policy.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("the policy has no [handlers]: there are no RuntimeClasses to choose from (docs/handlers.md)")]
    NoHandlers,
    #[error("tier {0} has no handler reserving it, and is not in unaccounted_tiers: add one to [handlers]")]
    NoClass(Isolation),
    #[error("cannot encode the objects: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A CEL string literal.
fn lit(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An RE2 pattern matching exactly what the policy glob `pat` matches (`*`: any run, `?`: one
/// character; everything else literal).
fn glob_regex(pat: &str) -> String {
    let mut re = String::from("^");
    for c in pat.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c if "\\.+()[]{}^$|".contains(c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    re.push('$');
    re
}

fn rank(i: Isolation) -> usize {
    TIERS.iter().position(|t| *t == i).unwrap_or(0)
}

/// The CEL the two policies share, as (variable name, expression), in evaluation order.
pub fn variables(policy: &Policy) -> Result<Vec<(String, String)>, AdmissionError> {
    if policy.handlers.is_empty() {
        return Err(AdmissionError::NoHandlers);
    }
    // every (pattern, tenant) the node matches namespaces with, most specific first; on a tie the
    // stronger backend, then the tenant's name (the node's order, router_core::match_tenant)
    let mut pats: Vec<(Specificity, Isolation, &str, &str)> = Vec::new();
    for t in policy.tenants.values() {
        let iso = policy
            .tenant_backend(t)
            .map(|b| b.isolation)
            .unwrap_or(Isolation::Vm);
        for p in &t.namespaces {
            pats.push((Specificity::of(p), iso, t.name.as_str(), p.as_str()));
        }
    }
    pats.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)).then(a.2.cmp(b.2)));
    let mut tenant = lit(&policy.default_tenant);
    for (spec, _, name, pat) in pats.iter().rev() {
        let test = if spec.is_exact() {
            format!("variables.ns == {}", lit(pat))
        } else {
            format!("variables.ns.matches({})", lit(&glob_regex(pat)))
        };
        tenant = format!("{test} ? {} : ({tenant})", lit(name));
    }
    let map = |pairs: Vec<(String, usize)>| {
        let items: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}: {v}", lit(k)))
            .collect();
        format!("{{{}}}", items.join(", "))
    };
    let tenant_ranks = map(policy
        .tenants
        .values()
        .map(|t| {
            let iso = policy
                .tenant_backend(t)
                .map(|b| b.isolation)
                .unwrap_or(Isolation::Vm);
            (t.name.to_string(), rank(iso))
        })
        .collect());
    let backend_ranks = map(policy
        .backends
        .values()
        .map(|b| (b.name.to_string(), rank(b.isolation)))
        .collect());
    let class_ranks = map(policy
        .handlers
        .values()
        .map(|h| (h.runtime_class.to_string(), rank(h.reserves)))
        .collect());
    // the class each tier asks for
    let mut wanted = Vec::new();
    for t in TIERS {
        let h = policy.handler_for(t).or_else(|| {
            policy
                .unaccounted_tiers
                .contains(&t)
                .then(|| policy.handlers.values().max_by_key(|h| h.reserves))
                .flatten()
        });
        match h {
            Some(h) => wanted.push(lit(&h.runtime_class)),
            // a tier no tenant or backend reaches needs no class
            None if !policy.backends.values().any(|b| b.isolation == t) => wanted.push(lit("")),
            None => return Err(AdmissionError::NoClass(t)),
        }
    }
    // a pod without a class runs through containerd's default handler, `router`
    let (default_reserves, default) = policy.handler_reserves(Some(crate::install::HANDLER));
    let default_class = default
        .map(|h| h.runtime_class.to_string())
        .unwrap_or_default();
    let unaccounted: Vec<String> = policy
        .unaccounted_tiers
        .iter()
        .map(|t| lit(t.as_str()))
        .collect();
    let override_key = lit(router_core::annotations::BACKEND_OVERRIDE);
    Ok(vec![
        ("ns".into(), "request.namespace".into()),
        ("tenant".into(), tenant),
        ("tenantRank".into(), format!("{tenant_ranks}[variables.tenant]")),
        (
            "overrideRank".into(),
            format!(
                "has(object.metadata.annotations) && {override_key} in object.metadata.annotations && object.metadata.annotations[{override_key}] in {backend_ranks} ? {backend_ranks}[object.metadata.annotations[{override_key}]] : -1"
            ),
        ),
        (
            "rank".into(),
            "variables.overrideRank > variables.tenantRank ? variables.overrideRank : variables.tenantRank".into(),
        ),
        ("tier".into(), "[\"container\", \"sandbox\", \"vm\"][variables.rank]".into()),
        ("wanted".into(), format!("[{}][variables.rank]", wanted.join(", "))),
        (
            "class".into(),
            format!(
                "has(object.spec.runtimeClassName) ? object.spec.runtimeClassName : {}",
                lit(&default_class)
            ),
        ),
        (
            "classRank".into(),
            format!(
                "has(object.spec.runtimeClassName) ? (object.spec.runtimeClassName in {class_ranks} ? {class_ranks}[object.spec.runtimeClassName] : -1) : {}",
                rank(default_reserves)
            ),
        ),
        (
            "accounted".into(),
            format!(
                "variables.classRank >= variables.rank || (variables.classRank >= 0 && variables.tier in [{}])",
                unaccounted.join(", ")
            ),
        ),
        (
            "setClass".into(),
            "variables.wanted != \"\" && (!has(object.spec.runtimeClassName) || variables.classRank < variables.rank)".into(),
        ),
    ])
}

/// The mutation: `add` replaces an existing member, so one patch covers both cases.
pub const PATCH: &str = "variables.setClass ? [JSONPatch{op: \"add\", path: \"/spec/runtimeClassName\", value: variables.wanted}] : []";
/// The validation.
pub const VALID: &str = "variables.accounted";
/// The node's refusal, as admission words it.
pub const MESSAGE: &str = "\"runtime-router refused: pod of tenant `\" + variables.tenant + \"` in namespace `\" + variables.ns + \"` runs on the \" + variables.tier + \" tier, but its RuntimeClass `\" + variables.class + \"` \" + (variables.classRank < 0 ? \"is not one of runtime-router's\" : \"reserves only \" + [\"container\", \"sandbox\", \"vm\"][variables.classRank]) + \": use RuntimeClass `\" + variables.wanted + \"`\"";

fn pods_on_create() -> ar::MatchResources {
    ar::MatchResources {
        resource_rules: Some(vec![ar::NamedRuleWithOperations {
            api_groups: Some(vec![String::new()]),
            api_versions: Some(vec!["v1".into()]),
            operations: Some(vec!["CREATE".into()]),
            resources: Some(vec!["pods".into()]),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(
            [(
                "app.kubernetes.io/managed-by".to_string(),
                "routerctl".to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// The four objects, as JSON values (each with its apiVersion and kind).
pub fn objects(policy: &Policy) -> Result<Vec<serde_json::Value>, AdmissionError> {
    let vars: Vec<ar::Variable> = variables(policy)?
        .into_iter()
        .map(|(name, expression)| ar::Variable { name, expression })
        .collect();
    let map = ar::MutatingAdmissionPolicy {
        metadata: meta(MUTATING),
        spec: Some(ar::MutatingAdmissionPolicySpec {
            failure_policy: Some("Ignore".into()),
            match_constraints: Some(pods_on_create()),
            reinvocation_policy: Some("Never".into()),
            variables: Some(vars.clone()),
            mutations: Some(vec![ar::Mutation {
                patch_type: "JSONPatch".into(),
                json_patch: Some(ar::JSONPatch {
                    expression: Some(PATCH.into()),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    let map_binding = ar::MutatingAdmissionPolicyBinding {
        metadata: meta(MUTATING),
        spec: Some(ar::MutatingAdmissionPolicyBindingSpec {
            policy_name: Some(MUTATING.into()),
            ..Default::default()
        }),
    };
    let vap = ar::ValidatingAdmissionPolicy {
        metadata: meta(VALIDATING),
        spec: Some(ar::ValidatingAdmissionPolicySpec {
            failure_policy: Some("Ignore".into()),
            match_constraints: Some(pods_on_create()),
            variables: Some(vars),
            validations: Some(vec![ar::Validation {
                expression: VALID.into(),
                message_expression: Some(MESSAGE.into()),
                reason: Some("Forbidden".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let vap_binding = ar::ValidatingAdmissionPolicyBinding {
        metadata: meta(VALIDATING),
        spec: ar::ValidatingAdmissionPolicyBindingSpec {
            policy_name: VALIDATING.into(),
            validation_actions: vec!["Deny".into()],
            ..Default::default()
        },
    };
    Ok(vec![
        serde_json::to_value(&map)?,
        serde_json::to_value(&map_binding)?,
        serde_json::to_value(&vap)?,
        serde_json::to_value(&vap_binding)?,
    ])
}

/// `routerctl admission`.
pub fn run(config: Option<&std::path::Path>) -> u8 {
    let policy = match router_config::load(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let items = match objects(&policy) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {}: {e}", policy.source);
            return 1;
        }
    };
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    match serde_json::to_string_pretty(&list) {
        Ok(text) => {
            out!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
