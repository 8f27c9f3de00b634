//! Reading containerd's config (version 2 for containerd 1.6/1.7, version 3 for 2.x) to find runtime
//! handlers that bypass the router and to check the router handler's `pod_annotations`.

use router_config::{DenyRule, Isolation, Policy};

/// The runtime type that resolves to `containerd-shim-router-v2`.
pub const ROUTER_RUNTIME_TYPE: &str = "io.containerd.router.v2";
const ROUTER_BINARY: &str = "containerd-shim-router-v2";

/// Findings about one containerd config.
#[derive(Debug, Default)]
pub struct Report {
    /// The CRI plugin section that was read.
    pub plugin: String,
    pub handlers: Vec<Handler>,
    /// Enforcement is broken: a pod can avoid the router.
    pub errors: Vec<String>,
    /// Something the policy expects will not work, but nothing goes around the router.
    pub warnings: Vec<String>,
}

/// One `runtimes.NAME` entry.
#[derive(Debug, Clone)]
pub struct Handler {
    pub name: String,
    pub runtime_type: String,
    pub is_router: bool,
    pub pod_annotations: Vec<String>,
}

/// Go's `path.Match`, which containerd uses for `pod_annotations`: `*` is any run of characters
/// other than `/`, `?` one such character, `[...]` a class (`^` negates, `a-z` ranges), `\` escapes.
/// A malformed pattern matches nothing (containerd ignores the error).
pub fn go_path_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches_from(&p, &n).unwrap_or(false)
}

fn matches_from(p: &[char], n: &[char]) -> Option<bool> {
    match p.first() {
        None => Some(n.is_empty()),
        Some('*') => {
            let rest = &p[1..];
            let mut i = 0;
            loop {
                if matches_from(rest, &n[i..])? {
                    return Some(true);
                }
                if i >= n.len() || n[i] == '/' {
                    return Some(false);
                }
                i += 1;
            }
        }
        Some('?') => match n.first() {
            Some(c) if *c != '/' => matches_from(&p[1..], &n[1..]),
            _ => Some(false),
        },
        Some('[') => {
            let (ok, used) = class(&p[1..], n.first().copied())?;
            if ok {
                matches_from(&p[1 + used..], &n[1..])
            } else {
                Some(false)
            }
        }
        Some('\\') => {
            let c = *p.get(1)?;
            if n.first() == Some(&c) {
                matches_from(&p[2..], &n[1..])
            } else {
                Some(false)
            }
        }
        Some(c) => {
            if n.first() == Some(c) {
                matches_from(&p[1..], &n[1..])
            } else {
                Some(false)
            }
        }
    }
}

/// Matches a class body (after `[`); returns (matched, pattern chars used incl. `]`).
/// `None` for a malformed class.
fn class(p: &[char], c: Option<char>) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = p.first() == Some(&'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if lo == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            lo
        };
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|x| *x != ']') {
            i += 1;
            let h = *p.get(i)?;
            i += 1;
            h
        } else {
            lo
        };
        if let Some(c) = c {
            if lo <= c && c <= hi {
                hit = true;
            }
        }
    }
    match c {
        Some(c) if c != '/' => Some((hit != negate, i)),
        _ => Some((false, i)),
    }
}

fn table<'a>(v: &'a toml::Value, path: &[&str]) -> Option<&'a toml::Table> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_table()
}

fn str_at<'a>(t: &'a toml::Table, k: &str) -> Option<&'a str> {
    t.get(k).and_then(|v| v.as_str())
}

/// Analyses containerd's config text against `policy`.
pub fn analyse(text: &str, policy: &Policy) -> Result<Report, String> {
    let doc: toml::Value = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
    let version = doc.get("version").and_then(|v| v.as_integer()).unwrap_or(1);
    let plugin = match version {
        2 => "io.containerd.grpc.v1.cri",
        3 => "io.containerd.cri.v1.runtime",
        v => {
            return Err(format!(
                "config version {v}: runtime-router supports containerd config version 2 (containerd 1.6/1.7) or 3 (2.x); add `version = 2`"
            ))
        }
    };
    let mut r = Report {
        plugin: plugin.to_string(),
        ..Report::default()
    };
    let Some(cd) = table(&doc, &["plugins", plugin, "containerd"]) else {
        r.errors.push(format!(
            "no [plugins.\"{plugin}\".containerd] section: containerd's built-in default handler (runc) serves every pod, bypassing the router"
        ));
        return Ok(r);
    };
    if let Some(rt) = cd.get("runtimes").and_then(|v| v.as_table()) {
        for (name, h) in rt {
            let Some(h) = h.as_table() else { continue };
            let runtime_type = str_at(h, "runtime_type").unwrap_or("").to_string();
            let runtime_path = str_at(h, "runtime_path").unwrap_or("");
            // the router itself, or the router under a tier handler's name (the policy's
            // `[handlers]`: `io.containerd.<h>.v2`, or a runtime_path to `containerd-shim-<h>-v2`)
            let file = runtime_path.rsplit('/').next().unwrap_or("");
            let tier = policy.handlers.keys().find(|t| {
                runtime_type == format!("io.containerd.{t}.v2")
                    || file == format!("containerd-shim-{t}-v2")
            });
            let is_router =
                runtime_type == ROUTER_RUNTIME_TYPE || file == ROUTER_BINARY || tier.is_some();
            // the name the router will see (what it accounts the pod under) against the name
            // Kubernetes reserved through (the RuntimeClass's handler)
            let seen = tier.map(|t| t.to_string()).or_else(|| {
                (runtime_type == ROUTER_RUNTIME_TYPE || file == ROUTER_BINARY)
                    .then(|| crate::install::HANDLER.to_string())
            });
            if let Some(seen) = seen.filter(|s| !policy.handlers.is_empty() && s != name) {
                r.errors.push(format!(
                    "handler `{name}` runs the router as `{seen}`: pods a RuntimeClass sends through `{name}` are accounted as `{seen}`; use runtime_type = \"io.containerd.{name}.v2\" (routerctl install does)"
                ));
            } else if is_router
                && !policy.handlers.is_empty()
                && !policy.handlers.contains_key(name.as_str())
            {
                r.warnings.push(format!(
                    "router handler `{name}` is not in the policy's [handlers]: pods through it reserve {} (unnamed_handler_reserves)",
                    policy.unnamed_handler_reserves
                ));
            }
            let pod_annotations = h
                .get("pod_annotations")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if is_router && str_at(h, "sandboxer") == Some("shim") {
                r.errors.push(format!(
                    "handler `{name}` sets sandboxer = \"shim\": containerd then gives the shim no config.json at `start`, so the router refuses every pod of it; remove `sandboxer` (the default, \"podsandbox\", is what the router needs)"
                ));
            }
            if is_router {
                if let Some(cp) = h
                    .get("options")
                    .and_then(|o| o.as_table())
                    .and_then(|o| str_at(o, "ConfigPath"))
                {
                    r.warnings.push(format!(
                        "handler `{name}` sets options.ConfigPath = \"{cp}\": containerd sends it to whichever shim serves the pod and Kata would read it as its own config; pick Kata configs with a backend's env KATA_CONF_FILE instead"
                    ));
                }
            } else {
                r.errors.push(format!(
                    "handler `{name}` (runtime_type `{runtime_type}`) bypasses the router: a RuntimeClass with handler `{name}` goes around the policy; reach that backend through the router instead"
                ));
            }
            r.handlers.push(Handler {
                name: name.clone(),
                runtime_type,
                is_router,
                pod_annotations,
            });
        }
    }
    for legacy in ["default_runtime", "untrusted_workload_runtime"] {
        if let Some(t) = cd.get(legacy).and_then(|v| v.as_table()) {
            let ty = str_at(t, "runtime_type").unwrap_or("");
            if !ty.is_empty() && ty != ROUTER_RUNTIME_TYPE {
                r.errors.push(format!(
                    "deprecated `{legacy}` (runtime_type `{ty}`) bypasses the router"
                ));
            }
        }
    }
    let routers: Vec<Handler> = r.handlers.iter().filter(|h| h.is_router).cloned().collect();
    if routers.is_empty() {
        r.errors.push(format!(
            "no runtime handler with runtime_type = \"{ROUTER_RUNTIME_TYPE}\": the router is not registered"
        ));
    }
    match str_at(cd, "default_runtime_name") {
        Some(d) if routers.iter().any(|h| h.name == d) => {}
        Some(d) => r.errors.push(format!(
            "default_runtime_name = \"{d}\" is not the router: pods without a RuntimeClass bypass it"
        )),
        None => r.errors.push(
            "default_runtime_name is not set (containerd defaults to `runc`): pods without a RuntimeClass bypass the router".to_string(),
        ),
    }
    for h in &routers {
        check_annotations(h, policy, &mut r.warnings);
    }
    for (name, h) in &policy.handlers {
        if !r
            .handlers
            .iter()
            .any(|x| x.name == name.as_str() && x.is_router)
        {
            r.warnings.push(format!(
                "the policy's handler `{name}` (reserves {}) is not registered in containerd: pods of RuntimeClass `{}` cannot start (routerctl install registers it)",
                h.reserves, h.runtime_class
            ));
        }
    }
    Ok(r)
}

fn passes(h: &Handler, key: &str) -> bool {
    h.pod_annotations.iter().any(|p| go_path_match(p, key))
}

fn check_annotations(h: &Handler, policy: &Policy, warnings: &mut Vec<String>) {
    let key = router_core::annotations::BACKEND_OVERRIDE;
    if !passes(h, key) {
        warnings.push(format!(
            "handler `{}`: pod_annotations {:?} do not let `{key}` through: pods cannot ask for stronger isolation (add \"runtime-router.io/*\")",
            h.name, h.pod_annotations
        ));
    }
    for t in policy.tenants.values() {
        if !t.denies(DenyRule::RuntimeAnnotations) {
            let iso = policy.backends.get(&t.backend).map(|b| b.isolation);
            let probe = "io.katacontainers.config.runtime.disable_guest_seccomp";
            if iso > Some(Isolation::Container) && passes(h, probe) {
                warnings.push(format!(
                    "handler `{}` passes Kata annotations such as `{probe}` and tenant `{}` (backend `{}`) does not deny `runtime-annotations`: they reach the sandbox runtime unchecked",
                    h.name, t.name, t.backend
                ));
            }
            continue;
        }
        for a in &t.allow_annotations {
            // a `prefix*` entry is probed with one key under the prefix
            let probe = match a.strip_suffix('*') {
                Some(prefix) => format!("{prefix}x"),
                None => a.to_string(),
            };
            if !passes(h, &probe) {
                warnings.push(format!(
                    "tenant `{}` allows annotation `{a}` but handler `{}` pod_annotations {:?} do not let it through (add \"{a}\" or \"io.katacontainers.*\")",
                    t.name, h.name, h.pod_annotations
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_match_table() {
        let cases = [
            ("runtime-router.io/*", "runtime-router.io/backend", true),
            ("runtime-router.io*", "runtime-router.io/backend", false),
            ("*", "runtime-router.io/backend", false),
            ("*", "io.katacontainers.config.x", true),
            (
                "io.katacontainers.*",
                "io.katacontainers.config.hypervisor.default_memory",
                true,
            ),
            ("io.katacontainers.*", "io.kata", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[", "[", false),
            ("a\\*", "a*", true),
            ("*/*", "runtime-router.io/backend", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(go_path_match(p, n), want, "{p:?} {n:?}");
        }
    }

    const POLICY: &str = r#"
version = 1
default_tenant = "untrusted"
[backends.runc]
kind = "builtin"
runtime = "/usr/sbin/runc"
isolation = "container"
[backends.kata]
kind = "shim"
binary = "containerd-shim-kata-v2"
isolation = "vm"
[tenants.provider]
namespaces = ["kube-system"]
backend = "runc"
[tenants.untrusted]
backend = "kata"
deny = ["runtime-annotations"]
allow_annotations = ["io.katacontainers.config.hypervisor.default_memory"]
"#;

    fn policy() -> Policy {
        router_config::parse(POLICY, std::path::Path::new("/p.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn good_config_has_no_findings() {
        let text = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "router"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.router]
  runtime_type = "io.containerd.router.v2"
  pod_annotations = ["runtime-router.io/*", "io.katacontainers.config.hypervisor.default_memory"]
"#;
        let r = analyse(text, &policy()).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:?}");
    }

    #[test]
    fn bypasses_and_missing_annotations_are_reported() {
        let text = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.router]
  runtime_type = "io.containerd.router.v2"
  pod_annotations = ["runtime-router.io*"]
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.router.options]
  ConfigPath = "/etc/kata/x.toml"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.untrusted_workload_runtime]
  runtime_type = "io.containerd.kata.v2"
"#;
        let r = analyse(text, &policy()).unwrap_or_else(|e| panic!("{e}"));
        let all = format!("{r:?}");
        assert_eq!(r.errors.len(), 3, "{all}");
        assert!(
            r.errors.iter().any(|e| e.contains("handler `runc`")),
            "{all}"
        );
        assert!(
            r.errors
                .iter()
                .any(|e| e.contains("default_runtime_name = \"runc\"")),
            "{all}"
        );
        assert!(
            r.errors
                .iter()
                .any(|e| e.contains("untrusted_workload_runtime")),
            "{all}"
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("runtime-router.io/backend")),
            "{all}"
        );
        assert!(
            r.warnings.iter().any(|w| w.contains("default_memory")),
            "{all}"
        );
        assert!(r.warnings.iter().any(|w| w.contains("ConfigPath")), "{all}");
    }

    #[test]
    fn version_and_registration() {
        assert!(analyse("[plugins.cri]\n", &policy()).is_err());
        let r = analyse("version = 2\n", &policy()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.errors.len(), 1);
        let v3 = r#"
version = 3
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "router"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.router]
  runtime_type = "io.containerd.router.v2"
  pod_annotations = ["runtime-router.io/*", "io.katacontainers.*"]
"#;
        let r = analyse(v3, &policy()).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:?}");
        let shim_sandboxer = v3.replace(
            "runtime_type = \"io.containerd.router.v2\"",
            "runtime_type = \"io.containerd.router.v2\"\n  sandboxer = \"shim\"",
        );
        let r = analyse(&shim_sandboxer, &policy()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.errors.len(), 1, "{r:?}");
        assert!(r.errors[0].contains("sandboxer = \"shim\""), "{r:?}");
    }

    #[test]
    fn shipped_v3_snippet_is_clean() {
        let text = include_str!("../../deploy/containerd-config-v3.toml");
        let pol = router_config::parse(
            include_str!("../../deploy/runtime-router.toml"),
            std::path::Path::new("deploy/runtime-router.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let r = analyse(text, &pol).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:?}");
        assert_eq!(
            r.handlers.iter().filter(|h| h.is_router).count(),
            3,
            "{r:?}"
        );
    }

    #[test]
    fn tier_handlers_are_the_router_and_mismatches_are_reported() {
        let pol = router_config::parse(
            &format!("{POLICY}\n[handlers.router]\nreserves = \"container\"\n[handlers.router-vm]\nreserves = \"vm\"\n"),
            std::path::Path::new("/p.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = |extra: &str| {
            format!(
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"router\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.router]\n  runtime_type = \"io.containerd.router.v2\"\n  pod_annotations = [\"runtime-router.io/*\", \"io.katacontainers.*\"]\n{extra}"
            )
        };
        let vm = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.router-vm]\n  runtime_type = \"io.containerd.router-vm.v2\"\n  pod_annotations = [\"runtime-router.io/*\", \"io.katacontainers.*\"]\n";
        let r = analyse(&cfg(vm), &pol).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:?}");
        assert!(r.handlers.iter().all(|h| h.is_router), "{r:?}");
        // (extra config, error or warning, text)
        let cases = [
            ("", false, "the policy's handler `router-vm` (reserves vm) is not registered"),
            (
                "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.router-vm]\n  runtime_type = \"io.containerd.router.v2\"\n",
                true,
                "handler `router-vm` runs the router as `router`",
            ),
            (
                "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.router-vm]\n  runtime_path = \"/usr/local/bin/containerd-shim-router-vm-v2\"\n  runtime_type = \"io.containerd.x.v2\"\n  pod_annotations = [\"runtime-router.io/*\", \"io.katacontainers.*\"]\n",
                false,
                "",
            ),
            (
                "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.router-gpu]\n  runtime_type = \"io.containerd.router-gpu.v2\"\n",
                true,
                "handler `router-gpu` (runtime_type `io.containerd.router-gpu.v2`) bypasses the router",
            ),
        ];
        for (extra, error, text) in cases {
            let r = analyse(&cfg(extra), &pol).unwrap_or_else(|e| panic!("{e}"));
            let found = if error { &r.errors } else { &r.warnings };
            if text.is_empty() {
                assert!(
                    r.errors.is_empty() && r.warnings.is_empty(),
                    "{extra}: {r:?}"
                );
            } else {
                assert!(found.iter().any(|m| m.contains(text)), "{extra}: {r:?}");
            }
        }
        // a router handler the table does not name: its reservation is the unnamed default
        let extra = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.spare]\n  runtime_path = \"/usr/local/bin/containerd-shim-router-v2\"\n";
        let r = analyse(&cfg(&format!("{vm}{extra}")), &pol).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            r.errors
                .iter()
                .any(|m| m.contains("handler `spare` runs the router as `router`")),
            "{r:?}"
        );
    }
}
