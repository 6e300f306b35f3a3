//! Reading a client's metrics: Prometheus text (or samples from a Prometheus) → per-server counters
//! and breaker states, through a mapping (chaoslab's contract, resilience4j's names, the user's),
//! with many replicas combined into one client. Series the mapping does not name are ignored.

mod exposition;
mod mapping;
mod monotonic;
mod replicas;

use std::collections::BTreeMap;

pub use chaoslab_contract::BreakerState;
pub use exposition::Sample;
pub(crate) use monotonic::Monotonic;
pub use replicas::Replicas;

use crate::api::{ClientSpec, MetricsMapping};

/// One server's counters and gauges in one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerMetrics {
    pub success: f64,
    pub error: f64,
    pub timeout: f64,
    pub rejected: f64,
    pub breaker: Option<BreakerState>,
    /// Cumulative transitions by (from, to).
    pub transitions: BTreeMap<(BreakerState, BreakerState), f64>,
    pub pool_active: f64,
    pub pool_idle: f64,
    /// The duration histogram's `_sum` (seconds) and `_count`: counters, like the requests.
    pub duration_sum: f64,
    pub duration_count: f64,
}

impl ServerMetrics {
    pub fn transitions_to(&self, to: BreakerState) -> f64 {
        self.transitions.iter().filter(|((_, t), _)| *t == to).map(|(_, v)| v).sum()
    }
}

/// A scrape, by `server` label.
pub type Scrape = BTreeMap<String, ServerMetrics>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("line {line}: {reason}: {text:?}")]
    BadLine { line: usize, reason: &'static str, text: String },
    #[error(
        "no {metrics} series with a `{server_label}` label: check the endpoint and spec.client's preset or mapping"
    )]
    NoRequests { metrics: String, server_label: String },
}

/// A scrape with chaoslab's own mapping (the metrics contract).
pub fn parse(text: &str) -> Result<Scrape, ParseError> {
    Reader::new(MetricsMapping::chaoslab(), None).parse(text)
}

/// Reads a client's metrics the way a scenario says (its mapping and server labels), replica by
/// replica, and combines the replicas into one client. Pure: the caller fetches the text.
#[derive(Clone, Debug)]
pub struct Reader {
    mapping: MetricsMapping,
    /// The client's server label → the target's name (spec.client.serverLabels, inverted).
    targets: BTreeMap<String, String>,
    replicas: Replicas,
    /// Breaker transitions counted from the sampled states, for a mapping without transition counters.
    derived: Option<BTreeMap<String, Sampled>>,
}

impl Reader {
    pub fn new(mapping: MetricsMapping, server_labels: Option<&BTreeMap<String, String>>) -> Self {
        let targets = server_labels.into_iter().flatten().map(|(t, l)| (l.clone(), t.clone())).collect();
        let derived = mapping.transitions.is_none().then(BTreeMap::new);
        Self { mapping, targets, replicas: Replicas::default(), derived }
    }

    /// For a spec's client.
    pub fn of(client: &ClientSpec) -> Self {
        Self::new(client.mapping(), client.server_labels.as_ref())
    }

    pub fn mapping(&self) -> &MetricsMapping {
        &self.mapping
    }

    /// Whether the mapping reads series of this name.
    pub fn wants(&self, name: &str) -> bool {
        mapping::wants(&self.mapping, name)
    }

    /// One replica's scrape (text exposition), servers named by target where serverLabels says.
    pub fn parse(&self, text: &str) -> Result<Scrape, ParseError> {
        self.read(&exposition::samples(text, |n| self.wants(n))?)
    }

    /// One replica's samples, servers named by target where serverLabels says.
    pub fn read(&self, samples: &[Sample]) -> Result<Scrape, ParseError> {
        let scrape = mapping::read(&self.mapping, samples)?;
        Ok(scrape.into_iter().map(|(label, m)| (self.targets.get(&label).cloned().unwrap_or(label), m)).collect())
    }

    /// The whole client now, from every replica's scrape (by replica name).
    pub fn combine(&mut self, now: &BTreeMap<String, Scrape>) -> Scrape {
        let mut out = self.replicas.combine(now);
        if let Some(derived) = &mut self.derived {
            derive_transitions(derived, &mut out);
        }
        out
    }

    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }
}

/// A server's last sampled breaker state and the transitions counted from the samples so far.
type Sampled = (BreakerState, BTreeMap<(BreakerState, BreakerState), f64>);

/// Counts a transition each time a server's sampled state differs from the last one. Open → closed
/// counts as open → half-open → closed: a breaker closes only through a successful half-open trial,
/// which can begin and end between two samples.
fn derive_transitions(derived: &mut BTreeMap<String, Sampled>, scrape: &mut Scrape) {
    for (server, m) in scrape.iter_mut() {
        let Some(now) = m.breaker else { continue };
        let (last, counts) = derived.entry(server.clone()).or_insert((now, BTreeMap::new()));
        let steps: &[(BreakerState, BreakerState)] = match (*last, now) {
            (a, b) if a == b => &[],
            (BreakerState::Open, BreakerState::Closed) => {
                &[(BreakerState::Open, BreakerState::HalfOpen), (BreakerState::HalfOpen, BreakerState::Closed)]
            }
            _ => &[(*last, now)],
        };
        for step in steps {
            *counts.entry(*step).or_default() += 1.0;
        }
        *last = now;
        m.transitions = counts.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP chaoslab_client_requests_total Requests by server and outcome.
# TYPE chaoslab_client_requests_total counter
chaoslab_client_requests_total{outcome="success",server="server-0"} 1200
chaoslab_client_requests_total{outcome="error",server="server-0"} 3
chaoslab_client_requests_total{outcome="timeout",server="server-0"} 7
chaoslab_client_requests_total{outcome="rejected",server="server-0"} 40
chaoslab_client_requests_total{outcome="success",server="server-1"} 1.5e3
chaoslab_client_circuit_breaker_state{server="server-0"} 2
chaoslab_client_circuit_breaker_state{server="server-1"} 0
chaoslab_client_circuit_breaker_transitions_total{from="closed",server="server-0",to="open"} 1
chaoslab_client_circuit_breaker_transitions_total{from="half_open",server="server-0",to="open"} 2
chaoslab_client_pool_connections{server="server-1",state="active"} 12
chaoslab_client_pool_connections{server="server-1",state="idle"} 4
chaoslab_client_request_duration_seconds_bucket{server="server-0",le="0.001"} 5
chaoslab_client_request_duration_seconds_sum{server="server-0"} 2.5
chaoslab_client_request_duration_seconds_count{server="server-0"} 1250
process_cpu_seconds_total 12.5
"#;

    #[test]
    fn reads_the_contract_families() {
        let s = parse(SCRAPE).unwrap();
        let s0 = &s["server-0"];
        assert_eq!((s0.success, s0.error, s0.timeout, s0.rejected), (1200.0, 3.0, 7.0, 40.0));
        assert_eq!(s0.breaker, Some(BreakerState::Open));
        assert_eq!(s0.transitions_to(BreakerState::Open), 3.0);
        let s1 = &s["server-1"];
        assert_eq!(s1.success, 1500.0);
        assert_eq!((s1.pool_active, s1.pool_idle), (12.0, 4.0));
        assert_eq!(s1.breaker, Some(BreakerState::Closed));
        assert_eq!((s0.duration_sum, s0.duration_count), (2.5, 1250.0));
        assert_eq!((s1.duration_sum, s1.duration_count), (0.0, 0.0), "no histogram: nothing to average");
    }

    #[test]
    fn something_else_is_not_a_client() {
        for text in ["process_cpu_seconds_total 1\n", "<html>not found</html>"] {
            let err = parse(text).unwrap_err();
            assert!(matches!(err, ParseError::NoRequests { .. }), "{err}");
            assert!(err.to_string().contains("chaoslab_client_requests_total"), "names what it looked for: {err}");
        }
    }

    #[test]
    fn malformed_lines_of_read_families_are_errors_with_the_line_number_unknown_values_are_not_counted() {
        let err = parse("chaoslab_client_requests_total{server=\"a\" 1\n").unwrap_err();
        assert!(matches!(err, ParseError::BadLine { line: 1, .. }), "{err}");
        let s = parse("chaoslab_client_requests_total{server=\"a\",outcome=\"weird\"} 1\n").unwrap();
        assert_eq!(s["a"], ServerMetrics::default());
        // A family no mapping reads may be anything.
        assert!(parse("other{x 1\nchaoslab_client_requests_total{server=\"a\",outcome=\"success\"} 1\n").is_ok());
    }

    #[test]
    fn server_labels_name_the_targets() {
        let labels = BTreeMap::from([("server-0".to_string(), "redis-a:6379".to_string())]);
        let reader = Reader::new(MetricsMapping::chaoslab(), Some(&labels));
        let text = "chaoslab_client_requests_total{server=\"redis-a:6379\",outcome=\"success\"} 1\n\
                    chaoslab_client_requests_total{server=\"redis-b:6379\",outcome=\"success\"} 2\n";
        let s = reader.parse(text).unwrap();
        assert_eq!(s.keys().collect::<Vec<_>>(), ["redis-b:6379", "server-0"]);
    }

    #[test]
    fn without_transition_counters_transitions_are_taken_from_the_sampled_states() {
        let mut reader = Reader::new(MetricsMapping::resilience4j(), None);
        let mut at = |state: &str| {
            let text = format!(
                "resilience4j_circuitbreaker_calls_seconds_count{{kind=\"successful\",name=\"a\"}} 1\n\
                 resilience4j_circuitbreaker_state{{name=\"a\",state=\"{state}\"}} 1\n"
            );
            let one = reader.parse(&text).unwrap();
            reader.combine(&BTreeMap::from([("pod".to_string(), one)]))["a"].clone()
        };
        at("closed");
        assert_eq!(at("open").transitions_to(BreakerState::Open), 1.0);
        // Open, then closed at the next sample: the half-open trial fell between the two.
        let healed = at("closed");
        assert_eq!(
            [BreakerState::Open, BreakerState::HalfOpen, BreakerState::Closed].map(|s| healed.transitions_to(s)),
            [1.0, 1.0, 1.0]
        );
        // The chaoslab contract counts its own transitions: none are made up.
        let mut reader = Reader::new(MetricsMapping::chaoslab(), None);
        for state in [0, 2, 0] {
            let text = format!(
                "chaoslab_client_requests_total{{server=\"a\",outcome=\"success\"}} 1\n\
                 chaoslab_client_circuit_breaker_state{{server=\"a\"}} {state}\n"
            );
            let one = reader.parse(&text).unwrap();
            let m = reader.combine(&BTreeMap::from([("pod".to_string(), one)]));
            assert!(m["a"].transitions.is_empty());
        }
    }
}
