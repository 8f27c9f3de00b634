//! End to end through CRI (issue 23): the Pod Security Standards' baseline and restricted levels
//! enforced on the OCI spec, on the hand-off path (the Kata stand-in, tenants `pss-*-vm`) and on
//! the router's built-in backend driving runc (tenants `pss-*-builtin`). For each control the
//! node can see, the violating pod or container is refused naming the rule, the spec field and the
//! level, and its compliant twin runs.
//!
//! AppArmor and SELinux: this host's kernel has neither, and containerd's CRI plugin then drops
//! both from the spec (`unconfined` and custom labels never reach the runtime). Those two controls
//! are driven through containerd's task API with `ctr` (a task without CRI is its own pod, and
//! its tenant comes from the containerd namespace), which writes the profile and label as given.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use router_integration::cri::PodSandboxConfig;
use router_integration::policy::RUNC;
use router_integration::{ContainerSpec, CriClient, PodSpec, PolicyText, SeccompProfile};
use support::handoff::*;

/// The tenants of these tests, on both paths, at both levels.
fn pss_policy(fx: &Fixture) -> String {
    let mut policy =
        PolicyText::after(policy_for(&fx.h)).builtin("builtin-runc", RUNC, &[], "container");
    for (tier, backend) in [("vm", "kata"), ("builtin", "builtin-runc")] {
        for level in ["baseline", "restricted"] {
            let name = format!("pss-{level}-{tier}");
            policy = policy
                .tenant(&name, &[&name], backend)
                .list("containerd_namespaces", &[&name])
                .key("pod_security", level);
        }
    }
    policy.into()
}

/// The compliant container of a level: RuntimeDefault seccomp (what kubelet sends with
/// --seccomp-default) and kubelet's default masks; under restricted also uid 1000, no_new_privs
/// and capabilities dropped to NET_BIND_SERVICE.
fn twin(pod: &PodSpec, name: &str, restricted: bool) -> ContainerSpec {
    let c = ContainerSpec::new(name)
        .in_pod(pod)
        .seccomp(SeccompProfile::RuntimeDefault)
        .shell("id -u; echo twin-ok; exec sleep 3600");
    if restricted {
        c.run_as_user(1000)
            .no_new_privs(true)
            .drop_capability("ALL")
            .add_capability("NET_BIND_SERVICE")
    } else {
        c
    }
}

type Violate = fn(ContainerSpec) -> ContainerSpec;

/// (what, how the twin is changed, rule, field): each refused at both levels.
const CONTAINER_CASES: [(&str, Violate, &str, &str); 7] = [
    (
        "seccomp unset",
        |mut c| {
            c.seccomp = None;
            c
        },
        "seccomp",
        "linux.seccomp",
    ),
    (
        "seccomp Unconfined",
        |c| c.seccomp(SeccompProfile::Unconfined),
        "seccomp",
        "linux.seccomp",
    ),
    (
        "procMount Unmasked (kubelet sends fewer masked paths)",
        |c| c.masked_paths(&["/proc/kcore"]),
        "proc-mount",
        "linux.maskedPaths",
    ),
    (
        "a capability beyond baseline",
        |c| c.add_capability("NET_ADMIN"),
        "capabilities",
        "process.capabilities",
    ),
    (
        "privileged",
        |c| c.privileged(true),
        "privileged",
        "grants everything",
    ),
    (
        "a hostPath volume",
        |c| c.mount("/etc", "/host-etc", true),
        "host-path",
        "mounts[",
    ),
    (
        "a host device",
        |c| c.device("/dev/fuse"),
        "host-devices",
        "linux.",
    ),
];

/// (what, how the twin is changed, rule, field): refused under restricted, running under baseline.
const RESTRICTED_CASES: [(&str, Violate, &str, &str); 3] = [
    (
        "uid 0",
        |c| c.run_as_user(0),
        "run-as-root",
        "process.user.uid",
    ),
    (
        "allowPrivilegeEscalation (no no_new_privs)",
        |c| c.no_new_privs(false),
        "privilege-escalation",
        "process.noNewPrivileges",
    ),
    (
        "the default capabilities kept",
        |mut c| {
            c.drop_capabilities.clear();
            c.add_capabilities.clear();
            c
        },
        "restricted-capabilities",
        "process.capabilities",
    ),
];

async fn refused(
    cri: &CriClient,
    pod_id: &str,
    cfg: &PodSandboxConfig,
    c: &ContainerSpec,
    rule: &str,
    field: &str,
    level: &str,
) -> Result<()> {
    refusal_text(
        create_and_start(cri, pod_id, cfg, c).await,
        &[
            "runtime-router refused",
            &format!("deny:{rule}"),
            field,
            &format!("pod_security `{level}`"),
        ],
    )
    .map(drop)
}

async fn runs(
    cri: &CriClient,
    pod_id: &str,
    cfg: &PodSandboxConfig,
    c: &ContainerSpec,
) -> Result<String> {
    let id = create_and_start(cri, pod_id, cfg, c)
        .await
        .with_context(|| format!("container {} should run", c.name))?;
    cri.wait_log_contains(&id, "twin-ok", Duration::from_secs(60))
        .await
        .map_err(Into::into)
}

/// Every CRI-visible control of `level` on the tenant `pss-<level>-<tier>`.
async fn level_holds(fx: &Fixture, level: &str, tier: &str) -> Result<()> {
    let restricted = level == "restricted";
    let ns = format!("pss-{level}-{tier}");
    let cri = fx.cri().await?;

    // pod-wide controls: refused at RunPodSandbox
    let pod_cases: [(&str, PodSpec, &str, &str); 4] = [
        (
            "an unsafe sysctl",
            fx.h.pod(&ns, "tuner").sysctl("kernel.msgmax", "65536"),
            "sysctls",
            "linux.sysctl[kernel.msgmax]",
        ),
        (
            "hostNetwork",
            fx.h.pod(&ns, "hostnet").host_network(true),
            "host-network",
            "linux.namespaces[network]",
        ),
        (
            "hostPID",
            fx.h.pod(&ns, "hostpid").host_pid(true),
            "host-pid",
            "linux.namespaces[pid]",
        ),
        (
            "hostIPC",
            fx.h.pod(&ns, "hostipc").host_ipc(true),
            "host-ipc",
            "linux.namespaces[ipc]",
        ),
    ];
    for (what, pod, rule, field) in pod_cases {
        refusal_text(
            cri.run_pod(&pod.build()).await,
            &[
                "runtime-router refused",
                &format!("deny:{rule}"),
                field,
                &format!("pod_security `{level}`"),
            ],
        )
        .with_context(|| format!("{ns}: pod with {what}"))?;
        fx.assert_refused_and_gone(&pod.uid, &format!("deny:{rule}"))?;
    }

    // the compliant twin pod: a safe sysctl
    // privileged at the sandbox level, as kubelet marks a pod with a privileged container: the
    // pause process is not, and the privileged container below reaches the router
    let pod =
        fx.h.pod(&ns, "twin")
            .sysctl("net.ipv4.ping_group_range", "0 2147483647")
            .privileged(true);
    let cfg = pod.build();
    let pod_id = cri
        .run_pod(&cfg)
        .await
        .with_context(|| format!("{ns}: the twin pod"))?;
    let uid = runs(&cri, &pod_id, &cfg, &twin(&pod, "twin", restricted))
        .await
        .with_context(|| format!("{ns}: the compliant container"))?;
    let want_uid = if restricted { "1000" } else { "0" };
    ensure!(
        uid.lines().next() == Some(want_uid),
        "{ns}: twin runs as {uid:?}"
    );

    for (i, (what, violate, rule, field)) in CONTAINER_CASES.iter().enumerate() {
        let c = violate(twin(&pod, &format!("bad-{i}"), restricted));
        refused(&cri, &pod_id, &cfg, &c, rule, field, level)
            .await
            .with_context(|| format!("{ns}: container with {what}"))?;
    }
    for (i, (what, violate, rule, field)) in RESTRICTED_CASES.iter().enumerate() {
        let c = violate(twin(&pod, &format!("strict-{i}"), restricted));
        if restricted {
            refused(&cri, &pod_id, &cfg, &c, rule, field, level)
                .await
                .with_context(|| format!("{ns}: container with {what}"))?;
        } else {
            runs(&cri, &pod_id, &cfg, &c)
                .await
                .with_context(|| format!("{ns}: baseline lets through {what}"))?;
        }
    }
    remove_pod(fx, &cri, &pod_id).await
}

/// `level` on the hand-off (stand-in) path, then on the built-in one, on a fresh harness.
async fn level_on_both_paths(level: &'static str) -> Result<()> {
    with_fresh(ContainerdOptions::default(), |fx| async move {
        fx.h.set_policy(&pss_policy(&fx))?;
        level_holds(&fx, level, "vm")
            .await
            .context("hand-off (stand-in)")?;
        level_holds(&fx, level, "builtin").await.context("built-in")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_refuses_each_control_and_runs_its_twin_standin_and_builtin() -> Result<()> {
    level_on_both_paths("baseline").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_refuses_each_control_and_runs_its_twin_standin_and_builtin() -> Result<()> {
    level_on_both_paths("restricted").await
}

/// A task spec for `ctr run --config`: containerd's default spec (`ctr oci spec`) with busybox
/// from the host as its root, a seccomp filter that refuses something, under restricted uid 1000
/// with no capabilities, and `lsm` applied (an AppArmor profile or an SELinux label).
fn ctr_spec(
    fx: &Fixture,
    ns: &str,
    id: &str,
    restricted: bool,
    lsm: (&str, &str),
) -> Result<String> {
    let ctr = fx.h.ctr(ns);
    let text = tokio::task::block_in_place(|| ctr.run(&["oci", "spec"]))?;
    let mut spec: serde_json::Value = serde_json::from_str(&text).context("ctr oci spec")?;
    let dir = fx.h.dir().join("pss-tasks").join(ns).join(id);
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    spec["process"]["args"] = serde_json::json!(["/bin/busybox", "echo", "twin-ok"]);
    let (key, value) = lsm;
    if !value.is_empty() {
        spec["process"][key] = serde_json::json!(value);
    }
    if restricted {
        spec["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        spec["process"]["capabilities"] = serde_json::json!({});
        spec["process"]["noNewPrivileges"] = serde_json::json!(true);
    }
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{ns}/{id}"));
    spec["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]
    });
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(path.to_string_lossy().into_owned())
}

/// What `ctr run --rm --config` printed, and whether it succeeded.
fn ctr_run(fx: &Fixture, ns: &str, config: &str, id: &str) -> Result<(bool, String)> {
    let ctr = fx.h.ctr(ns);
    let args = [
        "run",
        "--rm",
        "--runtime",
        "io.containerd.router.v2",
        "--config",
        config,
        id,
    ];
    let out = tokio::task::block_in_place(|| ctr.run_unchecked(&args))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

async fn lsm_controls_hold(fx: &Fixture, level: &str, tier: &str) -> Result<()> {
    let ns = format!("pss-{level}-{tier}");
    let restricted = level == "restricted";
    let refused_needles = |rule: &str, field: &str| {
        [
            "runtime-router refused".to_string(),
            format!("deny:{rule}"),
            field.to_string(),
            format!("pod_security `{level}`"),
        ]
    };
    // (id, lsm, refused as (rule, field), or let through)
    type Lsm<'a> = (&'a str, &'a str);
    let cases: [(&str, Lsm, Option<Lsm>); 4] = [
        (
            "aa-bad",
            ("apparmorProfile", "unconfined"),
            Some(("apparmor", "process.apparmorProfile")),
        ),
        ("aa-twin", ("apparmorProfile", ""), None),
        (
            "se-bad",
            ("selinuxLabel", "system_u:system_r:spc_t:s0"),
            Some(("selinux", "process.selinuxLabel")),
        ),
        (
            "se-twin",
            ("selinuxLabel", "system_u:system_r:container_t:s0:c1,c2"),
            None,
        ),
    ];
    for (id, lsm, refused) in cases {
        let config = ctr_spec(fx, &ns, id, restricted, lsm)?;
        let (ok, text) = ctr_run(fx, &ns, &config, id)?;
        eprintln!("{ns}/{id}: ctr exit ok={ok}: {}", text.trim());
        match refused {
            Some((rule, field)) => {
                ensure!(!ok, "{ns}/{id}: ran: {text}");
                for n in refused_needles(rule, field) {
                    ensure!(text.contains(&n), "{ns}/{id}: no {n:?} in {text}");
                }
            }
            None => {
                ensure!(
                    !text.contains("runtime-router refused"),
                    "{ns}/{id}: refused: {text}"
                );
                // no AppArmor on this host: the task without a profile runs. An SELinux label
                // passes the router and then runc refuses it where SELinux is off: its error
                let ran = ok && text.contains("twin-ok");
                let runc_says_no_selinux =
                    lsm.0 == "selinuxLabel" && text.to_lowercase().contains("selinux");
                ensure!(ran || runc_says_no_selinux, "{ns}/{id}: {text}");
            }
        }
    }
    let errors = tokio::task::block_in_place(|| fx.h.ctr(&ns).remove_everything());
    ensure!(errors.is_empty(), "{ns}: ctr cleanup: {errors:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apparmor_and_selinux_through_ctr_standin_and_builtin() -> Result<()> {
    with_fresh(ContainerdOptions::default(), |fx| async move {
        fx.h.set_policy(&pss_policy(&fx))?;
        for level in ["baseline", "restricted"] {
            lsm_controls_hold(&fx, level, "vm")
                .await
                .with_context(|| format!("{level}, hand-off"))?;
            lsm_controls_hold(&fx, level, "builtin")
                .await
                .with_context(|| format!("{level}, built-in"))?;
        }
        Ok(())
    })
    .await
}
