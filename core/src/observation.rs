//! Folding a phase's scrapes into a [`PhaseObservation`]: counter deltas over the phase and over
//! its late part, breaker states seen, transitions. Pure: scrapes and times come in as arguments.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jiff::{SignedDuration, Timestamp};

use crate::{
    api::{AbortSpec, Fault, Phase, PhaseObservation, ServerObservation, Timings},
    client_metrics::{BreakerState, Monotonic, Scrape, ServerMetrics},
    engine::Plan,
    timing::Stopwatch,
};

/// The late part of a phase starts after this share of it.
pub const LATE_FROM: f64 = 0.6;

/// Expects counters that never go down; [`RunRecorder`] makes them so.
#[derive(Clone, Debug)]
pub struct PhaseAccumulator {
    phase: Phase,
    late_start: Timestamp,
    /// Counters at the phase start: the last scrape before it, or the phase's first scrape.
    base: Option<Scrape>,
    late_base: Option<Scrape>,
    last: Option<Scrape>,
    samples: u32,
    seen: BTreeMap<String, BTreeSet<BreakerState>>,
}

impl PhaseAccumulator {
    /// `previous` is the last scrape before the phase started, if any, so that the phase's first
    /// seconds count too, and the breaker states the phase starts in are seen in it (a half-open
    /// trial begun just before Recovery closes its breaker in Recovery).
    pub fn new(phase: Phase, start: Timestamp, end: Timestamp, previous: Option<Scrape>) -> Self {
        let span = end.duration_since(start);
        let late_start = start + span.mul_f64(LATE_FROM);
        let mut acc =
            Self { phase, late_start, base: None, late_base: None, last: None, samples: 0, seen: BTreeMap::new() };
        if let Some(p) = &previous {
            acc.see(p);
        }
        acc.base = previous;
        acc
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn record(&mut self, at: Timestamp, scrape: Scrape) {
        if at >= self.late_start && self.late_base.is_none() {
            self.late_base = Some(self.last.clone().or_else(|| self.base.clone()).unwrap_or_else(|| scrape.clone()));
        }
        if self.base.is_none() {
            self.base = Some(scrape.clone());
        }
        self.see(&scrape);
        self.samples += 1;
        self.last = Some(scrape);
    }

    fn see(&mut self, scrape: &Scrape) {
        for (name, m) in scrape {
            if let Some(s) = m.breaker {
                self.seen.entry(name.clone()).or_default().insert(s);
            }
        }
    }

    pub fn finish(&self) -> PhaseObservation {
        let empty = Scrape::new();
        let last = self.last.as_ref().unwrap_or(&empty);
        let base = self.base.as_ref().unwrap_or(&empty);
        let late_base = self.late_base.as_ref().unwrap_or(last);
        let zero = ServerMetrics::default();
        let servers = last
            .iter()
            .map(|(name, now)| {
                let b = base.get(name).unwrap_or(&zero);
                let lb = late_base.get(name).unwrap_or(&zero);
                let d = |f: fn(&ServerMetrics) -> f64, from: &ServerMetrics| delta(f(now), f(from));
                let into = |to| delta(now.transitions_to(to), b.transitions_to(to));
                let (opened, half_opened, closed) =
                    (into(BreakerState::Open), into(BreakerState::HalfOpen), into(BreakerState::Closed));
                let mut states = self.seen.get(name).cloned().unwrap_or_default();
                for (count, state) in [
                    (opened, BreakerState::Open),
                    (half_opened, BreakerState::HalfOpen),
                    (closed, BreakerState::Closed),
                ] {
                    if count > 0 {
                        states.insert(state);
                    }
                }
                ServerObservation {
                    name: name.clone(),
                    successes: d(|m| m.success, b),
                    failures: d(|m| m.error + m.timeout, b),
                    rejected: d(|m| m.rejected, b),
                    late_successes: d(|m| m.success, lb),
                    late_failures: d(|m| m.error + m.timeout, lb),
                    breaker_states: states.iter().map(|s| s.label().to_string()).collect(),
                    final_breaker_state: now.breaker.map(|s| s.label().to_string()),
                    opened,
                    half_opened,
                    closed,
                    timed: d(|m| m.duration_count, b),
                    mean_latency_ms: mean_ms(now, b),
                    late_timed: d(|m| m.duration_count, lb),
                    late_mean_latency_ms: mean_ms(now, lb),
                }
            })
            .collect();
        PhaseObservation { phase: self.phase, samples: self.samples as i32, servers }
    }
}

/// The mean request duration between two readings of the histogram, in milliseconds.
fn mean_ms(now: &ServerMetrics, before: &ServerMetrics) -> Option<f64> {
    let count = now.duration_count - before.duration_count;
    (count >= 1.0).then(|| (now.duration_sum - before.duration_sum) / count * 1000.0)
}

/// A plain difference: counters come in monotonic.
fn delta(now: f64, before: f64) -> i64 {
    (now - before).round() as i64
}

/// Records a whole run: each scrape goes to the phase its time falls in, by the plan.
#[derive(Clone, Debug)]
pub struct RunRecorder {
    plan: Plan,
    current: Option<PhaseAccumulator>,
    finished: Vec<PhaseObservation>,
    /// The last scrape, adjusted like every scrape by `counters`.
    last: Option<Scrape>,
    counters: Monotonic,
    abort: Option<AbortRule>,
    /// (time, successes, failures) totals during Testing, for the abort rule.
    window: VecDeque<(Timestamp, f64, f64)>,
    stopwatch: Stopwatch,
    /// The first sample's time: phases that started before it were not watched from their start.
    first: Option<Timestamp>,
}

impl From<&AbortSpec> for AbortRule {
    fn from(spec: &AbortSpec) -> Self {
        Self { error_rate: spec.error_rate, window: spec.duration.0 }
    }
}

/// spec.abort: end Testing early when the client's error rate stays at or above `error_rate` for `window`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AbortRule {
    pub error_rate: f64,
    pub window: std::time::Duration,
}

impl RunRecorder {
    pub fn new(plan: Plan, abort: Option<AbortRule>) -> Self {
        let counters = Monotonic::default();
        let (stopwatch, window, first) = (Stopwatch::new(&[], &[]), VecDeque::new(), None);
        Self { plan, current: None, finished: Vec::new(), last: None, counters, abort, window, stopwatch, first }
    }

    /// The faults and target names the times are measured for (none: no time measured).
    pub fn set_targets(&mut self, faults: &[Fault], target_names: &[String]) {
        self.stopwatch.set_targets(faults, target_names);
    }

    /// Time to detect, route around and recover so far, and the errors of the finished Testing.
    pub fn timings(&self) -> Timings {
        let testing = self.finished.iter().find(|o| o.phase == Phase::Testing);
        self.stopwatch.timings(&self.plan, self.first.unwrap_or(Timestamp::MAX), testing)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Adopts a changed plan (an abort, an edited spec); phases already finished stay as they are.
    pub fn set_plan(&mut self, plan: Plan) {
        self.plan = plan;
    }

    /// Adopts an edited spec.abort. A changed rule judges only what follows, over a window of its own;
    /// setting the same rule again (each reconcile) keeps the window.
    pub fn set_abort(&mut self, abort: Option<AbortRule>) {
        if abort != self.abort {
            self.window.clear();
            self.abort = abort;
        }
    }

    pub fn abort(&self) -> Option<AbortRule> {
        self.abort
    }

    /// Records a raw scrape taken at `at` (its counters made monotonic first, as a client restart
    /// resets them). Returns the abort time when the abort rule fires.
    pub fn record(&mut self, at: Timestamp, scrape: Scrape) -> Option<Timestamp> {
        let scrape = self.counters.adjust(&scrape);
        self.close_until(at);
        self.first.get_or_insert(at);
        let phase = self.plan.phase_at(at);
        let baseline = self.finished.iter().find(|o| o.phase == Phase::Stabilization);
        self.stopwatch.record(at, phase, &scrape, baseline);
        if !Phase::TIMED.contains(&phase) {
            self.last = Some(scrape);
            return None;
        }
        if self.current.as_ref().map(PhaseAccumulator::phase) != Some(phase) {
            let (start, end) = self.bounds(phase);
            self.current = Some(PhaseAccumulator::new(phase, start, end, self.last.clone()));
        }
        let fired = if phase == Phase::Testing { self.check_abort(at, &scrape) } else { None };
        self.current.as_mut().expect("set above").record(at, scrape.clone());
        self.last = Some(scrape);
        fired
    }

    fn bounds(&self, phase: Phase) -> (Timestamp, Timestamp) {
        self.plan.bounds(phase).expect("only timed phases are recorded")
    }

    /// Finishes the phase in progress if the plan says it ended by `now`.
    pub fn close_until(&mut self, now: Timestamp) {
        if let Some(acc) = &self.current {
            let (_, end) = self.bounds(acc.phase());
            if now >= end {
                let acc = self.current.take().expect("checked");
                self.finished.push(acc.finish());
            }
        }
    }

    /// Observations of the phases finished so far, in order.
    pub fn finished(&self) -> &[PhaseObservation] {
        &self.finished
    }

    fn check_abort(&mut self, at: Timestamp, scrape: &Scrape) -> Option<Timestamp> {
        let rule = self.abort?;
        let ok: f64 = scrape.values().map(|m| m.success).sum();
        let bad: f64 = scrape.values().map(|m| m.error + m.timeout).sum();
        self.window.push_back((at, ok, bad));
        let window = SignedDuration::try_from(rule.window).unwrap_or(SignedDuration::MAX);
        // Keep one sample at or before the window start as its base.
        while self.window.len() > 2 && self.window[1].0 <= at - window {
            self.window.pop_front();
        }
        let (t0, ok0, bad0) = *self.window.front()?;
        if at.duration_since(t0) < window {
            return None;
        }
        let (d_ok, d_bad) = (ok - ok0, bad - bad0);
        let total = d_ok + d_bad;
        (total > 0.0 && d_bad / total >= rule.error_rate).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use chaoslab_testenv::at;

    use super::*;
    use crate::api::Phases;

    fn scrape(servers: &[(&str, f64, f64, BreakerState, f64)]) -> Scrape {
        servers
            .iter()
            .map(|(n, ok, err, state, opens)| {
                let mut m = ServerMetrics { success: *ok, timeout: *err, breaker: Some(*state), ..Default::default() };
                m.transitions.insert((BreakerState::Closed, BreakerState::Open), *opens);
                (n.to_string(), m)
            })
            .collect()
    }

    #[test]
    fn deltas_start_from_the_scrape_before_the_phase() {
        use BreakerState::*;
        let before = scrape(&[("a", 100.0, 0.0, Closed, 0.0)]);
        let mut acc = PhaseAccumulator::new(Phase::Testing, at(0), at(10), Some(before));
        // The breaker opened and closed again between scrapes: the transition counter still shows it.
        acc.record(at(2), scrape(&[("a", 110.0, 5.0, Closed, 1.0)]));
        acc.record(at(7), scrape(&[("a", 150.0, 5.0, Closed, 1.0)]));
        acc.record(at(10), scrape(&[("a", 190.0, 6.0, Closed, 1.0)]));
        let o = acc.finish();
        let s = &o.servers[0];
        assert_eq!(o.samples, 3);
        assert_eq!((s.successes, s.failures, s.opened), (90, 6, 1));
        // Late part starts at 6s: its base is the scrape at 2s.
        assert_eq!((s.late_successes, s.late_failures), (80, 1));
        assert_eq!(s.breaker_states, vec!["closed", "open"]);
        assert_eq!(s.final_breaker_state.as_deref(), Some("closed"));
    }

    #[test]
    fn the_states_a_phase_starts_in_are_seen_in_it() {
        use BreakerState::*;
        // Half-open at the last Testing scrape, closed by the first Recovery one.
        let before = scrape(&[("a", 10.0, 0.0, HalfOpen, 1.0)]);
        let mut acc = PhaseAccumulator::new(Phase::Recovery, at(0), at(10), Some(before));
        acc.record(at(1), scrape(&[("a", 20.0, 0.0, Closed, 1.0)]));
        assert_eq!(acc.finish().servers[0].breaker_states, ["closed", "half_open"]);
    }

    #[test]
    fn without_a_previous_scrape_the_first_one_is_the_base() {
        let mut acc = PhaseAccumulator::new(Phase::Stabilization, at(0), at(10), None);
        acc.record(at(1), scrape(&[("a", 10.0, 0.0, BreakerState::Closed, 0.0)]));
        acc.record(at(9), scrape(&[("a", 50.0, 2.0, BreakerState::Closed, 0.0)]));
        let s = &acc.finish().servers[0];
        assert_eq!((s.successes, s.failures), (40, 2));
    }

    #[test]
    fn no_scrapes_means_no_servers() {
        let o = PhaseAccumulator::new(Phase::Recovery, at(0), at(10), None).finish();
        assert_eq!((o.samples, o.servers.len()), (0, 0));
    }
    fn totals(ok: f64, bad: f64) -> Scrape {
        scrape(&[("a", ok, bad, BreakerState::Closed, 0.0)])
    }

    fn plan() -> Plan {
        let phases = Phases {
            stabilization: "10s".parse().unwrap(),
            testing: "10s".parse().unwrap(),
            recovery: "10s".parse().unwrap(),
        };
        Plan::new(at(0), &phases)
    }

    #[test]
    fn a_run_is_split_into_phases_by_the_plan() {
        let mut r = RunRecorder::new(plan(), None);
        for s in 0..=31 {
            r.record(at(s), totals(s as f64 * 10.0, 0.0));
        }
        let phases: Vec<_> = r.finished().iter().map(|o| (o.phase, o.samples)).collect();
        assert_eq!(phases, [(Phase::Stabilization, 10), (Phase::Testing, 10), (Phase::Recovery, 10)]);
        // Testing counts from the last Stabilization scrape (9s) to its last (19s).
        assert_eq!(r.finished()[1].servers[0].successes, 100);
    }

    #[test]
    fn close_until_finishes_a_phase_without_a_later_scrape() {
        let mut r = RunRecorder::new(plan(), None);
        r.record(at(1), totals(1.0, 0.0));
        r.record(at(9), totals(9.0, 0.0));
        assert!(r.finished().is_empty());
        r.close_until(at(10));
        assert_eq!(r.finished().len(), 1);
    }

    #[test]
    fn the_abort_rule_fires_after_a_sustained_error_rate() {
        let rule = AbortRule { error_rate: 0.5, window: std::time::Duration::from_secs(3) };
        let mut r = RunRecorder::new(plan(), Some(rule));
        let mut fired = None;
        for s in 0..20 {
            // Healthy until 12s, then 80 % failures.
            let (ok, bad) =
                if s <= 12 { (s as f64 * 10.0, 0.0) } else { (120.0 + (s - 12) as f64 * 2.0, (s - 12) as f64 * 8.0) };
            if let Some(t) = r.record(at(s), totals(ok, bad)) {
                fired.get_or_insert(t);
            }
        }
        // Window 11s..14s: 30 requests, 16 failed (53 %).
        assert_eq!(fired, Some(at(14)), "fires once the trailing 3s error rate reaches 50 %");
        // Stabilization errors never fire it.
        let mut r = RunRecorder::new(plan(), Some(rule));
        assert!((0..10).all(|s| r.record(at(s), totals(0.0, s as f64 * 10.0)).is_none()));
    }

    #[test]
    fn an_abort_rule_set_mid_testing_takes_effect_from_then_on() {
        let rule = AbortRule { error_rate: 0.5, window: std::time::Duration::from_secs(3) };
        let mut r = RunRecorder::new(plan(), None);
        let mut fired = Vec::new();
        for s in 0..19 {
            // As the operator does on every reconcile, from 14s on.
            if s >= 14 {
                r.set_abort(Some(rule));
            }
            // Healthy until 12s, then 80 % failures.
            let (ok, bad) =
                if s <= 12 { (s as f64 * 10.0, 0.0) } else { (120.0 + (s - 12) as f64 * 2.0, (s - 12) as f64 * 8.0) };
            fired.extend(r.record(at(s), totals(ok, bad)));
        }
        // The window starts when the rule is set: 14s..17s.
        assert_eq!(fired.first(), Some(&at(17)));
        r.set_abort(None);
        assert_eq!(r.record(at(19), totals(134.0, 56.0)), None);
    }

    /// Successes and Closed→Open transitions of server `a` in the finished phases that list it.
    fn counted(r: &RunRecorder) -> Vec<(Phase, i64, i64)> {
        r.finished()
            .iter()
            .filter_map(|o| {
                let a = o.servers.iter().find(|s| s.name == "a")?;
                Some((o.phase, a.successes, a.opened))
            })
            .collect()
    }

    #[test]
    fn a_restart_mid_phase_counts_every_step() {
        use BreakerState::*;
        let mut r = RunRecorder::new(plan(), None);
        // The client restarts between 4s and 6s: 50 before it, 10 + 20 after; one opening each side.
        for (s, ok, opens) in [(1, 100.0, 2.0), (4, 150.0, 3.0), (6, 10.0, 0.0), (9, 30.0, 1.0)] {
            r.record(at(s), scrape(&[("a", ok, 0.0, Closed, opens)]));
        }
        r.close_until(at(10));
        assert_eq!(counted(&r), [(Phase::Stabilization, 80, 2)]);
    }

    #[test]
    fn a_restart_across_a_phase_boundary() {
        let mut r = RunRecorder::new(plan(), None);
        // Restarted between 9s and 11s, then counts past its old total.
        for (s, ok) in [(1, 100.0), (9, 500.0), (11, 20.0), (15, 300.0), (19, 600.0)] {
            r.record(at(s), totals(ok, 0.0));
        }
        r.close_until(at(20));
        assert_eq!(counted(&r), [(Phase::Stabilization, 400, 0), (Phase::Testing, 600, 0)]);
    }

    #[test]
    fn a_server_missing_from_a_scrape_keeps_its_count() {
        use BreakerState::*;
        let mut r = RunRecorder::new(plan(), None);
        r.record(at(1), scrape(&[("a", 100.0, 0.0, Closed, 0.0), ("b", 100.0, 0.0, Closed, 0.0)]));
        // Testing's base scrape lacks a: it must count from a's last value, not from zero.
        r.record(at(9), scrape(&[("b", 190.0, 0.0, Closed, 0.0)]));
        r.record(at(11), scrape(&[("a", 120.0, 0.0, Closed, 0.0), ("b", 200.0, 0.0, Closed, 0.0)]));
        r.record(at(19), scrape(&[("a", 200.0, 0.0, Closed, 0.0), ("b", 280.0, 0.0, Closed, 0.0)]));
        r.close_until(at(20));
        assert_eq!(counted(&r).last(), Some(&(Phase::Testing, 100, 0)));
    }

    /// Server `a` with its duration histogram at `sum` seconds over `count` requests.
    fn timed(sum: f64, count: f64) -> Scrape {
        let m = ServerMetrics { duration_sum: sum, duration_count: count, ..Default::default() };
        [("a".to_string(), m)].into()
    }

    #[test]
    fn the_mean_latency_is_the_histograms_over_the_phase_across_a_restart() {
        let mut r = RunRecorder::new(plan(), None);
        // Stabilization: 100 requests of 2 ms. Testing: 50 of 100 ms, a restart, then 50 more.
        for (s, sum, count) in [(1, 0.0, 0.0), (9, 0.2, 100.0), (13, 5.2, 150.0), (15, 2.0, 20.0), (19, 5.0, 50.0)] {
            r.record(at(s), timed(sum, count));
        }
        r.close_until(at(20));
        let a: Vec<_> = r.finished().iter().map(|o| (o.servers[0].timed, o.servers[0].mean_latency_ms)).collect();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].0, 100);
        assert!((a[0].1.unwrap() - 2.0).abs() < 1e-9, "{a:?}");
        assert_eq!(a[1].0, 100);
        assert!((a[1].1.unwrap() - 100.0).abs() < 1e-9, "{a:?}");
        // Late Testing (from 16s) counts from the scrape at 15s, after the restart.
        let testing = &r.finished()[1].servers[0];
        assert_eq!(testing.late_timed, 30);
        assert!((testing.late_mean_latency_ms.unwrap() - 100.0).abs() < 1e-9, "{testing:?}");
    }

    #[test]
    fn no_timed_request_has_no_mean_latency() {
        let mut acc = PhaseAccumulator::new(Phase::Testing, at(0), at(10), None);
        acc.record(at(1), timed(1.0, 10.0));
        acc.record(at(9), timed(1.0, 10.0));
        let s = &acc.finish().servers[0];
        assert_eq!((s.timed, s.mean_latency_ms), (0, None));
    }

    /// The first abort time over a run scraped every second, with `at_second` giving raw totals.
    fn first_abort(rule: AbortRule, at_second: impl Fn(i64) -> (f64, f64)) -> Option<Timestamp> {
        let mut r = RunRecorder::new(plan(), Some(rule));
        (0..20).find_map(|s| {
            let (ok, bad) = at_second(s);
            r.record(at(s), totals(ok, bad))
        })
    }

    #[test]
    fn a_restart_does_not_hide_a_sustained_error_rate() {
        let rule = AbortRule { error_rate: 0.5, window: std::time::Duration::from_secs(8) };
        // Healthy until 12s, then the client restarts and 80 % of its requests fail.
        let fired = first_abort(rule, |s| {
            if s <= 12 { (s as f64 * 10.0, 0.0) } else { ((s - 12) as f64 * 2.0, (s - 12) as f64 * 8.0) }
        });
        // Window 10s..18s: 32 successes, 48 failures (60 %). Raw differences stay below zero
        // until the window starts after the restart, which is after Testing.
        assert_eq!(fired, Some(at(18)));
    }

    #[test]
    fn a_restart_does_not_fire_the_abort_rule() {
        let rule = AbortRule { error_rate: 0.5, window: std::time::Duration::from_secs(3) };
        // 5 successes a second until 12s; after a restart 7 successes and 3 failures a second (30 %).
        let fired = first_abort(rule, |s| {
            if s <= 12 { ((s - 9).max(0) as f64 * 5.0, 0.0) } else { ((s - 12) as f64 * 7.0, (s - 12) as f64 * 3.0) }
        });
        // Raw differences over 10s..13s: 2 more successes (5 → 7), 3 more failures: 60 %.
        assert_eq!(fired, None);
    }
}
