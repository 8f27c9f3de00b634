//! Runs the built `routerctl` binary: check (policy, containerd config) and explain (allowed,
//! refused, traps), with exit codes.

mod support;

use router_integration::policy::UNTRUSTED_DENY;
use router_integration::PolicyText;
use std::path::{Path, PathBuf};
use support::routerctl;

/// The policy these tests check and explain with: `kube-system` and `sdewan-*` (and containerd
/// namespace `infra`) on runc, everyone else on Kata with the host-facing deny rules.
fn policy() -> String {
    PolicyText::bare("untrusted")
        .allowed_host_paths(&[
            "/var/lib/kubelet/pods/{pod_uid}/",
            "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
        ])
        .runc()
        .shim("kata", "containerd-shim-kata-v2", &[], "vm")
        .tenant("provider", &["kube-system", "sdewan-*"], "runc")
        .list("containerd_namespaces", &["infra"])
        .tenant("untrusted", &[], "kata")
        .list("deny", &UNTRUSTED_DENY[..6])
        .list(
            "allow_annotations",
            &["io.katacontainers.config.hypervisor.default_memory"],
        )
        .into()
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")))
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

#[test]
fn check_valid_policy_prints_tables() {
    let d = Dir::new();
    let p = d.write("policy.toml", &policy());
    let (code, out, err) = routerctl(&["check", &p.to_string_lossy()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("backends:") && out.contains("tenants:"),
        "{out}"
    );
    assert!(out.contains("untrusted (default)"), "{out}");
    assert!(out.contains("host tiers:"), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("provider")
            && l.contains("runc")
            && l.contains("sdewan-*")),
        "{out}"
    );
}

#[test]
fn check_invalid_policy_names_file_line_and_field() {
    let d = Dir::new();
    let p = d.write(
        "policy.toml",
        &policy().replace("backend = \"kata\"", "backend = \"kata2\""),
    );
    let (code, out, err) = routerctl(&["check", &p.to_string_lossy()]);
    assert_eq!(code, 1, "{out}\n{err}");
    let want = format!(
        "{}:21:11: tenants.untrusted.backend: unknown backend `kata2`",
        p.display()
    );
    assert!(err.contains(&want), "{err}");
    // unknown keys too
    let p = d.write(
        "policy2.toml",
        &policy().replace(
            "isolation = \"vm\"",
            "isolation = \"vm\"\nisolaton = \"vm\"",
        ),
    );
    let (code, _, err) = routerctl(&["check", &p.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("backends.kata.isolaton: unknown field `isolaton`"),
        "{err}"
    );
    // a named file that does not exist is an error, not the embedded default
    let (code, _, err) = routerctl(&["check", &d.path().join("missing.toml").to_string_lossy()]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn check_containerd_config_reports_bypasses() {
    let d = Dir::new();
    let p = d.write("policy.toml", &policy());
    let bad = d.write(
        "bad.toml",
        r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "router"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.router]
  runtime_type = "io.containerd.router.v2"
  pod_annotations = ["runtime-router.io/*"]
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
  runtime_type = "io.containerd.kata.v2"
"#,
    );
    let (code, out, err) = routerctl(&[
        "check",
        &p.to_string_lossy(),
        "--containerd-config",
        &bad.to_string_lossy(),
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("handler `kata`") && err.contains("bypasses the router"),
        "{err}"
    );
    assert!(out.contains("BYPASS"), "{out}");
    assert!(
        out.contains("default_memory"),
        "allow_annotations not passed should warn: {out}"
    );

    let good = d.write(
        "good.toml",
        r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "router"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.router]
  runtime_type = "io.containerd.router.v2"
  pod_annotations = ["runtime-router.io/*", "io.katacontainers.config.hypervisor.default_memory"]
"#,
    );
    let (code, out, err) = routerctl(&[
        "check",
        &p.to_string_lossy(),
        "--containerd-config",
        &good.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("every pod goes through the router"), "{out}");
}

/// (namespace, annotation, exit code, what stdout holds, what stderr holds)
type ExplainCase = (
    &'static str,
    Option<&'static str>,
    i32,
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn explain_allowed_and_refused() {
    let d = Dir::new();
    let p = d.write("policy.toml", &policy());
    let p = p.to_string_lossy();
    let cases: [ExplainCase; 4] = [
        (
            "sdewan-a",
            None,
            0,
            &[
                "tenant:    provider",
                "backend:   runc",
                "isolation: container",
                "tenants.provider.namespaces[sdewan-*]",
            ],
            &[],
        ),
        // raise-only override: weaker is refused with a non-zero exit
        (
            "web",
            Some("runtime-router.io/backend=runc"),
            1,
            &["decision:  refused", "rule:      override"],
            &["runtime-router refused"],
        ),
        // an unknown backend is refused naming it
        (
            "kube-system",
            Some("runtime-router.io/backend=kata2"),
            1,
            &["`kata2`"],
            &[],
        ),
        // runtime annotations outside allow_annotations
        (
            "web",
            Some("io.katacontainers.config.runtime.disable_guest_seccomp=true"),
            1,
            &["deny:runtime-annotations"],
            &[],
        ),
    ];
    for (ns, annotation, want, outs, errs) in cases {
        let mut args = vec!["explain", "--config", &p, "--namespace", ns];
        if let Some(a) = annotation {
            args.extend(["--annotation", a]);
        }
        let (code, out, err) = routerctl(&args);
        assert_eq!(code, want, "{args:?}: {out}\n{err}");
        for n in outs {
            assert!(out.contains(n), "{args:?}: no {n:?} in {out}");
        }
        for n in errs {
            assert!(err.contains(n), "{args:?}: no {n:?} in {err}");
        }
    }
}

#[test]
fn explain_traps_do_not_grant_trust() {
    let d = Dir::new();
    let p = d.write("policy.toml", &policy());
    let p = p.to_string_lossy();
    let (code, out, err) = routerctl(&[
        "explain",
        "--config",
        &p,
        "--namespace",
        "web",
        "--annotation",
        "io.kubernetes.cri.sandbox-namespace=kube-system",
        "--annotation",
        "io.kubernetes.cri.untrusted-workload=false",
        "--label",
        "trusted=true",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("tenant:    untrusted") && out.contains("isolation: vm"),
        "{out}"
    );
    assert!(out.contains("label trusted=true ignored"), "{out}");
}

#[test]
fn explain_bundle_and_ctr_tasks() {
    let d = Dir::new();
    let p = d.write("policy.toml", &policy());
    let p = p.to_string_lossy();
    let spec = r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},
      "annotations":{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"s1","io.kubernetes.cri.sandbox-namespace":"web"},
      "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"mount"}]}}"#;
    d.write("bundle/config.json", spec);
    let bundle = d.path().join("bundle");
    let (code, out, _) = routerctl(&[
        "explain",
        "--config",
        &p,
        "--bundle",
        &bundle.to_string_lossy(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("deny:host-network") && out.contains("linux.namespaces[network]"),
        "{out}"
    );

    let (code, out, err) =
        routerctl(&["explain", "--config", &p, "--containerd-namespace", "infra"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("tenants.provider.containerd_namespaces[infra]"),
        "{out}"
    );
    let (code, out, _) = routerctl(&[
        "explain",
        "--config",
        &p,
        "--containerd-namespace",
        "default",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("tenant:    untrusted"), "{out}");
}

#[test]
fn explain_with_broken_policy_refuses_and_bad_usage_exits_2() {
    let d = Dir::new();
    let p = d.write("policy.toml", "version = 1\nnope = 1\n");
    let (code, out, err) = routerctl(&[
        "explain",
        "--config",
        &p.to_string_lossy(),
        "--namespace",
        "kube-system",
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("policy.toml:2:1: nope: unknown field `nope`"),
        "{err}"
    );
    let (code, _, err) = routerctl(&["explain", "--annotation", "novalue"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = routerctl(&["frobnicate"]);
    assert_eq!(code, 2);
    let (code, _, _) = routerctl(&[]);
    assert_eq!(code, 2);
}

#[test]
fn deploy_artefacts_check_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy");
    let policy = root.join("runtime-router.toml");
    let cc = root.join("containerd-config.toml");
    let (code, out, err) = routerctl(&[
        "check",
        &policy.to_string_lossy(),
        "--containerd-config",
        &cc.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("every pod goes through the router"), "{out}");
    assert!(
        !out.contains("do not let"),
        "pod_annotations must pass what the policy expects: {out}"
    );
}

/// `explain --bundle` shows a Pod Security refusal as `start` would write it: the rule, the
/// field and the level; and a compliant twin's decision.
#[test]
fn explain_bundle_shows_pod_security_refusals() {
    let d = Dir::new();
    let policy = r#"version = 1
default_tenant = "tenants"
[backends.runc]
kind = "builtin"
runtime = "/usr/sbin/runc"
isolation = "container"
[tenants.tenants]
backend = "runc"
pod_security = "restricted"
"#;
    let p = d.write("policy.toml", policy);
    let p = p.to_string_lossy();
    let masked = r#"["/proc/acpi","/proc/asound","/proc/kcore","/proc/keys","/proc/latency_stats","/proc/timer_list","/proc/timer_stats","/proc/sched_debug","/proc/scsi","/sys/firmware"]"#;
    let readonly = r#"["/proc/bus","/proc/fs","/proc/irq","/proc/sys","/proc/sysrq-trigger"]"#;
    let spec = |uid: u32, sysctl: &str| {
        format!(
            r#"{{"ociVersion":"1.0.2","process":{{"user":{{"uid":{uid}}},"args":["sh"],"cwd":"/","noNewPrivileges":true,
              "capabilities":{{"bounding":["CAP_NET_BIND_SERVICE"]}}}},"root":{{"path":"rootfs"}},
              "annotations":{{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"s1","io.kubernetes.cri.sandbox-namespace":"web"}},
              "linux":{{"namespaces":[{{"type":"pid"}},{{"type":"ipc"}},{{"type":"mount"}},{{"type":"network"}}],
              "seccomp":{{"defaultAction":"SCMP_ACT_ERRNO"}},"maskedPaths":{masked},"readonlyPaths":{readonly},"sysctl":{sysctl}}}}}"#
        )
    };
    // (uid, sysctls, exit code, what the output holds)
    let cases: [(u32, &str, i32, &[&str]); 3] = [
        (
            1000,
            "{}",
            0,
            &["tenant:    tenants", "pod_security `restricted`"],
        ),
        (
            0,
            "{}",
            1,
            &[
                "deny:run-as-root",
                "process.user.uid",
                "pod_security `restricted`",
                "Running as Non-root",
            ],
        ),
        (
            1000,
            r#"{"kernel.msgmax":"1"}"#,
            1,
            &[
                "deny:sysctls",
                "linux.sysctl[kernel.msgmax]",
                "control \"Sysctls\"",
            ],
        ),
    ];
    for (i, (uid, sysctl, want_code, needles)) in cases.iter().enumerate() {
        d.write(&format!("b{i}/config.json"), &spec(*uid, sysctl));
        let bundle = d.path().join(format!("b{i}"));
        let (code, out, err) = routerctl(&[
            "explain",
            "--config",
            &p,
            "--bundle",
            &bundle.to_string_lossy(),
        ]);
        assert_eq!(code, *want_code, "case {i}: {out}\n{err}");
        for n in *needles {
            assert!(out.contains(n), "case {i}: no {n:?} in {out}");
        }
    }
}

#[test]
fn explain_takes_the_runtime_handler() {
    let d = Dir::new();
    let text = PolicyText::after(policy())
        .handler("router", "container", None)
        .handler("router-vm", "vm", Some("kata"))
        .to_string();
    let p = d.write("handlers.toml", &text);
    let p = p.to_string_lossy();
    // (namespace, --handler, exit, stdout parts)
    let cases: [(&str, Option<&str>, i32, &[&str]); 5] = [
        (
            "shop",
            None,
            1,
            &[
                "handler:   router (RuntimeClass router, reserves container)",
                "rule:      handler",
                "runtime handler `router` reserves only container: use RuntimeClass `router-vm`",
            ],
        ),
        (
            "shop",
            Some("router-vm"),
            0,
            &["isolation: vm", "reserves vm: covers tier vm"],
        ),
        (
            "kube-system",
            Some("router-vm"),
            0,
            &[
                "tenant:    provider",
                "isolation: vm",
                "raises isolation from container to vm",
            ],
        ),
        ("kube-system", None, 0, &["isolation: container"]),
        (
            "kube-system",
            Some("gpu"),
            0,
            &["handler:   gpu (not in the policy's [handlers]: reserves container)"],
        ),
    ];
    for (ns, handler, code_want, parts) in cases {
        let mut args = vec!["explain", "--config", &p, "--namespace", ns];
        if let Some(h) = handler {
            args.extend(["--handler", h]);
        }
        let (code, out, err) = routerctl(&args);
        assert_eq!(code, code_want, "{ns} {handler:?}: {out}{err}");
        for part in parts {
            assert!(out.contains(part), "{ns} {handler:?}: {part}\n{out}");
        }
    }
}

#[test]
fn admission_prints_a_list_for_kubectl_or_names_what_is_missing() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/runtime-router.toml");
    let (code, out, err) = routerctl(&["admission", "--config", &deploy.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        (list["apiVersion"].as_str(), list["kind"].as_str()),
        (Some("v1"), Some("List"))
    );
    assert_eq!(list["items"].as_array().map(Vec::len), Some(4), "{out}");
    let d = Dir::new();
    let p = d.write("bare.toml", &policy());
    let (code, out, err) = routerctl(&["admission", "--config", &p.to_string_lossy()]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("the policy has no [handlers]"), "{err}");
}
