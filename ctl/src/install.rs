//! `routerctl install --host-root DIR` / `routerctl uninstall --host-root DIR`: the node-side
//! installer the DaemonSet runs (with the node's `/` mounted at DIR).
//!
//! install:
//! 1. copies `containerd-shim-router-v2` and `routerctl` (from `--from`, default: beside this
//!    binary) to `DIR/usr/local/bin` (temp file + rename: a running shim keeps its old inode);
//! 2. registers the router in containerd's config (`DIR/etc/containerd/config.toml`), keeping
//!    every other byte of the file: config version 2 (containerd 1.6/1.7, plugin
//!    `io.containerd.grpc.v1.cri`) or 3 (2.x, `io.containerd.cri.v1.runtime`), detected from
//!    the file's `version` (`--config-version` for a node with no file). It sets
//!    `default_runtime_name = "router"`, adds `runtimes.router` and, unless `--keep-handlers`,
//!    removes every other handler (a handler beside the router lets a RuntimeClass go around it);
//! 3. keeps the original text in `config.toml.runtime-router-orig` and what it did in
//!    `DIR/var/lib/runtime-router/install.json`;
//! 4. runs `--restart-command` when the config changed (the DaemonSet: `nsenter` into PID 1 and `systemctl restart
//!    containerd`; systemd's `KillMode=process` keeps running shims, so pods survive).
//!
//! uninstall restores the original config byte for byte (or removes the file if there was none),
//! when the config is still the one install wrote (`--force` restores it anyway, keeping the
//! current text as `config.toml.runtime-router-modified`), removes the binaries it installed (when
//! unchanged) and the node-feature file, then runs `--restart-command`. The policy and the audit
//! log stay (they are the operator's data).
//!
//! The TOML edit itself is [`register`] / the version detection [`config_version`]: pure
//! functions, unit-tested for both versions.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::containerd::ROUTER_RUNTIME_TYPE;
use crate::policy::write_atomic;

/// The router's CRI handler name.
pub const HANDLER: &str = "router";
/// Binaries installed.
pub const BINARIES: [&str; 2] = ["containerd-shim-router-v2", "routerctl"];
/// Default `pod_annotations` of the router handler.
pub const DEFAULT_POD_ANNOTATIONS: [&str; 1] = ["runtime-router.io/*"];
const STATE: &str = "var/lib/runtime-router/install.json";
const ORIG_SUFFIX: &str = ".runtime-router-orig";
const MODIFIED_SUFFIX: &str = ".runtime-router-modified";
/// Where `node-features --output` writes on a node (NFD's local source).
pub const FEATURES_FILE: &str = "etc/kubernetes/node-feature-discovery/features.d/runtime-router";

/// `routerctl install` / `uninstall` arguments.
#[derive(Debug, Default)]
pub struct InstallArgs {
    pub host_root: PathBuf,
    pub from: Option<PathBuf>,
    pub bin_dir: Option<String>,
    pub containerd_config: Option<String>,
    pub config_version: Option<i64>,
    pub pod_annotations: Vec<String>,
    pub keep_handlers: bool,
    pub restart_command: Option<String>,
    pub force: bool,
    /// The node policy whose `[handlers]` are registered (default: the host's
    /// `/etc/containerd/runtime-router.toml`, else the embedded default).
    pub policy: Option<PathBuf>,
}

/// What install did, kept for uninstall.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// containerd config, as a host path.
    config: String,
    /// The config file existed before install (its text is in the `-orig` file).
    config_existed: bool,
    /// Digest of the config text install wrote.
    config_written: String,
    /// Installed binaries: host path → digest.
    binaries: Vec<(String, String)>,
    /// Links `containerd-shim-<handler>-v2` → `containerd-shim-router-v2`, as host paths.
    #[serde(default)]
    links: Vec<String>,
}

/// Why the config cannot be edited.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("not valid TOML: {0}")]
    Toml(String),
    #[error("{0}")]
    Unsupported(String),
}

/// The CRI plugin whose `containerd` table holds the runtime handlers, per config version.
pub fn cri_plugin(version: i64) -> Result<&'static str, EditError> {
    match version {
        2 => Ok("io.containerd.grpc.v1.cri"),
        3 => Ok("io.containerd.cri.v1.runtime"),
        v => Err(EditError::Unsupported(format!(
            "containerd config version {v}: supported are 2 (containerd 1.6/1.7) and 3 (2.x); migrate it first (`containerd config migrate`)"
        ))),
    }
}

/// The config's `version`; an empty (or whitespace/comment-only) text takes `fallback`.
pub fn config_version(doc: &DocumentMut, fallback: Option<i64>) -> Result<i64, EditError> {
    match doc.get("version") {
        Some(v) => v.as_integer().ok_or_else(|| {
            EditError::Unsupported("`version` is not an integer".to_string())
        }),
        None if doc.is_empty() => fallback.ok_or_else(|| {
            EditError::Unsupported(
                "no containerd config on the node: give --config-version 2 (containerd 1.6/1.7) or 3 (2.x)".to_string(),
            )
        }),
        // containerd reads a file without `version` as version 1
        None => Err(EditError::Unsupported(
            "containerd config has no `version` (read as version 1, which runtime-router does not support): migrate it (`containerd config migrate`) or add `version = 2`".to_string(),
        )),
    }
}

/// The table at `key` in `t`, created (as an implicit table when `implicit`) if missing.
fn sub<'a>(t: &'a mut Table, key: &str, implicit: bool) -> Result<&'a mut Table, EditError> {
    if !t.contains_key(key) {
        let mut n = Table::new();
        n.set_implicit(implicit);
        t.insert(key, Item::Table(n));
    }
    match t.get_mut(key) {
        Some(Item::Table(x)) => Ok(x),
        Some(Item::Value(Value::InlineTable(_))) => Err(EditError::Unsupported(format!(
            "`{key}` is an inline table: write it as a [table] section"
        ))),
        _ => Err(EditError::Unsupported(format!("`{key}` is not a table"))),
    }
}

/// Sets `t.key = value`, keeping an existing value's surrounding whitespace and comment.
fn set_keeping_layout(t: &mut Table, key: &str, value: &str) {
    if let Some(Item::Value(v)) = t.get_mut(key) {
        let decor = v.decor().clone();
        *v = Value::from(value);
        *v.decor_mut() = decor;
        return;
    }
    t.insert(key, toml_edit::value(value));
}

/// Result of [`register`].
#[derive(Debug)]
pub struct Registered {
    pub text: String,
    pub version: i64,
    /// Handlers removed (they bypassed the router).
    pub removed: Vec<String>,
}

/// The policy's tier handlers other than `router` itself: each is registered as
/// `runtimes.<name>` with `runtime_type = "io.containerd.<name>.v2"`, served by a link
/// `containerd-shim-<name>-v2` to the router.
pub fn tier_handlers(policy: &router_config::Policy) -> Vec<String> {
    policy
        .handlers
        .keys()
        .filter(|h| h.as_str() != HANDLER)
        .map(|h| h.to_string())
        .collect()
}

/// Registers the router in containerd's config text: default handler `router`, the
/// `runtimes.router` table and one `runtimes.<name>` per tier handler, other handlers removed
/// unless `keep_handlers`. Everything else in the file (comments, order, other plugins) is kept.
pub fn register(
    text: &str,
    fallback_version: Option<i64>,
    pod_annotations: &[String],
    keep_handlers: bool,
    tiers: &[String],
) -> Result<Registered, EditError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Toml(e.to_string().trim_end().to_string()))?;
    let version = config_version(&doc, fallback_version)?;
    if doc.get("version").is_none() {
        doc.insert("version", toml_edit::value(version));
    }
    let plugin = cri_plugin(version)?;
    let plugins = sub(doc.as_table_mut(), "plugins", true)?;
    let cri = sub(plugins, plugin, true)?;
    let ctd = sub(cri, "containerd", false)?;
    set_keeping_layout(ctd, "default_runtime_name", HANDLER);
    let mut removed = Vec::new();
    if !keep_handlers {
        for legacy in ["default_runtime", "untrusted_workload_runtime"] {
            if ctd.remove(legacy).is_some() {
                removed.push(legacy.to_string());
            }
        }
    }
    let runtimes = sub(ctd, "runtimes", true)?;
    if !keep_handlers {
        let others: Vec<String> = runtimes
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| k != HANDLER && !tiers.contains(k))
            .collect();
        for k in others {
            runtimes.remove(&k);
            removed.push(k);
        }
    }
    let mut router = Table::new();
    router.insert("runtime_type", toml_edit::value(ROUTER_RUNTIME_TYPE));
    let mut ann = Array::new();
    let keys: Vec<String> = if pod_annotations.is_empty() {
        DEFAULT_POD_ANNOTATIONS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        pod_annotations.to_vec()
    };
    for k in keys {
        ann.push(k);
    }
    router.insert("pod_annotations", toml_edit::value(ann));
    for t in tiers {
        let mut tier = router.clone();
        tier.insert(
            "runtime_type",
            toml_edit::value(format!("io.containerd.{t}.v2")),
        );
        runtimes.insert(t, Item::Table(tier));
    }
    runtimes.insert(HANDLER, Item::Table(router));
    let mut out = doc.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(Registered {
        text: out,
        version,
        removed,
    })
}

/// `DIR` + a host path.
fn on_host(root: &Path, host_path: &str) -> PathBuf {
    root.join(host_path.trim_start_matches('/'))
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn parent_of(p: &Path) -> PathBuf {
    p.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

fn mode_of(p: &Path, default: u32) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(default)
}

fn write_file(p: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let dir = parent_of(p);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write_atomic(p, bytes, mode, &dir).map_err(|e| e.to_string())
}

fn run_restart(cmd: Option<&str>) -> Result<(), String> {
    let Some(cmd) = cmd else {
        out!("restart containerd for the change to take effect (no --restart-command given)");
        return Ok(());
    };
    out!("restarting containerd: {cmd}");
    let st = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .map_err(|e| format!("cannot run restart command: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("restart command `{cmd}` failed: {st}"))
    }
}

fn config_host_path(a: &InstallArgs) -> String {
    a.containerd_config
        .clone()
        .unwrap_or_else(|| "/etc/containerd/config.toml".to_string())
}

/// The policy install registers handlers from: `--config`, else the host's policy file, else
/// the embedded default. A policy that does not validate stops the install (file:line).
fn install_policy(a: &InstallArgs) -> Result<router_config::Policy, String> {
    let on_node = on_host(&a.host_root, router_config::DEFAULT_POLICY_PATH);
    let path = match &a.policy {
        Some(p) => p.clone(),
        None if on_node.exists() => on_node,
        None => return Ok(router_config::embedded_default()),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    router_config::parse(&text, &path).map_err(|e| e.to_string())
}

/// `routerctl install`.
pub fn install(a: &InstallArgs) -> u8 {
    match try_install(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn try_install(a: &InstallArgs) -> Result<(), String> {
    let root = &a.host_root;
    if !root.is_dir() {
        return Err(format!("host root {} is not a directory", root.display()));
    }
    let state_path = root.join(STATE);
    let cfg_host = config_host_path(a);
    let cfg = on_host(root, &cfg_host);
    let orig = with_suffix(&cfg, ORIG_SUFFIX);

    // 1. the containerd config edit (validated before anything is written)
    let current = match std::fs::read(&cfg) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", cfg.display())),
    };
    let text = match &current {
        Some(b) => std::str::from_utf8(b)
            .map_err(|e| format!("{}: not UTF-8: {e}", cfg.display()))?
            .to_string(),
        None => String::new(),
    };
    let policy = install_policy(a)?;
    let tiers = tier_handlers(&policy);
    let reg = register(
        &text,
        a.config_version,
        &a.pod_annotations,
        a.keep_handlers,
        &tiers,
    )
    .map_err(|e| format!("{}: {e}", cfg.display()))?;
    let report = crate::containerd::analyse(&reg.text, &policy)
        .map_err(|e| format!("edited config: {e}"))?;

    // 2. binaries
    let from = match &a.from {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .ok_or("cannot tell where this routerctl lives: give --from DIR")?,
    };
    let bin_dir = a.bin_dir.clone().unwrap_or_else(|| "/usr/local/bin".into());
    let mut binaries = Vec::new();
    for b in BINARIES {
        let src = from.join(b);
        let bytes = std::fs::read(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        let host = format!("{}/{b}", bin_dir.trim_end_matches('/'));
        write_file(&on_host(root, &host), &bytes, 0o755)?;
        out!("installed {host} ({})", router_config::digest(&bytes));
        binaries.push((host, router_config::digest(&bytes)));
    }
    // one link per tier handler: containerd runs `containerd-shim-<handler>-v2`, the router
    // reads the name it was started under
    let mut links = Vec::new();
    for t in &tiers {
        let host = format!("{}/containerd-shim-{t}-v2", bin_dir.trim_end_matches('/'));
        let p = on_host(root, &host);
        match std::fs::read_link(&p) {
            Ok(target) if target == Path::new(BINARIES[0]) => {}
            Ok(_) | Err(_) if p.symlink_metadata().is_ok() => {
                return Err(format!(
                    "{host} exists and is not a link to {}: not replacing it",
                    BINARIES[0]
                ))
            }
            _ => {
                std::os::unix::fs::symlink(BINARIES[0], &p)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                out!("linked {host} -> {}", BINARIES[0]);
            }
        }
        links.push(host);
    }

    // 3. config + state (the original is saved once, before the first edit)
    let earlier: Option<State> = std::fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let config_existed = match &earlier {
        Some(s) => s.config_existed,
        None => {
            if let Some(b) = &current {
                write_file(&orig, b, mode_of(&cfg, 0o644))?;
            }
            current.is_some()
        }
    };
    let changed = current.as_deref() != Some(reg.text.as_bytes());
    if !changed {
        out!(
            "{cfg_host} already registers the router (config version {})",
            reg.version
        );
    } else {
        write_file(&cfg, reg.text.as_bytes(), mode_of(&cfg, 0o644))?;
        out!(
            "registered handler `{HANDLER}` as containerd's default in {cfg_host} (config version {}, plugin {})",
            reg.version,
            report.plugin
        );
        for t in &tiers {
            out!("registered tier handler `{t}` (runtime_type io.containerd.{t}.v2)");
        }
    }
    for r in &reg.removed {
        out!("removed runtime handler `{r}` (it would bypass the router)");
    }
    for e in report.errors.iter().chain(report.warnings.iter()) {
        out!("warning: {e}");
    }
    let state = State {
        config: cfg_host,
        config_existed,
        config_written: router_config::digest(reg.text.as_bytes()),
        binaries,
        links,
    };
    let json = serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?;
    write_file(&state_path, &json, 0o644)?;
    if changed {
        run_restart(a.restart_command.as_deref())
    } else {
        // the binaries take effect at the next pod start; containerd has nothing new to read
        out!("containerd config unchanged: no restart");
        Ok(())
    }
}

/// `routerctl uninstall`.
pub fn uninstall(a: &InstallArgs) -> u8 {
    match try_uninstall(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn try_uninstall(a: &InstallArgs) -> Result<(), String> {
    let root = &a.host_root;
    let state_path = root.join(STATE);
    let state: State = match std::fs::read(&state_path) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", state_path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out!(
                "runtime-router is not installed under {} (no {STATE})",
                root.display()
            );
            return Ok(());
        }
        Err(e) => return Err(format!("{}: {e}", state_path.display())),
    };
    let cfg = on_host(root, &state.config);
    let orig = with_suffix(&cfg, ORIG_SUFFIX);
    let current = std::fs::read(&cfg).ok();
    let ours = current
        .as_deref()
        .is_some_and(|b| router_config::digest(b) == state.config_written);
    if !ours {
        if !a.force {
            return Err(format!(
                "{} changed since install: not restoring it (give --force to restore the original anyway; the current text is then kept as {})",
                state.config,
                with_suffix(&cfg, MODIFIED_SUFFIX).display()
            ));
        }
        if let Some(b) = &current {
            write_file(&with_suffix(&cfg, MODIFIED_SUFFIX), b, 0o600)?;
        }
    }
    if state.config_existed {
        let bytes = std::fs::read(&orig).map_err(|e| format!("{}: {e}", orig.display()))?;
        write_file(&cfg, &bytes, mode_of(&orig, 0o644))?;
        std::fs::remove_file(&orig).map_err(|e| format!("{}: {e}", orig.display()))?;
        out!("restored the original {}", state.config);
    } else {
        match std::fs::remove_file(&cfg) {
            Ok(()) => out!("removed {} (there was none before install)", state.config),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", cfg.display())),
        }
    }
    for (host, digest) in &state.binaries {
        let p = on_host(root, host);
        match std::fs::read(&p) {
            Ok(b) if router_config::digest(&b) == *digest => {
                std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                out!("removed {host}");
            }
            Ok(_) => out!("warning: {host} changed since install: left in place"),
            Err(_) => {}
        }
    }
    for host in &state.links {
        let p = on_host(root, host);
        match std::fs::read_link(&p) {
            Ok(target) if target == Path::new(BINARIES[0]) => {
                std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                out!("removed {host}");
            }
            Ok(_) => out!("warning: {host} changed since install: left in place"),
            Err(_) => {}
        }
    }
    let features = root.join(FEATURES_FILE);
    if std::fs::remove_file(&features).is_ok() {
        out!("removed /{FEATURES_FILE}");
    }
    std::fs::remove_file(&state_path).map_err(|e| format!("{}: {e}", state_path.display()))?;
    if let Some(d) = state_path.parent() {
        let _ = std::fs::remove_dir(d); // only when empty
    }
    run_restart(a.restart_command.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"# node config, managed by hand
version = 2
root = "/var/lib/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
"#;

    const V3: &str = r#"version = 3
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "registry.k8s.io/pause:3.10"
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata]
  runtime_type = "io.containerd.kata.v2"
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/opt/cni/bin"]
"#;

    fn policy() -> router_config::Policy {
        router_config::embedded_default()
    }

    #[test]
    fn v2_registers_router_and_keeps_the_rest() {
        let r = register(V2, None, &[], false, &[]).unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(r.removed, ["runc"]);
        let rep = crate::containerd::analyse(&r.text, &policy()).unwrap();
        assert!(rep.errors.is_empty(), "{rep:?}\n{}", r.text);
        assert_eq!(rep.plugin, "io.containerd.grpc.v1.cri");
        for keep in [
            "# node config, managed by hand",
            "sandbox_image = \"registry.k8s.io/pause:3.9\"",
            "snapshotter = \"overlayfs\"",
            "bin_dir = \"/opt/cni/bin\"",
            "address = \"/run/containerd/containerd.sock\"",
        ] {
            assert!(r.text.contains(keep), "{keep} lost:\n{}", r.text);
        }
        assert!(!r.text.contains("SystemdCgroup"), "{}", r.text);
        // idempotent
        let again = register(&r.text, None, &[], false, &[]).unwrap();
        assert_eq!(again.text, r.text);
        assert!(again.removed.is_empty());
    }

    #[test]
    fn v3_registers_router_in_the_runtime_plugin() {
        let ann = vec![
            "runtime-router.io/*".to_string(),
            "io.katacontainers.*".to_string(),
        ];
        let r = register(V3, None, &ann, false, &[]).unwrap();
        assert_eq!(r.version, 3);
        assert_eq!(r.removed, ["runc", "kata"]);
        let rep = crate::containerd::analyse(&r.text, &policy()).unwrap();
        assert!(rep.errors.is_empty(), "{rep:?}\n{}", r.text);
        assert_eq!(rep.plugin, "io.containerd.cri.v1.runtime");
        assert!(r.text.contains("sandbox = \"registry.k8s.io/pause:3.10\""));
        assert!(r.text.contains("bin_dirs = [\"/opt/cni/bin\"]"));
        let doc: toml::Value = toml::from_str(&r.text).unwrap();
        let router =
            &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["router"];
        assert_eq!(router["runtime_type"].as_str(), Some(ROUTER_RUNTIME_TYPE));
        assert_eq!(router["pod_annotations"].as_array().map(Vec::len), Some(2));
        // keep_handlers leaves bypasses (reported by analyse)
        let r = register(V3, None, &[], true, &[]).unwrap();
        let rep = crate::containerd::analyse(&r.text, &policy()).unwrap();
        assert_eq!(rep.errors.len(), 2, "{rep:?}");
    }

    #[test]
    fn empty_and_unsupported_configs() {
        assert!(register("", None, &[], false, &[]).is_err());
        let r = register("", Some(3), &[], false, &[]).unwrap();
        assert!(r.text.starts_with("version = 3\n"), "{}", r.text);
        assert!(crate::containerd::analyse(&r.text, &policy())
            .unwrap()
            .errors
            .is_empty());
        let e = register("root = \"/x\"\n", None, &[], false, &[]).unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");
        let e = register("version = 1\n", None, &[], false, &[]).unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");
        assert!(register("version = = 2", None, &[], false, &[]).is_err());
        let inline =
            "version = 2\nplugins = { \"io.containerd.grpc.v1.cri\" = { containerd = {} } }\n";
        let e = register(inline, None, &[], false, &[]).unwrap_err();
        assert!(e.to_string().contains("inline table"), "{e}");
    }
}
