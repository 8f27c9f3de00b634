//! `routerctl check`: validate a policy, print its tables and the host's tiers, and report how
//! containerd's config routes pods.

use std::path::Path;

use router_config::{BackendKind, Isolation, Policy};

use crate::args::CheckArgs;
use crate::containerd;
use crate::files;
use crate::host;

/// Prints rows with columns padded to the widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        out!("  {}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn list<S: AsRef<str>>(v: &[S]) -> String {
    if v.is_empty() {
        "-".to_string()
    } else {
        v.iter().map(AsRef::as_ref).collect::<Vec<&str>>().join(",")
    }
}

pub fn run(a: &CheckArgs) -> u8 {
    let path = router_config::policy_path(a.policy.as_deref());
    let policy = match files::read_text(&path, router_config::safefile::MAX_POLICY_BYTES) {
        Ok(Some(text)) => match router_config::parse(&text, &path) {
            Ok(p) => p,
            Err(e) => {
                let d = e.diagnostics();
                if d.is_empty() {
                    eprintln!("error: {e}");
                } else {
                    for x in d {
                        eprintln!("error: {x}");
                    }
                }
                eprintln!(
                    "policy {} is invalid: the router refuses every pod until it is fixed",
                    path.display()
                );
                return 1;
            }
        },
        Ok(None) if a.policy.is_none() => {
            out!(
                "no policy at {}: the embedded default applies",
                path.display()
            );
            router_config::embedded_default()
        }
        Ok(None) => {
            eprintln!(
                "error: {}: cannot read policy: No such file or directory",
                path.display()
            );
            return 1;
        }
        Err(e) => {
            eprintln!("error: {}: cannot read policy: {e}", path.display());
            return 1;
        }
    };
    let mut failed = false;
    out!("policy {} is valid ({})", policy.source, policy.digest);
    print_policy(&policy);
    let tiers = host::tiers();
    out!("\nhost tiers:");
    for (tier, ok, why) in &tiers {
        out!("  {tier:<9} {}  {why}", if *ok { "yes" } else { "no " });
    }
    for w in backend_warnings(&policy, &tiers) {
        out!("warning: {w}");
    }
    // what no allowed_host_paths entry may open (the router refuses such bind sources at
    // `start` whatever the entry says): an entry reaching it is a policy mistake
    for e in host_path_errors(&policy) {
        eprintln!("error: {e}");
        failed = true;
    }
    if let Some(cc) = &a.containerd_config {
        failed |= check_containerd(cc, &policy);
    }
    u8::from(failed)
}

fn print_policy(p: &Policy) {
    out!("\nbackends:");
    let rows: Vec<Vec<String>> = p
        .backends
        .values()
        .map(|b| {
            let (target, extra) = match &b.kind {
                BackendKind::Builtin {
                    runtime,
                    runtime_args,
                } => (runtime.display().to_string(), list(runtime_args)),
                BackendKind::Shim { binary, env } => (
                    binary.clone(),
                    list(
                        &env.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>(),
                    ),
                ),
            };
            vec![
                b.name.to_string(),
                b.kind.as_str().to_string(),
                b.isolation.to_string(),
                target,
                extra,
            ]
        })
        .collect();
    print_table(
        &["NAME", "KIND", "ISOLATION", "RUNTIME/BINARY", "ARGS/ENV"],
        &rows,
    );
    out!("\ntenants:");
    let rows: Vec<Vec<String>> = p
        .tenants
        .values()
        .map(|t| {
            let name = if t.name == p.default_tenant {
                format!("{} (default)", t.name)
            } else {
                t.name.to_string()
            };
            let iso = p
                .backends
                .get(&t.backend)
                .map(|b| b.isolation.to_string())
                .unwrap_or_default();
            vec![
                name,
                t.backend.to_string(),
                iso,
                list(&t.namespaces),
                list(&t.containerd_namespaces),
                t.pod_security.map_or("-".to_string(), |l| l.to_string()),
                list(&t.deny.iter().map(|d| d.to_string()).collect::<Vec<_>>()),
                list(&t.allow_annotations),
            ]
        })
        .collect();
    print_table(
        &[
            "TENANT",
            "BACKEND",
            "ISOLATION",
            "NAMESPACES",
            "CONTAINERD_NS",
            "POD_SECURITY",
            "DENY",
            "ALLOW_ANNOTATIONS",
        ],
        &rows,
    );
    if p.handlers.is_empty() {
        out!("\nhandlers: (none: no handler accounting; docs/handlers.md)");
    } else {
        out!("\nhandlers:");
        let rows: Vec<Vec<String>> = p
            .handlers
            .values()
            .map(|h| {
                vec![
                    h.name.to_string(),
                    h.reserves.to_string(),
                    h.backend.as_deref().unwrap_or("-").to_string(),
                    h.runtime_class.to_string(),
                ]
            })
            .collect();
        print_table(
            &["HANDLER", "RESERVES", "RAISES_TO", "RUNTIME_CLASS"],
            &rows,
        );
        let tiers: Vec<String> = p.unaccounted_tiers.iter().map(|t| t.to_string()).collect();
        out!(
            "unnamed_handler_reserves: {}; unaccounted_tiers: {}",
            p.unnamed_handler_reserves,
            list(&tiers)
        );
    }
    out!("\nallowed_host_paths: {}", list(&p.allowed_host_paths));
    match &p.audit_log {
        Some(a) => out!(
            "audit_log: {} (rotated at {} bytes, {} kept)",
            a.display(),
            p.audit_log_max_bytes,
            p.audit_log_keep
        ),
        None => out!("audit_log: (none)"),
    }
}

/// `allowed_host_paths` entries that let a pod reach what every pod shares (containerd's state
/// and socket, the router's state, other pods' kubelet dirs), named with the entry's line.
fn host_path_errors(p: &Policy) -> Vec<String> {
    let text = match &p.source {
        router_config::PolicySource::File(f) => {
            files::read_text(f, router_config::safefile::MAX_POLICY_BYTES)
                .ok()
                .flatten()
                .unwrap_or_default()
        }
        router_config::PolicySource::Embedded => router_config::EMBEDDED_POLICY.to_string(),
    };
    router_core::hostpath::unsafe_entries(&p.allowed_host_paths, &[])
        .into_iter()
        .map(|(i, why)| {
            let entry = p
                .allowed_host_paths
                .get(i)
                .map(|e| e.as_str())
                .unwrap_or("");
            let line = text
                .lines()
                .position(|l| l.contains(&format!("\"{entry}\"")))
                .map(|n| format!("{}:{}: ", p.source, n + 1))
                .unwrap_or_default();
            format!("{line}allowed_host_paths[{i}]: {why}")
        })
        .collect()
}

fn backend_warnings(p: &Policy, tiers: &[(String, bool, String)]) -> Vec<String> {
    let offered = |iso: Isolation| tiers.iter().any(|(t, ok, _)| *ok && t == iso.as_str());
    let mut out = Vec::new();
    for b in p.backends.values() {
        let prog = match &b.kind {
            BackendKind::Builtin { runtime, .. } => runtime.display().to_string(),
            BackendKind::Shim { binary, .. } => binary.clone(),
        };
        if host::find_program(&prog).is_none() {
            out.push(format!(
                "backend `{}`: `{prog}` not found (absolute path or PATH): pods routed there are refused",
                b.name
            ));
        }
        if !offered(b.isolation) {
            out.push(format!(
                "backend `{}` needs the {} tier, which this host does not offer",
                b.name, b.isolation
            ));
        }
    }
    out
}

fn check_containerd(path: &Path, policy: &Policy) -> bool {
    let text = match files::read_text(path, files::MAX_OTHER_BYTES)
        .and_then(|t| t.ok_or_else(|| "No such file or directory".to_string()))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "error: {}: cannot read containerd config: {e}",
                path.display()
            );
            return true;
        }
    };
    let r = match containerd::analyse(&text, policy) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return true;
        }
    };
    out!(
        "\ncontainerd config {} (plugin {}):",
        path.display(),
        r.plugin
    );
    let rows: Vec<Vec<String>> = r
        .handlers
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.runtime_type.clone(),
                if h.is_router { "router" } else { "BYPASS" }.to_string(),
                list(&h.pod_annotations),
            ]
        })
        .collect();
    print_table(
        &["HANDLER", "RUNTIME_TYPE", "ROLE", "POD_ANNOTATIONS"],
        &rows,
    );
    for w in &r.warnings {
        out!("warning: {w}");
    }
    for e in &r.errors {
        eprintln!("error: {e}");
    }
    if r.errors.is_empty() {
        out!("every pod goes through the router");
    }
    !r.errors.is_empty()
}
