//! Table tests for the decision: every rule, every refusal, and the known traps.

mod fixtures;
mod floor;
mod handler;
mod podsecurity;
mod props;
mod rulekind;
mod table;
