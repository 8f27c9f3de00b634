//! Text of the files the harness writes before starting containerd: its config (version 2 TOML,
//! CRI plugin with the router and any extra runtime handlers) and the CNI bridge network. Pure
//! functions, so the exact output is unit-tested without starting anything.

use std::path::Path;

use toml::{Table, Value};

use crate::error::{Error, Result};

/// CRI runtime handler name of the router.
pub const ROUTER_HANDLER: &str = "router";
/// containerd runtime type that resolves to `containerd-shim-router-v2` on PATH.
pub const ROUTER_RUNTIME_TYPE: &str = "io.containerd.router.v2";
/// containerd's own Go runc shim.
pub const RUNC_RUNTIME_TYPE: &str = "io.containerd.runc.v2";
/// Runtime type of the Kata stand-in (`containerd-shim-kata-standin-v2`, see [`crate::standin`]).
pub const STANDIN_RUNTIME_TYPE: &str = "io.containerd.kata-standin.v2";
/// Sandbox (pause) image the harness builds and imports itself.
pub const PAUSE_IMAGE: &str = "docker.io/local/pause:1";
/// General-purpose busybox image the harness builds and imports itself.
pub const BUSYBOX_IMAGE: &str = "docker.io/local/busybox:1";
/// Where the Debian CNI plugins live.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Pod annotations the router handler lets through to the shim by default.
pub const ROUTER_POD_ANNOTATIONS: [&str; 3] =
    ["runtime-router.io/*", "io.katacontainers.*", "dev.gvisor.*"];

/// Plugins a test containerd does not need (missing IDs are ignored by containerd).
const DISABLED_PLUGINS: [&str; 6] = [
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
];

/// One CRI runtime handler (`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.<name>]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeHandler {
    /// Handler name (what a RuntimeClass or `RunPodSandboxRequest.runtime_handler` names).
    pub name: String,
    /// containerd runtime type, e.g. `io.containerd.runc.v2`.
    pub runtime_type: String,
    /// Pod annotations passed through to the shim.
    pub pod_annotations: Vec<String>,
    /// The handler's `options` table; `None` writes no options table at all.
    pub options: Option<Table>,
}

impl RuntimeHandler {
    /// A handler with the given type, no annotations and no options table.
    pub fn new(name: impl Into<String>, runtime_type: impl Into<String>) -> Self {
        RuntimeHandler {
            name: name.into(),
            runtime_type: runtime_type.into(),
            pod_annotations: Vec::new(),
            options: None,
        }
    }

    /// The router handler as the SPEC registers it: `io.containerd.router.v2`, the router's pod
    /// annotations, no options table (so containerd sends no `ConfigPath` to a hand-off backend).
    pub fn router() -> Self {
        RuntimeHandler {
            pod_annotations: ROUTER_POD_ANNOTATIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..RuntimeHandler::new(ROUTER_HANDLER, ROUTER_RUNTIME_TYPE)
        }
    }

    /// containerd's Go runc shim registered directly (cgroupfs: `SystemdCgroup = false`), e.g. for
    /// benchmarks comparing the router against the backend it hands off to.
    pub fn runc(name: impl Into<String>) -> Self {
        let mut options = Table::new();
        options.insert("SystemdCgroup".into(), Value::Boolean(false));
        RuntimeHandler {
            options: Some(options),
            ..RuntimeHandler::new(name, RUNC_RUNTIME_TYPE)
        }
    }

    /// The Kata stand-in registered directly (a copy of the runc shim, see [`crate::standin`]).
    pub fn standin(name: impl Into<String>) -> Self {
        RuntimeHandler::new(name, STANDIN_RUNTIME_TYPE)
    }

    /// Adds pod annotations to pass through.
    pub fn with_pod_annotations<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pod_annotations
            .extend(keys.into_iter().map(Into::into));
        self
    }

    fn to_table(&self) -> Table {
        let mut t = Table::new();
        t.insert("runtime_type".into(), self.runtime_type.clone().into());
        if !self.pod_annotations.is_empty() {
            t.insert("pod_annotations".into(), strings(&self.pod_annotations));
        }
        if let Some(options) = &self.options {
            t.insert("options".into(), Value::Table(options.clone()));
        }
        t
    }
}

/// Paths and names one harness instance uses in containerd's config.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// containerd `root`.
    pub root: &'a Path,
    /// containerd `state`.
    pub state: &'a Path,
    /// gRPC socket.
    pub socket: &'a Path,
    /// CNI configuration directory (holds only this instance's network).
    pub cni_conf_dir: &'a Path,
    /// Directory for containerd's `opt` plugin (kept inside the temp dir).
    pub opt_dir: &'a Path,
}

/// What goes into the CRI plugin section.
#[derive(Debug, Clone)]
pub struct CriSettings<'a> {
    /// `default_runtime_name`.
    pub default_runtime_name: &'a str,
    /// Every registered handler (the router and any extras).
    pub handlers: &'a [RuntimeHandler],
    /// containerd log level.
    pub log_level: &'a str,
}

/// Renders containerd's config (version 2). Fails when the default handler is not registered or a
/// handler name repeats.
pub fn containerd_config(layout: &Layout<'_>, cri: &CriSettings<'_>) -> Result<String> {
    let mut seen = std::collections::BTreeSet::new();
    for h in cri.handlers {
        if h.name.is_empty() || !seen.insert(h.name.as_str()) {
            return Err(Error::Invalid(format!(
                "runtime handler name `{}` is empty or registered twice",
                h.name
            )));
        }
    }
    if !seen.contains(cri.default_runtime_name) {
        return Err(Error::Invalid(format!(
            "default_runtime_name `{}` is not a registered handler (registered: {})",
            cri.default_runtime_name,
            seen.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }

    let mut runtimes = Table::new();
    for h in cri.handlers {
        runtimes.insert(h.name.clone(), Value::Table(h.to_table()));
    }

    let mut ctd = Table::new();
    ctd.insert("snapshotter".into(), "overlayfs".into());
    ctd.insert(
        "default_runtime_name".into(),
        cri.default_runtime_name.into(),
    );
    ctd.insert("runtimes".into(), Value::Table(runtimes));

    let mut cni = Table::new();
    cni.insert("bin_dir".into(), CNI_BIN_DIR.into());
    cni.insert("conf_dir".into(), path_value(layout.cni_conf_dir));
    cni.insert("max_conf_num".into(), Value::Integer(1));

    let mut cri_plugin = Table::new();
    cri_plugin.insert("sandbox_image".into(), PAUSE_IMAGE.into());
    cri_plugin.insert("restrict_oom_score_adj".into(), Value::Boolean(true));
    cri_plugin.insert("stream_server_address".into(), "127.0.0.1".into());
    cri_plugin.insert("stream_server_port".into(), "0".into());
    cri_plugin.insert("enable_selinux".into(), Value::Boolean(false));
    cri_plugin.insert("containerd".into(), Value::Table(ctd));
    cri_plugin.insert("cni".into(), Value::Table(cni));

    let mut opt = Table::new();
    opt.insert("path".into(), path_value(layout.opt_dir));

    // containerd 2.x starts NRI by default on the host-wide /var/run/nri/nri.sock: two harnesses
    // at once then race for it and the loser exits ("failed to start NRI interface ... address
    // already in use"). Each harness gets its own socket (1.6 has no NRI and ignores this).
    let mut nri = Table::new();
    nri.insert(
        "socket_path".into(),
        path_value(&layout.socket.with_file_name("nri.sock")),
    );

    let mut plugins = Table::new();
    plugins.insert("io.containerd.nri.v1.nri".into(), Value::Table(nri));
    plugins.insert("io.containerd.grpc.v1.cri".into(), Value::Table(cri_plugin));
    plugins.insert("io.containerd.internal.v1.opt".into(), Value::Table(opt));

    let mut grpc = Table::new();
    grpc.insert("address".into(), path_value(layout.socket));
    let mut debug = Table::new();
    debug.insert("level".into(), cri.log_level.into());

    let mut top = Table::new();
    top.insert("version".into(), Value::Integer(2));
    top.insert("root".into(), path_value(layout.root));
    top.insert("state".into(), path_value(layout.state));
    top.insert(
        "disabled_plugins".into(),
        strings(&DISABLED_PLUGINS.map(String::from)),
    );
    top.insert("grpc".into(), Value::Table(grpc));
    top.insert("debug".into(), Value::Table(debug));
    top.insert("plugins".into(), Value::Table(plugins));
    toml::to_string(&top)
        .map_err(|e| Error::Invalid(format!("cannot render containerd config: {e}")))
}

/// The CNI network of one harness: a bridge with host-local IPAM on `subnet`, addresses recorded
/// in `ipam_dir` (inside the harness's temp dir).
pub fn cni_conflist(network: &str, bridge: &str, subnet: &str, ipam_dir: &Path) -> String {
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": subnet }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": ipam_dir.to_string_lossy(),
            }
        }]
    });
    // A json! value always serialises.
    serde_json::to_string_pretty(&conf).unwrap_or_default()
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

fn path_value(p: &Path) -> Value {
    Value::String(p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn layout_paths() -> [PathBuf; 5] {
        ["root", "state", "c.sock", "cni", "opt"].map(|n| PathBuf::from("/t").join(n))
    }

    fn render(default: &str, handlers: &[RuntimeHandler]) -> Result<String> {
        let p = layout_paths();
        let layout = Layout {
            root: &p[0],
            state: &p[1],
            socket: &p[2],
            cni_conf_dir: &p[3],
            opt_dir: &p[4],
        };
        containerd_config(
            &layout,
            &CriSettings {
                default_runtime_name: default,
                handlers,
                log_level: "info",
            },
        )
    }

    #[test]
    fn router_handler_has_annotations_and_no_options() {
        let text = render(
            "router",
            &[RuntimeHandler::router(), RuntimeHandler::runc("runc")],
        )
        .expect("renders");
        let parsed: Table = toml::from_str(&text).expect("valid toml");
        let cri = &parsed["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(cri["sandbox_image"].as_str(), Some(PAUSE_IMAGE));
        let ctd = &cri["containerd"];
        assert_eq!(ctd["default_runtime_name"].as_str(), Some("router"));
        let router = ctd["runtimes"]["router"].as_table().expect("router table");
        assert_eq!(router["runtime_type"].as_str(), Some(ROUTER_RUNTIME_TYPE));
        assert!(!router.contains_key("options"));
        let ann: Vec<&str> = router["pod_annotations"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(ann, ROUTER_POD_ANNOTATIONS);
        let runc = &ctd["runtimes"]["runc"];
        assert_eq!(runc["options"]["SystemdCgroup"].as_bool(), Some(false));
        assert_eq!(parsed["grpc"]["address"].as_str(), Some("/t/c.sock"));
        assert_eq!(parsed["version"].as_integer(), Some(2));
    }

    #[test]
    fn unknown_default_handler_is_refused_by_name() {
        let err = render("kata", &[RuntimeHandler::router()]).expect_err("must fail");
        assert!(err.to_string().contains("`kata`"), "{err}");
    }

    #[test]
    fn duplicate_handler_is_refused() {
        let err = render(
            "router",
            &[RuntimeHandler::router(), RuntimeHandler::router()],
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("registered twice"), "{err}");
    }

    #[test]
    fn cni_conf_names_bridge_and_subnet() {
        let text = cni_conflist("net1", "rrbr1", "192.0.2.0/25", Path::new("/t/ipam"));
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["plugins"][0]["bridge"], "rrbr1");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "192.0.2.0/25"
        );
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/t/ipam");
    }
}
