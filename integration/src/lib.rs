//! Test harness for runtime-router: a private containerd started in a temp dir with the router as
//! its CRI default runtime ([`Containerd`]), OCI images built offline from busybox-static
//! ([`images`]), a kubelet-like CRI client ([`CriClient`]), a `ctr` wrapper ([`Ctr`]) and the Kata
//! stand-in ([`standin`]). Nothing here depends on the router's crates: it drives binaries through
//! containerd, as kubelet would.

pub mod binaries;
pub mod cleanup;
pub mod command;
pub mod config;
pub mod containerd;
pub mod cri;
pub mod ctr;
pub mod error;
pub mod faults;
pub mod http;
pub mod images;
pub mod leaks;
pub mod mounts;
pub mod net;
pub mod netns;
pub mod policy;
pub mod procs;
pub mod reaper;
pub mod router_state;
pub mod routerimage;
pub mod standin;

pub use config::{RuntimeHandler, BUSYBOX_IMAGE, PAUSE_IMAGE};
pub use containerd::{Containerd, ContainerdOptions, K8S_NAMESPACE};
pub use cri::{ContainerSpec, CriClient, ExecOutput, PodSpec, SeccompProfile};
pub use ctr::Ctr;
pub use error::{Error, Result};
pub use policy::PolicyText;
pub use standin::{install_standin, STANDIN_BINARY};

/// Environment variable naming the router's policy file (same value as the router's own
/// `router_config::POLICY_ENV`; repeated here because this crate does not depend on the router).
pub const POLICY_ENV: &str = "RUNTIME_ROUTER_CONFIG";
