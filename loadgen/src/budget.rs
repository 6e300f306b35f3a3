//! The retry budget: retries may add at most `ratio` to the requests, plus a small floor of
//! `min_per_sec` so that a client with little traffic can still retry, and at most `burst` retries
//! can be saved up. Without a budget, retries double the load on a cluster exactly when it is
//! failing (a retry storm); with one, they stay a bounded fraction of it.
//!
//! Pure: the caller passes the time and the number of first attempts sent so far (from counters
//! it keeps anyway), so deposits cost nothing on the success path.

use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// At most one retry per request; set false to never retry.
    pub enabled: bool,
    /// Retries allowed per first attempt (0.2 = retries add at most 20 % to the requests).
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic.
    pub min_per_sec: f64,
    /// Most retries that can be saved up.
    pub burst: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { enabled: true, ratio: 0.2, min_per_sec: 10.0, burst: 100.0 }
    }
}

#[derive(Clone, Debug)]
pub struct RetryBudget {
    cfg: RetryConfig,
    balance: f64,
    seen_requests: u64,
    last: Option<Instant>,
}

impl RetryBudget {
    pub fn new(cfg: RetryConfig) -> Self {
        Self { cfg, balance: 0.0, seen_requests: 0, last: None }
    }

    /// Whether retries are on at all (`--no-retry` turns them off).
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Takes one retry from the budget if there is one. `requests` is the number of first attempts
    /// sent so far, retries excluded; a value below an earlier one deposits nothing.
    pub fn try_withdraw(&mut self, now: Instant, requests: u64) -> bool {
        if !self.cfg.enabled {
            return false;
        }
        let new_requests = requests.saturating_sub(self.seen_requests);
        self.seen_requests = self.seen_requests.max(requests);
        // The first call starts with one second's floor, so a budget is usable from the start.
        let elapsed = self.last.map_or(Duration::from_secs(1), |t| now.saturating_duration_since(t));
        self.last = Some(self.last.map_or(now, |t| t.max(now)));
        self.balance =
            (self.balance + new_requests as f64 * self.cfg.ratio + elapsed.as_secs_f64() * self.cfg.min_per_sec)
                .min(self.cfg.burst);
        if self.balance >= 1.0 {
            self.balance -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ratio: f64, min_per_sec: f64, burst: f64) -> RetryConfig {
        RetryConfig { enabled: true, ratio, min_per_sec, burst }
    }

    fn drain(b: &mut RetryBudget, now: Instant, requests: u64) -> usize {
        (0..10_000).take_while(|_| b.try_withdraw(now, requests)).count()
    }

    #[test]
    fn retries_are_a_fraction_of_requests() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(0.2, 0.0, 1000.0));
        assert_eq!(drain(&mut b, t0, 100), 20);
        assert_eq!(drain(&mut b, t0, 100), 0, "the same requests do not pay twice");
        assert_eq!(drain(&mut b, t0, 90), 0, "nor do they after a dip");
        assert_eq!(drain(&mut b, t0, 150), 10);
    }

    #[test]
    fn a_floor_per_second_without_traffic() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(0.2, 10.0, 1000.0));
        assert_eq!(drain(&mut b, t0, 0), 10, "one second's floor to start with");
        assert_eq!(drain(&mut b, t0 + Duration::from_millis(500), 0), 5);
    }

    #[test]
    fn savings_are_capped() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(0.2, 10.0, 100.0));
        assert!(b.try_withdraw(t0, 0));
        // An hour of healthy traffic banks at most `burst` retries.
        assert_eq!(drain(&mut b, t0 + Duration::from_secs(3600), 1_000_000), 100);
    }

    #[test]
    fn disabled_never_retries() {
        let mut b = RetryBudget::new(RetryConfig { enabled: false, ..RetryConfig::default() });
        assert!(!b.try_withdraw(Instant::now(), 1_000_000));
    }
}
