//! Table tests for parsing and validation.

use super::*;

const SPEC_EXAMPLE: &str = r#"version = 1
audit_log = "/var/log/runtime-router/decisions.jsonl"
default_tenant = "untrusted"              # used when no tenant matches: fail closed
allowed_host_paths = ["/var/lib/kubelet/pods/", "/var/lib/containerd/", "/run/containerd/"]

[backends.runc]
kind = "builtin"                          # served by this binary
runtime = "/usr/bin/runc"                 # OCI runtime CLI to drive
isolation = "container"                   # container < sandbox < vm

[backends.kata]
kind = "shim"                             # handed to another shim v2 binary
binary = "containerd-shim-kata-v2"        # a name on PATH or an absolute path
env = { KATA_CONF_FILE = "/etc/kata-containers/configuration-qemu.toml" }
isolation = "vm"

[tenants.provider]
namespaces = ["kube-system", "telemetry", "sdewan-*"]   # Kubernetes namespaces, globs allowed
containerd_namespaces = ["infra"]        # for tasks started outside CRI (ctr, nerdctl): no k8s namespace
backend = "runc"

[tenants.untrusted]
backend = "kata"
deny = ["host-network", "host-pid", "host-ipc", "privileged", "host-path", "runtime-annotations"]
allow_annotations = ["io.katacontainers.config.hypervisor.default_memory"]
"#;

fn p(text: &str) -> Result<Policy, ConfigError> {
    parse(text, Path::new("/etc/rr.toml"))
}

#[test]
fn spec_example_parses() {
    let pol = p(SPEC_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pol.version, 1);
    assert_eq!(pol.default_tenant, "untrusted");
    assert_eq!(pol.backends["runc"].isolation, Isolation::Container);
    assert_eq!(
        pol.backends["runc"].kind,
        BackendKind::Builtin {
            runtime: PathBuf::from("/usr/bin/runc"),
            runtime_args: vec![]
        }
    );
    match &pol.backends["kata"].kind {
        BackendKind::Shim { binary, env } => {
            assert_eq!(binary, "containerd-shim-kata-v2");
            assert_eq!(
                env.get("KATA_CONF_FILE").map(String::as_str),
                Some("/etc/kata-containers/configuration-qemu.toml")
            );
        }
        other => panic!("kata parsed as {other:?}"),
    }
    let prov = &pol.tenants["provider"];
    assert_eq!(prov.namespaces, ["kube-system", "telemetry", "sdewan-*"]);
    assert_eq!(prov.containerd_namespaces, ["infra"]);
    assert_eq!(pol.tenants["untrusted"].deny.len(), 6);
    assert!(pol.digest.starts_with("sha256:") && pol.digest.len() == 7 + 64);
    assert_eq!(
        pol.source,
        PolicySource::File(PathBuf::from("/etc/rr.toml"))
    );
}

#[test]
fn embedded_default_is_valid_and_fail_closed() {
    let pol = embedded_default();
    assert_eq!(pol.source, PolicySource::Embedded);
    let system = &pol.tenants["system"];
    assert_eq!(system.namespaces, ["kube-system"]);
    assert_eq!(
        pol.backends[&system.backend].isolation,
        Isolation::Container
    );
    assert_eq!(
        pol.backends["runc"].kind,
        BackendKind::Builtin {
            runtime: PathBuf::from("/usr/sbin/runc"),
            runtime_args: vec![]
        }
    );
    let def = &pol.tenants[&pol.default_tenant];
    assert_eq!(pol.backends[&def.backend].isolation, Isolation::Vm);
    assert_eq!(def.deny, DenyRule::ALL[..8].to_vec());
    assert_eq!(def.pod_security, Some(crate::PodSecurity::Baseline));
    for rule in crate::PodSecurity::BASELINE {
        assert!(def.denies(rule), "default tenant does not enforce {rule}");
    }
    assert!(
        matches!(&pol.backends["kata"].kind, BackendKind::Shim { binary, .. } if binary == "containerd-shim-kata-v2")
    );
}

/// `/` in `allowed_host_paths` is valid since the floor exists: everything but what no policy
/// opens (containerd's and the router's own paths, enforced at `start`; `routerctl check` calls
/// such an entry an error).
#[test]
fn root_is_a_valid_host_path_entry() {
    let text = SPEC_EXAMPLE.replacen("\"/run/containerd/\"", "\"/\"", 1);
    let pol = p(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(pol.allowed_host_paths.iter().any(|e| e == "/"));
}

#[test]
fn digest_changes_with_text() {
    let a = p(SPEC_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let b = p(&format!("{SPEC_EXAMPLE}\n# comment\n")).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(a.digest, b.digest);
}

/// Replaces `from` with `to` in the SPEC example (must occur) and returns the single error.
fn mistake(from: &str, to: &str) -> Diagnostic {
    assert!(SPEC_EXAMPLE.contains(from), "fixture lacks {from:?}");
    let text = SPEC_EXAMPLE.replacen(from, to, 1);
    match p(&text) {
        Ok(_) => panic!("accepted a policy with {to:?}"),
        Err(e) => {
            let d = e.diagnostics();
            assert!(!d.is_empty(), "no diagnostics for {to:?}: {e}");
            d[0].clone()
        }
    }
}

#[test]
fn validation_errors_name_file_line_column_and_field() {
    // (replace, with, field, message part, line)
    let cases: &[(&str, &str, &str, &str, usize)] = &[
        (
            "backend = \"kata\"",
            "backend = \"kata2\"",
            "tenants.untrusted.backend",
            "unknown backend `kata2`",
            23,
        ),
        (
            "\"host-pid\"",
            "\"host-pids\"",
            "tenants.untrusted.deny[1]",
            "unknown deny rule `host-pids`",
            24,
        ),
        (
            "default_tenant = \"untrusted\"",
            "default_tenant = \"nobody\"",
            "default_tenant",
            "unknown tenant `nobody`",
            3,
        ),
        (
            "isolation = \"vm\"",
            "isolation = \"vmm\"",
            "backends.kata.isolation",
            "unknown isolation level `vmm`",
            15,
        ),
        (
            "binary = \"containerd-shim-kata-v2\"",
            "binary = \"\"",
            "backends.kata.binary",
            "empty",
            13,
        ),
        (
            "binary = \"containerd-shim-kata-v2\"",
            "binary = \"bin/kata\"",
            "backends.kata.binary",
            "relative path",
            13,
        ),
        (
            "runtime = \"/usr/bin/runc\"",
            "runtime = \"  \"",
            "backends.runc.runtime",
            "empty",
            8,
        ),
        (
            "kind = \"shim\"",
            "kind = \"vm\"",
            "backends.kata.kind",
            "unknown backend kind `vm`",
            12,
        ),
        (
            "version = 1",
            "version = 2",
            "version",
            "unsupported version 2",
            1,
        ),
        (
            "\"telemetry\"",
            "\"telemetry\", \"telemetry\"",
            "tenants.provider.namespaces[2]",
            "listed twice",
            18,
        ),
        (
            "\"/run/containerd/\"",
            "\"run/containerd\"",
            "allowed_host_paths[2]",
            "not an absolute path",
            4,
        ),
        (
            "\"/run/containerd/\"",
            "\"/var/lib/../etc\"",
            "allowed_host_paths[2]",
            "`..`",
            4,
        ),
        (
            "audit_log = \"/var",
            "audit_log = \"var",
            "audit_log",
            "not an absolute path",
            2,
        ),
        (
            "\"io.katacontainers.config.hypervisor.default_memory\"",
            "\"io.katacontainers.*\"",
            "tenants.untrusted.allow_annotations[0]",
            "bare family prefix",
            25,
        ),
        (
            "\"io.katacontainers.config.hypervisor.default_memory\"",
            "\"foo.bar\"",
            "tenants.untrusted.allow_annotations[0]",
            "not a runtime annotation",
            25,
        ),
        (
            "\"io.katacontainers.config.hypervisor.default_memory\"",
            "\"io.katacontainers.*.x\"",
            "tenants.untrusted.allow_annotations[0]",
            "only allowed once, at the end",
            25,
        ),
        (
            "\"sdewan-*\"",
            "\"sdewan/*\"",
            "tenants.provider.namespaces[2]",
            "character '/'",
            18,
        ),
        (
            "\"privileged\", ",
            "\"privileged\", \"privileged\", ",
            "tenants.untrusted.deny[4]",
            "listed twice",
            24,
        ),
        // unknown keys are errors, with the key's path
        (
            "isolation = \"vm\"",
            "isolation = \"vm\"\nisolaton = \"vm\"",
            "backends.kata.isolaton",
            "unknown field `isolaton`",
            16,
        ),
        (
            "version = 1",
            "version = 1\nfoo = true",
            "foo",
            "unknown field `foo`",
            2,
        ),
        (
            "backend = \"runc\"",
            "backend = \"runc\"\nnamespace = [\"x\"]",
            "tenants.provider.namespace",
            "unknown field `namespace`",
            21,
        ),
        // kind-specific keys
        (
            "isolation = \"container\"",
            "isolation = \"container\"\nbinary = \"x\"",
            "backends.runc.binary",
            "not allowed for kind `builtin`",
            10,
        ),
        (
            "isolation = \"vm\"",
            "isolation = \"vm\"\nruntime = \"/x\"",
            "backends.kata.runtime",
            "not allowed for kind `shim`",
            16,
        ),
        // wrong type
        (
            "version = 1",
            "version = \"1\"",
            "version",
            "invalid type",
            1,
        ),
        // syntax
        ("[tenants.untrusted]", "[tenants.untrusted", "", "", 22),
    ];
    for (from, to, field, msg, line) in cases {
        let d = mistake(from, to);
        assert_eq!(d.file, PathBuf::from("/etc/rr.toml"), "{to}");
        assert_eq!(&d.field, field, "field for {to:?}: {d}");
        assert!(d.message.contains(msg), "message for {to:?}: {d}");
        assert_eq!(d.line, *line, "line for {to:?}: {d}");
        assert!(d.column >= 1);
        let shown = d.to_string();
        assert!(
            shown.starts_with(&format!("/etc/rr.toml:{line}:")),
            "{shown}"
        );
    }
}

#[test]
fn display_matches_documented_shape() {
    let d = mistake("backend = \"kata\"", "backend = \"kata2\"");
    assert_eq!(
        d.to_string(),
        "/etc/rr.toml:23:11: tenants.untrusted.backend: unknown backend `kata2` (defined: `kata`, `runc`)"
    );
}

#[test]
fn duplicate_exact_namespace_across_tenants_is_an_error() {
    let text = SPEC_EXAMPLE.replace(
        "backend = \"kata\"",
        "backend = \"kata\"\nnamespaces = [\"telemetry\"]",
    );
    let e = p(&text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("tenants.untrusted.namespaces[0]: namespace `telemetry` is already claimed by tenant `provider` (line 18)"),
        "{e}"
    );
    // the same glob twice is an error too; different globs overlapping are fine
    let text = SPEC_EXAMPLE.replace(
        "backend = \"kata\"",
        "backend = \"kata\"\nnamespaces = [\"sdewan-*\"]",
    );
    assert!(p(&text).is_err());
    let text = SPEC_EXAMPLE.replace(
        "backend = \"kata\"",
        "backend = \"kata\"\nnamespaces = [\"sdewan-x*\"]",
    );
    assert!(p(&text).is_ok());
    // containerd namespaces too
    let text = SPEC_EXAMPLE.replace(
        "backend = \"kata\"",
        "backend = \"kata\"\ncontainerd_namespaces = [\"infra\"]",
    );
    assert!(p(&text)
        .err()
        .is_some_and(|e| e.to_string().contains("containerd_namespaces[0]")));
}

#[test]
fn missing_required_fields() {
    let cases: &[(&str, &str, &str)] = &[
        ("version = 1\n", "", "version"),
        ("default_tenant = \"untrusted\"", "", "default_tenant"),
        ("backend = \"kata\"\n", "", "tenants.untrusted.backend"),
        ("isolation = \"vm\"\n", "", "backends.kata.isolation"),
        ("kind = \"shim\"", "", "backends.kata.kind"),
        (
            "binary = \"containerd-shim-kata-v2\"",
            "",
            "backends.kata.binary",
        ),
        ("runtime = \"/usr/bin/runc\"", "", "backends.runc.runtime"),
    ];
    for (from, to, field) in cases {
        let d = mistake(from, to);
        assert_eq!(&d.field, field, "{d}");
        assert!(d.message.contains("missing"), "{d}");
    }
}

#[test]
fn all_mistakes_are_reported() {
    let text = SPEC_EXAMPLE
        .replace("backend = \"kata\"", "backend = \"kata2\"")
        .replace("isolation = \"container\"", "isolation = \"none\"");
    let e = p(&text).err().unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.diagnostics().len(), 2, "{e}");
}

#[test]
fn absent_allowed_host_paths_defaults_to_runtime_dirs() {
    let text = SPEC_EXAMPLE.replace(
        "allowed_host_paths = [\"/var/lib/kubelet/pods/\", \"/var/lib/containerd/\", \"/run/containerd/\"]\n",
        "",
    );
    let pol = p(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pol.allowed_host_paths, DEFAULT_ALLOWED_HOST_PATHS);
}

#[test]
fn load_falls_back_only_on_missing_file() {
    let dir = std::env::temp_dir().join(format!("rr-config-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let missing = dir.join("missing.toml");
    let pol = load(Some(&missing)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pol.source, PolicySource::Embedded);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "version = 1\nbogus = 2\n").unwrap_or_else(|e| panic!("{e}"));
    let e = load(Some(&bad))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with(&format!("{}:", bad.display())), "{e}");

    let good = dir.join("good.toml");
    std::fs::write(&good, SPEC_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let pol = load(Some(&good)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pol.source, PolicySource::File(good.clone()));
    // loaded twice (the second time from the cache) and after an edit: always the file's content
    let again = load(Some(&good)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, pol);
    std::fs::write(&good, SPEC_EXAMPLE.replace("\"telemetry\", ", ""))
        .unwrap_or_else(|e| panic!("{e}"));
    let edited = load(Some(&good)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        edited.tenants["provider"].namespaces,
        ["kube-system", "sdewan-*"]
    );
    assert_ne!(edited.digest, pol.digest);
    std::fs::write(&good, "version = 1\nbogus = 2\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(load(Some(&good)).is_err());

    // a directory is not a missing file: fail closed
    assert!(matches!(load(Some(&dir)), Err(ConfigError::Read { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_roundtrip_and_distrust() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("rr-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = dir.join("cache");
    let pol = p(SPEC_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let text = SPEC_EXAMPLE.as_bytes();
    let file = dir.join("policy.toml");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    let id = std::fs::metadata(&file)
        .map(|m| cache::FileId::of(&m))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cache::lookup(&cache, &id, text).is_none());
    cache::store(&cache, &id, text, &pol);
    let mut embedded = pol.clone();
    embedded.source = PolicySource::Embedded;
    assert_eq!(cache::lookup(&cache, &id, text).as_ref(), Some(&embedded));
    // another text for the same file (an edit, however fast), or another file: not used
    let edited = format!("{SPEC_EXAMPLE}\n#x\n");
    assert!(cache::lookup(&cache, &id, edited.as_bytes()).is_none());
    assert!(cache::lookup(&cache, &id, &text[..text.len() - 1]).is_none());
    let other_file = cache::FileId {
        ino: id.ino + 1,
        ..id
    };
    assert!(cache::lookup(&cache, &other_file, text).is_none());
    // another owner, or a group-writable directory or entry, is not trusted
    let stranger = cache::FileId {
        owner: id.owner + 1,
        ..id
    };
    assert!(cache::lookup(&cache, &stranger, text).is_none());
    let _ = std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o770));
    assert!(cache::lookup(&cache, &id, text).is_none());
    let _ = std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700));
    assert!(cache::lookup(&cache, &id, text).is_some());
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let _ = std::fs::set_permissions(&entries[0], std::fs::Permissions::from_mode(0o620));
    assert!(cache::lookup(&cache, &id, text).is_none());
    // a damaged entry is ignored; storing again repairs it
    std::fs::write(&entries[0], b"RRC4garbage").unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::set_permissions(&entries[0], std::fs::Permissions::from_mode(0o600));
    assert!(cache::lookup(&cache, &id, text).is_none());
    cache::store(&cache, &id, text, &pol);
    assert_eq!(cache::lookup(&cache, &id, text).as_ref(), Some(&embedded));
    // an entry that is a symlink is not followed
    let _ = std::fs::remove_file(&entries[0]);
    std::os::unix::fs::symlink(&file, &entries[0]).unwrap_or_else(|e| panic!("{e}"));
    assert!(cache::lookup(&cache, &id, text).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn host_path_placeholders_are_whole_components() {
    let with = |entry: &str| {
        SPEC_EXAMPLE.replace(
            "allowed_host_paths = [\"/var/lib/kubelet/pods/\", \"/var/lib/containerd/\", \"/run/containerd/\"]",
            &format!("allowed_host_paths = [\"{entry}\"]"),
        )
    };
    for ok in [
        "/var/lib/kubelet/pods/{pod_uid}/",
        "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
    ] {
        let pol = p(&with(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(pol.allowed_host_paths, [ok]);
    }
    for bad in [
        "/var/lib/kubelet/pods/{uid}/",
        "/var/lib/kubelet/pods/x{pod_uid}/",
        "/var/lib/kubelet/pods/{pod_uid",
    ] {
        let e = p(&with(bad))
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        let d = &e.diagnostics()[0];
        assert_eq!(d.field, "allowed_host_paths[0]", "{e}");
        assert!(d.message.contains("placeholder"), "{e}");
        assert_eq!(d.line, 4, "{e}");
    }
}

#[test]
fn oversized_fifo_and_device_policies_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let mut text = SPEC_EXAMPLE.to_string();
    while text.len() as u64 <= safefile::MAX_POLICY_BYTES {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, &text).unwrap();
    let fifo = dir.path().join("fifo.toml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let zero = dir.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for (path, want) in [
        (&big, "larger than the limit"),
        (&fifo, "not a regular file"),
        (&zero, "not a regular file"),
    ] {
        let t = std::time::Instant::now();
        let e = load(Some(path))
            .err()
            .unwrap_or_else(|| panic!("{path:?} loaded"));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(want), "{msg}");
    }
}

/// `pod_security` takes a level's rules beside `deny`, in `deny`'s order first; the level is
/// kept through the cache's encoding; a level that does not exist is an error at its line.
#[test]
fn pod_security_levels() {
    let text = SPEC_EXAMPLE.replacen(
        "[tenants.untrusted]\nbackend = \"kata\"\n",
        "[tenants.untrusted]\nbackend = \"kata\"\npod_security = \"restricted\"\n",
        1,
    );
    let pol = p(&text).unwrap_or_else(|e| panic!("{e}"));
    let t = &pol.tenants["untrusted"];
    assert_eq!(t.pod_security, Some(PodSecurity::Restricted));
    let rules: Vec<DenyRule> = t.rules().collect();
    assert_eq!(rules[..6], t.deny[..]);
    for r in PodSecurity::Restricted.rules() {
        assert!(rules.contains(&r), "{r} missing from {rules:?}");
        assert_eq!(rules.iter().filter(|x| **x == r).count(), 1, "{r} twice");
    }
    assert!(t.denies(DenyRule::RunAsRoot));
    assert_eq!(t.level_of(DenyRule::Seccomp), Some(PodSecurity::Restricted));
    assert_eq!(t.level_of(DenyRule::RuntimeAnnotations), None);
    let provider = &pol.tenants["provider"];
    assert_eq!(provider.rules().count(), 0);
    assert!(!provider.denies(DenyRule::Seccomp));
    // baseline is a part of restricted; neither holds runtime-annotations
    for r in PodSecurity::BASELINE {
        assert!(PodSecurity::Restricted.enforces(r));
    }
    assert!(!PodSecurity::Baseline.enforces(DenyRule::RunAsRoot));
    assert!(!PodSecurity::Restricted.enforces(DenyRule::RuntimeAnnotations));
    assert_eq!(
        codec::decode(&codec::encode(&pol)).map(|d| d.tenants),
        Some(pol.tenants.clone())
    );

    let d = mistake(
        "[tenants.untrusted]\nbackend = \"kata\"\n",
        "[tenants.untrusted]\nbackend = \"kata\"\npod_security = \"strict\"\n",
    );
    assert_eq!(d.field, "tenants.untrusted.pod_security");
    assert!(
        d.message
            .contains("unknown Pod Security Standards level `strict`"),
        "{d}"
    );
    assert_eq!(d.line, 24);
    // every new rule name parses and round-trips
    for r in DenyRule::ALL {
        assert_eq!(DenyRule::from_name(r.as_str()), Some(r));
    }
}

/// The README's "policy in ten lines" is a valid policy whose untrusted tenant takes baseline.
#[test]
fn readme_policy_in_ten_lines_validates() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## The policy in ten lines")
        .nth(1)
        .unwrap_or_else(|| panic!("README lost its policy section"));
    let start = section.find("```toml\n").map(|i| i + 8).unwrap_or(0);
    let len = section[start..].find("```").unwrap_or(0);
    let text = &section[start..start + len];
    assert!(text.lines().count() <= 10, "{text}");
    let pol = p(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        pol.tenants["untrusted"].pod_security,
        Some(PodSecurity::Baseline)
    );
}

#[test]
fn audit_log_cap_keys() {
    let pol = p(SPEC_EXAMPLE).unwrap();
    assert_eq!(pol.audit_log_max_bytes, DEFAULT_AUDIT_LOG_MAX_BYTES);
    assert_eq!(pol.audit_log_keep, DEFAULT_AUDIT_LOG_KEEP);
    let set = SPEC_EXAMPLE.replacen(
        "default_tenant =",
        "audit_log_max_bytes = 65536\naudit_log_keep = 7\ndefault_tenant =",
        1,
    );
    let pol = p(&set).unwrap();
    assert_eq!((pol.audit_log_max_bytes, pol.audit_log_keep), (65536, 7));
    assert_eq!(
        codec::decode(&codec::encode(&pol)).map(|d| (d.audit_log_max_bytes, d.audit_log_keep)),
        Some((65536, 7))
    );
    let off = SPEC_EXAMPLE.replacen(
        "default_tenant =",
        "audit_log_max_bytes = 0\ndefault_tenant =",
        1,
    );
    assert_eq!(p(&off).unwrap().audit_log_max_bytes, 0);
    // (with, field, message part)
    let cases = [
        (
            "audit_log_max_bytes = 16",
            "audit_log_max_bytes",
            "at least 4096 bytes",
        ),
        (
            "audit_log_max_bytes = -1",
            "audit_log_max_bytes",
            "is not 0",
        ),
        (
            "audit_log_keep = 0",
            "audit_log_keep",
            "keep between 1 and 100",
        ),
        (
            "audit_log_keep = 101",
            "audit_log_keep",
            "keep between 1 and 100",
        ),
    ];
    for (with, field, part) in cases {
        let d = mistake("default_tenant =", &format!("{with}\ndefault_tenant ="));
        assert_eq!(d.field, field, "{with}");
        assert_eq!(d.line, 3, "{with}");
        assert!(d.message.contains(part), "{with}: {}", d.message);
    }
}

#[test]
fn handler_table() {
    let table =
        "\n[handlers.router]\nreserves = \"container\"\n[handlers.router-vm]\nreserves = \"vm\"\n";
    let pol = p(&format!("{SPEC_EXAMPLE}{table}")).unwrap();
    assert!(p(SPEC_EXAMPLE).unwrap().handlers.is_empty());
    let vm = &pol.handlers["router-vm"];
    // the one vm backend serves pods the handler raises; the class defaults to the name
    assert_eq!(
        (
            vm.reserves,
            vm.backend.as_deref(),
            vm.runtime_class.as_str()
        ),
        (Isolation::Vm, Some("kata"), "router-vm")
    );
    assert_eq!(pol.handlers["router"].backend, None);
    assert_eq!(pol.handler_reserves(Some("router-vm")).0, Isolation::Vm);
    assert_eq!(pol.handler_reserves(Some("nope")).0, Isolation::Container);
    assert_eq!(
        pol.handler_for(Isolation::Sandbox).map(|h| h.name.as_str()),
        Some("router-vm")
    );
    let top = SPEC_EXAMPLE.replacen(
        "default_tenant =",
        "unnamed_handler_reserves = \"vm\"\nunaccounted_tiers = [\"sandbox\"]\ndefault_tenant =",
        1,
    );
    let pol = p(&format!("{top}{table}")).unwrap();
    assert_eq!(
        (pol.unnamed_handler_reserves, pol.unaccounted_tiers.clone()),
        (Isolation::Vm, vec![Isolation::Sandbox])
    );
    let back = codec::decode(&codec::encode(&pol)).unwrap();
    assert_eq!(
        (
            back.handlers,
            back.unnamed_handler_reserves,
            back.unaccounted_tiers
        ),
        (
            pol.handlers.clone(),
            pol.unnamed_handler_reserves,
            pol.unaccounted_tiers.clone()
        )
    );

    // (appended table, field, message part)
    let cases = [
        (
            "[handlers.Router]\nreserves = \"vm\"\n",
            "handlers.Router",
            "not a DNS label",
        ),
        ("[handlers.r]\n", "handlers.r.reserves", "missing"),
        (
            "[handlers.r]\nreserves = \"strong\"\n",
            "handlers.r.reserves",
            "unknown tier `strong`",
        ),
        (
            "[handlers.r]\nreserves = \"sandbox\"\n",
            "handlers.r.backend",
            "backends of that tier: none",
        ),
        (
            "[handlers.r]\nreserves = \"vm\"\nbackend = \"runc\"\n",
            "handlers.r.backend",
            "isolation container, not the vm",
        ),
        (
            "[handlers.r]\nreserves = \"vm\"\nbackend = \"gone\"\n",
            "handlers.r.backend",
            "unknown backend `gone`",
        ),
        (
            "[handlers.r]\nreserves = \"vm\"\nruntime_class = \"A_B\"\n",
            "handlers.r.runtime_class",
            "RuntimeClass name",
        ),
        (
            "[handlers.r]\nreserves = \"vm\"\nextra = 1\n",
            "handlers.r.extra",
            "unknown field",
        ),
        ("[handlers]\n", "handlers", "empty table"),
    ];
    for (table, field, part) in cases {
        let text = format!("{SPEC_EXAMPLE}\n{table}");
        let e = p(&text).expect_err(table);
        let d = &e.diagnostics()[0];
        assert!(
            d.field == field && d.message.contains(part),
            "{table}: {} {}",
            d.field,
            d.message
        );
        assert!(d.line > 20, "{table}: line {}", d.line);
    }
    let d = mistake(
        "default_tenant =",
        "unaccounted_tiers = [\"big\"]\ndefault_tenant =",
    );
    assert_eq!((d.field.as_str(), d.line), ("unaccounted_tiers[0]", 3));
}
