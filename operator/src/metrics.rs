//! The operator's metrics: the scenario part of the metrics contract and its own health.

use chaoslab_telemetry::ScenarioMetrics;
use kube::{Resource, ResourceExt};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Seconds; fine around 100 ms, what the operator aims to keep a phase change and a reconcile under.
const DURATION_BUCKETS: [f64; 17] =
    [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `chaoslab_scenario_phase` and `chaoslab_scenario_toxic_active`.
    pub scenario: ScenarioMetrics,
    pub reconciles: IntCounterVec,
    pub reconcile_duration: Histogram,
    pub toxiproxy_converges: IntCounterVec,
    /// How late a phase change was applied, against the planned boundary.
    pub phase_transition_lateness: HistogramVec,
    /// 1 while this replica leads (holds the Lease, or runs without leader election), else 0. Who
    /// leads is here, not in `/readyz`: a standby replica is Ready.
    pub leader: IntGauge,
    /// What went wrong, by kind (toxiproxy_unreachable, targets_missing, kube_api, …).
    pub errors: IntCounterVec,
    /// Where a reconcile's time goes: one series per [`Call`].
    pub calls: HistogramVec,
    /// Status writes by outcome: written, failed (retried), replaced (a newer status came before
    /// it could be written: the apiserver is slower than the runs change).
    pub status_writes: IntCounterVec,
    /// Events by outcome: published, failed, dropped (the queue of those waiting was full: the
    /// apiserver is far slower than the runs change; see `events.rs`).
    pub events: IntCounterVec,
}

/// The calls a reconcile makes, timed in `chaoslab_operator_call_duration_seconds{call}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Listing the pods (or reading the endpoints) a scenario's selector names.
    ResolveTargets,
    /// One round of Toxiproxy calls: every target of the scenario converged at once.
    ToxiproxyConverge,
    /// Writing the scenario's status (server-side apply, by its writer: see `status_writer.rs`).
    StatusPatch,
    /// Publishing an Event (in the background: the reconcile does not wait for it).
    Event,
    /// Adding the finalizer or marking finished (in the background: see `metadata_patches.rs`).
    MetadataPatch,
}

impl Call {
    pub const ALL: [Call; 5] =
        [Call::ResolveTargets, Call::ToxiproxyConverge, Call::StatusPatch, Call::Event, Call::MetadataPatch];

    pub fn label(self) -> &'static str {
        match self {
            Call::ResolveTargets => "resolve_targets",
            Call::ToxiproxyConverge => "toxiproxy_converge",
            Call::StatusPatch => "status_patch",
            Call::Event => "event",
            Call::MetadataPatch => "metadata_patch",
        }
    }
}

/// `namespace/name`, the `scenario` label of the metrics.
pub fn scenario_key(s: &impl Resource) -> String {
    format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any())
}

impl Metrics {
    /// Times `call` until the returned timer is dropped.
    pub fn time(&self, call: Call) -> CallTimer {
        CallTimer { call, timer: Some(self.calls.with_label_values(&[call.label()]).start_timer()) }
    }
}

/// Seconds: a call, a reconcile or a wait for a reconcile this long is logged at warn, with the
/// scenario (for a call, the reconcile's span) where there is one: the histograms say that something
/// was slow, the log says which scenario waited.
pub const SLOW_SECONDS: f64 = 1.0;

/// Records its call's duration when dropped.
pub struct CallTimer {
    call: Call,
    timer: Option<prometheus::HistogramTimer>,
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        let seconds = self.timer.take().map_or(0.0, |t| t.stop_and_record());
        if seconds >= SLOW_SECONDS {
            tracing::warn!(call = self.call.label(), ms = (seconds * 1e3) as u64, "slow call");
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let scenario = ScenarioMetrics::register(&registry).expect("metric names are unique");
        let reconciles =
            by_outcome("chaoslab_operator_reconciles_total", "Reconciles by outcome (ok, error)", &["ok", "error"]);
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "chaoslab_operator_reconcile_duration_seconds",
                "Reconcile duration, not counting the wait for a phase boundary",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )
        .unwrap();
        let toxiproxy_converges = by_outcome(
            "chaoslab_operator_toxiproxy_converges_total",
            "Converges of a Toxiproxy proxy by outcome (ok, error)",
            &["ok", "error"],
        );
        let phase_transition_lateness = HistogramVec::new(
            HistogramOpts::new(
                "chaoslab_operator_phase_transition_lateness_seconds",
                "Time from a planned phase boundary to the reconcile that applied it",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["phase"],
        )
        .unwrap();
        let leader = IntGauge::new(
            "chaoslab_operator_leader",
            "1 while this replica drives scenarios (holds the leader Lease, or runs without leader election)",
        )
        .unwrap();
        let errors = IntCounterVec::new(
            Opts::new("chaoslab_operator_errors_total", "Problems met by reconciles, by kind (see the README)"),
            &["kind"],
        )
        .unwrap();
        let calls = HistogramVec::new(
            HistogramOpts::new(
                "chaoslab_operator_call_duration_seconds",
                "Duration of the calls a reconcile makes, by kind (resolve_targets, toxiproxy_converge, status_patch; event, which it does not wait for)",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["call"],
        )
        .unwrap();
        let status_writes = by_outcome(
            "chaoslab_operator_status_writes_total",
            "Status writes by outcome (written; failed, retried; replaced by a newer status before it could be written)",
            &["written", "failed", "replaced"],
        );
        let events = by_outcome(
            "chaoslab_operator_events_total",
            "Events on scenarios by outcome (published; failed; dropped, the queue of those waiting being full)",
            &["published", "failed", "dropped"],
        );
        for call in Call::ALL {
            calls.with_label_values(&[call.label()]);
        }
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(toxiproxy_converges.clone()),
            Box::new(phase_transition_lateness.clone()),
            Box::new(leader.clone()),
            Box::new(errors.clone()),
            Box::new(calls.clone()),
            Box::new(status_writes.clone()),
            Box::new(events.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            scenario,
            reconciles,
            reconcile_duration,
            toxiproxy_converges,
            phase_transition_lateness,
            leader,
            errors,
            calls,
            status_writes,
            events,
        }
    }
}

/// A counter by `outcome` whose every outcome's series exists from the start, so that rates and
/// alerts see 0 rather than nothing.
fn by_outcome(name: &str, help: &str, outcomes: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), &["outcome"]).expect("a valid metric");
    for outcome in outcomes {
        counter.with_label_values(&[outcome]);
    }
    counter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_operator_already_exports_its_outcome_counters_at_zero() {
        let m = Metrics::default();
        let text = prometheus::TextEncoder::new().encode_to_string(&m.registry.gather()).unwrap();
        for series in [
            "chaoslab_operator_reconciles_total{outcome=\"ok\"} 0",
            "chaoslab_operator_reconciles_total{outcome=\"error\"} 0",
            "chaoslab_operator_toxiproxy_converges_total{outcome=\"ok\"} 0",
            "chaoslab_operator_toxiproxy_converges_total{outcome=\"error\"} 0",
            "chaoslab_operator_reconcile_duration_seconds_count 0",
            "chaoslab_operator_leader 0",
            "chaoslab_operator_call_duration_seconds_count{call=\"resolve_targets\"} 0",
            "chaoslab_operator_call_duration_seconds_count{call=\"toxiproxy_converge\"} 0",
            "chaoslab_operator_call_duration_seconds_count{call=\"status_patch\"} 0",
            "chaoslab_operator_call_duration_seconds_count{call=\"event\"} 0",
            "chaoslab_operator_status_writes_total{outcome=\"replaced\"} 0",
            "chaoslab_operator_events_total{outcome=\"dropped\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }
}
