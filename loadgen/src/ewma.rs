//! A peak-sensitive, time-decaying latency average (Finagle's "peak EWMA"), the latency half of
//! the router's cost.
//!
//! - A sample above the current value replaces it at once: a server turning slow is noticed on
//!   its first slow reply.
//! - Otherwise samples are blended with a weight that depends on the time since the previous one
//!   (time constant `tau`), so the average forgets at the same speed whatever the request rate.
//! - Between samples the value decays towards zero, so a server that was slow and has since been
//!   avoided looks cheaper and cheaper until it gets a request again: that is how traffic finds a
//!   server that has recovered.

use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Ewma {
    tau: f64,
    value: f64,
    stamp: Option<Instant>,
}

impl Ewma {
    pub fn new(tau: Duration) -> Self {
        Self { tau: tau.as_secs_f64().max(1e-6), value: 0.0, stamp: None }
    }

    /// The average in seconds as of `now` (decayed since the last sample).
    pub fn get(&self, now: Instant) -> f64 {
        match self.stamp {
            None => 0.0,
            Some(t) => self.value * self.weight(now.saturating_duration_since(t)),
        }
    }

    pub fn observe(&mut self, now: Instant, sample: Duration) {
        let s = sample.as_secs_f64();
        let w = match self.stamp {
            None => 0.0,
            Some(t) => self.weight(now.saturating_duration_since(t)),
        };
        let decayed = self.value * w;
        self.value = if s > decayed { s } else { decayed + s * (1.0 - w) };
        self.stamp = Some(self.stamp.map_or(now, |t| t.max(now)));
    }

    /// Forgets everything (a breaker going half-open: the past says nothing about the trial).
    pub fn reset(&mut self) {
        self.value = 0.0;
        self.stamp = None;
    }

    fn weight(&self, elapsed: Duration) -> f64 {
        (-elapsed.as_secs_f64() / self.tau).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAU: Duration = Duration::from_secs(1);

    fn ms(v: f64) -> f64 {
        v / 1000.0
    }

    #[test]
    fn empty_is_zero_and_first_sample_is_taken_as_is() {
        let t0 = Instant::now();
        let mut e = Ewma::new(TAU);
        assert_eq!(e.get(t0), 0.0);
        e.observe(t0, Duration::from_millis(2));
        assert!((e.get(t0) - ms(2.0)).abs() < 1e-12);
    }

    #[test]
    fn a_peak_is_taken_at_once() {
        let t0 = Instant::now();
        let mut e = Ewma::new(TAU);
        e.observe(t0, Duration::from_millis(1));
        e.observe(t0 + Duration::from_millis(1), Duration::from_millis(500));
        assert!((e.get(t0 + Duration::from_millis(1)) - ms(500.0)).abs() < 1e-9);
    }

    #[test]
    fn lower_samples_pull_it_down_at_a_time_based_pace() {
        let t0 = Instant::now();
        let mut e = Ewma::new(TAU);
        e.observe(t0, Duration::from_millis(100));
        // A thousand fast samples within 10 ms barely move it (10 ms << tau)...
        for i in 1..=1000 {
            e.observe(t0 + Duration::from_micros(10 * i), Duration::from_millis(1));
        }
        let v = e.get(t0 + Duration::from_millis(10));
        assert!(v > ms(95.0) && v < ms(100.0), "{v}");
        // ...while one sample after a long pause replaces it almost entirely.
        e.observe(t0 + Duration::from_secs(10), Duration::from_millis(1));
        assert!((e.get(t0 + Duration::from_secs(10)) - ms(1.0)).abs() < ms(0.01));
    }

    #[test]
    fn decays_towards_zero_without_samples() {
        let t0 = Instant::now();
        let mut e = Ewma::new(TAU);
        e.observe(t0, Duration::from_millis(500));
        let after_tau = e.get(t0 + TAU);
        assert!((after_tau - ms(500.0) / std::f64::consts::E).abs() < 1e-9);
        assert!(e.get(t0 + TAU * 10) < ms(0.03));
    }

    #[test]
    fn reset_forgets() {
        let t0 = Instant::now();
        let mut e = Ewma::new(TAU);
        e.observe(t0, Duration::from_millis(500));
        e.reset();
        assert_eq!(e.get(t0), 0.0);
    }
}
