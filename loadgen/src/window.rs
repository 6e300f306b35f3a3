//! A time-based sliding window of call outcomes (resilience4j's TIME_BASED window): one bucket per
//! second, the window is the last N buckets. Totals are kept incrementally; buckets that fall out
//! of the window are subtracted when time moves on. Time is always an argument.

use std::time::{Duration, Instant};

/// Calls, failed calls and slow calls (a failed call can be slow too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub calls: u32,
    pub failures: u32,
    pub slow: u32,
}

impl Counts {
    pub fn record(&mut self, failure: bool, slow: bool) {
        self.calls += 1;
        self.failures += u32::from(failure);
        self.slow += u32::from(slow);
    }

    /// Failures in percent of calls (0 with no calls).
    pub fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    /// Slow calls in percent of calls (0 with no calls).
    pub fn slow_rate(&self) -> f64 {
        percent(self.slow, self.calls)
    }

    fn sub(&mut self, o: Counts) {
        self.calls -= o.calls;
        self.failures -= o.failures;
        self.slow -= o.slow;
    }
}

fn percent(n: u32, of: u32) -> f64 {
    if of == 0 { 0.0 } else { f64::from(n) * 100.0 / f64::from(of) }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    second: u64,
    counts: Counts,
}

#[derive(Clone, Debug)]
pub struct SlidingWindow {
    origin: Instant,
    buckets: Box<[Bucket]>,
    total: Counts,
}

impl SlidingWindow {
    /// A window of `size` rounded up to whole seconds (at least one), counting seconds from `origin`.
    pub fn new(size: Duration, origin: Instant) -> Self {
        let secs = size.as_secs() + u64::from(size.subsec_nanos() > 0);
        Self {
            origin,
            buckets: vec![Bucket::default(); secs.max(1) as usize].into_boxed_slice(),
            total: Counts::default(),
        }
    }

    pub fn record(&mut self, now: Instant, failure: bool, slow: bool) {
        let cur = self.second(now);
        self.evict(cur);
        let n = self.buckets.len() as u64;
        let b = &mut self.buckets[(cur % n) as usize];
        // A bucket with the same slot and an older second was evicted above; a newer second means
        // another caller's clock read was slightly later than ours: count it there.
        if b.second < cur {
            b.second = cur;
        }
        b.counts.record(failure, slow);
        self.total.record(failure, slow);
    }

    /// The counts of the last N seconds as of `now`.
    pub fn totals(&mut self, now: Instant) -> Counts {
        let cur = self.second(now);
        self.evict(cur);
        self.total
    }

    pub fn reset(&mut self) {
        self.buckets.fill(Bucket::default());
        self.total = Counts::default();
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    fn evict(&mut self, cur: u64) {
        let n = self.buckets.len() as u64;
        for b in self.buckets.iter_mut() {
            if b.counts != Counts::default() && b.second + n <= cur {
                self.total.sub(b.counts);
                b.counts = Counts::default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn rates() {
        let mut c = Counts::default();
        assert_eq!((c.failure_rate(), c.slow_rate()), (0.0, 0.0));
        c.record(true, true);
        c.record(false, false);
        c.record(false, true);
        c.record(false, false);
        assert_eq!((c.failure_rate(), c.slow_rate()), (25.0, 50.0));
    }

    #[test]
    fn counts_within_the_window_and_forgets_older_seconds() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(Duration::from_secs(3), t0);
        w.record(t0, true, false); // second 0
        w.record(t0 + S, false, false); // second 1
        w.record(t0 + S * 2 + Duration::from_millis(999), false, true); // second 2
        assert_eq!(w.totals(t0 + S * 2), Counts { calls: 3, failures: 1, slow: 1 });
        // At second 3 the bucket of second 0 has left the window.
        assert_eq!(w.totals(t0 + S * 3), Counts { calls: 2, failures: 0, slow: 1 });
        assert_eq!(w.totals(t0 + S * 4), Counts { calls: 1, failures: 0, slow: 1 });
        assert_eq!(w.totals(t0 + S * 100), Counts::default());
    }

    #[test]
    fn reuses_a_slot_after_a_long_pause() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(Duration::from_secs(2), t0);
        w.record(t0, true, true);
        w.record(t0 + S * 10, false, false); // same slot (10 % 2 == 0), ten seconds later
        assert_eq!(w.totals(t0 + S * 10), Counts { calls: 1, failures: 0, slow: 0 });
    }

    #[test]
    fn a_slightly_earlier_clock_read_still_counts() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(Duration::from_secs(2), t0);
        w.record(t0 + S * 3, false, false);
        w.record(t0 + S * 3 - Duration::from_millis(1), true, false);
        assert_eq!(w.totals(t0 + S * 3), Counts { calls: 2, failures: 1, slow: 0 });
    }

    #[test]
    fn sub_second_sizes_round_up_and_reset_clears() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(Duration::from_millis(1500), t0);
        w.record(t0, true, false);
        assert_eq!(w.totals(t0 + S).calls, 1, "a 1.5 s window keeps 2 buckets");
        w.reset();
        assert_eq!(w.totals(t0 + S), Counts::default());
    }
}
