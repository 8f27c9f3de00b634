//! The per-containerd-line knowledge lives in the `router-compat` crate (bootstrap formats in
//! and out, version quirks, `-info`); this module names it for the rest of the shim.

pub use router_compat::*;
