//! Regression suite for issue 9, end to end through CRI: the attacks an untrusted pod tried, each
//! now refused or harmless. The VM tier is the Kata stand-in (tests say `standin`).
//!
//! - A pod under a policy of the old, whole-dir shape asks to bind-mount containerd's task state:
//!   the floor refuses it. Its bundle edited anyway (its `router-decision.json` naming a script),
//!   a second container: the script never runs, the container lands on the backend the root-only
//!   record names.
//! - With the per-pod `allowed_host_paths`, containerd's socket, another pod's kubelet dir,
//!   another sandbox's bundle and the task state dir are refused as host paths, naming the rule;
//!   the pod's own kubelet volume, `/etc/hosts` and `/dev/shm` work.
//! - The new deny rules (`capabilities`, `host-devices`, `privileged` without depending on the
//!   host's bounding set) refuse what they name and allow the baseline.
//! - A FIFO, `/dev/zero` and a 20 MB file as the policy: every pod refused at once, with the
//!   reason, instead of hanging until containerd kills the start.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use router_integration::{ContainerSpec, K8S_NAMESPACE};
use support::handoff::*;

/// The untrusted tenant's pods of this suite (no tenant names them: the default tenant).
const NS: &str = "tenant-evil";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_bundle_record_runs_nothing_of_the_pods_choosing_standin() -> Result<()> {
    let fx = start_fixture().await?;
    // The policy shape the project shipped before: the whole task state dir is "allowed".
    let state = fx.h.state().to_string_lossy().into_owned();
    let weak = policy_for(&fx.h).replacen(
        "allowed_host_paths = [",
        &format!("allowed_host_paths = [\"{state}/\", "),
        1,
    );
    fx.h.set_policy(&weak)?;
    let result = with_log(
        &fx,
        async {
            let cri = fx.cri().await?;
            let pod = fx.h.pod(NS, "attacker");
            let cfg = pod.build();
            let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox")?;
            let tasks = fx.h.state().join("io.containerd.runtime.v2.task").join(K8S_NAMESPACE);
            let marker = fx.h.dir().join("pwned");
            let script = tasks.join(&pod_id).join("evil.sh");
            // From inside the pod: a script in its own bundle, its record pointed at it, and
            // junk in every other file of the bundle the router once read. The floor now refuses
            // the mount that made this possible, whatever the policy says.
            let attack = |b: &str| {
                format!(
                    "set -e; b={b}; \
                     printf '#!/bin/sh\\nid > {marker}\\nexec /bin/false\\n' > $b/evil.sh; chmod 755 $b/evil.sh; \
                     sed -i 's#\"binary\": \"[^\"]*\"#\"binary\": \"{script}\"#' $b/router-decision.json; \
                     echo unix:///tmp/evil.sock > $b/address; echo 1 > $b/init.pid; \
                     grep -q evil.sh $b/router-decision.json; echo edited",
                    marker = marker.display(),
                    script = script.display(),
                )
            };
            let editor = ContainerSpec::new("editor")
                .in_pod(&pod)
                .mount(&tasks, "/tasks", false)
                .shell(&format!("{}; exec sleep 3600", attack(&format!("/tasks/{pod_id}"))));
            refusal_text(
                create_and_start(&cri, &pod_id, &cfg, &editor).await,
                &["runtime-router refused", "deny:host-path", "reaches containerd's state dir"],
            )
            .context("the attacker's first container")?;
            // Defence in depth: whoever else can write the bundle (the test, here) edits it the
            // same way; nothing of it may steer what runs.
            let edit = std::process::Command::new("sh")
                .arg("-c")
                .arg(attack(&tasks.join(&pod_id).to_string_lossy()))
                .output()?;
            ensure!(
                edit.status.success(),
                "the bundle edit failed: {}",
                String::from_utf8_lossy(&edit.stderr)
            );
            ensure!(script.exists(), "could not plant {}", script.display());

            // The second container: routed by the root-only record, the script never runs.
            let second = create_and_start(
                &cri,
                &pod_id,
                &cfg,
                &ContainerSpec::new("second").in_pod(&pod).shell("echo up; exec sleep 3600"),
            )
            .await
            .context("the second container must start on the pod's recorded backend")?;
            cri.wait_log_contains(&second, "up", Duration::from_secs(60))
                .await?;
            ensure!(
                !marker.exists(),
                "the pod's script ran as root on the host: {:?}",
                std::fs::read_to_string(&marker)
            );
            let (_, shim) = container_shim(&cri, &second).await?;
            ensure!(
                is_same_file(&shim, &fx.standin()),
                "second container served by {}, not the VM tier",
                shim.display()
            );
            let line = fx
                .audit_for_uid(&pod.uid)?
                .into_iter()
                .rfind(|v| v["id"] == second.as_str())
                .context("no audit line for the second container")?;
            ensure!(
                line["outcome"] == "allowed" && line["backend"] == "kata",
                "audit: {line}"
            );
            remove_pod(&fx, &cri, &pod_id).await?;
            assert_task_gone(&fx.h, &pod_id)?;
            ensure!(!marker.exists(), "the script ran during removal");
            Ok(())
        }
        .await,
    );
    fx.h.shutdown().await?;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_host_paths_are_refused_own_pod_paths_work_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let victim = fx.h.pod(NS, "victim");
        let (victim_id, _, _) = pod_with_container(&fx, &cri, &victim).await?;
        let victim_vol = fx.kubelet_volume(&victim.uid, "secret")?;

        let pod = fx.h.pod(NS, "prober");
        let (pod_id, cfg, _) = pod_with_container(&fx, &cri, &pod).await?;
        let tasks =
            fx.h.state()
                .join("io.containerd.runtime.v2.task")
                .join(K8S_NAMESPACE);
        let shared_paths = [
            fx.h.socket().to_path_buf(),
            victim_vol.clone(),
            tasks.join(&victim_id),
            tasks.clone(),
            fx.h.root()
                .join("io.containerd.grpc.v1.cri/sandboxes")
                .join(&victim_id),
        ];
        for (i, p) in shared_paths.iter().enumerate() {
            let c = ContainerSpec::new(&format!("reach-{i}"))
                .in_pod(&pod)
                .mount(p, "/reach", true)
                .shell("exec sleep 3600");
            let text = refusal_text(
                create_and_start(&cri, &pod_id, &cfg, &c).await,
                &["runtime-router refused", "deny:host-path"],
            )
            .with_context(|| format!("bind mount of {}", p.display()))?;
            ensure!(
                text.contains(&*p.to_string_lossy()),
                "refusal does not name {}: {text}",
                p.display()
            );
        }

        // the pod's own kubelet volume, /etc/hosts and /dev/shm (containerd's per-pod files)
        own_pod_paths_work(&fx, &cri, &pod_id, &cfg, &pod, &[]).await?;
        remove_pod(&fx, &cri, &pod_id).await?;
        remove_pod(&fx, &cri, &victim_id).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_device_and_privilege_rules_refuse_what_they_name_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod = fx.h.pod(NS, "caps");
        let (pod_id, cfg, _) = pod_with_container(&fx, &cri, &pod).await?;
        let base = || {
            ContainerSpec::new("c")
                .in_pod(&pod)
                .shell("exec sleep 3600")
        };
        let cases = [
            (
                ContainerSpec {
                    name: "net-admin".into(),
                    ..base()
                }
                .add_capability("NET_ADMIN"),
                vec!["deny:capabilities", "CAP_NET_ADMIN"],
            ),
            (
                ContainerSpec {
                    name: "fuse".into(),
                    ..base()
                }
                .device("/dev/fuse"),
                vec!["deny:host-devices", "/dev/fuse"],
            ),
            (
                // every capability the host has (this host lacks CAP_SYS_RESOURCE)
                ContainerSpec {
                    name: "all-caps".into(),
                    ..base()
                }
                .add_capability("ALL"),
                vec!["deny:privileged"],
            ),
        ];
        for (c, needles) in cases {
            refusal_text(create_and_start(&cri, &pod_id, &cfg, &c).await, &needles)
                .with_context(|| format!("container {}", c.name))?;
        }
        // the baseline set, asked for explicitly, runs
        let ok = create_and_start(
            &cri,
            &pod_id,
            &cfg,
            &ContainerSpec {
                name: "baseline".into(),
                ..base()
            }
            .add_capability("CHOWN")
            .add_capability("NET_BIND_SERVICE")
            .shell("echo base-ok; exec sleep 3600"),
        )
        .await
        .context("baseline capabilities")?;
        cri.wait_log_contains(&ok, "base-ok", Duration::from_secs(60))
            .await?;
        remove_pod(&fx, &cri, &pod_id).await?;
        Ok(())
    })
    .await
}

/// Replaces the policy file with something that must never be read, then runs a pod.
async fn refused_with_policy(
    fx: &Fixture,
    kind: &str,
    make: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let path =
        fx.h.policy_path()
            .context("the harness has a policy")?
            .to_path_buf();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    make(&path)?;
    let cri = fx.cri().await?;
    let pod = fx.h.pod(NS, &format!("policy-{kind}"));
    let t = Instant::now();
    let r = cri.run_pod(&pod.build()).await;
    let took = t.elapsed();
    let needle = path.to_string_lossy().into_owned();
    let text = refusal_text(r, &["runtime-router refused", "policy", &needle])
        .with_context(|| format!("policy that is {kind}"))?;
    eprintln!("{kind} policy: refused in {took:?}: {text}");
    // a start blocked on the file would be killed by containerd after its timeout
    ensure!(
        took < Duration::from_secs(20),
        "{kind} policy: the refusal took {took:?}"
    );
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_device_and_oversized_policies_refuse_every_pod_at_once() -> Result<()> {
    let fx = start_fixture().await?;
    let result = with_log(
        &fx,
        async {
            refused_with_policy(&fx, "a FIFO", |p| {
                let ok = std::process::Command::new("mkfifo").arg(p).status()?;
                ensure!(ok.success(), "mkfifo");
                Ok(())
            })
            .await?;
            refused_with_policy(&fx, "/dev/zero", |p| {
                std::os::unix::fs::symlink("/dev/zero", p)?;
                Ok(())
            })
            .await?;
            refused_with_policy(&fx, "20 MB", |p| {
                let mut text = policy_for(&fx.h);
                let pad = "# padding ".repeat(1000) + "\n";
                while text.len() < 20_000_000 {
                    text.push_str(&pad);
                }
                std::fs::write(p, text)?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))?;
                Ok(())
            })
            .await?;
            // and with the policy back, pods run again
            fx.h.set_policy(&policy_for(&fx.h))?;
            let cri = fx.cri().await?;
            let pod = fx.h.pod(NS, "after");
            let id = cri
                .run_pod(&pod.build())
                .await
                .context("pod after the fix")?;
            remove_pod(&fx, &cri, &id).await?;
            Ok(())
        }
        .await,
    );
    fx.h.shutdown().await?;
    result
}
