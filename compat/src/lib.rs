//! Everything the router knows about differences between containerd lines, in one place (SPEC
//! §2): the bootstrap exchange of a shim's `start` in each encoding (`bootstrap`), which
//! releases skip `start` for a pod's containers or speak which format (`version`), the
//! protobuf `RuntimeInfo` printed for `-info` (`info`), and the protobuf wire format those need
//! (`wire`). Callers ask questions here; no other module compares containerd version numbers.

pub mod bootstrap;
pub mod info;
pub mod version;
pub mod wire;

pub use bootstrap::{classify, plain_reply, BootstrapReply, Encoding, ReplyError};
pub use info::runtime_info;
pub use version::{query_version, ContainerdVersion};

/// The task service containerd calls on a shim whose `start` gave a version-2 reply (plain
/// address or JSON version 2): every containerd from 1.6 on.
pub const TASK_SERVICE_V2: &str = "containerd.task.v2.Task";
/// The task service of a shim that answered bootstrap protocol 3 (containerd 2.x's own runc
/// shim serves only this one); the messages are the same as v2's.
pub const TASK_SERVICE_V3: &str = "containerd.task.v3.Task";
