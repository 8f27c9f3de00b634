//! The routing decision: OCI spec + containerd namespace + policy in, decision or refusal out.
//! No I/O happens here; the shim reads files and acts on the outcome.

pub mod annotations;
mod decision;
pub mod handler;
pub mod hostpath;
mod inputs;
pub mod podsecurity;
mod rulekind;
pub mod rules;
mod specflags;
mod tenant;

pub use decision::{decide_container, decide_sandbox, Decision, Refusal};
pub use inputs::{
    inputs_from_config_json, inputs_from_spec, parse_spec, Finding, HostFacts, Inputs, MountInput,
    Protected, Role, SeccompInputs, SecurityInputs, SpecError,
};
pub use rulekind::{all_rule_kinds, rule_kind};
pub use specflags::{
    BASELINE_CAPABILITIES, BASE_CAPABILITIES, RESTRICTED_CAPABILITIES, ROOT_EQUIVALENT_CAPABILITY,
};
pub use tenant::{match_tenant, TenantMatch};

#[cfg(test)]
mod tests;
