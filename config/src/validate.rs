//! Turns the raw TOML schema into a validated `Policy`, collecting every mistake with its location.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_v1::Spanned;

use crate::error::{line_col, ConfigError, Diagnostic};
use crate::fieldpath::path_at;
use crate::model::{
    Backend, BackendKind, DenyRule, Handler, Isolation, PodSecurity, Policy, PolicySource, Tenant,
    DEFAULT_AUDIT_LOG_KEEP, DEFAULT_AUDIT_LOG_MAX_BYTES, MAX_AUDIT_LOG_KEEP,
};
use crate::pattern;
use crate::raw::{RawBackend, RawHandler, RawPolicy, RawTenant};
use compact_str::CompactString;

/// The smallest audit cap: a few lines, so a typo such as `16` is caught.
pub const MIN_AUDIT_LOG_MAX_BYTES: i64 = 4096;

/// `allowed_host_paths` when the key is absent: THIS pod's own dirs only (kubelet's volumes of
/// the pod, containerd's hosts/hostname/resolv.conf and shm of its sandbox), never a whole state
/// dir: a pod that reaches containerd's state reaches every bundle, containerd.sock and other
/// tenants' volumes.
pub const DEFAULT_ALLOWED_HOST_PATHS: [&str; 3] = [
    "/var/lib/kubelet/pods/{pod_uid}/",
    "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
    "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
];

/// Placeholders an `allowed_host_paths` entry may hold, each standing for one path component
/// naming the pod being decided.
pub const HOST_PATH_PLACEHOLDERS: [&str; 2] = ["{pod_uid}", "{sandbox_id}"];

/// Prefixes `allow_annotations` may name (anything else there is a mistake).
pub const RUNTIME_ANNOTATION_PREFIXES: [&str; 2] = ["io.katacontainers.", "dev.gvisor."];

struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn err(&mut self, offset: usize, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, offset);
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    fn line_of(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }
}

pub(crate) fn parse_policy(
    text: &str,
    origin: &Path,
    source: PolicySource,
) -> Result<Policy, ConfigError> {
    let mut cx = Ctx {
        text,
        file: origin,
        diags: Vec::new(),
    };
    let raw: RawPolicy = match toml_v1::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let field = path_at(text, offset);
            cx.err(offset, field, e.message().trim().to_string());
            return Err(ConfigError::Invalid {
                diagnostics: cx.diags,
            });
        }
    };
    let policy = build(&mut cx, raw, source);
    match policy {
        Some(p) if cx.diags.is_empty() => Ok(p),
        _ => {
            // in file order, as an editor would walk them
            cx.diags.sort_by_key(|d| (d.line, d.column));
            Err(ConfigError::Invalid {
                diagnostics: cx.diags,
            })
        }
    }
}

fn build(cx: &mut Ctx<'_>, raw: RawPolicy, source: PolicySource) -> Option<Policy> {
    let version = match raw.version {
        None => {
            cx.err(0, "version", "missing; this router reads `version = 1`");
            0
        }
        Some(v) if *v.get_ref() == 1 => 1,
        Some(v) => {
            cx.err(
                v.span().start,
                "version",
                format!(
                    "unsupported version {}; this router reads version 1",
                    v.get_ref()
                ),
            );
            0
        }
    };

    let audit_log = raw.audit_log.and_then(|a| {
        let p = a.get_ref();
        if p.is_empty() || !p.starts_with('/') || p.contains('\0') {
            cx.err(
                a.span().start,
                "audit_log",
                format!("`{p}` is not an absolute path"),
            );
            None
        } else {
            Some(PathBuf::from(p))
        }
    });

    let audit_log_max_bytes = match raw.audit_log_max_bytes {
        None => DEFAULT_AUDIT_LOG_MAX_BYTES,
        Some(v) if *v.get_ref() == 0 || *v.get_ref() >= MIN_AUDIT_LOG_MAX_BYTES => {
            *v.get_ref() as u64
        }
        Some(v) => {
            cx.err(
                v.span().start,
                "audit_log_max_bytes",
                format!(
                    "{} is not 0 (no rotation by the router) or at least {MIN_AUDIT_LOG_MAX_BYTES} bytes",
                    v.get_ref()
                ),
            );
            DEFAULT_AUDIT_LOG_MAX_BYTES
        }
    };
    let audit_log_keep = match raw.audit_log_keep {
        None => DEFAULT_AUDIT_LOG_KEEP,
        Some(v) if (1..=i64::from(MAX_AUDIT_LOG_KEEP)).contains(v.get_ref()) => *v.get_ref() as u32,
        Some(v) => {
            cx.err(
                v.span().start,
                "audit_log_keep",
                format!(
                    "{} rotated files: keep between 1 and {MAX_AUDIT_LOG_KEEP}",
                    v.get_ref()
                ),
            );
            DEFAULT_AUDIT_LOG_KEEP
        }
    };

    let allowed_host_paths = match raw.allowed_host_paths {
        None => DEFAULT_ALLOWED_HOST_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, p) in list.iter().enumerate() {
                let field = format!("allowed_host_paths[{i}]");
                if let Err(m) = check_host_path_entry(p.get_ref()) {
                    cx.err(p.span().start, field, m);
                } else {
                    out.push(p.get_ref().clone());
                }
            }
            out
        }
    };

    let raw_backend_names: Vec<String> = raw.backends.keys().map(|k| k.get_ref().clone()).collect();
    let mut backends = BTreeMap::new();
    for (name, b) in raw.backends {
        if let Some(backend) = build_backend(cx, &name, b) {
            backends.insert(backend.name.clone(), backend);
        }
    }

    let mut tenants = BTreeMap::new();
    // pattern -> (tenant, offset) for cross-tenant duplicate detection, per kind of namespace.
    let mut claimed: [BTreeMap<String, (String, usize)>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let raw_tenant_names: Vec<String> = raw.tenants.keys().map(|k| k.get_ref().clone()).collect();
    for (name, t) in raw.tenants {
        if let Some(tenant) = build_tenant(cx, &name, t, &raw_backend_names, &mut claimed) {
            tenants.insert(tenant.name.clone(), tenant);
        }
    }

    let handlers = match raw.handlers {
        None => BTreeMap::new(),
        Some(table) => build_handlers(cx, table, &backends),
    };
    let unnamed_handler_reserves = raw
        .unnamed_handler_reserves
        .as_ref()
        .and_then(|v| tier_at(cx, v, "unnamed_handler_reserves"))
        .unwrap_or(Isolation::Container);
    let unaccounted_tiers = raw
        .unaccounted_tiers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, v)| tier_at(cx, v, &format!("unaccounted_tiers[{i}]")))
        .collect();

    let default_tenant = match raw.default_tenant {
        None => {
            cx.err(
                0,
                "default_tenant",
                "missing; name the tenant used when no tenant matches (fail closed)",
            );
            String::new()
        }
        Some(d) => {
            let name = d.get_ref().clone();
            if !raw_tenant_names.contains(&name) {
                cx.err(
                    d.span().start,
                    "default_tenant",
                    format!(
                        "unknown tenant `{name}` (defined: {})",
                        list_or_none(raw_tenant_names.iter())
                    ),
                );
            }
            name
        }
    };

    Some(Policy {
        version,
        audit_log,
        audit_log_max_bytes,
        audit_log_keep,
        default_tenant: default_tenant.into(),
        allowed_host_paths: allowed_host_paths.into_iter().map(Into::into).collect(),
        backends,
        tenants,
        handlers,
        unnamed_handler_reserves,
        unaccounted_tiers,
        source,
        digest: String::new(),
    })
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "name `{name}` has character {c:?}; use letters, digits, `-`, `_`, `.`"
        ));
    }
    Ok(())
}

/// A tier (`container`, `sandbox`, `vm`) at `field`, or an error there.
fn tier_at(cx: &mut Ctx<'_>, v: &Spanned<String>, field: &str) -> Option<Isolation> {
    let i = Isolation::from_name(v.get_ref());
    if i.is_none() {
        cx.err(
            v.span().start,
            field.to_string(),
            format!(
                "unknown tier `{}`; one of `container`, `sandbox`, `vm`",
                v.get_ref()
            ),
        );
    }
    i
}

/// A handler name: a DNS label (a RuntimeClass's `handler` must be one), at most 50 characters
/// so that `containerd-shim-NAME-v2` stays a short file name.
fn check_handler_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "handler name `{name}` is not a DNS label (lower-case letters, digits, `-`; at most 50)"
        ))
    }
}

/// `[handlers.NAME]` entries: each reserves a tier; a handler above `container` names the
/// backend that serves the pods it raises, or there is exactly one backend of its tier.
fn build_handlers(
    cx: &mut Ctx<'_>,
    table: Spanned<BTreeMap<Spanned<String>, Spanned<RawHandler>>>,
    backends: &BTreeMap<CompactString, Backend>,
) -> BTreeMap<CompactString, Handler> {
    let table_at = table.span().start;
    let table = table.into_inner();
    if table.is_empty() {
        cx.err(
            table_at,
            "handlers",
            "empty table; name each runtime handler or leave the table out",
        );
    }
    let mut out = BTreeMap::new();
    for (name, h) in table {
        let base = format!("handlers.{}", name.get_ref());
        let at = h.span().start;
        let h = h.into_inner();
        if let Err(m) = check_handler_name(name.get_ref()) {
            cx.err(name.span().start, base.clone(), m);
            continue;
        }
        let reserves = match &h.reserves {
            None => {
                cx.err(
                    at,
                    format!("{base}.reserves"),
                    "missing; the tier its RuntimeClass accounts for: `container`, `sandbox` or `vm`",
                );
                continue;
            }
            Some(r) => match tier_at(cx, r, &format!("{base}.reserves")) {
                Some(i) => i,
                None => continue,
            },
        };
        let backend = match &h.backend {
            Some(b) => match backends.get(b.get_ref().as_str()) {
                Some(found) if found.isolation == reserves => Some(found.name.clone()),
                Some(found) => {
                    cx.err(
                        b.span().start,
                        format!("{base}.backend"),
                        format!(
                            "backend `{}` has isolation {}, not the {reserves} this handler reserves",
                            found.name, found.isolation
                        ),
                    );
                    continue;
                }
                None => {
                    cx.err(
                        b.span().start,
                        format!("{base}.backend"),
                        format!("unknown backend `{}`", b.get_ref()),
                    );
                    continue;
                }
            },
            None if reserves == Isolation::Container => None,
            None => {
                let of_tier: Vec<&Backend> = backends
                    .values()
                    .filter(|b| b.isolation == reserves)
                    .collect();
                match of_tier.as_slice() {
                    [one] => Some(one.name.clone()),
                    _ => {
                        let names: Vec<String> =
                            of_tier.iter().map(|b| format!("`{}`", b.name)).collect();
                        cx.err(
                            at,
                            format!("{base}.backend"),
                            format!(
                                "missing; name the backend that serves pods this handler raises to {reserves} (backends of that tier: {})",
                                if names.is_empty() { "none".to_string() } else { names.join(", ") }
                            ),
                        );
                        continue;
                    }
                }
            }
        };
        let runtime_class = match &h.runtime_class {
            None => name.get_ref().clone(),
            Some(c) => {
                if let Err(m) = check_handler_name(c.get_ref()) {
                    cx.err(
                        c.span().start,
                        format!("{base}.runtime_class"),
                        m.replace("handler name", "RuntimeClass name"),
                    );
                    continue;
                }
                c.get_ref().clone()
            }
        };
        out.insert(
            CompactString::from(name.get_ref().as_str()),
            Handler {
                name: name.get_ref().as_str().into(),
                reserves,
                backend,
                runtime_class: runtime_class.into(),
            },
        );
    }
    out
}

fn check_host_path_entry(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("`{p}` is not an absolute path"));
    }
    if p.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!(
            "`{p}` contains `.` or `..`; write the normalised path"
        ));
    }
    for component in p.split('/') {
        let mut rest = component;
        for ph in HOST_PATH_PLACEHOLDERS {
            rest = if rest == ph { "" } else { rest };
        }
        if rest.contains('{') || rest.contains('}') {
            return Err(format!(
                "`{p}`: `{component}` is not a placeholder; a placeholder is a whole path component, one of {}",
                HOST_PATH_PLACEHOLDERS.join(", ")
            ));
        }
    }
    Ok(())
}

fn build_backend(
    cx: &mut Ctx<'_>,
    name: &Spanned<String>,
    b: Spanned<RawBackend>,
) -> Option<Backend> {
    let base = format!("backends.{}", name.get_ref());
    let at = name.span().start;
    let table_at = b.span().start;
    let b = b.into_inner();
    let mut ok = true;
    if let Err(m) = check_name(name.get_ref()) {
        cx.err(at, base.clone(), m);
        ok = false;
    }
    let isolation = match &b.isolation {
        None => {
            cx.err(
                table_at,
                format!("{base}.isolation"),
                "missing; one of `container`, `sandbox`, `vm`",
            );
            None
        }
        Some(i) => {
            let v = Isolation::from_name(i.get_ref());
            if v.is_none() {
                cx.err(
                    i.span().start,
                    format!("{base}.isolation"),
                    format!(
                        "unknown isolation level `{}`; one of `container`, `sandbox`, `vm`",
                        i.get_ref()
                    ),
                );
            }
            v
        }
    };
    let not_for = |cx: &mut Ctx<'_>, field: &str, off: Option<usize>, kind: &str| {
        if let Some(off) = off {
            cx.err(
                off,
                format!("{base}.{field}"),
                format!("not allowed for kind `{kind}`"),
            );
        }
    };
    let kind = match &b.kind {
        None => {
            cx.err(
                table_at,
                format!("{base}.kind"),
                "missing; `builtin` or `shim`",
            );
            None
        }
        Some(k) => match k.get_ref().as_str() {
            "builtin" => {
                not_for(
                    cx,
                    "binary",
                    b.binary.as_ref().map(|x| x.span().start),
                    "builtin",
                );
                not_for(cx, "env", b.env.as_ref().map(|x| x.span().start), "builtin");
                let runtime = match &b.runtime {
                    None => {
                        cx.err(
                            table_at,
                            format!("{base}.runtime"),
                            "missing; the OCI runtime CLI to drive, e.g. \"/usr/sbin/runc\"",
                        );
                        None
                    }
                    Some(r) => match check_program(r.get_ref()) {
                        Ok(()) => Some(PathBuf::from(r.get_ref())),
                        Err(m) => {
                            cx.err(r.span().start, format!("{base}.runtime"), m);
                            None
                        }
                    },
                };
                let mut runtime_args = Vec::new();
                if let Some(args) = &b.runtime_args {
                    for (i, a) in args.get_ref().iter().enumerate() {
                        if a.get_ref().contains('\0') {
                            cx.err(
                                a.span().start,
                                format!("{base}.runtime_args[{i}]"),
                                "contains a NUL byte",
                            );
                        }
                        runtime_args.push(a.get_ref().clone());
                    }
                }
                runtime.map(|runtime| BackendKind::Builtin {
                    runtime,
                    runtime_args,
                })
            }
            "shim" => {
                not_for(
                    cx,
                    "runtime",
                    b.runtime.as_ref().map(|x| x.span().start),
                    "shim",
                );
                not_for(
                    cx,
                    "runtime_args",
                    b.runtime_args.as_ref().map(|x| x.span().start),
                    "shim",
                );
                let binary = match &b.binary {
                    None => {
                        cx.err(
                            table_at,
                            format!("{base}.binary"),
                            "missing; the shim v2 binary, e.g. \"containerd-shim-kata-v2\"",
                        );
                        None
                    }
                    Some(r) => match check_program(r.get_ref()) {
                        Ok(()) => Some(r.get_ref().clone()),
                        Err(m) => {
                            cx.err(r.span().start, format!("{base}.binary"), m);
                            None
                        }
                    },
                };
                let mut env = BTreeMap::new();
                if let Some(e) = &b.env {
                    for (k, v) in e.get_ref() {
                        let key = k.get_ref();
                        if key.is_empty() || key.contains(['=', '\0']) {
                            cx.err(
                                k.span().start,
                                format!("{base}.env"),
                                format!("invalid environment variable name `{key}`"),
                            );
                        } else if v.get_ref().contains('\0') {
                            cx.err(
                                v.span().start,
                                format!("{base}.env.{key}"),
                                "contains a NUL byte",
                            );
                        } else {
                            env.insert(key.clone(), v.get_ref().clone());
                        }
                    }
                }
                binary.map(|binary| BackendKind::Shim { binary, env })
            }
            other => {
                cx.err(
                    k.span().start,
                    format!("{base}.kind"),
                    format!("unknown backend kind `{other}`; `builtin` or `shim`"),
                );
                None
            }
        },
    };
    match (ok, kind, isolation) {
        (true, Some(kind), Some(isolation)) => Some(Backend {
            name: name.get_ref().as_str().into(),
            kind,
            isolation,
        }),
        _ => None,
    }
}

/// A program is a name looked up on PATH or an absolute path.
fn check_program(p: &str) -> Result<(), String> {
    if p.trim().is_empty() {
        return Err("empty; name a program on PATH or an absolute path".into());
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if p.contains('/') && !p.starts_with('/') {
        return Err(format!(
            "`{p}` is a relative path; name a program on PATH or give an absolute path"
        ));
    }
    if p.ends_with('/') {
        return Err(format!("`{p}` names a directory"));
    }
    Ok(())
}

fn check_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty namespace".into());
    }
    if let Some(c) = p
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '?')))
    {
        return Err(format!(
            "`{p}` has character {c:?}; namespaces are letters, digits, `-`, `_`, `.`, with `*`/`?` globs"
        ));
    }
    Ok(())
}

fn build_tenant(
    cx: &mut Ctx<'_>,
    name: &Spanned<String>,
    t: Spanned<RawTenant>,
    backends: &[String],
    claimed: &mut [BTreeMap<String, (String, usize)>; 2],
) -> Option<Tenant> {
    let tname = name.get_ref().clone();
    let base = format!("tenants.{tname}");
    let table_at = t.span().start;
    let t = t.into_inner();
    let before = cx.diags.len();
    if let Err(m) = check_name(&tname) {
        cx.err(name.span().start, base.clone(), m);
    }

    let backend = match &t.backend {
        None => {
            cx.err(
                table_at,
                format!("{base}.backend"),
                "missing; name one of [backends]",
            );
            String::new()
        }
        Some(b) => {
            // A backend that is defined but invalid has its own diagnostic already.
            if !backends.contains(b.get_ref()) {
                cx.err(
                    b.span().start,
                    format!("{base}.backend"),
                    format!(
                        "unknown backend `{}` (defined: {})",
                        b.get_ref(),
                        list_or_none(backends.iter())
                    ),
                );
            }
            b.get_ref().clone()
        }
    };

    let lists = [
        ("namespaces", &t.namespaces),
        ("containerd_namespaces", &t.containerd_namespaces),
    ];
    let mut out: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (k, (field, list)) in lists.iter().enumerate() {
        for (i, p) in list.iter().enumerate() {
            let f = format!("{base}.{field}[{i}]");
            let at = p.span().start;
            let pat = p.get_ref();
            if let Err(m) = check_pattern(pat) {
                cx.err(at, f, m);
                continue;
            }
            if let Some((owner, owner_at)) = claimed[k].get(pat) {
                let kind = if pattern::is_glob(pat) {
                    "pattern"
                } else {
                    "namespace"
                };
                let msg = if *owner == tname {
                    format!("{kind} `{pat}` listed twice")
                } else {
                    format!(
                        "{kind} `{pat}` is already claimed by tenant `{owner}` (line {}); a namespace belongs to one tenant",
                        cx.line_of(*owner_at)
                    )
                };
                cx.err(at, f, msg);
                continue;
            }
            claimed[k].insert(pat.clone(), (tname.clone(), at));
            out[k].push(pat.clone());
        }
    }

    let mut deny = Vec::new();
    for (i, d) in t.deny.iter().enumerate() {
        let f = format!("{base}.deny[{i}]");
        match DenyRule::from_name(d.get_ref()) {
            None => cx.err(
                d.span().start,
                f,
                format!(
                    "unknown deny rule `{}`; one of {}",
                    d.get_ref(),
                    DenyRule::ALL.map(|r| format!("`{r}`")).join(", ")
                ),
            ),
            Some(r) if deny.contains(&r) => {
                cx.err(d.span().start, f, format!("deny rule `{r}` listed twice"))
            }
            Some(r) => deny.push(r),
        }
    }

    let pod_security = t.pod_security.as_ref().and_then(|p| {
        let level = PodSecurity::from_name(p.get_ref());
        if level.is_none() {
            cx.err(
                p.span().start,
                format!("{base}.pod_security"),
                format!(
                    "unknown Pod Security Standards level `{}`; one of `baseline`, `restricted` (leave it out for none)",
                    p.get_ref()
                ),
            );
        }
        level
    });

    let mut allow_annotations = Vec::new();
    for (i, a) in t.allow_annotations.iter().enumerate() {
        let f = format!("{base}.allow_annotations[{i}]");
        let key = a.get_ref();
        let star = key.find('*');
        let literal = key.trim_end_matches('*');
        let msg = if key.is_empty() {
            Some("empty annotation key".to_string())
        } else if star.is_some_and(|s| s != key.len() - 1) {
            Some(format!(
                "`{key}`: `*` is only allowed once, at the end (`prefix*`)"
            ))
        } else if !RUNTIME_ANNOTATION_PREFIXES
            .iter()
            .any(|p| literal.starts_with(p) && (star.is_none() || literal.len() > p.len()))
        {
            Some(format!(
                "`{key}` is not a runtime annotation; allow keys under {} (a bare family prefix with `*` would allow them all)",
                RUNTIME_ANNOTATION_PREFIXES.map(|p| format!("`{p}`")).join(", ")
            ))
        } else {
            None
        };
        match msg {
            Some(m) => cx.err(a.span().start, f, m),
            None => allow_annotations.push(key.clone()),
        }
    }

    if cx.diags.len() != before {
        return None;
    }
    let [namespaces, containerd_namespaces] = out;
    let names = |v: Vec<String>| v.into_iter().map(Into::into).collect();
    Some(Tenant {
        name: tname.into(),
        namespaces: names(namespaces),
        containerd_namespaces: names(containerd_namespaces),
        backend: backend.into(),
        deny,
        pod_security,
        allow_annotations: names(allow_annotations),
    })
}
