//! `spec.client`: where the client's metrics come from (one URL, every Ready pod of a selector, or a
//! Prometheus) and what they mean (a preset or a custom mapping of its metric names).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const URL_PATTERN: &str = r"^https?://[^\s/]+(/\S*)?$";

/// The client under test.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("[has(self.metricsUrl), has(self.podSelector), has(self.prometheus)].filter(x, x).size() == 1")
    .message("set exactly one of client.metricsUrl (one endpoint), client.podSelector (every Ready pod, with client.port) or client.prometheus"))]
#[x_kube(validation = Rule::new("!has(self.podSelector) || has(self.port)")
    .message("client.podSelector needs client.port: the port of the pods' metrics endpoint"))]
#[x_kube(validation = Rule::new("has(self.custom) == (has(self.preset) && self.preset == 'custom')")
    .message("client.custom is the mapping of preset: custom; set both or neither"))]
#[serde(rename_all = "camelCase")]
pub struct ClientSpec {
    /// One metrics endpoint of the client, e.g. http://my-client:9090/metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub metrics_url: Option<String>,
    /// Every Ready pod in the scenario's namespace matching this selector is scraped at
    /// http://podIP:port/path at each sample, and the pods' series are added up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// The pods' metrics port (with podSelector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// The pods' metrics path (with podSelector). Default /metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/\S*$"))]
    pub path: Option<String>,
    /// Read the client's series from a Prometheus that already scrapes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
    /// What the metrics mean: chaoslab (the metrics contract, default), resilience4j (its
    /// Micrometer names) or custom (client.custom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// The mapping of preset: custom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<MetricsMapping>,
    /// Target name → the value of the client's server label for it, e.g. {server-0: "redis-a:6379"}.
    /// Without it a target is matched by its own name, else by order (the labels sorted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_labels: Option<BTreeMap<String, String>>,
}

impl ClientSpec {
    /// A client judged through one metrics URL with the default mapping.
    pub fn url(url: &str) -> Self {
        Self { metrics_url: Some(url.into()), ..Default::default() }
    }

    /// The mapping this spec asks for.
    pub fn mapping(&self) -> MetricsMapping {
        match (self.preset.unwrap_or_default(), &self.custom) {
            (Preset::Custom, Some(custom)) => custom.clone(),
            (Preset::Resilience4j, _) => MetricsMapping::resilience4j(),
            _ => MetricsMapping::chaoslab(),
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// The Prometheus base URL, e.g. http://prometheus-server.monitoring (its /api/v1/query is used).
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub url: String,
    /// PromQL label matchers that pick the client's series, e.g. `job="my-client"`; each distinct
    /// `instance` is one replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub selector: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// chaoslab's metrics contract (`chaoslab_client_*`).
    #[default]
    Chaoslab,
    /// resilience4j's circuit breaker metrics through Micrometer's Prometheus registry.
    Resilience4j,
    /// The mapping in client.custom.
    Custom,
}

/// Which of the client's series say what the checks need. Every family but `requests` is optional:
/// a check that needs a family the mapping lacks is left out, and said so.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsMapping {
    /// The label naming the server (the target) in every series below.
    #[schemars(length(min = 1, max = 128))]
    pub server_label: String,
    /// Counters of requests by outcome; several metrics add up (e.g. calls and rejected calls).
    #[schemars(length(min = 1, max = 8))]
    pub requests: Vec<RequestSeries>,
    /// The breaker's state per server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSeries>,
    /// Counters of breaker transitions. Without them transitions are taken from the states sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitions: Option<TransitionSeries>,
    /// A histogram or summary of request durations in seconds: `<metric>_sum` and `<metric>_count`
    /// per server (other labels added up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySeries>,
    /// Connections by pool state per server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolSeries>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.outcomeLabel) != has(self.outcome)")
    .message("set outcomeLabel (with the values of each outcome) or outcome (every sample's), not both"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestSeries {
    /// The counter's name as exported, e.g. http_client_requests_total.
    #[schemars(length(min = 1, max = 256))]
    pub metric: String,
    /// The label whose value says the outcome. Without it every sample counts as `outcome`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_label: Option<String>,
    /// The outcome of every sample when there is no outcomeLabel: success, error, timeout or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeName>,
    /// Values of outcomeLabel counted as successes; values in no list are not counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success: Vec<String>,
    /// … as errors (sent, and failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error: Vec<String>,
    /// … as timeouts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeout: Vec<String>,
    /// … as rejected by the breaker (not sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeName {
    Success,
    Error,
    Timeout,
    Rejected,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerSeries {
    #[schemars(length(min = 1, max = 256))]
    pub metric: String,
    /// One series per state with this label, the current one above 0 (resilience4j's style).
    /// Without it the gauge's value is the state, matched against the values in `states`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_label: Option<String>,
    pub states: StateValues,
}

/// Which label values (or gauge values, written as numbers) mean which breaker state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateValues {
    #[serde(default)]
    pub closed: Vec<String>,
    #[serde(default)]
    pub half_open: Vec<String>,
    #[serde(default)]
    pub open: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransitionSeries {
    #[schemars(length(min = 1, max = 256))]
    pub metric: String,
    pub from_label: String,
    pub to_label: String,
    pub states: StateValues,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencySeries {
    /// The base name: `<metric>_sum` and `<metric>_count` are read.
    #[schemars(length(min = 1, max = 256))]
    pub metric: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolSeries {
    #[schemars(length(min = 1, max = 256))]
    pub metric: String,
    pub state_label: String,
    #[serde(default)]
    pub active: Vec<String>,
    #[serde(default)]
    pub idle: Vec<String>,
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

impl MetricsMapping {
    /// What the apiserver's rules would refuse, for a mapping read from a file (`chaoslab run
    /// --client-mapping`).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.requests.is_empty() {
            out.push("requests: name at least one counter of requests".to_string());
        }
        for (i, r) in self.requests.iter().enumerate() {
            if r.outcome_label.is_some() == r.outcome.is_some() {
                out.push(format!(
                    "requests[{i}]: set outcomeLabel (with the values of each outcome) or outcome, not both"
                ));
            }
        }
        out
    }

    /// chaoslab's metrics contract (README "The metrics contract").
    pub fn chaoslab() -> Self {
        use chaoslab_contract as c;
        let labels = StateValues {
            closed: strings(&[c::BreakerState::Closed.label()]),
            half_open: strings(&[c::BreakerState::HalfOpen.label(), "half-open"]),
            open: strings(&[c::BreakerState::Open.label()]),
        };
        let gauge = |s: c::BreakerState| vec![s.gauge().to_string()];
        let outcome = |o: c::Outcome| vec![o.label().to_string()];
        Self {
            server_label: "server".into(),
            requests: vec![RequestSeries {
                metric: c::REQUESTS.into(),
                outcome_label: Some("outcome".into()),
                success: outcome(c::Outcome::Success),
                error: outcome(c::Outcome::Error),
                timeout: outcome(c::Outcome::Timeout),
                rejected: outcome(c::Outcome::Rejected),
                ..Default::default()
            }],
            breaker: Some(BreakerSeries {
                metric: c::BREAKER_STATE.into(),
                state_label: None,
                states: StateValues {
                    closed: gauge(c::BreakerState::Closed),
                    half_open: gauge(c::BreakerState::HalfOpen),
                    open: gauge(c::BreakerState::Open),
                },
            }),
            transitions: Some(TransitionSeries {
                metric: c::BREAKER_TRANSITIONS.into(),
                from_label: "from".into(),
                to_label: "to".into(),
                states: labels,
            }),
            latency: Some(LatencySeries { metric: c::REQUEST_DURATION.into() }),
            pool: Some(PoolSeries {
                metric: c::POOL_CONNECTIONS.into(),
                state_label: "state".into(),
                active: strings(&[c::PoolState::Active.label()]),
                idle: strings(&[c::PoolState::Idle.label()]),
            }),
        }
    }

    /// resilience4j-micrometer's `TaggedCircuitBreakerMetrics` as Micrometer's Prometheus registry
    /// names them (the breaker's `name` is the server). A DISABLED or METRICS_ONLY breaker lets
    /// every call through, as a closed one does; FORCED_OPEN refuses them, as an open one does.
    pub fn resilience4j() -> Self {
        Self {
            server_label: "name".into(),
            requests: vec![
                RequestSeries {
                    metric: "resilience4j_circuitbreaker_calls_seconds_count".into(),
                    outcome_label: Some("kind".into()),
                    success: strings(&["successful"]),
                    error: strings(&["failed"]),
                    ..Default::default()
                },
                RequestSeries {
                    metric: "resilience4j_circuitbreaker_not_permitted_calls_total".into(),
                    outcome_label: Some("kind".into()),
                    rejected: strings(&["not_permitted"]),
                    ..Default::default()
                },
            ],
            breaker: Some(BreakerSeries {
                metric: "resilience4j_circuitbreaker_state".into(),
                state_label: Some("state".into()),
                states: StateValues {
                    closed: strings(&["closed", "disabled", "metrics_only"]),
                    half_open: strings(&["half_open"]),
                    open: strings(&["open", "forced_open"]),
                },
            }),
            transitions: None,
            latency: Some(LatencySeries { metric: "resilience4j_circuitbreaker_calls_seconds".into() }),
            pool: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_mapping_is_the_resilience4j_preset_spelled_out() {
        let text = include_str!("../../../examples/client-mapping.yaml");
        let example: MetricsMapping = serde_yaml::from_str(text).unwrap();
        assert_eq!(example, MetricsMapping::resilience4j());
    }

    #[test]
    fn a_spec_chooses_its_mapping() {
        let mut c = ClientSpec::url("http://x/metrics");
        assert_eq!(c.mapping(), MetricsMapping::chaoslab());
        c.preset = Some(Preset::Resilience4j);
        assert_eq!(c.mapping(), MetricsMapping::resilience4j());
        let custom = MetricsMapping { server_label: "upstream".into(), ..MetricsMapping::chaoslab() };
        (c.preset, c.custom) = (Some(Preset::Custom), Some(custom.clone()));
        assert_eq!(c.mapping(), custom);
    }
}
