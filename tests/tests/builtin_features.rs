//! End to end with the trusted tier on the built-in backend: a terminal container and an exec
//! with a TTY, a container over its memory limit reported OOMKilled, pause/resume through
//! `ctr`, `ctr run --rm`, and a failed task start that leaves no daemon behind.

mod support;

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use router_integration::{procs, ContainerSpec, Containerd};
use support::builtin::*;
use support::*;

async fn with_harness<F, Fut>(f: F) -> Result<()>
where
    F: FnOnce(std::sync::Arc<Containerd>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let h = std::sync::Arc::new(start().await?);
    let result = f(h.clone()).await;
    let h = std::sync::Arc::try_unwrap(h).map_err(|_| anyhow::anyhow!("harness still shared"))?;
    let result = result.map_err(|e| anyhow::anyhow!(h.failure_report(&e)));
    h.shutdown().await?;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_container_and_exec_with_tty() -> Result<()> {
    with_harness(|h| async move {
        let cri = h.cri();
        let pod = h.pod("kube-system", "builtin-tty");
        let cfg = pod.build();
        let pod_id = cri.run_pod(&cfg).await?;
        pod_daemon(&cri, &pod_id).await?;
        // A terminal container: its output reaches the CRI log through the pty.
        let c = ContainerSpec::new("term")
            .in_pod(&pod)
            .tty(true)
            .shell("if [ -t 1 ]; then echo stdout-is-a-tty; fi; tty; exec sleep 3600");
        let cid = cri.run_container(&pod_id, &cfg, &c.build()).await?;
        let logs = cri.wait_log_contains(&cid, "/dev/pts/", LONG).await?;
        ensure!(logs.contains("stdout-is-a-tty"), "logs: {logs:?}");

        // An exec with a TTY, driven by `ctr task exec -t` under a pseudo-terminal of `script`.
        let ctr = h.ctr("k8s.io").command();
        let mut line: Vec<String> = vec![ctr.get_program().to_string_lossy().into_owned()];
        line.extend(ctr.get_args().map(|a| a.to_string_lossy().into_owned()));
        line.extend(
            [
                "task",
                "exec",
                "-t",
                "--exec-id",
                "tty-exec",
                &cid,
                "sh",
                "-c",
                "tty; stty size; exit 4",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let quoted: Vec<String> = line.iter().map(|a| format!("'{a}'")).collect();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("script")
                .args(["-qec", &quoted.join(" "), "/dev/null"])
                .stdin(std::process::Stdio::null())
                .output()
        })
        .await??;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(text.contains("/dev/pts/"), "exec tty output: {text:?}");
        ensure!(
            out.status.code() == Some(4),
            "exec with tty exit status {:?}, output {text:?}",
            out.status
        );

        // A plain exec in the same container still works.
        let out = cri
            .exec_sync(&cid, &["sh", "-c", "[ -t 1 ] || echo not-a-tty"], LONG)
            .await?;
        ensure!(out.stdout.contains("not-a-tty"), "{out:?}");
        cri.stop_container(&cid, 2).await?;
        remove_pod_and(&cri, &pod_id, &[&cid]).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_over_its_memory_limit_is_reported_oom_killed() -> Result<()> {
    with_harness(|h| async move {
        let cri = h.cri();
        let c = ContainerSpec::new("hog")
            .memory_limit(16 * 1024 * 1024)
            .shell("echo eating; tail /dev/zero");
        let (_pod, _cfg, pod_id, cid) = pod_with(&h, &cri, "kube-system", "builtin-oom", c).await?;
        let code = cri.wait_container_exit(&cid, LONG).await?;
        ensure!(
            code == 137,
            "exit code {code}, want 137 (SIGKILL by the OOM killer)"
        );
        // The OOM event may be handled just after the exit.
        let deadline = std::time::Instant::now() + LONG;
        loop {
            let st = cri.container_status(&cid).await?;
            if st.reason == "OOMKilled" {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("container reason {:?}, want OOMKilled", st.reason);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        remove_pod_and(&cri, &pod_id, &[&cid]).await?;
        Ok(())
    })
    .await
}

fn task_status(h: &Containerd, ns: &str, id: &str) -> Result<String> {
    let out = h.ctr(ns).run(&["task", "ls"])?;
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2))
        .map(str::to_owned)
        .with_context(|| format!("task {id} not in `ctr task ls`:\n{out}"))
}

fn freezer_state(pid: i32) -> Option<String> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cg.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctrl, path) = (p.next()?, p.next()?, p.next()?);
        ctrl.split(',')
            .any(|c| c == "freezer")
            .then(|| path.to_owned())
    })?;
    std::fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state"))
        .ok()
        .map(|s| s.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_through_ctr() -> Result<()> {
    with_harness(|h| async move {
        let cri = h.cri();
        let c = ContainerSpec::new("ticker").shell("echo ready; exec sleep 3600");
        let (_pod, _cfg, pod_id, cid) =
            pod_with(&h, &cri, "kube-system", "builtin-pause", c).await?;
        cri.wait_log_contains(&cid, "ready", LONG).await?;
        let pid = cri.container_pid(&cid).await?;
        ensure!(
            task_status(&h, "k8s.io", &cid)? == "RUNNING",
            "before pause"
        );
        h.ctr("k8s.io").run(&["task", "pause", &cid])?;
        ensure!(task_status(&h, "k8s.io", &cid)? == "PAUSED", "after pause");
        if let Some(state) = freezer_state(pid) {
            ensure!(state == "FROZEN", "freezer state {state}");
        }
        h.ctr("k8s.io").run(&["task", "resume", &cid])?;
        ensure!(
            task_status(&h, "k8s.io", &cid)? == "RUNNING",
            "after resume"
        );
        if let Some(state) = freezer_state(pid) {
            ensure!(state == "THAWED", "freezer state {state}");
        }
        let out = cri.exec_sync(&cid, &["echo", "alive"], LONG).await?;
        ensure!(out.stdout.contains("alive"), "{out:?}");
        cri.stop_container(&cid, 2).await?;
        remove_pod_and(&cri, &pod_id, &[&cid]).await?;
        Ok(())
    })
    .await
}

fn router_daemons_of(h: &Containerd) -> Vec<procs::ProcInfo> {
    let sock = h.socket().to_string_lossy().into_owned();
    procs::list()
        .into_iter()
        .filter(|p| {
            p.cmdline
                .first()
                .is_some_and(|c| c.contains("containerd-shim-router-v2"))
                && p.cmdline.iter().any(|a| a == &sock)
        })
        .collect()
}

/// `ctr run --rm` through the router with the busybox image: `id` and the command follow.
fn rm_args<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--rm",
        "--runtime",
        "io.containerd.router.v2",
        router_integration::BUSYBOX_IMAGE,
    ];
    args.extend_from_slice(rest);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_run_rm_and_failed_start_leave_nothing() -> Result<()> {
    with_harness(|h| async move {
        h.import_images("default").await?;
        let ctr = h.ctr("default").with_timeout(LONG);
        let out = ctr.run(&rm_args(&["builtin-ctr-run", "sh", "-c", "echo via-ctr"]))?;
        ensure!(out.contains("via-ctr"), "ctr run output {out:?}");
        // A non-zero exit is passed through by `ctr run`.
        let o = ctr.run_unchecked(&rm_args(&["builtin-ctr-exit", "sh", "-c", "exit 3"]))?;
        ensure!(o.status.code() == Some(3), "ctr run exit {:?}", o.status);
        // Stdin through the FIFO: its end (ctr closes it and sends CloseIO) ends `cat`.
        let ctr_cmd = h.ctr("default").command();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf 'piped-in\\n' | timeout 120 \"$@\"", "sh"])
            .arg(ctr_cmd.get_program())
            .args(ctr_cmd.get_args())
            .args(rm_args(&["builtin-ctr-stdin", "cat"]));
        let out = tokio::task::spawn_blocking(move || {
            router_integration::command::run_unchecked(&mut cmd, LONG + Duration::from_secs(30))
        })
        .await??;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && text.contains("piped-in"),
            "ctr run cat with piped stdin: {:?} {text:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // A process that cannot be started: the task fails, nothing is left.
        let o = ctr.run_unchecked(&rm_args(&["builtin-ctr-bad", "/no/such/binary"]))?;
        ensure!(!o.status.success(), "starting /no/such/binary succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        ensure!(
            err.contains("/no/such/binary"),
            "error does not name the binary: {err}"
        );
        let _ = ctr.run_unchecked(&["containers", "rm", "builtin-ctr-bad"]);
        let deadline = std::time::Instant::now() + LONG;
        while !router_daemons_of(&h).is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let left = router_daemons_of(&h);
        ensure!(left.is_empty(), "router daemons left: {left:?}");
        let tasks = ctr.run(&["task", "ls", "-q"])?;
        ensure!(tasks.trim().is_empty(), "tasks left: {tasks}");
        Ok(())
    })
    .await
}
