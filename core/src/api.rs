//! The `ChaosScenario` API (`chaoslab.dev/v1alpha1`): spec, status and the schema rules the
//! apiserver enforces. `crds/chaosscenarios.yaml` is generated from these types (`chaoslab crd`).

use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::{
    catalog,
    duration::PhaseDuration,
    toxic::{Stream, ToxicType},
};

pub const GROUP: &str = "chaoslab.dev";
pub const DEFAULT_ADMIN_PORT: i32 = 8474;
pub const DEFAULT_PROXY: &str = "backend";
/// Upper bound on targets and fault indices; keeps CEL cost estimates small.
pub const MAX_TARGETS: i32 = 64;

/// A timed resilience experiment: Stabilization (no faults), Testing (faults on some targets),
/// Recovery (faults removed), then checks and a verdict.
// printcolumn is a repeated macro argument, not a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "chaoslab.dev",
    version = "v1alpha1",
    kind = "ChaosScenario",
    plural = "chaosscenarios",
    shortname = "chaos",
    namespaced,
    status = "ChaosScenarioStatus",
    derive = "PartialEq",
    doc = "A timed resilience experiment against the Toxiproxies in front of a replicated service",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Template", type_ = "string", json_path = ".spec.template"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.template) != has(self.faults)")
    .message("set exactly one of spec.template (a catalog scenario, see `chaoslab list`) or spec.faults (explicit faults)"))]
#[serde(rename_all = "camelCase")]
pub struct ChaosScenarioSpec {
    /// Name of a built-in scenario (`chaoslab list`). Exactly one of template and faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateName>,

    /// Explicit faults, one entry per target. Exactly one of template and faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(f, self.exists_one(g, g.target == f.target))")
        .message("each target index may appear in only one fault: put all effects for one target into one entry"))]
    pub faults: Option<Vec<Fault>>,

    /// Which Toxiproxies the experiment drives.
    pub targets: Targets,

    /// How long each phase lasts.
    #[serde(default)]
    pub phases: Phases,

    /// The client under test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientSpec>,

    /// End Testing early when the client's error rate stays high (needs client.metricsUrl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortSpec>,
}

/// Ends Testing early: the run still goes through Recovery and ends Aborted with verdict Failed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AbortSpec {
    /// Error ratio (errors and timeouts over all requests), 0–1, at or above which to abort.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate: f64,
    /// How long the ratio must hold, measured over a trailing window.
    #[serde(rename = "for")]
    pub duration: PhaseDuration,
}

impl AbortSpec {
    pub fn rule(&self) -> crate::observation::AbortRule {
        crate::observation::AbortRule { error_rate: self.error_rate, window: self.duration.0 }
    }
}

/// A catalog scenario name; the schema lists the catalog so the apiserver rejects unknown names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateName(pub String);

impl JsonSchema for TemplateName {
    fn schema_name() -> Cow<'static, str> {
        "TemplateName".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = catalog::scenarios().iter().map(|s| s.name).collect();
        json_schema!({ "type": "string", "enum": names })
    }
}

/// The faults one target suffers during Testing. At least one effect must be set; they combine.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.packetLoss) || has(self.latency) || (has(self.down) && self.down) || (has(self.toxics) && size(self.toxics) > 0)")
    .message("a fault needs at least one effect: packetLoss, latency, down: true, or toxics"))]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Index of the target, 0-based: pods matching the selector sorted by name, or the endpoints in order.
    #[schemars(range(min = 0, max = MAX_TARGETS - 1))]
    pub target: i32,
    /// Drop data on a share of connections (a blackhole; Toxiproxy works on streams, not packets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_loss: Option<PacketLoss>,
    /// Delay data from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// Disable the proxy: connections are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<bool>,
    /// Any other Toxiproxy toxics, passed through as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub toxics: Option<Vec<CustomToxic>>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PacketLoss {
    /// Share of connections blackholed (their requests get no reply), 0–100; at 100 every
    /// connection drops data both ways.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: f64,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Added delay in milliseconds.
    #[schemars(range(min = 0, max = 3_600_000))]
    pub delay_ms: i64,
    /// Uniform jitter (±) in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3_600_000))]
    pub jitter_ms: Option<i64>,
}

/// A Toxiproxy toxic passed through unchanged (attributes in Toxiproxy's own units).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(custom_toxic_attribute_rule()).message(kube::core::Message::Message(custom_toxic_attribute_message())))]
pub struct CustomToxic {
    #[serde(rename = "type")]
    pub kind: ToxicType,
    /// Default downstream (server → client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    /// Probability 0–1 that a connection gets the toxic; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub toxicity: Option<f64>,
    /// The toxic type's attributes, e.g. `{rate: 100}` for bandwidth; missing ones are 0.
    #[serde(default)]
    pub attributes: ToxicAttributes,
}

/// Every attribute a Toxiproxy toxic reads, by Toxiproxy's own names and units.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ToxicAttributes {
    /// latency: delay in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub latency: Option<i64>,
    /// latency: jitter in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub jitter: Option<i64>,
    /// bandwidth: KB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rate: Option<i64>,
    /// slow_close: ms; slicer: µs between chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub delay: Option<i64>,
    /// timeout, reset_peer: ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timeout: Option<i64>,
    /// slicer: bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub average_size: Option<i64>,
    /// slicer: bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub size_variation: Option<i64>,
    /// limit_data: bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub bytes: Option<i64>,
}

impl ToxicAttributes {
    /// The attributes that are set, as Toxiproxy's attribute map.
    pub fn to_map(&self) -> BTreeMap<String, i64> {
        let v = serde_json::to_value(self).expect("attributes serialize");
        serde_json::from_value(v).expect("attributes are integers")
    }
}

/// Each attribute is allowed only on the toxic types that read it (a cheap, constant-cost CEL rule).
fn custom_toxic_attribute_rule() -> String {
    let mut names: Vec<&str> = ToxicType::ALL.iter().flat_map(|t| t.attribute_names().iter().copied()).collect();
    names.sort();
    names.dedup();
    let clauses: Vec<String> = names
        .iter()
        .map(|n| {
            let types: Vec<String> = ToxicType::ALL
                .iter()
                .filter(|t| t.attribute_names().contains(n))
                .map(|t| format!("'{}'", t.as_str()))
                .collect();
            format!("(!has(self.attributes.{n}) || self.type in [{}])", types.join(", "))
        })
        .collect();
    format!("!has(self.attributes) || ({})", clauses.join(" && "))
}

fn custom_toxic_attribute_message() -> String {
    let per_type: Vec<String> =
        ToxicType::ALL.iter().map(|t| format!("{}: {}", t.as_str(), t.attribute_names().join(", "))).collect();
    format!("an attribute this toxic type does not read; allowed: {}", per_type.join("; "))
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.selector) != has(self.endpoints)")
    .message("set exactly one of targets.selector (pods with a Toxiproxy sidecar) or targets.endpoints (Toxiproxy URLs)"))]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    /// Pods in the scenario's namespace, each with a Toxiproxy at podIP:adminPort; sorted by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Toxiproxy admin port on each selected pod.
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: i32,
    /// Proxy name inside each Toxiproxy.
    #[serde(default = "default_proxy")]
    #[schemars(length(min = 1, max = 253))]
    pub proxy: String,
    /// Explicit Toxiproxy endpoints, in target order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_TARGETS as usize), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub endpoints: Option<Vec<Endpoint>>,
}

fn default_admin_port() -> i32 {
    DEFAULT_ADMIN_PORT
}

fn default_proxy() -> String {
    DEFAULT_PROXY.to_string()
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// Server name used in status and metrics, e.g. server-0.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Toxiproxy admin URL, e.g. http://127.0.0.1:8474.
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s/]+(/\S*)?$"))]
    pub url: String,
    /// Proxy name in this Toxiproxy; defaults to targets.proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub proxy: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Phases {
    /// No faults; baseline. Default 30s.
    #[serde(default = "default_stabilization")]
    pub stabilization: PhaseDuration,
    /// Faults applied. Default 60s.
    #[serde(default = "default_testing")]
    pub testing: PhaseDuration,
    /// Faults removed; observe healing. Default 60s.
    #[serde(default = "default_recovery")]
    pub recovery: PhaseDuration,
}

fn default_stabilization() -> PhaseDuration {
    PhaseDuration::from_secs(30)
}
fn default_testing() -> PhaseDuration {
    PhaseDuration::from_secs(60)
}
fn default_recovery() -> PhaseDuration {
    PhaseDuration::from_secs(60)
}

impl Default for Phases {
    fn default() -> Self {
        Self { stabilization: default_stabilization(), testing: default_testing(), recovery: default_recovery() }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientSpec {
    /// Prometheus endpoint of the client under test (the chaoslab metrics contract).
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s/]+(/\S*)?$"))]
    pub metrics_url: String,
}

/// Where a scenario is in its life.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Pending,
    Queued,
    Stabilization,
    Testing,
    Recovery,
    Completed,
    Failed,
    Aborted,
}

impl Phase {
    /// The three timed phases of every experiment, in order.
    pub const TIMED: [Phase; 3] = [Phase::Stabilization, Phase::Testing, Phase::Recovery];

    /// Every phase, in the order the metrics contract lists them.
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Queued,
        Phase::Stabilization,
        Phase::Testing,
        Phase::Recovery,
        Phase::Completed,
        Phase::Failed,
        Phase::Aborted,
    ];

    /// The API's spelling, which is also the `phase` label of the metrics contract.
    pub fn as_str(self) -> &'static str {
        chaoslab_contract::PHASES[self as usize]
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Failed | Phase::Aborted)
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    Inconclusive,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChaosScenarioStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// When spec.abort ended Testing early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    /// The timed phases entered so far, with their start and end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<PhaseRecord>,
    /// Every proxy that may hold this scenario's toxics, and what it holds: the current targets in
    /// target order, then former ones not yet proven clean.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What the client did in each finished phase (written at each phase end).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<PhaseObservation>,
}

/// What the client did during one phase, from scrapes of `spec.client.metricsUrl`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PhaseObservation {
    pub phase: Phase,
    /// Scrapes taken during the phase.
    pub samples: i32,
    #[serde(default)]
    pub servers: Vec<ServerObservation>,
}

/// One server's requests and breaker activity during one phase.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServerObservation {
    /// The `server` label in the client's metrics.
    pub name: String,
    pub successes: i64,
    /// Errors and timeouts.
    pub failures: i64,
    /// Calls the breaker refused.
    pub rejected: i64,
    /// Successes in the last 40 % of the phase.
    pub late_successes: i64,
    /// Failures in the last 40 % of the phase.
    pub late_failures: i64,
    /// Breaker states seen (closed, half_open, open), from scrapes and transitions.
    #[serde(default)]
    pub breaker_states: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_breaker_state: Option<String>,
    /// Transitions into open, half_open and closed during the phase.
    pub opened: i64,
    pub half_opened: i64,
    pub closed: i64,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PhaseRecord {
    pub phase: Phase,
    pub start: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
}

/// A proxy the scenario drives or drove, and what of the scenario's it holds. An entry stays until
/// its toxics are proven removed, also when its target left the target set (a mid-run edit, a pod
/// replaced), so that nothing can be orphaned.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub name: String,
    /// Toxiproxy admin URL.
    pub endpoint: String,
    pub proxy: String,
    /// The pod this Toxiproxy runs in (selector targets): once that pod is gone, so are its toxics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    pub enabled: bool,
    /// Names of this scenario's toxics the proxy holds (may hold, when `error` is set).
    #[serde(default)]
    pub toxics: Vec<String>,
    /// Why the last call to this Toxiproxy failed: its state is then not known for sure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TargetStatus {
    /// Proven to hold nothing of this scenario's: the last call succeeded and left no toxic (a
    /// `down` leaves its marker toxic, so a disabled proxy is never settled).
    pub fn settled(&self) -> bool {
        self.error.is_none() && self.toxics.is_empty()
    }
}

/// One judged expectation.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Check {
    pub name: String,
    pub description: String,
    pub expected: String,
    pub observed: String,
    /// Absent when the check could not be judged (Inconclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
}

/// The CRD manifest exactly as `crds/chaosscenarios.yaml` holds it.
pub fn crd_yaml() -> String {
    let body = serde_yaml::to_string(&ChaosScenario::crd()).expect("the CRD serializes");
    format!("# Generated from the Rust types by `chaoslab crd`; do not edit.\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_are_the_apis_and_the_metrics_contracts() {
        for p in Phase::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str(), "{p:?}");
        }
        assert_eq!(Phase::ALL.map(Phase::as_str), chaoslab_contract::PHASES);
    }
}
