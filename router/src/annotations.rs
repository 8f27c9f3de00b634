//! Annotation keys the router reads. The CRI keys are written by containerd's CRI plugin from what
//! kubelet sends (after any pass-through pod annotations, so a pod cannot forge them); the override
//! key is written by the pod's author and can only raise isolation.

/// Kubernetes namespace of the pod (from the API server via kubelet): the tenant key.
pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
/// Pod name.
pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
/// Pod UID.
pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
/// `sandbox` or `container`.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The pod sandbox a container belongs to (a sandbox names itself).
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// Value of `CONTAINER_TYPE` for a pod sandbox.
pub const CONTAINER_TYPE_SANDBOX: &str = "sandbox";
/// Value of `CONTAINER_TYPE` for an application container.
pub const CONTAINER_TYPE_CONTAINER: &str = "container";
/// Pod annotation asking for another backend (raise-only).
pub const BACKEND_OVERRIDE: &str = "runtime-router.io/backend";
/// Prefix of every annotation the router owns.
pub const ROUTER_PREFIX: &str = "runtime-router.io/";
/// Annotations that other runtimes once used to mark trust; the router never reads them as trust.
pub const LEGACY_TRUST_KEYS: [&str; 3] = [
    "io.kubernetes.cri.untrusted-workload",
    "io.kubernetes.cri-o.TrustedSandbox",
    "io.kubernetes.cri-o.trusted",
];
