//! Folding a phase's scrapes into a [`PhaseObservation`]: counter deltas over the phase and over
//! its late part, breaker states seen, transitions. Pure: scrapes and times come in as arguments.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use crate::{
    api::{Phase, PhaseObservation, ServerObservation},
    client_metrics::{BreakerState, Scrape, ServerMetrics},
};

/// The late part of a phase starts after this share of it.
pub const LATE_FROM: f64 = 0.6;

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
    /// seconds count too.
    pub fn new(phase: Phase, start: Timestamp, end: Timestamp, previous: Option<Scrape>) -> Self {
        let span = end.duration_since(start);
        let late_start = start + span.mul_f64(LATE_FROM);
        Self { phase, late_start, base: previous, late_base: None, last: None, samples: 0, seen: BTreeMap::new() }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The most recent scrape (the next phase's `previous`).
    pub fn last(&self) -> Option<&Scrape> {
        self.last.as_ref()
    }

    pub fn record(&mut self, at: Timestamp, scrape: Scrape) {
        if at >= self.late_start && self.late_base.is_none() {
            self.late_base = Some(self.last.clone().or_else(|| self.base.clone()).unwrap_or_else(|| scrape.clone()));
        }
        if self.base.is_none() {
            self.base = Some(scrape.clone());
        }
        for (name, m) in &scrape {
            if let Some(s) = m.breaker {
                self.seen.entry(name.clone()).or_default().insert(s);
            }
        }
        self.samples += 1;
        self.last = Some(scrape);
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
                }
            })
            .collect();
        PhaseObservation { phase: self.phase, samples: self.samples as i32, servers }
    }
}

/// A counter delta; a counter that went down was reset (client restart), so count from zero.
fn delta(now: f64, before: f64) -> i64 {
    let d = if now >= before { now - before } else { now };
    d.round() as i64
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(s)
    }

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
    fn without_a_previous_scrape_the_first_one_is_the_base() {
        let mut acc = PhaseAccumulator::new(Phase::Stabilization, at(0), at(10), None);
        acc.record(at(1), scrape(&[("a", 10.0, 0.0, BreakerState::Closed, 0.0)]));
        acc.record(at(9), scrape(&[("a", 50.0, 2.0, BreakerState::Closed, 0.0)]));
        let s = &acc.finish().servers[0];
        assert_eq!((s.successes, s.failures), (40, 2));
    }

    #[test]
    fn a_counter_reset_counts_from_zero() {
        assert_eq!(delta(5.0, 100.0), 5);
        assert_eq!(delta(105.0, 100.0), 5);
    }

    #[test]
    fn no_scrapes_means_no_servers() {
        let o = PhaseAccumulator::new(Phase::Recovery, at(0), at(10), None).finish();
        assert_eq!((o.samples, o.servers.len()), (0, 0));
    }
}
