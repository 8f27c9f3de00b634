//! The no-symlink walk and where containerd's dirs are found, on real directories.

use super::*;
use proptest::prelude::*;
use std::os::unix::fs::symlink;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

#[test]
fn walk_table() {
    let t = tempfile::tempdir().unwrap();
    let vol = t
        .path()
        .join("pods/u1/volumes/kubernetes.io~empty-dir/data");
    std::fs::create_dir_all(vol.join("sub/deep")).unwrap();
    std::fs::write(vol.join("file"), b"x").unwrap();
    symlink("/", vol.join("root")).unwrap();
    symlink("sub", vol.join("rel")).unwrap();
    let entry = format!("{}/", s(&t.path().join("pods/u1")));
    let real_vol = std::fs::canonicalize(&vol).unwrap();
    let ok = |src: &Path| walk(&s(src), &entry);
    assert_eq!(
        ok(&vol.join("sub/deep")).unwrap(),
        s(&real_vol.join("sub/deep"))
    );
    assert_eq!(ok(&vol.join("file")).unwrap(), s(&real_vol.join("file")));
    assert_eq!(
        ok(&vol.join("./sub//deep")).unwrap(),
        s(&real_vol.join("sub/deep"))
    );
    let cases = [
        (vol.join("root/etc"), "is a symlink"),
        (vol.join("root"), "is a symlink"),
        (vol.join("rel/deep"), "is a symlink"),
        (vol.join("sub/../sub"), "`..`"),
        (vol.join("nothing/here"), "does not exist"),
    ];
    for (src, want) in cases {
        let e = ok(&src).unwrap_err();
        assert!(e.contains(want), "{}: {e}", src.display());
    }
    // the allowed directory itself may be a link the operator made: it is followed
    let link = t.path().join("kubelet-link");
    symlink(t.path().join("pods"), &link).unwrap();
    let via = format!("{}/", s(&link.join("u1")));
    assert_eq!(
        walk(&s(&link.join("u1/volumes")), &via).unwrap(),
        s(&std::fs::canonicalize(t.path())
            .unwrap()
            .join("pods/u1/volumes"))
    );
}

#[test]
fn containerd_dirs_from_its_command_line_and_config() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("config.toml");
    std::fs::write(
        &cfg,
        "version = 2\nroot = \"/srv/ctd-root\"\nstate = \"/srv/ctd-state\"\n[plugins]\nroot = \"/not/this\"\n",
    )
    .unwrap();
    assert_eq!(
        config_dirs(&cfg),
        (
            Some(PathBuf::from("/srv/ctd-root")),
            Some(PathBuf::from("/srv/ctd-state"))
        )
    );
    // a process shaped like containerd: `--config FILE`, `--state=DIR` wins over the file
    let mut child = std::process::Command::new("perl")
        .args(["-e", "sleep 30", "--"])
        .arg("--config")
        .arg(&cfg)
        .arg("--state=/srv/flag-state")
        .spawn()
        .unwrap();
    // `spawn` returns once exec is past its point of no return, before the new program's
    // arguments are on its stack: until then its cmdline reads empty
    let cmdline = format!("/proc/{}/cmdline", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read(&cmdline)
        .map(|b| b.is_empty())
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the fake containerd never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let got = containerd_dirs(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        got,
        (
            Some(PathBuf::from("/srv/ctd-root")),
            Some(PathBuf::from("/srv/flag-state"))
        )
    );
}

/// One entry of a random tree in a pod's volume.
#[derive(Debug, Clone)]
enum Node {
    Dir(String),
    File(String),
    Link(String, String),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_owned)
}

fn rel_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(name(), 1..4).prop_map(|v| v.join("/"))
}

fn node() -> impl Strategy<Value = Node> {
    let target = prop_oneof![
        Just("/".to_owned()),
        Just("/etc".to_owned()),
        Just("..".to_owned()),
        Just("../..".to_owned()),
        Just("../../..".to_owned()),
        rel_path(),
    ];
    prop_oneof![
        rel_path().prop_map(Node::Dir),
        rel_path().prop_map(Node::File),
        (rel_path(), target).prop_map(|(p, t)| Node::Link(p, t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Whatever a pod writes into its own volume (directories, files, symlinks to anywhere),
    /// a bind source that the walk accepts resolves on the host exactly where the walk says,
    /// inside the volume; one that would resolve elsewhere is refused.
    #[test]
    fn nothing_a_pod_writes_leads_a_bind_source_out(
        tree in proptest::collection::vec(node(), 0..12),
        source in rel_path(),
    ) {
        let t = tempfile::tempdir().unwrap();
        let vol = t.path().join("pods/u1/volumes/v");
        std::fs::create_dir_all(&vol).unwrap();
        for n in &tree {
            // what a pod can do in its volume; errors (a parent that is a file) are its problem
            let _ = match n {
                Node::Dir(p) => std::fs::create_dir_all(vol.join(p)),
                Node::File(p) => std::fs::write(vol.join(p), b"x"),
                Node::Link(p, target) => {
                    let p = vol.join(p);
                    if let Some(parent) = p.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    symlink(target, p)
                }
            };
        }
        let real_vol = std::fs::canonicalize(&vol).unwrap();
        let src = vol.join(&source);
        let entry = format!("{}/", s(&vol));
        match walk(&s(&src), &entry) {
            Ok(resolved) => {
                let host = std::fs::canonicalize(&src).unwrap();
                prop_assert_eq!(&resolved, &s(&host));
                prop_assert!(host.starts_with(&real_vol), "{} left {}", host.display(), real_vol.display());
            }
            Err(_) => {
                // refused: fine whether or not it would have escaped
            }
        }
        // and whenever the host would resolve it outside the volume, the walk refuses it
        if let Ok(host) = std::fs::canonicalize(&src) {
            if !host.starts_with(&real_vol) {
                prop_assert!(walk(&s(&src), &entry).is_err());
            }
        }
    }
}
