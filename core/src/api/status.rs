//! What a scenario's status says: its phase, the record of its targets, what the client did in each
//! phase, and the checks.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// How well each target held what each phase asked of it, checked at every sample.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification: Vec<TargetVerification>,
    /// How long the client took to detect the faults, route around them and recover, and the
    /// errors Testing cost it (written when the run ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
}

impl Timings {
    /// The three times in the metrics contract's `measure` order: detect, route_around, recover.
    pub fn measures(&self) -> [Option<f64>; 3] {
        [self.detect_seconds, self.route_around_seconds, self.recover_seconds]
    }
}

/// Time as a measurement, from every sample of the client's metrics (README "Time to detect, route
/// around and recover"). A time is absent when it was not reached, or not watched from its start.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// From the start of Testing to the first sample where every faulted server was detected: a
    /// dead one's breaker open, a slow or lossy one's share of successes below half its baseline
    /// share (or its breaker open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_seconds: Option<f64>,
    /// From the start of Testing until the healthy servers carry at least 95 % of successes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_around_seconds: Option<f64>,
    /// From the start of Recovery until every breaker is closed and every server's share of
    /// successes is within half of its baseline share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_seconds: Option<f64>,
    /// The longest gap between two samples in Testing and Recovery: each time above is measured to
    /// within it.
    pub resolution_seconds: f64,
    /// Failed requests (errors and timeouts) during Testing.
    pub testing_failures: i64,
    /// Requests answered or timed out during Testing.
    pub testing_requests: i64,
    /// Those among all requests answered or timed out during Testing, 0–1.
    pub testing_error_rate: f64,
}

/// How well one target held what one phase asked of it (its faults in Testing, none otherwise).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetVerification {
    pub phase: Phase,
    pub target: String,
    /// Time between consecutive checks that found the state in place.
    pub verified_seconds: f64,
    /// `verifiedSeconds` over the phase's length (its part so far while it runs), 0–1.
    pub share: f64,
    /// Checks that found the state gone and put it back (e.g. a restarted Toxiproxy).
    pub reapplied: i32,
    /// Checks that could not reach the proxy.
    pub failed_checks: i32,
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
    /// Requests the duration histogram timed (its `_count`; every sent request for chaoslab-loadgen).
    #[serde(default)]
    pub timed: i64,
    /// The mean duration of those requests in milliseconds (absent when none was timed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_latency_ms: Option<f64>,
    /// Requests timed in the last 40 % of the phase.
    #[serde(default)]
    pub late_timed: i64,
    /// The mean duration of those requests in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_mean_latency_ms: Option<f64>,
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
