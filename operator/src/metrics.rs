//! The operator's metrics: the scenario part of the metrics contract and its own health.

use chaoslab_core::api::Phase;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// 1 for the scenario's current phase, 0 for the others.
    pub scenario_phase: IntGaugeVec,
    /// 1 while chaoslab holds that toxic on that server for that scenario.
    pub toxic_active: IntGaugeVec,
    pub reconciles: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub toxiproxy_calls: IntCounterVec,
    /// How late a phase change was applied, against the planned boundary.
    pub transition_lateness: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let scenario_phase = IntGaugeVec::new(
            Opts::new("chaoslab_scenario_phase", "1 for the phase the scenario is in"),
            &["scenario", "phase"],
        )
        .unwrap();
        let toxic_active = IntGaugeVec::new(
            Opts::new("chaoslab_scenario_toxic_active", "1 while the toxic is held on the server"),
            &["scenario", "server", "toxic"],
        )
        .unwrap();
        let reconciles = IntCounterVec::new(
            Opts::new("chaoslab_operator_reconciles_total", "Reconciles by result (ok, error)"),
            &["result"],
        )
        .unwrap();
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("chaoslab_operator_reconcile_duration_seconds", "Reconcile duration")
                .buckets(vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]),
            &[],
        )
        .unwrap();
        let toxiproxy_calls = IntCounterVec::new(
            Opts::new(
                "chaoslab_operator_toxiproxy_converges_total",
                "Converges of a Toxiproxy proxy by outcome (ok, error)",
            ),
            &["outcome"],
        )
        .unwrap();
        let transition_lateness = HistogramVec::new(
            HistogramOpts::new(
                "chaoslab_operator_phase_transition_lateness_seconds",
                "Time from a planned phase boundary to the reconcile that applied it",
            )
            .buckets(vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]),
            &["phase"],
        )
        .unwrap();
        for c in [
            Box::new(scenario_phase.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(toxic_active.clone()),
            Box::new(reconciles.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(toxiproxy_calls.clone()),
            Box::new(transition_lateness.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            scenario_phase,
            toxic_active,
            reconciles,
            reconcile_duration,
            toxiproxy_calls,
            transition_lateness,
        }
    }
}

const PHASES: [Phase; 8] = [
    Phase::Pending,
    Phase::Queued,
    Phase::Stabilization,
    Phase::Testing,
    Phase::Recovery,
    Phase::Completed,
    Phase::Failed,
    Phase::Aborted,
];

impl Metrics {
    pub fn set_phase(&self, scenario: &str, phase: Phase) {
        for p in PHASES {
            self.scenario_phase.with_label_values(&[scenario, p.as_str()]).set(i64::from(p == phase));
        }
    }

    /// Sets the toxics held on `server` to exactly `toxics` (others of this scenario go to 0).
    pub fn set_toxics(&self, scenario: &str, server: &str, toxics: &[String], previous: &[String]) {
        for t in previous {
            if !toxics.contains(t) {
                self.toxic_active.with_label_values(&[scenario, server, t]).set(0);
            }
        }
        for t in toxics {
            self.toxic_active.with_label_values(&[scenario, server, t]).set(1);
        }
    }

    /// Drops every series of a deleted scenario; `held` lists the (server, toxic) pairs it exported.
    pub fn forget(&self, scenario: &str, held: &[(String, String)]) {
        for p in PHASES {
            let _ = self.scenario_phase.remove_label_values(&[scenario, p.as_str()]);
        }
        for (server, toxic) in held {
            let _ = self.toxic_active.remove_label_values(&[scenario, server, toxic]);
        }
    }
}
