//! The on-disk TOML schema, as serde sees it: every field spanned so validation can point at it,
//! unknown keys rejected.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml_v1::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub version: Option<Spanned<i64>>,
    pub audit_log: Option<Spanned<String>>,
    pub audit_log_max_bytes: Option<Spanned<i64>>,
    pub audit_log_keep: Option<Spanned<i64>>,
    pub default_tenant: Option<Spanned<String>>,
    pub allowed_host_paths: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub backends: BTreeMap<Spanned<String>, Spanned<RawBackend>>,
    #[serde(default)]
    pub tenants: BTreeMap<Spanned<String>, Spanned<RawTenant>>,
    pub handlers: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawHandler>>>>,
    pub unnamed_handler_reserves: Option<Spanned<String>>,
    pub unaccounted_tiers: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHandler {
    pub reserves: Option<Spanned<String>>,
    pub backend: Option<Spanned<String>>,
    pub runtime_class: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub kind: Option<Spanned<String>>,
    pub runtime: Option<Spanned<String>>,
    pub runtime_args: Option<Spanned<Vec<Spanned<String>>>>,
    pub binary: Option<Spanned<String>>,
    pub env: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub isolation: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    #[serde(default)]
    pub namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    pub containerd_namespaces: Vec<Spanned<String>>,
    pub backend: Option<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    pub pod_security: Option<Spanned<String>>,
    #[serde(default)]
    pub allow_annotations: Vec<Spanned<String>>,
}
