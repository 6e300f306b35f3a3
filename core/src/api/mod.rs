//! The `ChaosScenario` API (`chaoslab.dev/v1alpha1`): spec, status and the schema rules the
//! apiserver enforces. `crds/chaosscenarios.yaml` is generated from these types (`chaoslab crd`).

mod client;
pub(crate) mod fault;
mod status;

use std::borrow::Cow;

pub use client::{
    BreakerSeries, ClientSpec, LatencySeries, MetricsMapping, OutcomeName, PoolSeries, Preset, PrometheusSource,
    RequestSeries, StateValues, TransitionSeries,
};
pub use fault::{CustomToxic, Fault, Latency, MAX_TARGETS, PacketLoss, ToxicAttributes};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
pub use status::{
    ChaosScenarioStatus, Check, Phase, PhaseObservation, PhaseRecord, ServerObservation, TargetStatus,
    TargetVerification, Timings, Verdict,
};

use crate::{catalog, duration::PhaseDuration};

pub const GROUP: &str = "chaoslab.dev";
pub const DEFAULT_ADMIN_PORT: i32 = 8474;
pub const DEFAULT_PROXY: &str = "backend";

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

    /// End Testing early when the client's error rate stays high (needs spec.client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortSpec>,

    /// Bounds on the measured times and error rate (status.timings); each one set becomes a check
    /// (needs spec.client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expectations>,
}

/// What the client must achieve, beyond the checks every run gets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Expectations {
    /// Every faulted server detected within this long after Testing starts (check `detected-within`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_within: Option<PhaseDuration>,
    /// The healthy servers carry 95 % of successes within this long after Testing starts (check
    /// `routed-around-within`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_around_within: Option<PhaseDuration>,
    /// Breakers closed and shares back within this long after Recovery starts (check `recovered-within`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_within: Option<PhaseDuration>,
    /// At most this share of requests fail during Testing, 0–1 (check `error-budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: Option<f64>,
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

/// The CRD manifest exactly as `crds/chaosscenarios.yaml` holds it.
pub fn crd_yaml() -> String {
    let body = serde_yaml::to_string(&ChaosScenario::crd()).expect("the CRD serializes");
    format!("# Generated from the Rust types by `chaoslab crd`; do not edit.\n{body}")
}
