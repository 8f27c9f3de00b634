//! `routerctl explain`: the decision for a described pod (or a bundle), with reasons, or the
//! refusal; nothing is run.

use std::collections::BTreeMap;

use router_config::{BackendKind, Policy};
use router_core::{annotations as ann, Decision, Inputs, Refusal, Role};

use crate::args::ExplainArgs;
use crate::host;

/// The inputs a CRI sandbox of `namespace` would have: private namespaces, no mounts, default
/// capabilities.
fn synthetic_inputs(a: &ExplainArgs, cns: &str) -> Inputs {
    let mut annotations = BTreeMap::new();
    if let Some(ns) = &a.namespace {
        annotations.insert(
            ann::CONTAINER_TYPE.to_string(),
            ann::CONTAINER_TYPE_SANDBOX.to_string(),
        );
        annotations.insert(ann::SANDBOX_ID.to_string(), "(explain)".to_string());
        annotations.insert(ann::SANDBOX_NAMESPACE.to_string(), ns.clone());
    }
    Inputs {
        containerd_namespace: cns.to_string(),
        id: "(explain)".to_string(),
        role: Role::Sandbox,
        k8s_namespace: a.namespace.clone(),
        pod_name: None,
        pod_uid: None,
        annotations,
        host_network: false,
        host_pid: false,
        host_ipc: false,
        privileged: false,
        privileged_field: None,
        mounts: Vec::new(),
        extra_capability: None,
        host_device: None,
        security: Default::default(),
        host: Default::default(),
        handler: None,
    }
}

/// Keys containerd's CRI plugin writes after the pass-through pod annotations.
const CRI_KEYS: [&str; 5] = [
    ann::SANDBOX_NAMESPACE,
    ann::SANDBOX_NAME,
    ann::SANDBOX_UID,
    ann::CONTAINER_TYPE,
    ann::SANDBOX_ID,
];

pub fn run(a: &ExplainArgs) -> u8 {
    let policy = match router_config::load(a.config.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            out!("refused: the policy does not load, so every pod is refused (fail closed)");
            return 1;
        }
    };
    out!("policy:    {} ({})", policy.source, policy.digest);
    let cns = a.containerd_namespace.clone().unwrap_or_else(|| {
        if a.namespace.is_some() || a.bundle.is_some() {
            "k8s.io".to_string()
        } else {
            "default".to_string()
        }
    });
    let mut notes = Vec::new();
    let mut inputs = match &a.bundle {
        Some(dir) => {
            let path = dir.join("config.json");
            let bytes = match crate::files::read_bytes(&path, crate::files::MAX_OTHER_BYTES) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    return 1;
                }
            };
            match router_core::inputs_from_config_json(&bytes, &cns, "(bundle)") {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    out!("refused: {e}");
                    return 1;
                }
            }
        }
        None => synthetic_inputs(a, &cns),
    };
    // the one host fact a spec's meaning depends on: an empty AppArmor profile is unconfined
    // where the kernel enforces AppArmor
    inputs.host.apparmor_enabled = host::apparmor_enabled();
    inputs.handler = Some(a.handler.clone());
    if !policy.handlers.is_empty() {
        let (reserves, entry) = policy.handler_reserves(Some(&a.handler));
        match entry {
            Some(h) => out!(
                "handler:   {} (RuntimeClass {}, reserves {reserves})",
                h.name,
                h.runtime_class
            ),
            None => out!(
                "handler:   {} (not in the policy's [handlers]: reserves {reserves})",
                a.handler
            ),
        }
    }
    if let (Some(ns), Some(_)) = (&a.namespace, &a.bundle) {
        // kubelet's namespace, as containerd would write it
        inputs.k8s_namespace = Some(ns.clone());
        inputs
            .annotations
            .insert(ann::SANDBOX_NAMESPACE.to_string(), ns.clone());
    }
    for (k, v) in &a.annotations {
        if CRI_KEYS.contains(&k.as_str()) {
            notes.push(format!(
                "annotation {k}={v} ignored: containerd writes its own CRI annotations over pod annotations"
            ));
        } else {
            inputs.annotations.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &a.labels {
        notes.push(format!(
            "label {k}={v} ignored: labels never reach the runtime and never grant trust"
        ));
    }
    let outcome = match inputs.role.clone() {
        Role::Sandbox => router_core::decide_sandbox(&policy, &inputs),
        Role::Container { sandbox_id } => {
            // the bundle is a container: its pod's tenant and backend are what its sandbox got
            let mut as_pod = inputs.clone();
            as_pod.role = Role::Sandbox;
            as_pod.annotations.remove(ann::BACKEND_OVERRIDE);
            as_pod.annotations.insert(
                ann::CONTAINER_TYPE.to_string(),
                ann::CONTAINER_TYPE_SANDBOX.to_string(),
            );
            as_pod.mounts.clear();
            (
                as_pod.host_network,
                as_pod.host_pid,
                as_pod.host_ipc,
                as_pod.privileged,
            ) = (false, false, false, false);
            notes.push(format!(
                "bundle is a container of pod {sandbox_id}: assuming its sandbox got its tenant's own backend"
            ));
            router_core::decide_sandbox(&policy, &as_pod).and_then(|d| {
                router_core::decide_container(&policy, &inputs, &d.tenant, &d.backend)
            })
        }
    };
    match outcome {
        Ok(d) => {
            print_decision(&policy, &d, &notes);
            0
        }
        Err(r) => {
            print_refusal(&r, &notes);
            eprintln!("{r}");
            1
        }
    }
}

fn print_decision(p: &Policy, d: &Decision, notes: &[String]) {
    out!("decision:  allowed");
    out!("tenant:    {}", d.tenant);
    let how = match p.backends.get(d.backend.as_str()).map(|b| &b.kind) {
        Some(BackendKind::Builtin { runtime, .. }) => {
            format!("builtin, runtime {}", runtime.display())
        }
        Some(BackendKind::Shim { binary, .. }) => format!("shim, binary {binary}"),
        None => "?".to_string(),
    };
    out!("backend:   {} ({how})", d.backend);
    out!("isolation: {}", d.isolation);
    out!("rule:      {}", d.rule);
    out!("reasons:");
    for r in &d.reasons {
        out!("  - {r}");
    }
    for r in &d.refused_overrides {
        out!("  - refused override: {r}");
    }
    for n in notes {
        out!("  - {n}");
    }
    if let Some(b) = p.backends.get(d.backend.as_str()) {
        let prog = match &b.kind {
            BackendKind::Builtin { runtime, .. } => runtime.display().to_string(),
            BackendKind::Shim { binary, .. } => binary.clone(),
        };
        if host::find_program(&prog).is_none() {
            out!(
                "warning: `{prog}` is not installed here: on this host `start` would refuse the pod (backend `{}` missing)",
                b.name
            );
        }
    }
}

fn print_refusal(r: &Refusal, notes: &[String]) {
    out!("decision:  refused");
    out!("tenant:    {}", r.tenant.as_deref().unwrap_or("-"));
    out!("rule:      {}", r.rule);
    out!(
        "field:     {}",
        if r.field.is_empty() { "-" } else { &r.field }
    );
    out!("reason:    {}", r.message);
    for n in notes {
        out!("  - {n}");
    }
}
