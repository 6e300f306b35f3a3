//! bandwidth: data paced to `rate` KB/s (1 KB = 1000 bytes), as Toxiproxy paces it: a chunk adds
//! len/rate ms to a running sleep; a chunk larger than 100 ms worth goes out in 100 ms slices first.

use std::time::Duration;

/// How one chunk goes out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Rate ≤ 0: nothing goes through until the toxic changes.
    Stall,
    Paced {
        /// Slices sent 100 ms apart before the rest, each `rate * 100` bytes.
        slices: Vec<usize>,
        /// The wait before the rest (may be ≤ 0: credit from oversleeping earlier).
        rest_wait_ns: i64,
        /// Bytes sent after that wait (may be 0).
        rest: usize,
    },
}

pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// Plans a chunk of `len` bytes given the running sleep `debt_ns` carried from earlier chunks.
/// After the rest's wait the caller sets the debt to `rest_wait_ns - actually waited`.
pub(crate) fn plan(rate_kb: i64, len: usize, debt_ns: i64) -> Plan {
    if rate_kb <= 0 {
        return Plan::Stall;
    }
    // len bytes at rate KB/s = len / rate ms.
    let mut sleep = debt_ns.saturating_add((len as i64).saturating_mul(1_000_000) / rate_kb);
    let slice = (rate_kb as u64).saturating_mul(100).min(usize::MAX as u64) as usize;
    let mut slices = Vec::new();
    let mut rest = len;
    while rest > slice {
        slices.push(slice);
        rest -= slice;
        sleep -= SLICE.as_nanos() as i64;
    }
    Plan::Paced { slices, rest_wait_ns: sleep, rest }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_chunks_wait_len_over_rate() {
        // 1000 bytes at 100 KB/s = 10 ms.
        assert_eq!(plan(100, 1000, 0), Plan::Paced { slices: vec![], rest_wait_ns: 10_000_000, rest: 1000 });
        // Earlier oversleep is credited.
        assert_eq!(plan(100, 1000, -4_000_000), Plan::Paced { slices: vec![], rest_wait_ns: 6_000_000, rest: 1000 });
    }

    #[test]
    fn large_chunks_go_in_100ms_slices() {
        // 25 000 bytes at 100 KB/s: 10 000 bytes per 100 ms; 250 ms in all.
        let p = plan(100, 25_000, 0);
        assert_eq!(p, Plan::Paced { slices: vec![10_000, 10_000], rest_wait_ns: 50_000_000, rest: 5_000 });
    }

    #[test]
    fn zero_or_negative_rate_stalls() {
        assert_eq!(plan(0, 10, 0), Plan::Stall);
        assert_eq!(plan(-1, 10, 0), Plan::Stall);
    }
}
