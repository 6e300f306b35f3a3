//! latency: each chunk is held until its read time plus latency ± jitter.

use std::time::{Duration, Instant};

/// The delay for one chunk: `latency` plus an offset uniform in [-jitter, jitter), from `unit` in [0, 1)
/// (Toxiproxy: `latency + rand.Int63n(2*jitter) - jitter`). Negative delays are no delay.
pub(crate) fn delay(latency_ms: i64, jitter_ms: i64, unit: f64) -> Duration {
    let mut d = latency_ms as i128;
    if jitter_ms > 0 {
        let span = 2 * jitter_ms as i128;
        let draw = ((unit.clamp(0.0, 1.0) * span as f64) as i128).min(span - 1);
        d += draw - jitter_ms as i128;
    }
    Duration::from_millis(d.clamp(0, u64::MAX as i128) as u64)
}

/// When a chunk read at `read_at` leaves, seen at `now`, and the timestamp it carries on to the next toxic.
/// Time already spent queued counts towards the delay, so a stream keeps flowing (reads are pipelined).
/// The carried timestamp is Toxiproxy's `read_at + (delay - (now - read_at))`.
pub(crate) fn release(read_at: Instant, now: Instant, delay: Duration) -> (Instant, Instant) {
    let leave = read_at + delay;
    let queued = now.saturating_duration_since(read_at);
    let carried = if delay >= queued {
        read_at + (delay - queued)
    } else {
        read_at.checked_sub(queued - delay).unwrap_or(read_at)
    };
    (leave, carried)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_spreads_uniformly_around_the_latency() {
        assert_eq!(delay(500, 0, 0.7), Duration::from_millis(500));
        assert_eq!(delay(500, 100, 0.0), Duration::from_millis(400));
        assert_eq!(delay(500, 100, 0.5), Duration::from_millis(500));
        assert_eq!(delay(500, 100, 0.99999), Duration::from_millis(599));
        assert_eq!(delay(500, 100, 1.0), Duration::from_millis(599));
        assert_eq!(delay(10, 100, 0.0), Duration::ZERO);
        assert_eq!(delay(-5, 0, 0.3), Duration::ZERO);
    }

    #[test]
    fn queued_time_counts_towards_the_delay() {
        let t0 = Instant::now();
        let (leave, carried) = release(t0, t0 + Duration::from_millis(30), Duration::from_millis(100));
        assert_eq!(leave, t0 + Duration::from_millis(100));
        assert_eq!(carried, t0 + Duration::from_millis(70));
        let (leave, _) = release(t0, t0 + Duration::from_millis(300), Duration::from_millis(100));
        assert!(leave < t0 + Duration::from_millis(300), "already late: leaves at once");
    }
}
