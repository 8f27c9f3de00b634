//! Regressions of issue 9 for `routerctl`: a FIFO, a device or an oversized file as the policy or
//! spec is refused at once with the reason (it once hung `check`), and `check` reports
//! `allowed_host_paths` entries that let a pod reach what every pod shares as errors.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::routerctl_timed as routerctl;

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    assert!(ok.success());
}

#[test]
fn fifo_device_and_oversized_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fifo = dir.path().join("policy.fifo");
    mkfifo(&fifo);
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "# x\n".repeat(6_000_000)).unwrap_or_else(|e| panic!("{e}"));
    let cases: [(&Path, &str); 3] = [
        (&fifo, "not a regular file"),
        (Path::new("/dev/zero"), "not a regular file"),
        (&big, "larger than the limit"),
    ];
    for (p, want) in cases {
        let (code, _, err, took) = routerctl(&["check", &p.to_string_lossy()]);
        assert_eq!(code, 1, "{p:?}: {err}");
        assert!(
            err.contains(want) && err.contains(&*p.to_string_lossy()),
            "{p:?}: {err}"
        );
        assert!(took < Duration::from_secs(5), "{p:?} took {took:?}");
    }
    // explain --bundle with a FIFO as config.json
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&bundle.join("config.json"));
    let (code, _, err, took) = routerctl(&["explain", "--bundle", &bundle.to_string_lossy()]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    assert!(took < Duration::from_secs(5));
}

#[test]
fn check_calls_host_paths_every_pod_shares_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "version = 1\ndefault_tenant = \"u\"\n\
         allowed_host_paths = [\"/var/lib/kubelet/pods/{pod_uid}/\",\n  \"/run/containerd/\",\n  \"/var/lib/kubelet/pods/\"]\n\
         [backends.k]\nkind = \"shim\"\nbinary = \"/bin/true\"\nisolation = \"vm\"\n\
         [tenants.u]\nbackend = \"k\"\ndeny = [\"host-path\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err, _) = routerctl(&["check", &p.to_string_lossy()]);
    assert_eq!(code, 1, "{out}{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("error: ") && l.contains("allowed_host_paths["))
        .collect();
    assert_eq!(warnings.len(), 2, "{out}");
    assert!(
        warnings[0].contains(":4: allowed_host_paths[1]")
            && warnings[0].contains("containerd's socket"),
        "{out}"
    );
    assert!(
        warnings[1].contains(":5: allowed_host_paths[2]")
            && warnings[1].contains("another pod's kubelet dir"),
        "{out}"
    );
    // the shipped policy and the embedded default have no such entry
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/runtime-router.toml");
    let (code, out, err, _) = routerctl(&["check", deploy]);
    assert!(!err.contains("allowed_host_paths["), "{err}");
    assert_eq!(code, 0, "{out}{err}");
    // `/` reaches everything no policy opens
    std::fs::write(
        &p,
        "version = 1\ndefault_tenant = \"u\"\nallowed_host_paths = [\"/\"]\n\
         [backends.k]\nkind = \"shim\"\nbinary = \"/bin/true\"\nisolation = \"vm\"\n\
         [tenants.u]\nbackend = \"k\"\ndeny = [\"host-path\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err, _) = routerctl(&["check", &p.to_string_lossy()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(":3: allowed_host_paths[0]") && err.contains("containerd's socket"),
        "{err}"
    );
}
