//! Table of the host facts `start` gathers (`Inputs::host`) as the decision reads them: the
//! floor no policy opens, sources whose walk met a symlink, and sources inside a directory the
//! pod can write, on a hand-off backend and on a built-in one.

use std::path::Path;

use super::fixtures::*;
use crate::{decide_container, Inputs, Protected};

/// Hand-off (`kata`) and built-in (`runc`) tenants that deny `host-path`, under `/`, and one
/// that does not.
const FLOOR_POLICY: &str = r#"
version = 1
default_tenant = "handoff"
allowed_host_paths = ["/"]

[backends.runc]
kind = "builtin"
runtime = "/usr/sbin/runc"
isolation = "container"

[backends.kata]
kind = "shim"
binary = "containerd-shim-kata-v2"
isolation = "vm"

[tenants.handoff]
backend = "kata"
deny = ["host-path"]

[tenants.builtin]
namespaces = ["builtin"]
backend = "runc"
deny = ["host-path"]

[tenants.open]
namespaces = ["open"]
backend = "runc"
"#;

const VOL: &str = "/var/lib/kubelet/pods/0d4c2d86-7d1d-4a4b-9c2e-6f1c8f1f7d11/volumes/kubernetes.io~empty-dir/data";

/// The container of `container_spec` (its `/data` volume is mount 7) with `edit` applied.
fn container(ns: &str, edit: fn(&mut Inputs)) -> Inputs {
    let mut i = inputs(&container_spec(ns), "k8s.io");
    i.host.protected = vec![
        Protected {
            path: "/run/containerd/containerd.sock".into(),
            what: "containerd's socket".into(),
            pod_dirs: false,
        },
        Protected {
            path: "/run/containerd".into(),
            what: "containerd's state dir".into(),
            pod_dirs: true,
        },
    ];
    edit(&mut i);
    i
}

fn decide(ns: &str, backend: &str, edit: fn(&mut Inputs)) -> Result<String, String> {
    let policy = router_config::parse(FLOOR_POLICY, Path::new("/test/floor.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let tenant = match ns {
        "builtin" | "open" => ns,
        _ => "handoff",
    };
    decide_container(&policy, &container(ns, edit), tenant, backend)
        .map(|d| d.backend)
        .map_err(|r| format!("{} {} {}", r.rule, r.field, r.message))
}

#[test]
fn host_facts_table() {
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        fn(&mut Inputs),
        Result<(), &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "a pod's own files and volume",
            "web",
            "kata",
            |_| {},
            Ok(()),
        ),
        (
            "containerd's socket under `/`",
            "web",
            "kata",
            |i| i.mounts[7].source = "/run/containerd/containerd.sock".into(),
            Err("deny:host-path mounts[7].source"),
        ),
        (
            "a dir above the socket",
            "builtin",
            "runc",
            |i| i.mounts[7].source = "/run".into(),
            Err("reaches containerd's socket"),
        ),
        (
            "another pod's sandbox dir",
            "web",
            "kata",
            |i| {
                i.mounts[7].source =
                    "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb2/shm".into()
            },
            Err("reaches containerd's state dir"),
        ),
        (
            "an innocent path whose real path reaches the floor",
            "web",
            "kata",
            |i| {
                i.host
                    .resolved
                    .insert(7, "/run/containerd/containerd.sock".into());
            },
            Err("reaches containerd's socket (`/run/containerd/containerd.sock`)"),
        ),
        (
            "a symlink on the way",
            "web",
            "kata",
            |i| {
                i.host
                    .unsafe_sources
                    .insert(7, format!("`{VOL}/root` is a symlink"));
            },
            Err("is a symlink"),
        ),
        (
            "inside a pod-writable dir, hand-off",
            "web",
            "kata",
            |i| {
                i.host.inside_pod_dirs.insert(7, VOL.into());
            },
            Err("which this pod can write: backend `kata`"),
        ),
        (
            "inside a pod-writable dir, built-in pins it",
            "builtin",
            "runc",
            |i| {
                i.host.inside_pod_dirs.insert(7, VOL.into());
            },
            Ok(()),
        ),
        (
            "a tenant that does not deny host-path",
            "open",
            "runc",
            |i| {
                i.mounts[7].source = "/run/containerd/containerd.sock".into();
                i.host.unsafe_sources.insert(7, "symlink".into());
                i.host.inside_pod_dirs.insert(7, VOL.into());
            },
            Ok(()),
        ),
    ];
    for (name, ns, backend, edit, want) in cases {
        let got = decide(ns, backend, edit);
        match (&got, want) {
            (Ok(b), Ok(())) => assert_eq!(b, backend, "{name}"),
            (Err(e), Err(needle)) => assert!(e.contains(needle), "{name}: {e}"),
            _ => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}
