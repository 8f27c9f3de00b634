//! Smoke test of the integration harness itself, with containerd's own runc shim as the default
//! handler (no router involved): a pod with its own network namespace from the harness's CNI
//! bridge, a busybox container whose output is read back from its CRI log, exec-sync, stop and
//! remove, and a teardown after which no process refers to the harness.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use router_integration::{procs, ContainerSpec, Containerd, ContainerdOptions, RuntimeHandler};

const LONG: Duration = Duration::from_secs(120);

/// A harness on plain runc: the router is not involved.
fn plain_runc() -> ContainerdOptions {
    ContainerdOptions::default()
        .handler(RuntimeHandler::runc("runc"))
        .default_runtime("runc")
}

/// A pod `name` in namespace `smoke` with one sleeping container: (pod id, container id,
/// container pid).
async fn sleeping_pod(h: &Containerd, name: &str) -> Result<(String, String, i32)> {
    let cri = h.cri();
    let pod_cfg = h.pod("smoke", name).build();
    let pod_id = cri.run_pod(&pod_cfg).await?;
    let sleeper = ContainerSpec::new("sleeper").shell("exec sleep 3600");
    let cid = cri
        .run_container(&pod_id, &pod_cfg, &sleeper.build())
        .await?;
    let pid = cri.container_pid(&cid).await?;
    Ok((pod_id, cid, pid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_runs_a_pod_on_plain_runc_and_cleans_up() -> Result<()> {
    let opts = ContainerdOptions::with_policy("audit_log = \"{dir}/audit.jsonl\" # {state}\n")
        .handler(RuntimeHandler::runc("runc"))
        .default_runtime("runc");
    let h = Containerd::start(opts).await.context("start harness")?;
    let socket = h.socket().to_string_lossy().into_owned();
    let dir = h.dir().to_string_lossy().into_owned();
    let policy_path = h.policy_path().context("policy path")?;
    let policy = std::fs::read_to_string(policy_path)?;
    ensure!(
        policy
            == format!(
                "audit_log = \"{dir}/audit.jsonl\" # {}\n",
                h.state().display()
            ),
        "placeholders not expanded: {policy}"
    );
    let bridge = h.bridge().to_string();

    let result = exercise(&h).await;
    let (pids, uid) = match result {
        Ok(r) => r,
        Err(e) => return Err(anyhow::anyhow!(h.failure_report(&e))),
    };

    let kubelet_dir =
        std::path::Path::new(router_integration::containerd::KUBELET_PODS_DIR).join(&uid);
    ensure!(kubelet_dir.exists(), "{} missing", kubelet_dir.display());
    h.shutdown().await.context("shutdown")?;
    ensure!(
        !kubelet_dir.exists(),
        "{} left behind",
        kubelet_dir.display()
    );
    let left = procs::referencing(&socket);
    ensure!(
        left.is_empty(),
        "processes still reference {socket}: {left:?}"
    );
    let left = procs::referencing(&dir);
    ensure!(left.is_empty(), "processes still reference {dir}: {left:?}");
    for pid in pids {
        ensure!(
            !procs::alive(pid),
            "container process {pid} survived shutdown"
        );
    }
    ensure!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was not removed"
    );
    ensure!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists(),
        "bridge {bridge} was not deleted"
    );
    Ok(())
}

/// Runs the pod; returns the host pids of the sandbox and container and the pod uid (checked
/// after shutdown).
async fn exercise(h: &Containerd) -> Result<(Vec<i32>, String)> {
    let cri = h.cri();
    let (name, version) = cri.version().await?;
    ensure!(name == "containerd", "runtime name {name} {version}");

    let pod = h.pod("smoke", "echo-pod");
    let pod_cfg = pod.build();
    let pod_id = cri.run_pod(&pod_cfg).await.context("RunPodSandbox")?;
    let pod_pid = cri.pod_pid(&pod_id).await?;

    // The pod has its own network namespace with an address from the harness subnet.
    let status = cri.pod_status(&pod_id).await?;
    let ip = status
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    let prefix = h.subnet().rsplit_once('.').map(|(p, _)| p).unwrap_or("");
    ensure!(
        !ip.is_empty() && ip.starts_with(prefix),
        "pod IP {ip:?} not in {}",
        h.subnet()
    );
    let host_netns = std::fs::read_link("/proc/self/ns/net")?;
    let pod_netns = std::fs::read_link(format!("/proc/{pod_pid}/ns/net"))?;
    ensure!(
        host_netns != pod_netns,
        "pod shares the host network namespace"
    );

    let volume = h.kubelet_volume(&pod, "scratch")?;
    let container = ContainerSpec::new("echo")
        .in_pod(&pod)
        .mount(&volume, "/scratch", false)
        .shell("echo in-volume > /scratch/f; echo hello-from-harness; uname -s; echo ready; exec sleep 3600");
    let cid = cri
        .run_container(&pod_id, &pod_cfg, &container.build())
        .await
        .context("create/start container")?;
    // Lines reach the log asynchronously: wait for the last one, then check them all.
    let logs = cri.wait_log_contains(&cid, "ready", LONG).await?;
    ensure!(
        logs == "hello-from-harness\nLinux\nready\n",
        "unexpected log: {logs:?}"
    );
    let c_pid = cri.container_pid(&cid).await?;
    let written = std::fs::read_to_string(volume.join("f"))?;
    ensure!(written == "in-volume\n", "volume content {written:?}");

    let out = cri
        .exec_sync(
            &cid,
            &["sh", "-c", "cat /etc/hostname; id -u; exit 3"],
            LONG,
        )
        .await?;
    ensure!(out.exit_code == 3, "exec exit code {out:?}");
    ensure!(out.stdout.contains("echo-pod"), "hostname: {out:?}");
    ensure!(out.stdout.lines().any(|l| l == "0"), "uid: {out:?}");

    let stats = cri.container_stats(&cid).await?;
    ensure!(
        stats.attributes.is_some(),
        "stats without attributes: {stats:?}"
    );
    let listed = cri.list_containers(Some(&pod_id)).await?;
    ensure!(listed.iter().any(|c| c.id == cid), "container not listed");

    // A second, short-lived container: exit code is reported.
    let short = ContainerSpec::new("short").shell("echo bye >&2; exit 7");
    let sid = cri.run_container(&pod_id, &pod_cfg, &short.build()).await?;
    ensure!(cri.wait_container_exit(&sid, LONG).await? == 7, "exit code");
    cri.wait_log_contains(&sid, "bye", LONG)
        .await
        .context("stderr in log")?;

    // A refused call carries the gRPC message.
    let err = cri
        .create_container(
            &pod_id,
            &pod_cfg,
            &ContainerSpec::new("bad")
                .image("docker.io/local/absent:1")
                .build(),
        )
        .await
        .err()
        .context("image that does not exist must fail")?;
    ensure!(err.grpc_code().is_some(), "not a CRI error: {err}");
    ensure!(
        err.message().contains("absent"),
        "message lacks the image: {err}"
    );

    cri.stop_container(&cid, 5).await?;
    cri.remove_container(&cid).await?;
    cri.stop_pod(&pod_id).await?;
    cri.remove_pod(&pod_id).await?;
    ensure!(cri.list_pods().await?.is_empty(), "pod still listed");
    Ok((vec![pod_pid, c_pid], pod.uid.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_teardown_kills_what_was_left_running() -> Result<()> {
    // A pod left running at shutdown, plus a ctr task in another namespace: both must be gone.
    let opts = plain_runc();
    let h = Containerd::start(opts).await.context("start harness")?;
    let socket = h.socket().to_string_lossy().into_owned();
    let (_, _, c_pid) = sleeping_pod(&h, "left-running").await?;
    h.import_images("smoke").await?;
    h.ctr("smoke").run_detached(
        "io.containerd.runc.v2",
        router_integration::BUSYBOX_IMAGE,
        "ctr-task",
        &["sleep", "3600"],
    )?;
    let tasks = h.ctr("smoke").tasks()?;
    ensure!(
        tasks.iter().any(|t| t == "ctr-task"),
        "ctr task missing: {tasks:?}"
    );
    ensure!(
        h.shims().len() >= 2,
        "expected a shim per pod/task: {:?}",
        h.shims()
    );

    h.shutdown().await.context("shutdown")?;
    let left = procs::referencing(&socket);
    ensure!(
        left.is_empty(),
        "processes still reference {socket}: {left:?}"
    );
    ensure!(
        !procs::alive(c_pid),
        "container process {c_pid} survived shutdown"
    );
    Ok(())
}

/// The network namespace path CRI pinned for a pod (from the verbose status's OCI spec).
async fn pod_netns_path(cri: &router_integration::CriClient, pod_id: &str) -> Result<String> {
    let (_, info) = cri.pod_status_verbose(pod_id, true).await?;
    let v: serde_json::Value = serde_json::from_str(info.get("info").context("no info")?)?;
    let namespaces = v["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .context("no namespaces in runtimeSpec")?;
    namespaces
        .iter()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .map(String::from)
        .context("no network namespace path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_restart_keeps_pods_and_crash_teardown_cleans_up() -> Result<()> {
    let opts = plain_runc();
    let mut h = Containerd::start(opts).await.context("start harness")?;
    let socket = h.socket().to_string_lossy().into_owned();
    let cri = h.cri();
    let (pod_id, cid, c_pid) = sleeping_pod(&h, "survivor").await?;
    let netns = pod_netns_path(&cri, &pod_id).await?;
    ensure!(std::path::Path::new(&netns).exists(), "{netns} missing");

    // containerd restart: the shims keep the pod, and CRI finds it again.
    let old = h.containerd_pid();
    h.restart().await.context("restart")?;
    ensure!(h.containerd_pid() != old, "containerd was not restarted");
    let cri = h.cri();
    let out = cri
        .exec_sync(&cid, &["echo", "still-here"], LONG)
        .await
        .map_err(|e| anyhow::anyhow!(h.failure_report(&format!("exec after restart: {e:#}"))))?;
    ensure!(out.stdout.trim() == "still-here", "{out:?}");
    ensure!(procs::alive(c_pid), "container died across the restart");

    // containerd crash: teardown cannot use CRI and must still leave nothing behind, not even the
    // shim's socket (which a killed shim cannot remove).
    let shim_socket = router_integration::cleanup::shim_socket_path(
        h.socket(),
        router_integration::K8S_NAMESPACE,
        &pod_id,
    );
    ensure!(shim_socket.exists(), "{} missing", shim_socket.display());
    h.crash();
    ensure!(!h.shims().is_empty(), "shims should outlive containerd");
    h.shutdown().await.context("shutdown after crash")?;
    let left = procs::referencing(&socket);
    ensure!(
        left.is_empty(),
        "processes still reference {socket}: {left:?}"
    );
    ensure!(!procs::alive(c_pid), "container process {c_pid} survived");
    ensure!(
        !std::path::Path::new(&netns).exists(),
        "{netns} left behind"
    );
    ensure!(
        !shim_socket.exists(),
        "{} left behind",
        shim_socket.display()
    );
    Ok(())
}

/// Not a test on its own: the child process of `harness_abandoned_by_a_killed_test_is_reaped`.
/// Starts a harness with a running pod, prints its dir, then waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for harness_abandoned_by_a_killed_test_is_reaped"]
async fn helper_abandoned_harness() -> Result<()> {
    if std::env::var_os("RR_HARNESS_HELPER").is_none() {
        return Ok(());
    }
    let opts = plain_runc();
    let h = Containerd::start(opts).await?;
    let (_, _, pid) = sleeping_pod(&h, "abandoned").await?;
    println!(
        "HARNESS {} {} {}",
        h.dir().display(),
        h.socket().display(),
        pid
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

#[test]
fn harness_abandoned_by_a_killed_test_is_reaped() -> Result<()> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "helper_abandoned_harness",
            "--nocapture",
        ])
        .env("RR_HARNESS_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    for l in std::io::BufReader::new(stdout).lines() {
        let l = l?;
        if l.starts_with("HARNESS ") {
            line = l;
            break;
        }
    }
    child.kill()?; // SIGKILL: no Drop, no teardown
    child.wait()?;
    let parts: Vec<&str> = line.split_whitespace().collect();
    ensure!(
        parts.len() == 4,
        "helper did not report its harness: {line:?}"
    );
    let (dir, socket, pid) = (parts[1], parts[2], parts[3].parse::<i32>()?);
    ensure!(
        procs::alive(pid),
        "the abandoned container should still run"
    );

    // The lock is free now; age it past the reaper's grace period.
    let lock = std::path::Path::new(dir).join(router_integration::reaper::LOCK_FILE);
    std::fs::File::options()
        .write(true)
        .open(&lock)?
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))?;
    let reaped = router_integration::reaper::reap_stale_harnesses();
    ensure!(
        reaped.iter().any(|d| d == std::path::Path::new(dir)),
        "{dir} not reaped (reaped {reaped:?})"
    );
    ensure!(!std::path::Path::new(dir).exists(), "{dir} still exists");
    let left = procs::referencing(socket);
    ensure!(
        left.is_empty(),
        "processes still reference {socket}: {left:?}"
    );
    ensure!(!procs::alive(pid), "container {pid} survived the reaper");
    Ok(())
}

fn harness_dirs() -> std::collections::BTreeSet<std::path::PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(router_integration::reaper::DIR_PREFIX))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn harness_start_failures_name_the_problem() -> Result<()> {
    let before = harness_dirs();
    // (options, what the error must name): each refused before or as containerd starts
    let cases = [
        // an unregistered default handler
        (
            ContainerdOptions::default().default_runtime("kata"),
            "`kata`",
        ),
        // a containerd that exits at once: the error says so and carries its output
        (
            ContainerdOptions {
                containerd_binary: "/bin/false".into(),
                ..Default::default()
            },
            "exited",
        ),
        // a containerd binary that does not exist is named
        (
            ContainerdOptions {
                containerd_binary: "/nonexistent/containerd".into(),
                ..Default::default()
            },
            "/nonexistent/containerd",
        ),
    ];
    for (opts, names) in cases {
        let err = Containerd::start(opts)
            .await
            .err()
            .with_context(|| format!("a start that must fail naming {names}"))?;
        ensure!(err.to_string().contains(names), "{err}");
    }

    // Failed starts leave no harness dir behind (other tests may create their own meanwhile).
    let after = harness_dirs();
    let new: Vec<_> = after.difference(&before).collect();
    for d in &new {
        ensure!(
            router_integration::reaper::is_held(d) || !d.exists(),
            "failed start left {}",
            d.display()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_standin_handler_serves_pods_under_its_own_name_standin() -> Result<()> {
    // The Kata stand-in registered directly: its pod daemon runs as the stand-in binary, which is
    // how suites tell the VM tier's pods from runc's.
    let opts = ContainerdOptions::default()
        .handler(RuntimeHandler::runc("runc"))
        .handler(RuntimeHandler::standin("kata-standin"))
        .default_runtime("runc");
    let h = Containerd::start(opts).await.context("start harness")?;
    let cri = h.cri();
    let mut daemons = Vec::new();
    for handler in ["kata-standin", "runc"] {
        let cfg = h.pod("smoke", handler).build();
        let pod_id = cri.run_pod_with_handler(&cfg, handler).await.map_err(|e| {
            anyhow::anyhow!(h.failure_report(&format!("run pod on {handler}: {e:#}")))
        })?;
        let pause = cri.pod_pid(&pod_id).await?;
        let daemon = procs::ppid(pause).context("pause has no parent")?;
        let exe = procs::exe(daemon).context("daemon exe")?;
        daemons.push((handler, exe));
    }
    ensure!(
        daemons[0].1.starts_with(h.standin_dir())
            && daemons[0].1.ends_with(router_integration::STANDIN_BINARY),
        "stand-in pod served by {:?}",
        daemons[0].1
    );
    ensure!(
        daemons[1].1.ends_with("containerd-shim-runc-v2"),
        "runc pod served by {:?}",
        daemons[1].1
    );
    h.shutdown().await.context("shutdown")?;
    Ok(())
}
