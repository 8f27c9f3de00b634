//! Fault injection on the built-in backend: the OCI runtime (runc, runsc) is a wrapper
//! ([`router_integration::faults`]) that fails a chosen verb or its Nth call, dies after doing
//! its work, stalls, or vanishes; the pod daemon and containerd are killed at chosen moments.
//! After each failure, and after the pod (if any) is removed, nothing of it may be left: the
//! harness's leak check ([`router_integration::leaks`]) is run mid-test and again at teardown.

mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use router_integration::faults::FaultyRuntime;
use router_integration::{
    leaks, procs, ContainerSpec, Containerd, ContainerdOptions, CriClient, K8S_NAMESPACE,
};
use support::*;

/// The real runtimes behind the wrappers.
const REAL_RUNC: &str = router_integration::policy::RUNC;
const REAL_RUNSC: &str = "/usr/bin/runsc";

/// How long the processes of a failed or removed pod may take to go.
const GRACE: Duration = Duration::from_secs(20);

struct Faults {
    h: Containerd,
    runc: FaultyRuntime,
    runsc: FaultyRuntime,
}

async fn start_faults() -> Result<Faults> {
    let h = Containerd::start(ContainerdOptions::with_policy(
        router_integration::faults::faults_policy(),
    ))
    .await
    .context("start containerd")?;
    let runc = FaultyRuntime::install(&h.dir().join("faults-runc"), "runc", Path::new(REAL_RUNC))?;
    let runsc = FaultyRuntime::install(
        &h.dir().join("faults-runsc"),
        "runsc",
        Path::new(REAL_RUNSC),
    )?;
    Ok(Faults { h, runc, runsc })
}

/// The end of every case: its error carries containerd's log; the teardown (whose leak check
/// must pass too) runs either way.
async fn finish(f: Faults, result: Result<()>) -> Result<()> {
    let result = result.map_err(|e| anyhow::anyhow!(f.h.failure_report(&e)));
    let teardown = f.h.shutdown().await;
    match (result, teardown) {
        (Err(e), Err(t)) => Err(e.context(format!("teardown: {t}"))),
        (Err(e), Ok(())) => Err(e),
        (Ok(()), t) => Ok(t?),
    }
}

/// A test body on a fresh fault harness: it sees `f` (the harness and both wrappers), `h` (the
/// containerd) and `cri`; its error carries containerd's log and the teardown runs either way.
macro_rules! on_faults {
    (|$f:ident, $h:ident, $cri:ident| $body:block) => {{
        let faults = start_faults().await?;
        let r = async {
            let $f = &faults;
            let $h = &$f.h;
            let $cri = $h.cri();
            $body
        }
        .await;
        finish(faults, r).await
    }};
}

/// After a pod's shim died: once containerd has finished the dead shim's cleanup, the container
/// and pod are removed as kubelet would, and nothing is left.
async fn removed_after_dead_shim(
    h: &Containerd,
    cri: &CriClient,
    pod_id: &str,
    cid: &str,
    what: &str,
) -> Result<()> {
    leaks::dead_shim_cleaned_up(h, K8S_NAMESPACE, &[cid, pod_id], LONG).await?;
    cri.remove_container(cid).await?;
    cri.stop_pod(pod_id).await?;
    cri.remove_pod(pod_id).await?;
    assert_clean(h, &format!("removing {what}"))
}

/// Nothing of the harness is left but its containerd.
fn assert_clean(h: &Containerd, after: &str) -> Result<()> {
    let left = leaks::wait_clean(&h.leak_scope(), GRACE);
    ensure!(
        left.is_empty(),
        "after {after}, left behind:\n  {}",
        left.join("\n  ")
    );
    Ok(())
}

async fn wait_until(what: &str, timeout: Duration, cond: impl Fn() -> bool) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        if std::time::Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// RunPodSandbox must fail with `expect` in its message, then nothing may be left.
async fn pod_start_fails(h: &Containerd, ns: &str, name: &str, expect: &str) -> Result<()> {
    let cri = h.cri();
    let cfg = h.pod(ns, name).build();
    match cri.run_pod(&cfg).await {
        Ok(id) => bail!("RunPodSandbox succeeded ({id}) despite the fault"),
        Err(e) => ensure!(
            e.message().contains(expect),
            "error does not say {expect:?}: {e}"
        ),
    }
    assert_clean(h, "a failed RunPodSandbox")
}

/// A pod runs; its container's start fails; the pod is removed; nothing is left.
async fn container_start_fails(h: &Containerd, ns: &str) -> Result<()> {
    let cri = h.cri();
    let pod = h.pod(ns, "start-fails");
    let cfg = pod.build();
    let pod_id = cri.run_pod(&cfg).await?;
    let c = ContainerSpec::new("never").in_pod(&pod).shell("echo never");
    let cid = cri.create_container(&pod_id, &cfg, &c.build()).await?;
    match cri.start_container(&cid).await {
        Ok(()) => bail!("StartContainer succeeded despite the fault"),
        Err(e) => ensure!(e.message().contains("injected fault"), "{e}"),
    }
    cri.remove_container(&cid).await?;
    cri.stop_pod(&pod_id).await?;
    cri.remove_pod(&pod_id).await?;
    assert_clean(h, "removing a pod whose container failed to start")
}

/// What a one-rule case expects once its rule is set.
enum Expect {
    /// RunPodSandbox of `name` in `ns` fails, saying `says`.
    PodFails {
        ns: &'static str,
        name: &'static str,
        says: &'static str,
    },
    /// A pod in `ns` runs, its container's StartContainer fails.
    ContainerFails { ns: &'static str },
}

/// One case on a fresh harness: `rules` set on the runc (`runsc == false`) or runsc wrapper,
/// then what `expect` says happens, and nothing is left.
async fn fault_case(runsc: bool, rules: &[&str], expect: Expect) -> Result<()> {
    let f = start_faults().await?;
    let r = async {
        let wrapper = if runsc { &f.runsc } else { &f.runc };
        wrapper.set_rules(rules)?;
        match expect {
            Expect::PodFails { ns, name, says } => pod_start_fails(&f.h, ns, name, says).await,
            Expect::ContainerFails { ns } => container_start_fails(&f.h, ns).await,
        }
    }
    .await;
    finish(f, r).await
}

/// One test per failure path, from a table: name, runsc?, rules, what must happen.
macro_rules! fault_cases {
    ($($name:ident: $runsc:expr, $rules:expr, $expect:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> Result<()> {
            fault_case($runsc, $rules, $expect).await
        }
    )*};
}

const SYS: &str = "kube-system";
const GV: &str = "tenant-a";
const FAULT: &str = "injected fault";

fault_cases! {
    runc_create_fails: false, &["create fail"], Expect::PodFails { ns: SYS, name: "create-fails", says: FAULT };
    runc_dies_after_create_did_its_work: false, &["create die"], Expect::PodFails { ns: SYS, name: "create-dies", says: "create" };
    runc_sandbox_start_fails_after_create: false, &["start fail"], Expect::PodFails { ns: SYS, name: "start-fails", says: FAULT };
    runc_container_start_fails_after_create: false, &["start fail 2"], Expect::ContainerFails { ns: SYS };
    runsc_sandbox_start_fails_after_create: true, &["start fail"], Expect::PodFails { ns: GV, name: "gvisor-start-fails", says: FAULT };
    runsc_container_start_fails_after_create: true, &["start fail 2"], Expect::ContainerFails { ns: GV };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runc_exec_fails_and_the_container_lives_on() -> Result<()> {
    on_faults!(|f, h, cri| {
        let pod = h.pod("kube-system", "exec-fails");
        let cfg = pod.build();
        let pod_id = cri.run_pod(&cfg).await?;
        let c = ContainerSpec::new("steady")
            .in_pod(&pod)
            .shell("echo up; exec sleep 3600");
        let cid = cri.run_container(&pod_id, &cfg, &c.build()).await?;
        cri.wait_log_contains(&cid, "up", LONG).await?;
        f.runc.set_rules(&["exec fail"])?;
        ensure!(
            cri.exec_sync(&cid, &["echo", "x"], LONG).await.is_err(),
            "exec succeeded despite the fault"
        );
        f.runc.set_rules(&[])?;
        let out = cri.exec_sync(&cid, &["echo", "again"], LONG).await?;
        ensure!(out.stdout.contains("again"), "{out:?}");
        cri.stop_pod(&pod_id).await?;
        cri.remove_pod(&pod_id).await?;
        assert_clean(h, "removing the pod")
    })
}

/// The `runc kill` of StopPodSandbox answers late: the signal is sent at once, the CLI exits
/// 2 s later. The sandbox's exit must not reach containerd before that `Kill` has answered; if
/// it does, containerd deletes the sandbox task (its own `kill --all` is quick) and shuts the
/// daemon down while the first `Kill` is in flight, closing the connection it was to answer on,
/// and StopPodSandbox fails with "ttrpc: closed" (seen once in ~50 runs of handoff_policy under
/// load before the daemon ordered the two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_kill_answers_late_and_stop_still_succeeds() -> Result<()> {
    on_faults!(|f, h, cri| {
        let cfg = h.pod("kube-system", "late-kill").build();
        let pod_id = cri.run_pod(&cfg).await?;
        let next = f.runc.calls("kill") + 1;
        f.runc.set_rules(&[&format!("kill linger 2 {next}")])?;
        cri.stop_pod(&pod_id).await.context("StopPodSandbox")?;
        ensure!(
            f.runc.stalled("kill"),
            "the sandbox's `runc kill` did not linger: the case under test did not happen"
        );
        f.runc.set_rules(&[])?;
        cri.remove_pod(&pod_id).await?;
        assert_clean(h, "removing the pod")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_binary_vanishes_before_the_pod_starts() -> Result<()> {
    on_faults!(|f, _h, _cri| {
        f.runc.vanish()?;
        let r = pod_start_fails(&f.h, "kube-system", "vanished", "faults-runc/runc").await;
        f.runc.restore(Path::new(REAL_RUNC))?;
        r
    })
}

/// The daemon is killed while a container's `start` is under way; containerd cleans up after
/// the dead shim, the pod is removed, nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_killed_during_a_container_start() -> Result<()> {
    on_faults!(|f, h, cri| {
        let pod = h.pod("kube-system", "killed-in-start");
        let cfg = pod.build();
        let pod_id = cri.run_pod(&cfg).await?;
        let daemon = h.daemon_of(&pod_id)?;
        f.runc.set_rules(&["start stall 4 2"])?;
        let c = ContainerSpec::new("victim")
            .in_pod(&pod)
            .shell("exec sleep 3600");
        let cid = cri.create_container(&pod_id, &cfg, &c.build()).await?;
        let starting = {
            let cri = h.cri();
            let cid = cid.clone();
            tokio::spawn(async move { cri.start_container(&cid).await })
        };
        wait_until("the stalled start", LONG, || f.runc.stalled("start")).await?;
        ensure!(
            procs::kill_all(&[daemon], LONG).is_empty(),
            "daemon {daemon} survived SIGKILL"
        );
        ensure!(
            starting.await?.is_err(),
            "StartContainer succeeded though its shim was killed"
        );
        removed_after_dead_shim(
            h,
            &cri,
            &pod_id,
            &cid,
            "a pod whose daemon was killed in a start",
        )
        .await
    })
}

/// The daemon of a running gVisor pod is killed: the sandbox, gofer and waits must go with the
/// cleanup containerd runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runsc_daemon_killed_with_a_running_container() -> Result<()> {
    on_faults!(|f, h, cri| {
        let pod = h.pod("tenant-a", "gvisor-killed");
        let cfg = pod.build();
        let pod_id = cri.run_pod(&cfg).await?;
        let daemon = h.daemon_of(&pod_id)?;
        let c = ContainerSpec::new("victim")
            .in_pod(&pod)
            .shell("echo up; exec sleep 3600");
        let cid = cri.run_container(&pod_id, &cfg, &c.build()).await?;
        cri.wait_log_contains(&cid, "up", LONG).await?;
        ensure!(
            procs::kill_all(&[daemon], LONG).is_empty(),
            "daemon {daemon} survived SIGKILL"
        );
        cri.wait_container_exit(&cid, LONG).await?;
        removed_after_dead_shim(
            h,
            &cri,
            &pod_id,
            &cid,
            "a gVisor pod whose daemon was killed",
        )
        .await
    })
}

/// containerd is killed while a container's `start` is under way, then restarted: the pod is
/// removed through the restarted containerd and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_killed_during_a_container_start() -> Result<()> {
    let mut f = start_faults().await?;
    let r = containerd_crash_case(&mut f).await;
    finish(f, r).await
}

async fn containerd_crash_case(f: &mut Faults) -> Result<()> {
    let cri = f.h.cri();
    let pod = f.h.pod("kube-system", "crash-in-start");
    let cfg = pod.build();
    let pod_id = cri.run_pod(&cfg).await?;
    f.runc.set_rules(&["start stall 3 2"])?;
    let c = ContainerSpec::new("caught")
        .in_pod(&pod)
        .shell("exec sleep 3600");
    let cid = cri.create_container(&pod_id, &cfg, &c.build()).await?;
    let starting = {
        let cri = f.h.cri();
        let cid = cid.clone();
        tokio::spawn(async move { cri.start_container(&cid).await })
    };
    wait_until("the stalled start", LONG, || f.runc.stalled("start")).await?;
    f.h.crash();
    let _ = starting.await?;
    f.h.restart().await?;
    let cri = f.h.cri();
    let _ = cri.stop_container(&cid, 0).await;
    cri.remove_container(&cid).await?;
    cri.stop_pod(&pod_id).await?;
    cri.remove_pod(&pod_id).await?;
    assert_clean(
        &f.h,
        "removing the pod after containerd was killed in a start",
    )
}
