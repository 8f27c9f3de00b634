//! The metrics built from audit lines, in a `prometheus-client` registry. Every label is a kind
//! with a bounded set of values (outcome, role, tenant, backend, tier, handler, rule kind),
//! never an id: the number of series depends on the policy, not on how many pods have run.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;

/// Upper bounds of the decision-time histogram, in seconds.
const BUCKETS_S: [f64; 14] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 1.0,
];

/// Labels of `runtime_router_decisions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allowed` or `refused`.
    pub outcome: String,
    /// `sandbox`, `container` or `other`.
    pub role: String,
    /// The policy's tenant (empty for a refusal before a tenant was known).
    pub tenant: String,
    /// The policy's backend (empty when none was chosen).
    pub backend: String,
    /// `container`, `sandbox` or `vm` (empty when none was chosen).
    pub tier: String,
    /// The runtime handler containerd started the router under (empty when unknown).
    pub handler: String,
    /// `router_core::rule_kind` of the line's rule.
    pub rule: String,
}

/// Labels of the decision-time histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub outcome: String,
    pub role: String,
}

/// The fields of an audit line that metrics read; the rest is skipped unread.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    outcome: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    tenant: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    backend: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    isolation: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    handler: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    rule: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    decision_us: Option<u64>,
}

/// A name written by the policy (tenant, backend, handler): kept when it looks like one, else
/// `invalid`, so a damaged line cannot mint arbitrary label values.
fn name_label(v: Option<&str>) -> String {
    match v {
        None => String::new(),
        Some(s)
            if s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            s.to_owned()
        }
        Some(_) => "invalid".to_owned(),
    }
}

fn one_of(v: Option<&str>, allowed: &[&str], otherwise: &str) -> String {
    match v {
        None => String::new(),
        Some(s) if allowed.contains(&s) => s.to_owned(),
        Some(_) => otherwise.to_owned(),
    }
}

/// The registry and the metrics in it.
pub struct Stats {
    pub registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    durations: Family<DurationLabels, Histogram>,
    invalid: Counter,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        let durations = Family::<DurationLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS_S)) as fn() -> Histogram,
        );
        let invalid = Counter::default();
        registry.register(
            "runtime_router_decisions",
            "Routing decisions recorded in the audit log (one per line)",
            decisions.clone(),
        );
        registry.register(
            "runtime_router_decision_duration_seconds",
            "Time a decision took (read spec and policy, decide)",
            durations.clone(),
        );
        registry.register(
            "runtime_router_audit_lines_invalid",
            "Audit log lines that are not a decision entry",
            invalid.clone(),
        );
        Stats {
            registry,
            decisions,
            durations,
            invalid,
        }
    }

    /// Counts one line (without its newline). Blank lines are ignored.
    pub fn add_line(&self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let l: Line = match serde_json::from_slice(line) {
            Ok(l) => l,
            Err(_) => {
                self.invalid.inc();
                return;
            }
        };
        let outcome = match l.outcome.as_deref() {
            Some(o @ ("allowed" | "refused")) => o.to_owned(),
            _ => {
                self.invalid.inc();
                return;
            }
        };
        let role = one_of(l.role.as_deref(), &["sandbox", "container"], "other");
        let labels = DecisionLabels {
            outcome: outcome.clone(),
            role: role.clone(),
            tenant: name_label(l.tenant.as_deref()),
            backend: name_label(l.backend.as_deref()),
            tier: one_of(
                l.isolation.as_deref(),
                &["container", "sandbox", "vm"],
                "invalid",
            ),
            handler: name_label(l.handler.as_deref()),
            rule: router_core::rule_kind(l.rule.as_deref().unwrap_or_default()),
        };
        self.decisions.get_or_create(&labels).inc();
        let us = l.decision_us.unwrap_or(0);
        self.durations
            .get_or_create(&DurationLabels { outcome, role })
            .observe(us as f64 / 1e6);
    }

    /// The OpenMetrics text exposition, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
