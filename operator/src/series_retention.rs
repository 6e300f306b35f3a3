//! When a finished scenario's metric series go: a while after it is labelled finished (see
//! `finished.rs`), long enough for Prometheus to scrape its final phase and measured times many
//! times over. Without it they stayed until the scenario was deleted: about 4.5 KiB for each run
//! the process had made, so an operator beside a cluster that keeps its finished scenarios grew
//! with every run. Afterwards the process exports what a restarted operator would: nothing for a
//! finished scenario (its status keeps the result, Prometheus the history).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Scenarios (by metric key) whose series go at a due time, in that order: one delay for all.
pub struct Retention {
    keep: Duration,
    due: VecDeque<(String, Instant)>,
}

impl Retention {
    pub fn new(keep: Duration) -> Self {
        Self { keep, due: VecDeque::new() }
    }

    /// `scenario` was seen finished at `now`; a scenario already waiting keeps its earlier time.
    pub fn finished(&mut self, scenario: &str, now: Instant) {
        if !self.due.iter().any(|(s, _)| s == scenario) {
            self.due.push_back((scenario.to_string(), now + self.keep));
        }
    }

    /// `scenario` is gone (deleted, or no longer labelled finished): nothing waits for it.
    pub fn gone(&mut self, scenario: &str) {
        self.due.retain(|(s, _)| s != scenario);
    }

    /// When the next one is due.
    pub fn next(&self) -> Option<Instant> {
        self.due.front().map(|(_, at)| *at)
    }

    /// Takes the scenarios due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let n = self.due.iter().take_while(|(_, at)| *at <= now).count();
        self.due.drain(..n).map(|(s, _)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Duration = Duration::from_secs(600);

    #[test]
    fn series_go_in_the_order_their_scenarios_finished_after_the_delay() {
        let mut r = Retention::new(KEEP);
        let t0 = Instant::now();
        r.finished("ns/a", t0);
        r.finished("ns/b", t0 + Duration::from_secs(5));
        assert_eq!(r.next(), Some(t0 + KEEP));
        assert!(r.take_due(t0 + KEEP - Duration::from_millis(1)).is_empty());
        assert_eq!(r.take_due(t0 + KEEP), ["ns/a"]);
        assert_eq!(r.next(), Some(t0 + KEEP + Duration::from_secs(5)));
        assert_eq!(r.take_due(t0 + KEEP * 2), ["ns/b"]);
        assert_eq!(r.next(), None);
    }

    /// The finished watch sees a scenario again at each change of its metadata.
    #[test]
    fn seen_again_it_keeps_its_first_time() {
        let mut r = Retention::new(KEEP);
        let t0 = Instant::now();
        r.finished("ns/a", t0);
        r.finished("ns/a", t0 + Duration::from_secs(60));
        assert_eq!(r.take_due(t0 + KEEP), ["ns/a"]);
        assert!(r.take_due(t0 + KEEP * 2).is_empty());
    }

    /// A scenario deleted, then created again under the same name and running: its new series must
    /// not go at the old one's time.
    #[test]
    fn a_scenario_gone_waits_no_more() {
        let mut r = Retention::new(KEEP);
        let t0 = Instant::now();
        r.finished("ns/a", t0);
        r.finished("ns/b", t0);
        r.gone("ns/a");
        assert_eq!(r.take_due(t0 + KEEP), ["ns/b"]);
    }
}
