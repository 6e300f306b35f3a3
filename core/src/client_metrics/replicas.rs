//! Many replicas of one client as one: counters added up, each replica's made monotonic first (a
//! replica that restarts counts from zero, one that goes away keeps what it counted, one that
//! appears mid-run counts from its first reading); a server's breaker is in the state most
//! replicas report, a tie going to the less healthy state.

use std::collections::{BTreeMap, BTreeSet};

use chaoslab_contract::BreakerState;

use super::{Scrape, ServerMetrics, monotonic::Monotonic};

#[derive(Clone, Debug, Default)]
pub struct Replicas {
    counters: BTreeMap<String, Monotonic>,
    /// Every replica ever read, and those in the last reading.
    seen: BTreeSet<String>,
    current: BTreeSet<String>,
}

impl Replicas {
    /// The whole client from each replica's scrape now, by replica name (a pod, an instance).
    pub fn combine(&mut self, now: &BTreeMap<String, Scrape>) -> Scrape {
        let mut adjusted = BTreeMap::new();
        for (replica, scrape) in now {
            let counters = self.counters.entry(replica.clone()).or_insert_with(|| Monotonic::starting_at(scrape));
            adjusted.insert(replica.clone(), counters.adjust(scrape));
        }
        // Replicas not read now still count what they counted.
        for (replica, counters) in &mut self.counters {
            adjusted.entry(replica.clone()).or_insert_with(|| counters.adjust(&Scrape::new()));
        }
        self.seen.extend(now.keys().cloned());
        self.current = now.keys().cloned().collect();
        let mut out = Scrape::new();
        for one in adjusted.values() {
            for (server, m) in one {
                add(out.entry(server.clone()).or_default(), m);
            }
        }
        for (server, m) in &mut out {
            m.breaker = majority(now.values().filter_map(|s| s.get(server)?.breaker));
        }
        out
    }

    /// Replicas read before that are not in the last reading.
    pub fn gone(&self) -> Vec<&str> {
        self.seen.difference(&self.current).map(String::as_str).collect()
    }

    pub fn current(&self) -> Vec<&str> {
        self.current.iter().map(String::as_str).collect()
    }
}

fn add(total: &mut ServerMetrics, m: &ServerMetrics) {
    total.success += m.success;
    total.error += m.error;
    total.timeout += m.timeout;
    total.rejected += m.rejected;
    total.duration_sum += m.duration_sum;
    total.duration_count += m.duration_count;
    total.pool_active += m.pool_active;
    total.pool_idle += m.pool_idle;
    for (k, v) in &m.transitions {
        *total.transitions.entry(*k).or_default() += v;
    }
}

/// The state most replicas are in; on a tie, the least healthy of the tied states.
fn majority(states: impl Iterator<Item = BreakerState>) -> Option<BreakerState> {
    let mut counts: BTreeMap<BreakerState, usize> = BTreeMap::new();
    for s in states {
        *counts.entry(s).or_default() += 1;
    }
    // BreakerState orders Closed < HalfOpen < Open: max_by_key keeps the last (least healthy) of equals.
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(ok: f64, breaker: BreakerState) -> Scrape {
        Scrape::from([("s".to_string(), ServerMetrics { success: ok, breaker: Some(breaker), ..Default::default() })])
    }

    fn reading(replicas: &[(&str, f64, BreakerState)]) -> BTreeMap<String, Scrape> {
        replicas.iter().map(|(r, ok, b)| (r.to_string(), one(*ok, *b))).collect()
    }

    use BreakerState::{Closed, HalfOpen, Open};

    #[test]
    fn counters_add_up_across_restarts_departures_and_arrivals() {
        let mut r = Replicas::default();
        let total = |r: &mut Replicas, x: &[(&str, f64, BreakerState)]| r.combine(&reading(x))["s"].success;
        assert_eq!(total(&mut r, &[("a", 100.0, Closed), ("b", 50.0, Closed)]), 0.0, "the first reading is the base");
        assert_eq!(total(&mut r, &[("a", 130.0, Closed), ("b", 60.0, Closed)]), 40.0);
        // b restarts: 60 → 5 is 5 more, not 55 fewer.
        assert_eq!(total(&mut r, &[("a", 140.0, Closed), ("b", 5.0, Closed)]), 55.0);
        // b goes away: what it counted stays.
        assert_eq!(total(&mut r, &[("a", 150.0, Closed)]), 65.0);
        assert_eq!(r.gone(), ["b"]);
        // c arrives with a history of 10,000: only what it counts from now on is the run's.
        assert_eq!(total(&mut r, &[("a", 150.0, Closed), ("c", 10_000.0, Closed)]), 65.0);
        assert_eq!(total(&mut r, &[("a", 151.0, Closed), ("c", 10_009.0, Closed)]), 75.0);
        assert_eq!(r.current(), ["a", "c"]);
    }

    #[test]
    fn a_breaker_is_in_the_state_most_replicas_report() {
        let mut r = Replicas::default();
        let state = |r: &mut Replicas, x: &[(&str, f64, BreakerState)]| r.combine(&reading(x))["s"].breaker;
        assert_eq!(state(&mut r, &[("a", 0.0, Open), ("b", 0.0, Open), ("c", 0.0, Closed)]), Some(Open));
        assert_eq!(state(&mut r, &[("a", 0.0, Closed), ("b", 0.0, Closed), ("c", 0.0, Open)]), Some(Closed));
        assert_eq!(state(&mut r, &[("a", 0.0, Closed), ("b", 0.0, HalfOpen)]), Some(HalfOpen), "a tie");
        assert_eq!(state(&mut r, &[("a", 0.0, Open), ("b", 0.0, HalfOpen), ("c", 0.0, Closed)]), Some(Open));
    }
}
