//! What each toxic does, as pure functions of their inputs (a random draw, a byte count, a clock reading);
//! `link.rs` does the waiting and the I/O around them.
//!
//! | toxic | on data | on end of stream |
//! |---|---|---|
//! | latency | held until read time + latency ± jitter | passed on |
//! | bandwidth | paced to `rate` KB/s in 100 ms slices; rate ≤ 0 stalls | passed on |
//! | slow_close | passed on | the close waits `delay` ms |
//! | timeout | dropped; after `timeout` ms without data the link closes (0: never) | passed on |
//! | reset_peer | dropped, then after `timeout` ms the link closes (with RST when set at link start) | same |
//! | slicer | split into chunks of about `average_size` ± `size_variation`, `delay` µs apart | passed on |
//! | limit_data | passed until `bytes` went through, then the link closes | passed on |
//! | packet_loss (chaoslab's) | held as TCP's retransmissions of a lost segment would hold it | passed on |

pub(crate) mod bandwidth;
pub(crate) mod latency;
pub(crate) mod limit_data;
pub(crate) mod packet_loss;
pub(crate) mod slicer;
pub(crate) mod toxicity;

use std::time::Duration;

use chaoslab_core::toxic::{Toxic, ToxicType};

/// A toxic's attributes, typed (missing ones are 0, as in Toxiproxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Params {
    Latency { latency_ms: i64, jitter_ms: i64 },
    Bandwidth { rate_kb: i64 },
    SlowClose { delay_ms: i64 },
    Timeout { timeout_ms: i64 },
    ResetPeer { timeout_ms: i64 },
    Slicer { average_size: i64, size_variation: i64, delay_us: i64 },
    LimitData { bytes: i64 },
    PacketLoss(packet_loss::Loss),
}

impl Params {
    pub(crate) fn of(t: &Toxic) -> Self {
        let a = |k: &str| t.attributes.get(k).copied().unwrap_or(0);
        match t.kind {
            ToxicType::Latency => Params::Latency { latency_ms: a("latency"), jitter_ms: a("jitter") },
            ToxicType::Bandwidth => Params::Bandwidth { rate_kb: a("rate") },
            ToxicType::SlowClose => Params::SlowClose { delay_ms: a("delay") },
            ToxicType::Timeout => Params::Timeout { timeout_ms: a("timeout") },
            ToxicType::ResetPeer => Params::ResetPeer { timeout_ms: a("timeout") },
            ToxicType::Slicer => Params::Slicer {
                average_size: a("average_size"),
                size_variation: a("size_variation"),
                delay_us: a("delay"),
            },
            ToxicType::LimitData => Params::LimitData { bytes: a("bytes") },
            ToxicType::PacketLoss => Params::PacketLoss(packet_loss::Loss {
                permille: a("permille"),
                rto_ms: a("rto"),
                syn_rto_ms: a("syn_rto"),
                correlation_pct: a("correlation"),
            }),
        }
    }
}

/// Milliseconds as a wait; negative means no wait.
pub(crate) fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use chaoslab_core::toxic::Stream;

    use super::*;

    #[test]
    fn missing_attributes_are_zero() {
        let t = Toxic {
            name: "s".into(),
            kind: ToxicType::Slicer,
            stream: Stream::Downstream,
            toxicity: 1.0,
            attributes: [("average_size".to_string(), 10)].into(),
        };
        assert_eq!(Params::of(&t), Params::Slicer { average_size: 10, size_variation: 0, delay_us: 0 });
        assert_eq!(ms(-5), Duration::ZERO);
    }
}
