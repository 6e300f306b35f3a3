//! Time as a measurement (README "Time to detect, route around and recover"): from every sample of
//! a run, when the client detected its faulted servers, routed around them and recovered. Pure:
//! samples, times and the Stabilization baseline come in as arguments.
//!
//! A share of successes is judged over the latest samples that hold at least [`WINDOW_SUCCESSES`]
//! (at most [`MAX_WINDOW`] back): one sample apart at a busy client, a few at a quiet one.

use std::collections::{BTreeMap, VecDeque};

use jiff::{SignedDuration, Timestamp};

use crate::{
    api::{Fault, Phase, PhaseObservation, Timings},
    checks::{CONCENTRATION, Harm, faulted},
    client_metrics::{BreakerState, Scrape},
    engine::Plan,
};

/// A slow or lossy server is detected once its share of successes falls below this fraction of its
/// Stabilization share (the "half of its baseline share").
pub const DETECT_SHARE: f64 = 0.5;
/// In Recovery a server is back once its share is within this fraction of its baseline share.
pub const RECOVER_BAND: f64 = 0.5;
/// Fewest successes a windowed share is judged over: one request then moves it by at most 2 %.
pub const WINDOW_SUCCESSES: f64 = 50.0;
/// Longest window: a client this quiet has no share worth measuring.
pub const MAX_WINDOW: SignedDuration = SignedDuration::from_secs(5);

/// Watches a run's samples for the moments [`Timings`] reports.
#[derive(Clone, Debug)]
pub struct Stopwatch {
    faults: Vec<Fault>,
    target_names: Vec<String>,
    /// Samples of the last [`MAX_WINDOW`], and one before it.
    recent: VecDeque<(Timestamp, Scrape)>,
    /// The last sample before Testing: breaker openings count from it.
    before_testing: Option<Scrape>,
    detected: BTreeMap<String, Timestamp>,
    all_detected: Option<Timestamp>,
    routed: Option<Timestamp>,
    recovered: Option<Timestamp>,
    /// The longest gap between two samples of Testing and Recovery.
    gap: SignedDuration,
}

impl Stopwatch {
    pub fn new(faults: &[Fault], target_names: &[String]) -> Self {
        Self {
            faults: faults.to_vec(),
            target_names: target_names.to_vec(),
            recent: VecDeque::new(),
            before_testing: None,
            detected: BTreeMap::new(),
            all_detected: None,
            routed: None,
            recovered: None,
            gap: SignedDuration::ZERO,
        }
    }

    /// Adopts edited faults or renamed targets: what follows is judged by them.
    pub fn set_targets(&mut self, faults: &[Fault], target_names: &[String]) {
        self.faults = faults.to_vec();
        self.target_names = target_names.to_vec();
    }

    /// One sample (counters monotonic) taken at `at`, in `phase`; `baseline` is the finished
    /// Stabilization's observation, once there is one.
    pub fn record(&mut self, at: Timestamp, phase: Phase, scrape: &Scrape, baseline: Option<&PhaseObservation>) {
        if let Some((last, _)) = self.recent.back()
            && matches!(phase, Phase::Testing | Phase::Recovery)
        {
            self.gap = self.gap.max(at.duration_since(*last));
        }
        self.recent.push_back((at, scrape.clone()));
        while self.recent.len() > 2 && self.recent[1].0 <= at - MAX_WINDOW {
            self.recent.pop_front();
        }
        if !matches!(phase, Phase::Testing | Phase::Recovery) {
            self.before_testing = Some(scrape.clone());
            return;
        }
        let shares = self.shares();
        let base = baseline.map(baseline_shares).unwrap_or_default();
        if phase == Phase::Testing {
            self.watch_testing(at, scrape, &shares, &base);
        } else {
            self.watch_recovery(at, scrape, &shares, &base);
        }
    }

    fn watch_testing(&mut self, at: Timestamp, now: &Scrape, shares: &Shares, base: &Shares) {
        let labels: Vec<String> = now.keys().cloned().collect();
        let faulted = faulted(&self.faults, &self.target_names, &labels);
        if faulted.is_empty() {
            return;
        }
        for (label, harm) in &faulted {
            let opened = now.get(label).is_some_and(|m| {
                let before = self
                    .before_testing
                    .as_ref()
                    .and_then(|b| b.get(label))
                    .map_or(0.0, |b| b.transitions_to(BreakerState::Open));
                m.breaker == Some(BreakerState::Open) || m.transitions_to(BreakerState::Open) > before
            });
            let fell = match (shares.get(label), base.get(label)) {
                (Some(s), Some(b)) => *s < DETECT_SHARE * b,
                _ => false,
            };
            if opened || (*harm != Harm::Dead && fell) {
                self.detected.entry(label.clone()).or_insert(at);
            }
        }
        if self.all_detected.is_none() && faulted.iter().all(|(l, _)| self.detected.contains_key(l)) {
            self.all_detected = Some(at);
        }
        let healthy: f64 = shares.iter().filter(|(l, _)| !faulted.iter().any(|(f, _)| f == *l)).map(|(_, s)| s).sum();
        if self.routed.is_none() && faulted.len() < labels.len() && !shares.is_empty() && healthy >= CONCENTRATION {
            self.routed = Some(at);
        }
    }

    fn watch_recovery(&mut self, at: Timestamp, now: &Scrape, shares: &Shares, base: &Shares) {
        if self.recovered.is_some() || base.is_empty() || shares.is_empty() {
            return;
        }
        let closed = now.values().all(|m| m.breaker.is_none_or(|b| b == BreakerState::Closed));
        let back = base.iter().all(|(label, b)| shares.get(label).is_some_and(|s| (s - b).abs() <= RECOVER_BAND * b));
        if closed && back {
            self.recovered = Some(at);
        }
    }

    /// Each server's share of successes over the latest samples holding [`WINDOW_SUCCESSES`]; empty
    /// when even the whole window holds none.
    fn shares(&self) -> Shares {
        let Some((_, now)) = self.recent.back() else { return Shares::new() };
        let total = |s: &Scrape| s.values().map(|m| m.success).sum::<f64>();
        let from = self
            .recent
            .iter()
            .rev()
            .skip(1)
            .find(|(_, s)| total(now) - total(s) >= WINDOW_SUCCESSES)
            .or_else(|| self.recent.front().filter(|(_, s)| total(now) > total(s)));
        let Some((_, from)) = from else { return Shares::new() };
        let all = total(now) - total(from);
        now.iter()
            .map(|(label, m)| {
                let before = from.get(label).map_or(0.0, |b| b.success);
                (label.clone(), (m.success - before) / all)
            })
            .collect()
    }

    /// The times so far, counted from the starts of Testing and Recovery in `plan`; `watched_from`:
    /// the first sample's time, before which nothing was seen (a time is left out unless its phase
    /// was watched from its start). Error counts come from `testing`, the finished Testing phase.
    pub fn timings(&self, plan: &Plan, watched_from: Timestamp, testing: Option<&PhaseObservation>) -> Timings {
        let since = |phase: Phase, at: Option<Timestamp>| {
            let start = plan.starts(phase)?;
            (watched_from <= start).then(|| at.map(|t| t.duration_since(start).as_secs_f64().max(0.0)))?
        };
        let (failures, total) = testing.map_or((0, 0), |o| {
            let bad: i64 = o.servers.iter().map(|s| s.failures).sum();
            (bad, bad + o.servers.iter().map(|s| s.successes).sum::<i64>())
        });
        Timings {
            detect_seconds: since(Phase::Testing, self.all_detected),
            route_around_seconds: since(Phase::Testing, self.routed),
            recover_seconds: since(Phase::Recovery, self.recovered),
            resolution_seconds: self.gap.as_secs_f64(),
            testing_failures: failures,
            testing_requests: total,
            testing_error_rate: failures as f64 / total.max(1) as f64,
        }
    }
}

type Shares = BTreeMap<String, f64>;

/// Each server's share of successes over a phase.
fn baseline_shares(o: &PhaseObservation) -> Shares {
    let total: i64 = o.servers.iter().map(|s| s.successes).sum();
    if total == 0 {
        return Shares::new();
    }
    o.servers.iter().map(|s| (s.name.clone(), s.successes as f64 / total as f64)).collect()
}

#[cfg(test)]
mod tests {
    use chaoslab_testenv::at;

    use super::*;
    use crate::{
        api::{Phases, ServerObservation},
        catalog::{latency, loss},
        client_metrics::ServerMetrics,
    };

    /// Stabilization 0–10 s, Testing 10–30 s, Recovery 30–50 s.
    fn plan() -> Plan {
        let p = |s: &str| s.parse().unwrap();
        Plan::new(at(0), &Phases { stabilization: p("10s"), testing: p("20s"), recovery: p("20s") })
    }

    fn names() -> Vec<String> {
        (0..3).map(|i| format!("server-{i}")).collect()
    }

    fn even_baseline() -> PhaseObservation {
        let servers =
            names().into_iter().map(|name| ServerObservation { name, successes: 1000, ..Default::default() }).collect();
        PhaseObservation { phase: Phase::Stabilization, samples: 10, servers }
    }

    /// A client at 300 successes a second, split by `weights`, breakers in `states` and opened
    /// `opens` times so far; `run` keeps the running totals.
    struct Client {
        totals: [f64; 3],
        opens: [f64; 3],
    }

    impl Client {
        fn new() -> Self {
            Self { totals: [0.0; 3], opens: [0.0; 3] }
        }

        /// One second of traffic with `weights`, breakers `states`.
        fn second(&mut self, weights: [f64; 3], states: [BreakerState; 3]) -> Scrape {
            let sum: f64 = weights.iter().sum();
            (0..3)
                .map(|i| {
                    self.totals[i] += 300.0 * weights[i] / sum;
                    if states[i] == BreakerState::Open && self.opens[i] == 0.0 {
                        self.opens[i] = 1.0;
                    }
                    let mut m =
                        ServerMetrics { success: self.totals[i], breaker: Some(states[i]), ..Default::default() };
                    m.transitions.insert((BreakerState::Closed, BreakerState::Open), self.opens[i]);
                    (format!("server-{i}"), m)
                })
                .collect()
        }
    }

    use BreakerState::{Closed, Open};

    /// A run sampled each second: even traffic, then from `detect_at` s into Testing server 0
    /// takes `faulted_weight` of the others' weight with its breaker `open`; back to even from
    /// `recover_at` s into Recovery.
    fn run(faults: &[Fault], detect_at: i64, faulted_weight: f64, open: bool, recover_at: i64) -> Timings {
        let mut w = Stopwatch::new(faults, &names());
        let mut c = Client::new();
        let baseline = even_baseline();
        for t in 0..=50 {
            let phase = plan().phase_at(at(t));
            let bad = (10 + detect_at..30 + recover_at).contains(&t);
            let s = if bad {
                c.second([faulted_weight, 1.0, 1.0], [if open { Open } else { Closed }, Closed, Closed])
            } else {
                c.second([1.0; 3], [Closed; 3])
            };
            w.record(at(t), phase, &s, (t >= 10).then_some(&baseline));
        }
        let testing = PhaseObservation {
            phase: Phase::Testing,
            samples: 20,
            servers: vec![
                ServerObservation { name: "server-0".into(), successes: 900, failures: 100, ..Default::default() },
                ServerObservation { name: "server-1".into(), successes: 1000, ..Default::default() },
            ],
        };
        w.timings(&plan(), at(0), Some(&testing))
    }

    #[test]
    fn a_dead_server_is_detected_when_its_breaker_opens_and_routed_around_when_it_gets_nothing() {
        let t = run(&[loss(0, 100.0)], 3, 0.0, true, 4);
        assert_eq!(t.detect_seconds, Some(3.0));
        // A second holds 300 successes: the window is one sample apart.
        assert_eq!(t.route_around_seconds, Some(3.0));
        assert_eq!(t.recover_seconds, Some(4.0));
        assert_eq!(t.resolution_seconds, 1.0);
        assert_eq!((t.testing_failures, t.testing_requests, t.testing_error_rate), (100, 2000, 0.05));
    }

    #[test]
    fn a_dead_server_whose_breaker_never_opens_is_never_detected() {
        let t = run(&[loss(0, 100.0)], 3, 0.0, false, 4);
        assert_eq!(t.detect_seconds, None, "its share fell, but only the fault did that");
        assert_eq!(t.route_around_seconds, Some(3.0), "routing is measured whatever the breakers do");
    }

    #[test]
    fn a_slow_server_is_detected_when_its_share_halves() {
        let t = run(&[latency(0, 500)], 2, 0.2, false, 1);
        assert_eq!(t.detect_seconds, Some(2.0));
        assert_eq!(t.route_around_seconds, None, "a fifth of an even share is not 5 %");
        let kept = run(&[latency(0, 500)], 2, 0.8, false, 1);
        assert_eq!(kept.detect_seconds, None, "a share cut by a fifth is not detection");
    }

    #[test]
    fn recovery_waits_for_closed_breakers_and_shares_back_in_band() {
        let never = run(&[loss(0, 100.0)], 3, 0.0, true, 30);
        assert_eq!(never.recover_seconds, None);
        let t = run(&[loss(0, 100.0)], 3, 0.0, true, 1);
        assert_eq!(t.recover_seconds, Some(1.0));
    }

    #[test]
    fn times_of_a_phase_not_watched_from_its_start_are_left_out() {
        let mut w = Stopwatch::new(&[loss(0, 100.0)], &names());
        let mut c = Client::new();
        for t in 15..=50 {
            w.record(at(t), plan().phase_at(at(t)), &c.second([0.0, 1.0, 1.0], [Open, Closed, Closed]), None);
        }
        let t = w.timings(&plan(), at(15), None);
        assert_eq!((t.detect_seconds, t.route_around_seconds), (None, None));
        assert_eq!((t.testing_failures, t.testing_error_rate), (0, 0.0));
    }
}
