//! Tests against the host's real runsc (`/usr/bin/runsc`, Debian's busybox-static bundles): a
//! pod of a sandbox and containers joining it, driven the way the daemon drives it, with the
//! runsc-specific pieces of this module learning exits and signalling exec'd processes.
//! Runtime arguments are the ones `docs/gvisor.md` recommends for this host.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::cli::{self, Runsc};
use super::testbundle::Pod;
use super::wait::{self, ExitSource};
use super::{Role, KILLED_WITH_SANDBOX};

/// The recommended `runtime_args` for this host (see docs/gvisor.md).
const ARGS: &[&str] = &["--platform=ptrace", "--network=host"];
/// Generous: the machine is shared with other engineers' builds.
const LONG: Duration = Duration::from_secs(120);

fn client(pod: &Pod) -> Runsc {
    Runsc::new(
        Path::new("/usr/bin/runsc"),
        &pod.root,
        &pod.runtime_args,
        Runsc::reap_own_children(),
    )
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LONG, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {LONG:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_exit_with_their_own_codes_through_runsc_wait() {
    let mut pod = Pod::new(ARGS);
    let sandbox_pid = pod.create("sb", "sandbox", "sb", &["/bin/sleep", "1000"]);
    pod.start("sb");
    let c1_pid = pod.create(
        "c1",
        "container",
        "sb",
        &[
            "/bin/sh",
            "-c",
            "echo c1-out; echo c1-err >&2; uname -r; dmesg | head -1; sleep 1; exit 7",
        ],
    );
    // A container joining the sandbox has no process of its own on the host.
    assert_eq!(c1_pid, sandbox_pid);
    assert_eq!(
        Role::from_bundle(&pod.bundle("c1")).unwrap(),
        Role::Container {
            sandbox_id: pod.cid("sb")
        }
    );
    let c2_pid = pod.create(
        "c2",
        "container",
        "sb",
        &[
            "/bin/sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 1; done",
        ],
    );
    assert_eq!(c2_pid, sandbox_pid);
    let runsc = client(&pod);

    pod.start("c1");
    let c1_exit = wait::watch(runsc.clone(), pod.cid("c1"));
    pod.start("c2");
    let c2_exit = wait::watch(runsc.clone(), pod.cid("c2"));

    let r1 = within("c1 exit", c1_exit).await.expect("c1 reported");
    assert_eq!(r1.status, 7);
    assert_eq!(r1.source, ExitSource::Waited);
    // Its stdio was the one given to `runsc start`, and it ran on gVisor's kernel.
    let out = pod.read("c1.out");
    assert!(out.contains("c1-out"), "stdout: {out:?}");
    assert!(pod.read("c1.err").contains("c1-err"));
    let host_release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(
        !out.contains(host_release.trim()),
        "host kernel seen inside: {out}"
    );
    assert!(out.contains("Starting gVisor"), "dmesg: {out}");
    // The status stays available to a later wait.
    assert_eq!(
        within("second wait", runsc.wait(&pod.cid("c1")))
            .await
            .unwrap(),
        wait::WaitOutcome::Exited(7)
    );

    assert!(pod.wait_for_text("c2.out", "ready"));
    let ok = pod
        .runsc()
        .arg("kill")
        .arg(pod.cid("c2"))
        .arg("TERM")
        .status()
        .unwrap();
    assert!(ok.success());
    let r2 = within("c2 exit", c2_exit).await.expect("c2 reported");
    assert_eq!((r2.status, r2.source), (42, ExitSource::Waited));
    assert!(pod.read("c2.out").contains("got-term"));

    // The sandbox kept running through its containers' exits.
    assert!(pod.sandbox_alive());
    assert_eq!(
        within("state", runsc.status(&pod.cid("sb"))).await.unwrap(),
        "running"
    );

    // Once deleted, a container has no status left to wait for.
    let ok = pod
        .runsc()
        .arg("delete")
        .arg(pod.cid("c1"))
        .status()
        .unwrap();
    assert!(ok.success());
    match within("wait after delete", runsc.wait(&pod.cid("c1")))
        .await
        .unwrap()
    {
        wait::WaitOutcome::Failed(m) => assert!(m.contains("does not exist"), "{m}"),
        other => panic!("wait after delete: {other:?}"),
    }
    let gone = within(
        "watch after delete",
        wait::watch(runsc.clone(), pod.cid("c1")),
    )
    .await
    .unwrap();
    assert_eq!(gone.status, KILLED_WITH_SANDBOX);
    assert!(matches!(gone.source, ExitSource::SandboxGone(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_sandbox_process_is_every_containers_exit() {
    let mut pod = Pod::new(ARGS);
    pod.create("sb", "sandbox", "sb", &["/bin/sleep", "1000"]);
    pod.start("sb");
    pod.create("c1", "container", "sb", &["/bin/sleep", "1000"]);
    pod.create("c2", "container", "sb", &["/bin/sleep", "1000"]);
    pod.start("c1");
    pod.start("c2");
    let runsc = client(&pod);
    let w1 = wait::watch(runsc.clone(), pod.cid("c1"));
    let w2 = wait::watch(runsc.clone(), pod.cid("c2"));
    // Let both waits reach the sandbox before killing it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        within("state", runsc.status(&pod.cid("c1"))).await.unwrap(),
        "running"
    );
    pod.kill_sandbox();
    for (id, w) in [("c1", w1), ("c2", w2)] {
        let r = within(id, w).await.expect("reported");
        assert_eq!(r.status, KILLED_WITH_SANDBOX, "{id}: {r:?}");
        assert!(
            matches!(r.source, ExitSource::SandboxGone(_)),
            "{id}: {r:?}"
        );
    }
    assert_eq!(
        within("state", runsc.status(&pod.cid("c1"))).await.unwrap(),
        "stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_is_signalled_through_runsc_not_through_its_host_helper() {
    let mut pod = Pod::new(ARGS);
    pod.create("sb", "sandbox", "sb", &["/bin/sleep", "1000"]);
    pod.start("sb");
    pod.create("c1", "container", "sb", &["/bin/sleep", "1000"]);
    pod.start("c1");
    let runsc = client(&pod);

    let dir = pod.dir.path();
    let (pid_file, ipid_file) = (dir.join("e.pid"), dir.join("e.ipid"));
    let out = std::fs::File::create(dir.join("e.out")).unwrap();
    let mut cmd = runsc.command();
    cmd.args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args(cli::exec_args(&ipid_file))
        .arg(pod.cid("c1"))
        .args(["/bin/sh", "-c"])
        .arg("trap 'echo got-term; exit 11' TERM; echo ready; while true; do sleep 1; done")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null());
    assert!(cmd.status().unwrap().success());
    let internal = cli::read_internal_pid(&ipid_file).unwrap();
    let helper: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(
        internal, helper,
        "internal pid is the sandbox's, not the host's"
    );
    assert!(pod.wait_for_text("e.out", "ready"));

    within(
        "kill --pid",
        runsc.kill_process(&pod.cid("c1"), internal, 15),
    )
    .await
    .unwrap();
    assert!(
        pod.wait_for_text("e.out", "got-term"),
        "exec never saw SIGTERM"
    );

    // A pid that is not there is an error naming the command.
    let err = within("kill --pid", runsc.kill_process(&pod.cid("c1"), 99999, 15))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("kill --pid 99999 {}", pod.cid("c1"))),
        "{err}"
    );
}
