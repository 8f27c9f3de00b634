//! Builders for CRI-like OCI specs and policies used by the tables.

use std::path::Path;

use router_config::Policy;
use serde_json::{json, Value};

use crate::{inputs_from_config_json, Inputs};

pub const POLICY: &str = r#"
version = 1
default_tenant = "untrusted"
allowed_host_paths = ["/var/lib/kubelet/pods/{pod_uid}/",
                      "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/",
                      "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/"]

[backends.runc]
kind = "builtin"
runtime = "/usr/sbin/runc"
isolation = "container"

[backends.gvisor]
kind = "builtin"
runtime = "/usr/bin/runsc"
isolation = "sandbox"

[backends.kata]
kind = "shim"
binary = "containerd-shim-kata-v2"
isolation = "vm"

[backends.kata-clh]
kind = "shim"
binary = "containerd-shim-kata-v2"
env = { KATA_CONF_FILE = "/opt/kata/share/defaults/kata-containers/configuration-clh.toml" }
isolation = "vm"

[tenants.provider]
namespaces = ["kube-system", "telemetry", "sdewan-*"]
containerd_namespaces = ["infra"]
backend = "runc"

[tenants.sandboxed]
namespaces = ["sandbox-*", "sdewan-edge-*"]
backend = "gvisor"
deny = ["host-network", "privileged"]

[tenants.web]
namespaces = ["web", "web-*"]
containerd_namespaces = ["build*"]
backend = "kata"
deny = ["host-network", "host-pid", "host-ipc", "privileged", "host-path", "runtime-annotations"]
allow_annotations = ["io.katacontainers.config.hypervisor.default_memory", "io.katacontainers.config.hypervisor.default_vcpus*"]

[tenants.untrusted]
backend = "kata"
deny = ["host-network", "host-pid", "host-ipc", "privileged", "host-path", "runtime-annotations",
        "capabilities", "host-devices"]
"#;

pub fn policy() -> Policy {
    router_config::parse(POLICY, Path::new("/test/policy.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// A CRI pod-sandbox spec as containerd 1.6 writes it, for a pod in `namespace`.
pub fn sandbox_spec(namespace: &str) -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 65535, "gid": 65535},
            "args": ["/pause"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"],
                "effective": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"],
                "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
            },
            "noNewPrivileges": true,
            "oomScoreAdj": -998
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/dev/shm", "type": "bind", "source": "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm", "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/resolv.conf", "options": ["rbind", "ro"]}
        ],
        "annotations": {
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": "sb1",
            "io.kubernetes.cri.sandbox-namespace": namespace,
            "io.kubernetes.cri.sandbox-name": "pod-a",
            "io.kubernetes.cri.sandbox-uid": "0d4c2d86-7d1d-4a4b-9c2e-6f1c8f1f7d11",
            "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/ns_pod-a_uid"
        },
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}], "cpu": {"shares": 2}},
            "cgroupsPath": "/kubepods/besteffort/pod0d4c2d86/sb1",
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": "/var/run/netns/cni-1234"}
            ],
            "maskedPaths": ["/proc/acpi", "/proc/kcore"],
            "readonlyPaths": ["/proc/bus", "/proc/fs"]
        }
    })
}

/// A CRI application-container spec of pod `sb1` in `namespace`.
pub fn container_spec(namespace: &str) -> Value {
    let mut s = sandbox_spec(namespace);
    let a = &mut s["annotations"];
    a["io.kubernetes.cri.container-type"] = json!("container");
    a["io.kubernetes.cri.container-name"] = json!("app");
    a["io.kubernetes.cri.image-name"] = json!("docker.io/local/busybox:1");
    s["linux"]["namespaces"] = json!([
        {"type": "pid", "path": "/proc/4242/ns/pid"},
        {"type": "ipc", "path": "/proc/4242/ns/ipc"},
        {"type": "uts", "path": "/proc/4242/ns/uts"},
        {"type": "mount"},
        {"type": "network", "path": "/proc/4242/ns/net"}
    ]);
    s["mounts"].as_array_mut().into_iter().for_each(|m| {
        m.push(json!({"destination": "/data", "type": "bind", "source": "/var/lib/kubelet/pods/0d4c2d86-7d1d-4a4b-9c2e-6f1c8f1f7d11/volumes/kubernetes.io~empty-dir/data", "options": ["rbind", "rprivate", "rw"]}));
    });
    s
}

/// A task started with `ctr run` (no CRI annotations).
pub fn ctr_spec() -> Value {
    let mut s = sandbox_spec("x");
    s["annotations"] = json!({});
    s["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    s
}

pub fn inputs(spec: &Value, containerd_ns: &str) -> Inputs {
    let bytes = serde_json::to_vec(spec).unwrap_or_default();
    // containerd runs a pod sandbox's task under the sandbox's id
    let id = match spec["annotations"]["io.kubernetes.cri.container-type"].as_str() {
        Some("sandbox") => spec["annotations"]["io.kubernetes.cri.sandbox-id"]
            .as_str()
            .unwrap_or("task-1"),
        _ => "task-1",
    };
    inputs_from_config_json(&bytes, containerd_ns, id).unwrap_or_else(|e| panic!("{e}"))
}

pub fn all_caps() -> Value {
    json!(crate::BASE_CAPABILITIES
        .iter()
        .chain(["CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"].iter())
        .collect::<Vec<_>>())
}
