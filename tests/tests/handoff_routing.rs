//! End to end through CRI, as kubelet drives containerd: the router is containerd's default
//! runtime handler; the trusted tier is a `shim` backend pointing at containerd's own
//! `containerd-shim-runc-v2`, the VM tier the Kata stand-in (`containerd-shim-kata-standin-v2`,
//! tests say `standin`). Which tier served a pod is read from the process that is its pause
//! process's parent. One containerd is shared by the tests of this file; each test uses its own
//! Kubernetes namespaces and pods and removes them.

mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use router_integration::cri::PodSandboxState;
use router_integration::ContainerSpec;
use support::handoff::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_namespace_lands_on_runc_with_record_and_audit() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod = fx.h.pod("kube-system", "coredns-trusted");
        let (pod_id, _, cid) = pod_with_container(&fx, &cri, &pod).await?;

        let (shim, bin) = pod_shim(&cri, &pod_id).await?;
        ensure!(
            is_same_file(&bin, &trusted_shim_binary()),
            "pod served by {} (pid {shim}), want {}",
            bin.display(),
            trusted_shim_binary().display()
        );
        let (cshim, _) = container_shim(&cri, &cid).await?;
        ensure!(
            cshim == shim,
            "container served by shim {cshim}, pod by {shim}"
        );

        let rec = fx.record(&pod_id)?;
        ensure!(rec["tenant"] == "provider", "record: {rec}");
        ensure!(rec["backend"] == "runc", "record: {rec}");
        ensure!(rec["isolation"] == "container", "record: {rec}");
        ensure!(rec["role"] == "sandbox", "record: {rec}");
        ensure!(
            rec["rule"] == "tenants.provider.namespaces[kube-system]",
            "record: {rec}"
        );
        ensure!(rec["k8s_namespace"] == "kube-system", "record: {rec}");
        ensure!(
            rec["policy_digest"]
                .as_str()
                .unwrap_or("")
                .starts_with("sha256:"),
            "record: {rec}"
        );
        ensure!(
            rec["target"]["kind"] == trusted_target_kind(),
            "record: {rec}"
        );
        let crec = fx.record(&cid)?;
        ensure!(crec["role"] == "container", "container record: {crec}");
        ensure!(
            crec["sandbox_id"] == pod_id.as_str(),
            "container record: {crec}"
        );
        ensure!(crec["backend"] == "runc", "container record: {crec}");

        let audit = fx.audit_for_uid(&pod.uid)?;
        let sandbox_line = audit
            .iter()
            .find(|v| v["id"] == pod_id.as_str())
            .with_context(|| format!("no audit line for {pod_id}: {audit:?}"))?;
        for key in [
            "time",
            "namespace",
            "id",
            "sandbox_id",
            "k8s_namespace",
            "pod_name",
            "pod_uid",
            "tenant",
            "backend",
            "isolation",
            "rule",
            "refused_overrides",
            "denials",
            "decision_us",
        ] {
            ensure!(
                sandbox_line.get(key).is_some(),
                "audit line lacks {key}: {sandbox_line}"
            );
        }
        ensure!(sandbox_line["outcome"] == "allowed", "{sandbox_line}");
        ensure!(sandbox_line["namespace"] == "k8s.io", "{sandbox_line}");
        ensure!(
            sandbox_line["pod_name"] == "coredns-trusted",
            "{sandbox_line}"
        );
        ensure!(sandbox_line["backend"] == "runc", "{sandbox_line}");
        ensure!(
            audit.iter().any(|v| v["id"] == cid.as_str()
                && v["role"] == "container"
                && v["outcome"] == "allowed"),
            "no allowed audit line for container {cid}: {audit:?}"
        );

        let out = cri
            .exec_sync(&cid, &["echo", "hello"], Duration::from_secs(60))
            .await?;
        ensure!(out.stdout.trim() == "hello", "exec: {out:?}");
        remove_pod(&fx, &cri, &pod_id).await?;
        assert_task_gone(&fx.h, &pod_id)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_namespace_lands_on_standin_vm_tier() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod = fx.h.pod("shop-frontend", "web");
        let (pod_id, _, cid) = pod_with_container(&fx, &cri, &pod).await?;
        let (shim, bin) = pod_shim(&cri, &pod_id).await?;
        ensure!(
            is_same_file(&bin, &fx.standin()),
            "pod served by {} (pid {shim}), want the stand-in {}",
            bin.display(),
            fx.standin().display()
        );
        // the backend's env reached the handed-off shim
        ensure!(
            environ_var(shim, "KATA_CONF_FILE")?.as_deref() == Some(KATA_CONF),
            "stand-in shim {shim} lacks KATA_CONF_FILE"
        );
        let rec = fx.record(&pod_id)?;
        ensure!(rec["tenant"] == "untrusted", "record: {rec}");
        ensure!(rec["backend"] == "kata", "record: {rec}");
        ensure!(rec["isolation"] == "vm", "record: {rec}");
        let (cshim, _) = container_shim(&cri, &cid).await?;
        ensure!(cshim == shim, "container served by {cshim}, pod by {shim}");
        remove_pod(&fx, &cri, &pod_id).await?;
        assert_task_gone(&fx.h, &pod_id)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_namespaces_match_and_near_misses_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        // `sdewan-*` matches, `sdewanx` does not
        let hit = fx.h.pod("sdewan-edge-7", "router");
        let hit_id = cri
            .run_pod(&hit.build())
            .await
            .context("RunPodSandbox sdewan-edge-7")?;
        let miss = fx.h.pod("sdewanx", "router");
        let miss_id = cri
            .run_pod(&miss.build())
            .await
            .context("RunPodSandbox sdewanx")?;
        let (_, bin) = pod_shim(&cri, &hit_id).await?;
        ensure!(
            is_same_file(&bin, &trusted_shim_binary()),
            "sdewan-edge-7 on {}",
            bin.display()
        );
        let rec = fx.record(&hit_id)?;
        ensure!(
            rec["rule"] == "tenants.provider.namespaces[sdewan-*]",
            "record: {rec}"
        );
        let (_, bin) = pod_shim(&cri, &miss_id).await?;
        ensure!(
            is_same_file(&bin, &fx.standin()),
            "sdewanx on {}",
            bin.display()
        );
        remove_pod(&fx, &cri, &hit_id).await?;
        remove_pod(&fx, &cri, &miss_id).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_raising_isolation_is_honoured_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod =
            fx.h.pod("sdewan-raise", "batch")
                .annotation(BACKEND_OVERRIDE, "kata");
        let pod_id = cri.run_pod(&pod.build()).await.context("RunPodSandbox")?;
        let (_, bin) = pod_shim(&cri, &pod_id).await?;
        ensure!(
            is_same_file(&bin, &fx.standin()),
            "raised pod on {}",
            bin.display()
        );
        let rec = fx.record(&pod_id)?;
        ensure!(rec["tenant"] == "provider", "record: {rec}");
        ensure!(rec["backend"] == "kata", "record: {rec}");
        ensure!(rec["isolation"] == "vm", "record: {rec}");
        remove_pod(&fx, &cri, &pod_id).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_lowering_isolation_is_refused() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod =
            fx.h.pod("shop-lower", "sneaky")
                .annotation(BACKEND_OVERRIDE, "runc");
        let text = refusal_text(
            cri.run_pod(&pod.build()).await,
            &["runtime-router refused", "runc", BACKEND_OVERRIDE],
        )?;
        ensure!(
            text.contains("override"),
            "error does not say override: {text}"
        );
        fx.assert_refused_and_gone(&pod.uid, "runc")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_trust_annotations_and_labels_are_ignored_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod =
            fx.h.pod("shop-forged", "impostor")
                .annotation("io.kubernetes.cri.sandbox-namespace", "kube-system")
                .annotation("runtime-router.io/tenant", "provider")
                .annotation("runtime-router.io/trusted", "true")
                .label("io.kubernetes.pod.namespace", "kube-system")
                .label("runtime-router.io/tenant", "provider");
        let pod_id = cri.run_pod(&pod.build()).await.context("RunPodSandbox")?;
        let (_, bin) = pod_shim(&cri, &pod_id).await?;
        ensure!(
            is_same_file(&bin, &fx.standin()),
            "forged pod on {}",
            bin.display()
        );
        let rec = fx.record(&pod_id)?;
        ensure!(rec["tenant"] == "untrusted", "record: {rec}");
        ensure!(rec["k8s_namespace"] == "shop-forged", "record: {rec}");
        remove_pod(&fx, &cri, &pod_id).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_container_shares_its_pods_shim_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod = fx.h.pod("shop-pair", "two-containers");
        let (pod_id, cfg, first) = pod_with_container(&fx, &cri, &pod).await?;
        let second = cri
            .run_container(
                &pod_id,
                &cfg,
                &ContainerSpec::new("sidecar")
                    .in_pod(&pod)
                    .shell("echo side; exec sleep 3600")
                    .build(),
            )
            .await
            .context("second container")?;
        cri.wait_log_contains(&second, "side", Duration::from_secs(60))
            .await?;
        let (shim, bin) = pod_shim(&cri, &pod_id).await?;
        ensure!(
            is_same_file(&bin, &fx.standin()),
            "pod on {}",
            bin.display()
        );
        for c in [&first, &second] {
            let (s, _) = container_shim(&cri, c).await?;
            ensure!(s == shim, "container {c} served by shim {s}, pod by {shim}");
            let rec = fx.record(c)?;
            ensure!(
                rec["backend"] == "kata" && rec["role"] == "container",
                "{rec}"
            );
            ensure!(rec["sandbox_id"] == pod_id.as_str(), "{rec}");
        }
        // exactly one shim process mentions this pod
        let shims: Vec<_> =
            fx.h.shims()
                .into_iter()
                .filter(|p| {
                    p.cmdline
                        .iter()
                        .any(|a| a == &pod_id || a == &first || a == &second)
                })
                .collect();
        // one stand-in; beside it at most the pod's task API relay (the router binary
        // serving the address containerd was given), there when the stand-in answers
        // bootstrap protocol 3 (containerd 2.x's runc shim, the stand-in's source, does)
        let address = shim_address(&fx, &pod_id)?;
        let (standins, others): (Vec<_>, Vec<_>) = shims
            .iter()
            .partition(|p| p.cmdline.first().is_some_and(|a| a.contains("standin")));
        ensure!(standins.len() == 1, "shims of the pod: {shims:?}");
        ensure!(
            others
                .iter()
                .all(|p| p.cmdline.iter().any(|a| *a == address.trim())),
            "shims of the pod besides the stand-in must be its relay on {address}: {shims:?}"
        );
        ensure!(others.len() <= 1, "shims of the pod: {shims:?}");
        remove_pod(&fx, &cri, &pod_id).await?;
        assert_task_gone(&fx.h, &pod_id)?;
        Ok(())
    })
    .await
}

/// One refused pod per sandbox-level deny rule, each naming its rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_deny_rules_refuse_with_the_rule_named() -> Result<()> {
    with_shared(|fx, cri| async move {
        let cases = [
            (
                fx.h.pod("deny-net", "hostnet").host_network(true),
                "deny:host-network",
            ),
            (
                fx.h.pod("deny-pid", "hostpid").host_pid(true),
                "deny:host-pid",
            ),
            (
                fx.h.pod("deny-ipc", "hostipc").host_ipc(true),
                "deny:host-ipc",
            ),
        ];
        for (pod, rule) in cases {
            refusal_text(
                cri.run_pod(&pod.build()).await,
                &["runtime-router refused", rule],
            )
            .with_context(|| format!("pod in {}", pod.namespace))?;
            fx.assert_refused_and_gone(&pod.uid, rule)?;
        }
        Ok(())
    })
    .await
}

/// A privileged container of an untrusted tenant is refused at its start (containerd 1.6 gives
/// the sandbox of a privileged pod an unprivileged pause spec, so the pod itself runs; kubelet
/// marks the pod privileged when one of its containers is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_container_refused_for_untrusted_tenant_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod = fx.h.pod("deny-priv", "root-me").privileged(true);
        let (pod_id, cfg, first) = pod_with_container(&fx, &cri, &pod).await?;
        let bad = ContainerSpec::new("priv")
            .in_pod(&pod)
            .privileged(true)
            .shell("exec sleep 3600");
        let text = refusal_text(
            create_and_start(&cri, &pod_id, &cfg, &bad).await,
            &["runtime-router refused", "deny:privileged"],
        )?;
        ensure!(
            text.contains("tenant untrusted"),
            "error lacks the tenant: {text}"
        );
        let refused = fx
            .audit_for_uid(&pod.uid)?
            .into_iter()
            .filter(|v| v["outcome"] == "refused")
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect::<Vec<_>>();
        ensure!(refused.len() == 1, "refused audit lines: {refused:?}");
        assert_task_gone(&fx.h, &refused[0])?;
        let out = cri
            .exec_sync(&first, &["echo", "alive"], Duration::from_secs(60))
            .await?;
        ensure!(out.stdout.trim() == "alive", "exec: {out:?}");
        remove_pod(&fx, &cri, &pod_id).await?;
        Ok(())
    })
    .await
}

/// Container-level denials fail that container's start while its pod and sibling keep running;
/// kubelet-style volumes stay allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_container_fails_while_pod_keeps_running_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod = fx.h.pod("shop-volumes", "app");
        let (pod_id, cfg, first) = pod_with_container(&fx, &cri, &pod).await?;

        // kubelet volume: allowed, and usable
        let vol = fx.kubelet_volume(&pod.uid, "scratch")?;
        let ok = cri
            .run_container(
                &pod_id,
                &cfg,
                &ContainerSpec::new("writer")
                    .in_pod(&pod)
                    .mount(&vol, "/scratch", false)
                    .shell("echo from-container > /scratch/out; echo wrote; exec sleep 3600")
                    .build(),
            )
            .await
            .context("container with a kubelet volume")?;
        cri.wait_log_contains(&ok, "wrote", Duration::from_secs(60))
            .await?;
        let written = std::fs::read_to_string(vol.join("out"))?;
        ensure!(
            written.trim() == "from-container",
            "volume content {written:?}"
        );

        // host path: refused, naming the rule and the source
        let bad = ContainerSpec::new("hostpath")
            .in_pod(&pod)
            .mount("/etc", "/host-etc", true)
            .shell("exec sleep 3600");
        let text = refusal_text(
            create_and_start(&cri, &pod_id, &cfg, &bad).await,
            &["runtime-router refused", "deny:host-path"],
        )?;
        ensure!(text.contains("/etc"), "error does not name /etc: {text}");

        // refused containers left nothing behind
        let refused: Vec<String> = fx
            .audit_for_uid(&pod.uid)?
            .into_iter()
            .filter(|v| v["outcome"] == "refused" && v["role"] == "container")
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        ensure!(
            refused.len() == 1,
            "refused container audit lines: {refused:?}"
        );
        for id in &refused {
            assert_task_gone(&fx.h, id)?;
        }

        // the pod and its containers keep running
        let st = cri.pod_status(&pod_id).await?;
        ensure!(
            st.state == PodSandboxState::SandboxReady as i32,
            "pod state {}",
            st.state
        );
        for c in [&first, &ok] {
            let out = cri
                .exec_sync(c, &["echo", "alive"], Duration::from_secs(60))
                .await?;
            ensure!(out.stdout.trim() == "alive", "exec in {c}: {out:?}");
        }
        remove_pod(&fx, &cri, &pod_id).await?;
        Ok(())
    })
    .await
}

/// A tenant on the trusted tier (a hand-off to the containerd's own `containerd-shim-runc-v2`)
/// with deny rules: each container's spec meets them at its own `start`, on every containerd
/// line — on 2.x that shim answers bootstrap protocol 3, and the pod is served through the
/// router's relay so that containerd keeps calling `start` (SPEC §2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runc_tier_containers_are_checked_at_their_own_start() -> Result<()> {
    with_shared(|fx, cri| async move {
        let (_, version) = cri.version().await?;
        let pod = fx.h.pod("partner-edge", "gateway");
        let (pod_id, cfg, first) = pod_with_container(&fx, &cri, &pod).await?;
        let rec = fx.record(&pod_id)?;
        ensure!(
            rec["backend"] == "runc" && rec["tenant"] == "partner",
            "{rec}"
        );
        let (shim_pid, bin) = pod_shim(&cri, &pod_id).await?;
        ensure!(
            is_same_file(&bin, &trusted_shim_binary()),
            "pod on {}, not {}",
            bin.display(),
            trusted_shim_binary().display()
        );
        // containerd 2.x is given the relay (the Go shim answered version 3); 1.x the
        // delegate's own address; the built-in backend (ROUTER_E2E_TRUSTED_TIER=builtin)
        // answers version 2 itself and needs none
        let address = shim_address(&fx, &pod_id)?;
        let relayed = fx.h.shims().into_iter().any(|p| {
            p.pid != shim_pid
                && p.cmdline.iter().any(|a| *a == address.trim())
                && p.cmdline.contains(&pod_id)
                && p.cmdline.iter().any(|a| a == "-socket")
        });
        let want_relay =
            version.trim_start_matches('v').starts_with("2.") && !trusted_tier_builtin();
        ensure!(
            relayed == want_relay,
            "containerd {version}: relay in front of the pod's shim: {relayed}"
        );
        ensure!(fx.record(&first)?["role"] == "container");

        host_etc_is_refused(&cri, &pod_id, &cfg, &pod).await?;
        // CAP_SYS_ADMIN is privileged for the router (CRI's own flag needs a privileged
        // pod, which this tenant's sandbox rules would refuse first)
        let privileged = ContainerSpec::new("root")
            .in_pod(&pod)
            .add_capability("SYS_ADMIN")
            .shell("exec sleep 3600");
        refusal_text(
            create_and_start(&cri, &pod_id, &cfg, &privileged).await,
            &["runtime-router refused", "deny:privileged"],
        )?;
        // the pod and its first container are untouched
        let out = cri
            .exec_sync(&first, &["echo", "alive"], Duration::from_secs(60))
            .await?;
        ensure!(out.stdout.trim() == "alive", "exec: {out:?}");
        remove_pod(&fx, &cri, &pod_id).await?;
        assert_task_gone(&fx.h, &pod_id)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_annotations_refused_unless_allowed_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let allowed =
            fx.h.pod("shop-annot-ok", "mem")
                .annotation("io.katacontainers.config.hypervisor.default_memory", "512");
        let pod_id = cri
            .run_pod(&allowed.build())
            .await
            .context("allowed annotation")?;
        let (_, bin) = pod_shim(&cri, &pod_id).await?;
        ensure!(is_same_file(&bin, &fx.standin()), "on {}", bin.display());
        remove_pod(&fx, &cri, &pod_id).await?;

        let denied =
            fx.h.pod("shop-annot-bad", "agent")
                .annotation("io.katacontainers.config.agent.kernel_modules", "evil");
        refusal_text(
            cri.run_pod(&denied.build()).await,
            &[
                "runtime-router refused",
                "deny:runtime-annotations",
                "kernel_modules",
            ],
        )?;
        fx.assert_refused_and_gone(&denied.uid, "kernel_modules")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_backend_binary_is_refused_by_name() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod = fx.h.pod("haunted", "ghost");
        refusal_text(
            cri.run_pod(&pod.build()).await,
            &[
                "runtime-router refused",
                "containerd-shim-ghost-v2",
                "`ghost`",
            ],
        )?;
        fx.assert_refused_and_gone(&pod.uid, "containerd-shim-ghost-v2")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_pod_shim_then_stop_remove_leaves_nothing_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod = fx.h.pod("shop-crash", "victim");
        let (pod_id, _, cid) = pod_with_container(&fx, &cri, &pod).await?;
        let (shim, bin) = pod_shim(&cri, &pod_id).await?;
        ensure!(is_same_file(&bin, &fx.standin()), "on {}", bin.display());
        let pause = cri.pod_pid(&pod_id).await?;
        let init = cri.container_pid(&cid).await?;
        let address = shim_address(&fx, &pod_id)?;
        let socket = address
            .trim()
            .strip_prefix("unix://")
            .map(std::path::PathBuf::from)
            .with_context(|| format!("address {address:?}"))?;
        ensure!(socket.exists(), "shim socket {} missing", socket.display());
        std::process::Command::new("kill")
            .args(["-9", &shim.to_string()])
            .status()
            .context("kill -9")?;
        // containerd notices the dead shim and runs the router's `delete` (the recorded
        // backend's cleanup); then kubelet would stop and remove the pod
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while router_integration::procs::alive(shim) {
            ensure!(
                std::time::Instant::now() < deadline,
                "shim {shim} survived kill -9"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // as kubelet does, stop the pod once the runtime reports its container exited
        // (containerd 1.7+ finishes a dead shim's cleanup asynchronously; before that,
        // RemovePodSandbox refuses a container still marked running)
        cri.wait_container_exit(&cid, Duration::from_secs(120))
            .await
            .context("the container of the killed shim never reported its exit")?;
        remove_pod(&fx, &cri, &pod_id).await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let alive: Vec<i32> = [pause, init]
                .into_iter()
                .filter(|p| router_integration::procs::alive(*p))
                .collect();
            if alive.is_empty() {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "pod processes survived: {alive:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_task_gone(&fx.h, &pod_id)?;
        assert_task_gone(&fx.h, &cid)?;
        let runc_state = Path::new("/run/containerd/runc/k8s.io");
        ensure!(
            !runc_state.join(&pod_id).exists() && !runc_state.join(&cid).exists(),
            "runc state left in {}",
            runc_state.display()
        );
        let pods = cri.list_pods().await?;
        ensure!(pods.iter().all(|p| p.id != pod_id), "pod still listed");
        ensure!(
            !socket.exists(),
            "the dead shim's socket {} was left behind",
            socket.display()
        );
        // containerd ran the router's `delete` for the dead shim's tasks without error
        let log = std::fs::read_to_string(fx.h.log_path())?;
        let about: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains(&pod_id)
                    || l.contains("dead shim")
                    || l.contains("cleanup warnings")
                    || l.contains("failed to delete")
            })
            .collect();
        eprintln!("containerd log about {pod_id}:\n{}", about.join("\n"));
        // (containerd 2.x's CRI event handler also tries the task API Delete over the dead
        // connection, "failed to delete task: ttrpc: closed" (2.3 logs it as
        // `msg="failed to delete task" error="ttrpc: closed"`), and retries it: not ours)
        let dead_connection = |l: &str| {
            l.contains("failed to delete task: ttrpc: closed")
                || (l.contains("msg=\"failed to delete task\"")
                    && l.contains("error=\"ttrpc: closed\""))
        };
        ensure!(
            !about
                .iter()
                .any(|l| l.contains("failed to delete") && !dead_connection(l)),
            "cleanup of the dead shim failed: {about:#?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_pods_land_correctly_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let mut specs = Vec::new();
        for i in 0..16 {
            let pod = if i % 2 == 0 {
                fx.h.pod("sdewan-load", &format!("trusted-{i}"))
            } else {
                fx.h.pod("load-tenant", &format!("untrusted-{i}"))
            };
            specs.push(pod);
        }
        let mut tasks = Vec::new();
        for pod in &specs {
            let cri = cri.clone();
            let cfg = pod.build();
            tasks.push(tokio::spawn(async move { cri.run_pod(&cfg).await }));
        }
        let mut ids = Vec::new();
        let mut errors = Vec::new();
        for (t, pod) in tasks.into_iter().zip(&specs) {
            match t.await? {
                Ok(id) => ids.push((id, pod)),
                Err(e) => errors.push(format!("{}: {e}", pod.name)),
            }
        }
        let mut wrong = Vec::new();
        for (id, pod) in &ids {
            let (_, bin) = pod_shim(&cri, id).await?;
            let want = if pod.namespace == "sdewan-load" {
                trusted_shim_binary()
            } else {
                fx.standin()
            };
            if !is_same_file(&bin, &want) {
                wrong.push(format!("{} on {}", pod.name, bin.display()));
            }
        }
        // every concurrent decision left one whole audit line (fx.audit() parses each line)
        let audit = fx.audit()?;
        for (id, pod) in &ids {
            let n = audit
                .iter()
                .filter(|v| v["id"] == id.as_str() && v["outcome"] == "allowed")
                .count();
            ensure!(n == 1, "{n} audit lines for {} ({id})", pod.name);
        }
        for (id, _) in &ids {
            remove_pod(&fx, &cri, id).await?;
        }
        ensure!(errors.is_empty(), "pods failed: {errors:?}");
        ensure!(wrong.is_empty(), "pods on the wrong tier: {wrong:?}");
        ensure!(ids.len() == 16, "{} pods ran", ids.len());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_run_with_router_runtime_uses_containerd_namespace_standin() -> Result<()> {
    with_shared(|fx, _cri| async move {
        for (ns, tenant, backend) in [
            ("infra", "provider", "runc"),
            ("ctr-guest", "untrusted", "kata"),
        ] {
            fx.h.import_images(ns).await?;
            let ctr = fx.h.ctr(ns);
            let id = format!("ctr-{ns}");
            // foreground run with --rm: output comes back through the routed shim
            let out = tokio::task::block_in_place(|| {
                ctr.run(&[
                    "run",
                    "--rm",
                    "--runtime",
                    "io.containerd.router.v2",
                    router_integration::BUSYBOX_IMAGE,
                    &id,
                    "echo",
                    "hello-from-ctr",
                ])
            })?;
            ensure!(out.contains("hello-from-ctr"), "ctr output {out:?}");
            let line = fx
                .audit()?
                .into_iter()
                .rev()
                .find(|v| v["id"] == id.as_str() && v["namespace"] == ns)
                .with_context(|| format!("no audit line for {ns}/{id}"))?;
            ensure!(line["outcome"] == "allowed", "{line}");
            ensure!(
                line["tenant"] == tenant && line["backend"] == backend,
                "{line}"
            );
            ensure!(line["k8s_namespace"].is_null(), "{line}");

            // detached: check which shim serves it, then clean up
            let did = format!("ctr-{ns}-d");
            tokio::task::block_in_place(|| {
                ctr.run_detached(
                    "io.containerd.router.v2",
                    router_integration::BUSYBOX_IMAGE,
                    &did,
                    &["sleep", "3600"],
                )
            })?;
            let bundle = fx.h.bundle_dir(ns, &did);
            // the Go runc shim writes init.pid into the bundle; the built-in backend into its
            // root-only pid dir (never the bundle)
            let pid_file = [
                bundle.join("init.pid"),
                Path::new(router_integration::router_state::DEFAULT_STATE_DIR)
                    .join("pids")
                    .join(ns)
                    .join(&did)
                    .join("init.pid"),
            ]
            .into_iter()
            .find(|p| p.exists())
            .context("no init.pid in the bundle or the router's pid dir")?;
            let pid: i32 = std::fs::read_to_string(&pid_file)
                .with_context(|| format!("{}", pid_file.display()))?
                .trim()
                .parse()?;
            let bin = exe(ppid(pid)?)?;
            let want = if backend == "runc" {
                trusted_shim_binary()
            } else {
                fx.standin()
            };
            ensure!(is_same_file(&bin, &want), "{ns}/{did} on {}", bin.display());
            let errors = tokio::task::block_in_place(|| ctr.remove_everything());
            ensure!(errors.is_empty(), "ctr cleanup: {errors:?}");
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while router_integration::procs::alive(pid) {
                ensure!(std::time::Instant::now() < deadline, "task {pid} survived");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ensure!(!bundle.exists(), "bundle {} left", bundle.display());
        }
        Ok(())
    })
    .await
}

/// A container follows its sandbox's authoritative record (in the router's root-only state dir)
/// and never decides alone: the bundle's copy is not read (removing it changes nothing); with the
/// authoritative record missing, or replaced by a symlink, its start is refused and the pod keeps
/// running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_without_a_usable_sandbox_record_is_refused_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        let pod = fx.h.pod("shop-norecord", "orphan");
        let (pod_id, cfg, first) = pod_with_container(&fx, &cri, &pod).await?;
        let copy =
            fx.h.bundle_dir(router_integration::K8S_NAMESPACE, &pod_id)
                .join("router-decision.json");
        std::fs::remove_file(&copy)?;
        let c = ContainerSpec::new("no-copy")
            .in_pod(&pod)
            .shell("exec sleep 3600");
        create_and_start(&cri, &pod_id, &cfg, &c)
            .await
            .context("the bundle's copy of the record is for operators only")?;

        let record = router_integration::router_state::record_path(
            Path::new(router_integration::router_state::DEFAULT_STATE_DIR),
            fx.h.socket(),
            router_integration::K8S_NAMESPACE,
            &pod_id,
        );
        let saved = std::fs::read(&record)
            .with_context(|| format!("authoritative record {}", record.display()))?;

        std::fs::remove_file(&record)?;
        let c = ContainerSpec::new("late")
            .in_pod(&pod)
            .shell("exec sleep 3600");
        refusal_text(
            create_and_start(&cri, &pod_id, &cfg, &c).await,
            &["runtime-router refused", "no decision record", &pod_id],
        )?;

        // a symlink to a record that would pass is not followed
        let elsewhere = fx.h.dir().join(format!("decoy-{pod_id}.json"));
        std::fs::write(&elsewhere, &saved)?;
        std::os::unix::fs::symlink(&elsewhere, &record)?;
        let c = ContainerSpec::new("later")
            .in_pod(&pod)
            .shell("exec sleep 3600");
        refusal_text(
            create_and_start(&cri, &pod_id, &cfg, &c).await,
            &["runtime-router refused", "symlink"],
        )?;

        let refused: Vec<String> = fx
            .audit_for_uid(&pod.uid)?
            .into_iter()
            .filter(|v| v["outcome"] == "refused" && v["rule"] == "sandbox-record")
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        ensure!(refused.len() == 2, "sandbox-record refusals: {refused:?}");
        for id in &refused {
            assert_task_gone(&fx.h, id)?;
        }
        let out = cri
            .exec_sync(&first, &["echo", "alive"], Duration::from_secs(60))
            .await?;
        ensure!(out.stdout.trim() == "alive", "exec: {out:?}");

        // with the record back, the pod works as before and is removed cleanly
        std::fs::remove_file(&record)?;
        std::fs::write(&record, &saved)?;
        std::fs::remove_file(&elsewhere)?;
        remove_pod(&fx, &cri, &pod_id).await?;
        assert_task_gone(&fx.h, &pod_id)?;
        Ok(())
    })
    .await
}

/// A tenant without a `privileged` deny rule may run privileged containers on runc, but a
/// privileged container is never handed to the VM tier (here reached by a raising override).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_container_never_handed_to_vm_tier_standin() -> Result<()> {
    with_shared(|fx, cri| async move {
        // trusted tenant on runc: allowed
        let pod = fx.h.pod("sdewan-priv", "netadmin").privileged(true);
        let cfg = pod.build();
        let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox")?;
        let c = ContainerSpec::new("priv")
            .in_pod(&pod)
            .privileged(true)
            .shell("echo privileged-ok; exec sleep 3600");
        let cid = create_and_start(&cri, &pod_id, &cfg, &c)
            .await
            .context("privileged container on runc")?;
        cri.wait_log_contains(&cid, "privileged-ok", Duration::from_secs(60))
            .await?;
        remove_pod(&fx, &cri, &pod_id).await?;

        // same tenant raised to the VM tier: the privileged container is refused
        let pod =
            fx.h.pod("sdewan-priv", "netadmin-vm")
                .privileged(true)
                .annotation(BACKEND_OVERRIDE, "kata");
        let cfg = pod.build();
        let pod_id = cri.run_pod(&cfg).await.context("RunPodSandbox raised")?;
        let (_, bin) = pod_shim(&cri, &pod_id).await?;
        ensure!(
            is_same_file(&bin, &fx.standin()),
            "raised pod on {}",
            bin.display()
        );
        let c = ContainerSpec::new("priv")
            .in_pod(&pod)
            .privileged(true)
            .shell("exec sleep 3600");
        refusal_text(
            create_and_start(&cri, &pod_id, &cfg, &c).await,
            &["runtime-router refused", "privileged-vm", "`kata`"],
        )?;
        fx.assert_refused_and_gone(&pod.uid, "VM")?;
        remove_pod(&fx, &cri, &pod_id).await?;
        Ok(())
    })
    .await
}
