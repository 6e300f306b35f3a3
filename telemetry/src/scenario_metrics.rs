//! The scenario part of the metrics contract, exported by the operator and by `chaoslab run`.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use chaoslab_contract::{
    MEASURES, PHASES, SCENARIO_PHASE, SCENARIO_SECONDS, SCENARIO_TESTING_ERROR_RATIO, SCENARIO_TOXIC_ACTIVE,
};
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};

/// The scenarios with series, each with its `toxic_active` series as (server, toxic): the ones no
/// longer held stay, at 0.
type Exported = HashMap<String, BTreeSet<(String, String)>>;

#[derive(Clone)]
pub struct ScenarioMetrics {
    /// `chaoslab_scenario_phase{scenario,phase}`: 1 for the phase the scenario is in, 0 for the others.
    pub phase: IntGaugeVec,
    /// `chaoslab_scenario_toxic_active{scenario,server,toxic}`: 1 while the toxic is held on the server.
    pub toxic_active: IntGaugeVec,
    /// `chaoslab_scenario_seconds{scenario,measure}`: time to detect, route around, recover.
    pub seconds: GaugeVec,
    /// `chaoslab_scenario_testing_error_ratio{scenario}`.
    pub testing_error_ratio: GaugeVec,
    /// Kept so that [`Self::forget`] drops the toxic series at 0 too (`prometheus` removes a series
    /// only by its full label set), and for [`Self::exports`].
    exported: Arc<Mutex<Exported>>,
}

impl ScenarioMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let phase =
            IntGaugeVec::new(Opts::new(SCENARIO_PHASE, "1 for the phase the scenario is in"), &["scenario", "phase"])?;
        let toxic_active = IntGaugeVec::new(
            Opts::new(SCENARIO_TOXIC_ACTIVE, "1 while the toxic is held on the server"),
            &["scenario", "server", "toxic"],
        )?;
        let seconds = GaugeVec::new(
            Opts::new(SCENARIO_SECONDS, "the client's time to detect, route around and recover, in seconds"),
            &["scenario", "measure"],
        )?;
        let testing_error_ratio = GaugeVec::new(
            Opts::new(SCENARIO_TESTING_ERROR_RATIO, "failed requests among all during Testing"),
            &["scenario"],
        )?;
        registry.register(Box::new(phase.clone()))?;
        registry.register(Box::new(toxic_active.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        registry.register(Box::new(testing_error_ratio.clone()))?;
        Ok(Self { phase, toxic_active, seconds, testing_error_ratio, exported: Arc::default() })
    }

    /// A run's measured times, in [`MEASURES`] order (None: not reached, no series), and its
    /// Testing error ratio.
    pub fn set_times(&self, scenario: &str, times: [Option<f64>; 3], testing_error_ratio: f64) {
        self.exporting(scenario);
        for (measure, time) in MEASURES.iter().zip(times) {
            match time {
                Some(t) => self.seconds.with_label_values(&[scenario, measure]).set(t),
                None => {
                    let _ = self.seconds.remove_label_values(&[scenario, measure]);
                }
            }
        }
        self.testing_error_ratio.with_label_values(&[scenario]).set(testing_error_ratio);
    }

    /// `phase` is one of the API's phase names (Stabilization, Testing, …).
    pub fn set_phase(&self, scenario: &str, phase: &str) {
        self.exporting(scenario);
        for p in PHASES {
            self.phase.with_label_values(&[scenario, p]).set(i64::from(p == phase));
        }
    }

    /// Sets the toxics held on `server` to exactly `held` (the others it held before go to 0).
    pub fn set_toxics(&self, scenario: &str, server: &str, held: &[String]) {
        let mut all = self.exported.lock().expect("exported");
        let series = series_of(&mut all, scenario);
        for (_, toxic) in series.iter().filter(|(s, t)| s == server && !held.contains(t)) {
            self.toxic_active.with_label_values(&[scenario, server, toxic]).set(0);
        }
        for toxic in held {
            self.toxic_active.with_label_values(&[scenario, server, toxic]).set(1);
            series.insert((server.to_string(), toxic.clone()));
        }
    }

    /// Whether this process exports series of `scenario` (until [`Self::forget`]).
    pub fn exports(&self, scenario: &str) -> bool {
        self.exported.lock().expect("exported").contains_key(scenario)
    }

    fn exporting(&self, scenario: &str) {
        series_of(&mut self.exported.lock().expect("exported"), scenario);
    }

    /// Drops every series of a scenario.
    pub fn forget(&self, scenario: &str) {
        for p in PHASES {
            let _ = self.phase.remove_label_values(&[scenario, p]);
        }
        let toxics = self.exported.lock().expect("exported").remove(scenario).unwrap_or_default();
        for (server, toxic) in toxics {
            let _ = self.toxic_active.remove_label_values(&[scenario, &server, &toxic]);
        }
        for measure in MEASURES {
            let _ = self.seconds.remove_label_values(&[scenario, measure]);
        }
        let _ = self.testing_error_ratio.remove_label_values(&[scenario]);
    }
}

/// `scenario`'s entry, made if missing. Looked up before it is made: this runs at every status
/// change of every target, and `entry` would copy the name each time.
fn series_of<'a>(all: &'a mut Exported, scenario: &str) -> &'a mut BTreeSet<(String, String)> {
    if !all.contains_key(scenario) {
        all.insert(scenario.to_string(), BTreeSet::new());
    }
    all.get_mut(scenario).expect("made above")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_phase_at_a_time_and_toxics_follow_the_held_set() {
        let r = Registry::new();
        let m = ScenarioMetrics::register(&r).unwrap();
        m.set_phase("ns/a", "Testing");
        assert_eq!(m.phase.with_label_values(&["ns/a", "Testing"]).get(), 1);
        assert_eq!(m.phase.with_label_values(&["ns/a", "Stabilization"]).get(), 0);
        m.set_toxics("ns/a", "server-0", &["t1".into()]);
        m.set_toxics("ns/a", "server-1", &["t1".into()]);
        m.set_toxics("ns/a", "server-0", &["t2".into()]);
        let active = |server: &str, toxic: &str| m.toxic_active.with_label_values(&["ns/a", server, toxic]).get();
        assert_eq!((active("server-0", "t1"), active("server-0", "t2"), active("server-1", "t1")), (0, 1, 1));
        m.set_times("ns/a", [Some(2.5), None, Some(7.0)], 0.01);
        assert_eq!(m.seconds.with_label_values(&["ns/a", "recover"]).get(), 7.0);
    }

    /// Also the toxic series at 0: a finished scenario holds no toxic, and its series must not stay
    /// behind once it is deleted.
    #[test]
    fn forget_drops_every_series_of_the_scenario_only() {
        let r = Registry::new();
        let m = ScenarioMetrics::register(&r).unwrap();
        for s in ["ns/a", "ns/b"] {
            m.set_phase(s, "Testing");
            m.set_toxics(s, "server-0", &["t1".into()]);
            m.set_toxics(s, "server-0", &[]);
            m.set_times(s, [Some(2.5), None, Some(7.0)], 0.01);
        }
        assert!(m.exports("ns/a"));
        m.forget("ns/a");
        assert!(!m.exports("ns/a") && m.exports("ns/b"));
        let scenarios: BTreeSet<String> = r
            .gather()
            .iter()
            .flat_map(|f| f.get_metric().iter().flat_map(|m| m.get_label().iter()))
            .filter(|l| l.name() == "scenario")
            .map(|l| l.value().to_string())
            .collect();
        assert_eq!(scenarios, BTreeSet::from(["ns/b".to_string()]));
        let series: usize = r.gather().iter().map(|f| f.get_metric().len()).sum();
        assert_eq!(series, PHASES.len() + 1 + 2 + 1);
    }
}
