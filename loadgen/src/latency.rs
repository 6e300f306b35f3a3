//! A latency histogram summed up in milliseconds, shared by the run's summary and the schedule's.

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencySummary {
    /// From a histogram of microseconds, in milliseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self { p50: 0.0, p90: 0.0, p99: 0.0, p999: 0.0, max: 0.0, mean: 0.0 };
        }
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_in_milliseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let l = LatencySummary::from_micros(&h);
        assert!((l.p50 - 0.5).abs() < 0.01 && (l.p99 - 0.99).abs() < 0.01 && (l.max - 1.0).abs() < 0.01, "{l:?}");
        assert_eq!(LatencySummary::from_micros(&Histogram::new(3).unwrap()).p99, 0.0);
    }
}
