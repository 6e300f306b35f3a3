//! The open model's account of its own schedule: what was due, what was sent and how late, and
//! the latency a closed-loop measurement would have reported beside the one from the schedule.
//! `--rate` must not fall short silently: [`ScheduleSummary::shortfall`] says when it did.

use std::{sync::Mutex, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::latency::LatencySummary;

/// Below this share of `--rate` the run warns.
pub const ACHIEVED_MIN: f64 = 0.99;

/// Recorded by each sent operation: how late it started, and how long it took from then.
pub struct ScheduleStats {
    lag: Mutex<Histogram<u64>>,
    service: Mutex<Histogram<u64>>,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().max(1) as u64
}

impl ScheduleStats {
    pub fn new(new_histogram: fn() -> Histogram<u64>) -> Self {
        Self { lag: Mutex::new(new_histogram()), service: Mutex::new(new_histogram()) }
    }

    pub fn record_lag(&self, lag: Duration) {
        self.lag.lock().unwrap_or_else(|e| e.into_inner()).saturating_record(micros(lag));
    }

    pub fn record_service(&self, service: Duration) {
        self.service.lock().unwrap_or_else(|e| e.into_inner()).saturating_record(micros(service));
    }

    /// The summary of a schedule of `due` sends at `rate` over `elapsed`, `missed` of them not sent.
    pub fn summary(&self, rate: f64, due: u64, missed: u64, elapsed: Duration) -> ScheduleSummary {
        let sent = due.saturating_sub(missed);
        let sent_per_sec = sent as f64 / elapsed.as_secs_f64().max(1e-9);
        ScheduleSummary {
            target_rate: rate,
            due,
            sent,
            missed,
            sent_per_sec,
            achieved: sent_per_sec / rate,
            lag_ms: LatencySummary::from_micros(&self.lag.lock().unwrap_or_else(|e| e.into_inner())),
            service_ms: LatencySummary::from_micros(&self.service.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

/// The open model's schedule as the run kept it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScheduleSummary {
    /// `--rate`, operations per second.
    pub target_rate: f64,
    /// Sends the schedule called for.
    pub due: u64,
    pub sent: u64,
    /// Due while `--concurrency` operations were in flight: not sent.
    pub missed: u64,
    /// Sends per second over the schedule's span.
    pub sent_per_sec: f64,
    /// `sent_per_sec / target_rate`.
    pub achieved: f64,
    /// How late sends started against their scheduled time (a busy machine, a slow timer).
    pub lag_ms: LatencySummary,
    /// Latency from the actual send: what a closed-loop measurement reports. The summary's
    /// `latency_ms` is from the scheduled time (coordinated omission corrected).
    pub service_ms: LatencySummary,
}

impl ScheduleSummary {
    /// Why the run fell short of `--rate`, when it sent less than [`ACHIEVED_MIN`] of it.
    pub fn shortfall(&self, concurrency: usize) -> Option<String> {
        if self.achieved >= ACHIEVED_MIN {
            return None;
        }
        let why = if self.missed > 0 {
            format!(
                "{} sends were due while all {concurrency} allowed were in flight: raise --concurrency (--pool-size keeps the connections where they are), or the servers are too slow for this rate",
                self.missed
            )
        } else {
            format!("sends started late (p99 {:.1} ms): the machine cannot keep this rate", self.lag_ms.p99)
        };
        Some(format!(
            "sent {:.0} ops/s, {:.1}% of --rate {}: {why}",
            self.sent_per_sec,
            self.achieved * 100.0,
            self.target_rate
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> ScheduleStats {
        ScheduleStats::new(|| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap())
    }

    #[test]
    fn a_schedule_kept_raises_nothing() {
        let s = stats();
        s.record_lag(Duration::from_micros(200));
        s.record_service(Duration::from_micros(900));
        let sum = s.summary(1000.0, 10_000, 0, Duration::from_secs(10));
        assert_eq!((sum.sent, sum.sent_per_sec, sum.achieved), (10_000, 1000.0, 1.0));
        assert_eq!(sum.lag_ms.p50, 0.2);
        assert_eq!(sum.shortfall(16), None);
    }

    #[test]
    fn missed_sends_are_a_shortfall_that_names_concurrency() {
        let sum = stats().summary(1000.0, 10_000, 500, Duration::from_secs(10));
        let why = sum.shortfall(16).unwrap();
        assert!(why.contains("95.0% of --rate 1000") && why.contains("all 16 allowed"), "{why}");
    }

    #[test]
    fn a_late_schedule_is_a_shortfall_that_names_the_lag() {
        let s = stats();
        s.record_lag(Duration::from_millis(40));
        // 9,800 sends over 10 s: the schedule itself ran slow.
        let why = s.summary(1000.0, 9_800, 0, Duration::from_secs(10)).shortfall(16).unwrap();
        assert!(why.contains("98.0%") && why.contains("started late (p99 40.0 ms)"), "{why}");
    }
}
