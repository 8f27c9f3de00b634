//! Runs the built `routerctl` for the cluster commands: `policy apply` (broken versions leave the
//! live file byte for byte), `node-features` on this host, `metrics` checked by `promtool`, and
//! `install`/`uninstall` of a containerd 2.x (config version 3) node under a temporary host root.
//! (The containerd 1.6 path runs end to end in tests/tests/cluster_install.rs.)

mod support;

use router_integration::PolicyText;
use std::path::Path;
use std::process::Command;
use support::routerctl;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn write(p: &Path, t: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(p, t).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// The policy these tests roll out: `kube-system` on runc, everyone else on gVisor; Kata defined
/// but unused.
fn policy() -> String {
    PolicyText::bare("untrusted")
        .runc()
        .gvisor()
        .shim("kata", "containerd-shim-kata-v2", &[], "vm")
        .tenant("provider", &["kube-system"], "runc")
        .tenant("untrusted", &[], "gvisor")
        .into()
}

#[test]
fn policy_apply_validates_then_replaces_atomically() {
    let d = tmp();
    let live = d.path().join("etc/runtime-router.toml");
    let new = d.path().join("new.toml");
    write(&new, &policy());
    let (code, out, err) = routerctl(&["policy", "apply", &s(&new), "--to", &s(&live)]);
    assert_eq!(code, 1, "missing target dir is an error\n{out}{err}");
    std::fs::create_dir_all(live.parent().unwrap_or(d.path())).unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err) = routerctl(&["policy", "apply", &s(&new), "--to", &s(&live)]);
    assert_eq!(code, 0, "{out}{err}");
    let first = router_digest(policy().as_bytes());
    assert!(out.contains(&format!("none -> {first}")), "{out}");
    assert_eq!(read(&live), policy().as_bytes());

    // a broken version: exit 1, file:line:col of FILE, live file byte for byte unchanged
    let broken = policy().replace("backend = \"gvisor\"", "backend = \"gvisr\"");
    write(&new, &broken);
    let before = read(&live);
    let (code, out, err) = routerctl(&["policy", "apply", &s(&new), "--to", &s(&live)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{}:25:11: tenants.untrusted.backend: unknown backend `gvisr`",
            new.display()
        )),
        "{err}"
    );
    assert!(err.contains("left unchanged"), "{err}");
    assert_eq!(read(&live), before);
    // not TOML at all
    write(&new, "version = = 1\n");
    let (code, _, err) = routerctl(&["policy", "apply", &s(&new), "--to", &s(&live)]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{}:1:", new.display())), "{err}");
    assert_eq!(read(&live), before);

    // a good second version: old and new digests, previous text kept beside it
    let second = policy().replace(
        "namespaces = [\"kube-system\"]",
        "namespaces = [\"kube-system\", \"infra\"]",
    );
    write(&new, &second);
    let (code, out, err) = routerctl(&["policy", "apply", &s(&new), "--to", &s(&live)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("{first} -> {}", router_digest(second.as_bytes()))),
        "{out}"
    );
    assert_eq!(read(&live), second.as_bytes());
    let mut prev = live.as_os_str().to_owned();
    prev.push(".prev");
    assert_eq!(read(Path::new(&prev)), policy().as_bytes());
    // the same text again: unchanged, .prev untouched
    let (code, out, _) = routerctl(&["policy", "apply", &s(&new), "--to", &s(&live)]);
    assert_eq!(code, 0);
    assert!(out.starts_with("unchanged"), "{out}");
    assert_eq!(read(Path::new(&prev)), policy().as_bytes());
    // $RUNTIME_ROUTER_CONFIG names the default target
    let out = Command::new(env!("CARGO_BIN_EXE_routerctl"))
        .args(["policy", "apply", &s(&new)])
        .env("RUNTIME_ROUTER_CONFIG", d.path().join("env.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success());
    assert_eq!(read(&d.path().join("env.toml")), second.as_bytes());
}

fn router_digest(b: &[u8]) -> String {
    router_config::digest(b)
}

#[test]
fn node_features_on_this_host() {
    let d = tmp();
    let p = d.path().join("policy.toml");
    write(&p, &policy());
    let (code, out, err) = routerctl(&["node-features", "--config", &s(&p)]);
    assert_eq!(code, 0, "{out}{err}");
    // this host: runc and a working runsc; no Kata shim binary, no usable /dev/kvm
    assert_eq!(
        out, "runtime-router.io/tier.container=true\nruntime-router.io/tier.sandbox=true\n",
        "{err}"
    );
    assert!(err.contains("vm: not served"), "{err}");
    let features = d.path().join("features.d");
    let (code, out, err) = routerctl(&[
        "node-features",
        "--config",
        &s(&p),
        "--output",
        &s(&features),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        read(&features.join("runtime-router")),
        b"runtime-router.io/tier.container=true\nruntime-router.io/tier.sandbox=true\n"
    );
    // a runsc that does not work serves no sandbox tier
    let fake = d.path().join("runsc");
    write(&fake, "#!/bin/sh\nexit 1\n");
    set_exec(&fake);
    write(&p, &policy().replace("/usr/bin/runsc", &s(&fake)));
    let (code, out, err) = routerctl(&["node-features", "--config", &s(&p)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "runtime-router.io/tier.container=true\n", "{err}");
    // an invalid policy writes nothing
    write(&p, "version = 1\ndefault_tenant = \"x\"\n");
    let (code, _, err) = routerctl(&["node-features", "--config", &s(&p)]);
    assert_eq!(code, 1, "{err}");
}

fn set_exec(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `promtool check metrics` on `text`: Ok or promtool's complaint.
fn promtool(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("promtool (scripts/install-deps.sh installs Debian's prometheus): {e}")
        })?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn metrics_from_an_audit_log_pass_promtool() {
    let d = tmp();
    let log = d.path().join("decisions.jsonl");
    let (code, out, err) = routerctl(&["metrics", "--audit-log", &s(&log)]);
    assert_eq!(code, 0, "{err}");
    promtool(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let lines = [
        r#"{"time":"t","outcome":"allowed","role":"sandbox","namespace":"k8s.io","id":"a","tenant":"provider","backend":"runc","isolation":"container","rule":"tenants.provider.namespaces[kube-system]","decision_us":40}"#,
        r#"{"time":"t","outcome":"allowed","role":"container","namespace":"k8s.io","id":"b","tenant":"provider","backend":"runc","isolation":"container","rule":"sandbox","decision_us":12}"#,
        r#"{"time":"t","outcome":"refused","role":"sandbox","namespace":"k8s.io","id":"c","tenant":null,"backend":null,"rule":"policy","message":"x \"quoted\" \\ y","decision_us":3000}"#,
        r#"{"time":"t","outcome":"allowed","role":"sandbox","namespace":"k8s.io","id":"d","tenant":"provider","backend":"runc","isolation":"container","rule":"tenants.provider.namespaces[kube-system]","decision_us":41}"#,
        "garbage",
    ];
    write(&log, &(lines.join("\n") + "\n"));
    let (code, out, err) = routerctl(&["metrics", "--audit-log", &s(&log)]);
    assert_eq!(code, 0, "{err}");
    promtool(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(out.contains("runtime_router_decisions_total{outcome=\"allowed\",role=\"sandbox\",tenant=\"provider\",backend=\"runc\",tier=\"container\",handler=\"\",rule=\"namespace\"} 2"), "{out}");
    assert!(out.contains("runtime_router_decisions_total{outcome=\"refused\",role=\"sandbox\",tenant=\"\",backend=\"\",tier=\"\",handler=\"\",rule=\"policy\"} 1"), "{out}");
    assert!(out.contains("runtime_router_decision_duration_seconds_count{outcome=\"allowed\",role=\"sandbox\"} 2"), "{out}");
    assert!(
        out.contains("runtime_router_audit_lines_invalid_total 1"),
        "{out}"
    );
    let (code, _, err) = routerctl(&["metrics"]);
    assert_eq!(code, 2, "{err}");
}

/// The audit lines of `pods` pods of tenant `untrusted`, as the router writes them: per pod a
/// sandbox line, a container line that follows it (rule `sandbox[<sandbox id>]`) and a refused
/// privileged container. Every count has the same tenant and rules; only ids differ.
fn audit_of(pods: usize) -> String {
    let mut out = String::new();
    let pod = |n: usize, out: &mut String| {
        let (t, b, iso, h, rule) = ("untrusted", "kata", "vm", "router-vm", "default_tenant");
        let id = format!("{n:064x}");
        *out += &format!("{{\"time\":\"t\",\"outcome\":\"allowed\",\"role\":\"sandbox\",\"id\":\"{id}\",\"sandbox_id\":\"{id}\",\"pod_name\":\"p{n}\",\"tenant\":\"{t}\",\"backend\":\"{b}\",\"isolation\":\"{iso}\",\"handler\":\"{h}\",\"rule\":\"{rule}\",\"decision_us\":{}}}\n", 40 + n % 500);
        let c = format!("{:064x}", n + 1_000_000);
        *out += &format!("{{\"time\":\"t\",\"outcome\":\"allowed\",\"role\":\"container\",\"id\":\"{c}\",\"sandbox_id\":\"{id}\",\"tenant\":\"{t}\",\"backend\":\"{b}\",\"isolation\":\"{iso}\",\"handler\":\"{h}\",\"rule\":\"sandbox[{id}]\",\"decision_us\":{}}}\n", 10 + n % 90);
        *out += &format!("{{\"time\":\"t\",\"outcome\":\"refused\",\"role\":\"container\",\"id\":\"x{n}\",\"sandbox_id\":\"{id}\",\"tenant\":\"{t}\",\"backend\":\"{b}\",\"isolation\":\"{iso}\",\"handler\":\"{h}\",\"rule\":\"deny:privileged\",\"decision_us\":30}}\n");
    };
    for n in 0..pods {
        pod(n, &mut out);
    }
    out
}

/// Series of an exposition: sample lines, without their values.
fn series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.rsplit_once(' ')
                .map(|(k, _)| k.to_string())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn series_do_not_grow_with_pods_and_promtool_accepts_each() {
    let d = tmp();
    let mut seen = Vec::new();
    for pods in [1usize, 100, 10_000] {
        let log = d.path().join(format!("decisions-{pods}.jsonl"));
        write(&log, &audit_of(pods));
        let (code, out, err) = routerctl(&["metrics", "--audit-log", &s(&log)]);
        assert_eq!(code, 0, "{err}");
        promtool(&out).unwrap_or_else(|e| panic!("{pods} pods: {e}\n{out}"));
        let lines = std::fs::read_to_string(&log).unwrap().lines().count() as u64;
        let counted: u64 = out
            .lines()
            .filter(|l| l.starts_with("runtime_router_decisions_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(counted, lines, "{pods} pods");
        assert!(
            !out.contains(&format!("{:064x}", 0)),
            "an id became a label:\n{out}"
        );
        seen.push((pods, series(&out)));
    }
    let (_, s1) = &seen[0];
    let (_, s100) = &seen[1];
    let (_, s10k) = &seen[2];
    assert_eq!(s1, s100, "series differ between 1 and 100 pods");
    assert_eq!(s100, s10k, "series differ between 100 and 10,000 pods");
    eprintln!(
        "series: 1 pod {}, 100 pods {}, 10,000 pods {}",
        s1.len(),
        s100.len(),
        s10k.len()
    );
}

const V3: &str = r#"version = 3
root = "/var/lib/containerd"

# images
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "registry.k8s.io/pause:3.10"

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"   # containerd 2.x default

  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      SystemdCgroup = true
"#;

#[test]
fn install_and_uninstall_a_containerd_2_node() {
    let d = tmp();
    let root = d.path().join("host");
    let cfg = root.join("etc/containerd/config.toml");
    write(&cfg, V3);
    // the node's policy names two tier handlers beside `router`
    let policy = PolicyText::new("provider")
        .runc()
        .gvisor()
        .tenant("provider", &["kube-system"], "runc")
        .handler("router", "container", None)
        .handler("router-sandbox", "sandbox", None)
        .handler("router-gvisor", "sandbox", Some("gvisor"))
        .to_string()
        .replace("{dir}", "/var/log/rr");
    write(&root.join("etc/containerd/runtime-router.toml"), &policy);
    // small stand-ins for the (200 MB debug) binaries: what is checked is the copy
    let bins = d.path().join("image-bin");
    for b in ["containerd-shim-router-v2", "routerctl"] {
        write(&bins.join(b), &format!("#!/bin/sh\necho {b}\n"));
        set_exec(&bins.join(b));
    }
    let marker = d.path().join("restarted");
    let restart = format!("echo restarted >> {}", marker.display());
    let (root_arg, bins_arg) = (s(&root), s(&bins));
    let install = [
        "install",
        "--host-root",
        &root_arg,
        "--from",
        &bins_arg,
        "--restart-command",
        &restart,
    ];
    let (code, out, err) = routerctl(&install);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("config version 3"), "{out}");
    let installed = String::from_utf8_lossy(&read(&cfg)).into_owned();
    assert!(
        installed.contains("default_runtime_name = \"router\"   # containerd 2.x default"),
        "{installed}"
    );
    assert!(
        installed.contains("sandbox = \"registry.k8s.io/pause:3.10\""),
        "{installed}"
    );
    assert!(!installed.contains("runtimes.runc"), "{installed}");
    // one runtime per tier handler, each the router under its own name
    for t in ["router-gvisor", "router-sandbox"] {
        assert!(
            installed.contains(&format!("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.{t}]\nruntime_type = \"io.containerd.{t}.v2\""))
                || installed.contains(&format!("runtimes.{t}]\n  runtime_type = \"io.containerd.{t}.v2\"")),
            "{t}:\n{installed}"
        );
        let link = root.join(format!("usr/local/bin/containerd-shim-{t}-v2"));
        assert_eq!(
            std::fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display())),
            Path::new("containerd-shim-router-v2")
        );
        assert!(
            out.contains(&format!("linked /usr/local/bin/containerd-shim-{t}-v2")),
            "{out}"
        );
    }
    for b in ["containerd-shim-router-v2", "routerctl"] {
        assert_eq!(
            read(&root.join("usr/local/bin").join(b)),
            read(&bins.join(b))
        );
    }
    assert_eq!(read(&marker), b"restarted\n");
    // the result passes `check`: the router is the only handler and the default
    let node_policy = s(&root.join("etc/containerd/runtime-router.toml"));
    let (code, out, err) = routerctl(&["check", &node_policy, "--containerd-config", &s(&cfg)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("every pod goes through the router"), "{out}");
    assert!(!out.contains("warning"), "{out}");
    // running it again changes nothing and does not restart containerd
    let (code, out, err) = routerctl(&install);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already registers the router"), "{out}");
    assert_eq!(String::from_utf8_lossy(&read(&cfg)), installed);
    assert_eq!(read(&marker), b"restarted\n");

    // a node-feature file written later is removed by uninstall
    write(
        &root.join("etc/kubernetes/node-feature-discovery/features.d/runtime-router"),
        "x=true\n",
    );
    let (code, out, err) = routerctl(&[
        "uninstall",
        "--host-root",
        &s(&root),
        "--restart-command",
        &restart,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(read(&cfg), V3.as_bytes(), "not restored byte for byte");
    assert!(!root.join("usr/local/bin/routerctl").exists());
    for t in ["router-gvisor", "router-sandbox"] {
        let link = root.join(format!("usr/local/bin/containerd-shim-{t}-v2"));
        assert!(link.symlink_metadata().is_err(), "{} left", link.display());
    }
    assert!(!root
        .join("etc/kubernetes/node-feature-discovery/features.d/runtime-router")
        .exists());
    assert!(!root.join("var/lib/runtime-router").exists());
    assert_eq!(read(&marker), b"restarted\nrestarted\n");
    let left: Vec<_> = std::fs::read_dir(root.join("etc/containerd"))
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| e.map(|e| e.file_name()))
        .collect();
    assert_eq!(left.len(), 2, "config and policy only: {left:?}");

    // an edit after install is not overwritten without --force
    let (code, _, _) = routerctl(&["install", "--host-root", &s(&root), "--from", &s(&bins)]);
    assert_eq!(code, 0);
    write(
        &cfg,
        &(String::from_utf8_lossy(&read(&cfg)).into_owned() + "# edited\n"),
    );
    let (code, _, err) = routerctl(&["uninstall", "--host-root", &s(&root)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    let (code, out, err) = routerctl(&["uninstall", "--host-root", &s(&root), "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(read(&cfg), V3.as_bytes());
    assert!(root
        .join("etc/containerd/config.toml.runtime-router-modified")
        .exists());

    // a node without a config file: --config-version is needed, uninstall removes the file again
    let root2 = d.path().join("host2");
    std::fs::create_dir_all(&root2).unwrap_or_else(|e| panic!("{e}"));
    let (code, _, err) = routerctl(&["install", "--host-root", &s(&root2), "--from", &s(&bins)]);
    assert_eq!(code, 1);
    assert!(err.contains("--config-version"), "{err}");
    assert!(!root2.join("usr").exists(), "nothing written on error");
    let (code, out, err) = routerctl(&[
        "install",
        "--host-root",
        &s(&root2),
        "--from",
        &s(&bins),
        "--config-version",
        "3",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = routerctl(&["uninstall", "--host-root", &s(&root2)]);
    assert_eq!(code, 0, "{err}");
    assert!(!root2.join("etc/containerd/config.toml").exists());
}

/// The policy embedded in deploy/kubernetes/configmap.yaml (the block under `runtime-router.toml: |`).
fn configmap_policy() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/configmap.yaml");
    let text = String::from_utf8_lossy(&read(&path)).into_owned();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("runtime-router.toml: |"));
    lines.next();
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect()
}

#[test]
fn deploy_manifests_policy_is_valid_and_classes_use_the_feature_labels() {
    let d = tmp();
    let p = d.path().join("configmap-policy.toml");
    let policy = configmap_policy();
    assert!(policy.contains("[tenants.provider]"), "{policy}");
    write(&p, &policy);
    let (code, out, err) = routerctl(&["check", &s(&p)]);
    assert_eq!(code, 0, "{out}{err}");
    let classes = String::from_utf8_lossy(&read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/runtimeclass.yaml"),
    ))
    .into_owned();
    // every tier label node-features can print is used by a RuntimeClass nodeSelector
    for tier in ["container", "sandbox", "vm"] {
        assert!(
            classes.contains(&format!("runtime-router.io/tier.{tier}: \"true\"")),
            "{tier}"
        );
    }
    let (code, out, _) = routerctl(&["node-features", "--config", &s(&p)]);
    assert_eq!(code, 0);
    for l in out.lines() {
        let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{l}"));
        assert!(classes.contains(&format!("{k}: \"{v}\"")), "{l}");
    }
    // one class per handler of the policy: named as the handler's runtime_class, naming the
    // handler, selecting the tier the handler reserves, with overhead above the container tier
    let pol = router_config::parse(&policy, &p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pol.handlers.len(), 3);
    let docs: Vec<&str> = classes.split("\n---\n").collect();
    assert_eq!(docs.len(), 3, "{classes}");
    for h in pol.handlers.values() {
        let doc = docs
            .iter()
            .find(|d| d.contains(&format!("\n  name: {}\n", h.runtime_class)))
            .unwrap_or_else(|| panic!("no RuntimeClass {}", h.runtime_class));
        assert!(doc.contains(&format!("\nhandler: {}\n", h.name)), "{doc}");
        assert!(
            doc.contains(&format!("runtime-router.io/tier.{}: \"true\"", h.reserves)),
            "{doc}"
        );
        assert_eq!(
            doc.contains("podFixed:"),
            h.reserves != router_config::Isolation::Container,
            "{doc}"
        );
    }
}
