//! Counters that never go down: a client that restarts counts from zero again, and a reading below
//! the last one is taken as Prometheus's `increase()` takes it.

use super::{Scrape, ServerMetrics};

/// A counter's increase between two raw readings, as Prometheus's `increase()` takes it: a reading
/// below the last one means the client restarted and has counted from zero since.
fn increase(now: f64, last: f64) -> f64 {
    if now >= last { now - last } else { now }
}

/// Turns raw scrapes into scrapes whose counters never go down, so that phase deltas and the abort
/// window are plain differences however often the client restarts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Monotonic {
    /// Per server, the last raw counter values, kept while its label is missing (it may come back).
    raw: Scrape,
    /// Per server, the sum of its counters' increases so far.
    adjusted: Scrape,
}

impl Monotonic {
    /// Counting from `scrape` on: a replica first seen mid-run brings its whole history, which is
    /// not the run's.
    pub(crate) fn starting_at(scrape: &Scrape) -> Self {
        Self { raw: scrape.clone(), adjusted: Scrape::new() }
    }

    /// `scrape` with adjusted counters and its own gauges. A server it lacks keeps its adjusted
    /// counters (without gauges): totals must not dip, nor a later phase count its whole history.
    pub(crate) fn adjust(&mut self, scrape: &Scrape) -> Scrape {
        for (name, now) in scrape {
            let last = self.raw.entry(name.clone()).or_default();
            add_increases(self.adjusted.entry(name.clone()).or_default(), now, last);
            remember(last, now);
        }
        self.adjusted
            .iter()
            .map(|(name, counters)| {
                let gauges = scrape.get(name).cloned().unwrap_or_default();
                let m = ServerMetrics {
                    breaker: gauges.breaker,
                    pool_active: gauges.pool_active,
                    pool_idle: gauges.pool_idle,
                    ..counters.clone()
                };
                (name.clone(), m)
            })
            .collect()
    }
}

fn add_increases(adjusted: &mut ServerMetrics, now: &ServerMetrics, last: &ServerMetrics) {
    adjusted.success += increase(now.success, last.success);
    adjusted.error += increase(now.error, last.error);
    adjusted.timeout += increase(now.timeout, last.timeout);
    adjusted.rejected += increase(now.rejected, last.rejected);
    adjusted.duration_sum += increase(now.duration_sum, last.duration_sum);
    adjusted.duration_count += increase(now.duration_count, last.duration_count);
    for (key, v) in &now.transitions {
        let before = last.transitions.get(key).copied().unwrap_or(0.0);
        *adjusted.transitions.entry(*key).or_default() += increase(*v, before);
    }
}

/// Keeps `now` as the last raw reading, and the transition series it lacks at their last values.
fn remember(last: &mut ServerMetrics, now: &ServerMetrics) {
    let mut transitions = std::mem::take(&mut last.transitions);
    transitions.extend(&now.transitions);
    *last = ServerMetrics { transitions, ..now.clone() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_reset_counts_from_zero() {
        assert_eq!(increase(5.0, 100.0), 5.0);
        assert_eq!(increase(105.0, 100.0), 5.0);
    }
}
