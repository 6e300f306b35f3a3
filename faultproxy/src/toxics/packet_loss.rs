//! packet_loss (chaoslab's own): what TCP makes of lost packets, on every connection. A chunk is
//! one segment: it is lost with `permille` ‰ and sent again after `rto` ms; each further loss of it
//! doubles the wait, so a chunk lost k times in a row arrives `rto · 2^(k−1)` ms late (Linux:
//! a probe or a retransmission after the minimum RTO, then exponential backoff). A connection's
//! first chunk also waits for the handshake: a lost SYN-ACK costs `syn_rto` ms, and each further round
//! is lost only if both its SYN-ACKs are (the server's retransmission and its answer to the client's
//! retransmitted SYN go out together), waiting `syn_rto · 2^(k−1)` ms more. Losses
//! follow each other with `correlation` % (bursts); nothing is dropped or corrupted, and chunks
//! stay in order (a late chunk holds back the ones behind it, as TCP's receiver does).

use std::time::Duration;

/// Linux gives up on a segment after 15 retransmissions (tcp_retries2); the wait stops doubling there.
const MAX_LOSSES: u32 = 15;

/// The toxic's attributes: loss in ‰, timeouts in ms, correlation in %.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loss {
    pub permille: i64,
    pub rto_ms: i64,
    pub syn_rto_ms: i64,
    pub correlation_pct: i64,
}

impl Loss {
    fn p(&self) -> f64 {
        (self.permille as f64 / 1000.0).clamp(0.0, 1.0)
    }

    fn c(&self) -> f64 {
        (self.correlation_pct as f64 / 100.0).clamp(0.0, 1.0)
    }

    /// Whether the next transmission is lost, given whether the previous one was: P(lost) = p + c(1 − p)
    /// after a loss and p(1 − c) after a delivery, which keeps the long-run share at p.
    fn lost(&self, previous_lost: bool, unit: f64) -> bool {
        let (p, c) = (self.p(), self.c());
        unit < if previous_lost { p + c * (1.0 - p) } else { p * (1.0 - c) }
    }

    /// How many times in a row one transmission is lost (at most [`MAX_LOSSES`]); `previous_lost`
    /// carries the last outcome from one draw to the next.
    fn losses(&self, previous_lost: &mut bool, draw: &mut impl FnMut() -> f64) -> u32 {
        let mut k = 0;
        while k < MAX_LOSSES && self.lost(*previous_lost, draw()) {
            *previous_lost = true;
            k += 1;
        }
        if k < MAX_LOSSES {
            *previous_lost = false;
        }
        k
    }

    /// Draws one transmission's fate and carries it to the next draw.
    fn draw_lost(&self, previous_lost: &mut bool, unit: f64) -> bool {
        *previous_lost = self.lost(*previous_lost, unit);
        *previous_lost
    }

    /// How many handshake rounds in a row are lost: the first SYN-ACK, then rounds of two.
    fn handshake_losses(&self, previous_lost: &mut bool, draw: &mut impl FnMut() -> f64) -> u32 {
        if !self.draw_lost(previous_lost, draw()) {
            return 0;
        }
        let mut k = 1;
        while k < MAX_LOSSES && self.draw_lost(previous_lost, draw()) && self.draw_lost(previous_lost, draw()) {
            k += 1;
        }
        k
    }

    /// How late a chunk arrives; `handshake` for a connection's first chunk.
    pub(crate) fn late(&self, handshake: bool, previous_lost: &mut bool, draw: &mut impl FnMut() -> f64) -> Duration {
        let syn = if handshake {
            // 1, 3, 7 s: the waits of every round lost add up.
            (1..=self.handshake_losses(previous_lost, draw)).map(|k| backoff(self.syn_rto_ms, k)).sum()
        } else {
            Duration::ZERO
        };
        syn + backoff(self.rto_ms, self.losses(previous_lost, draw))
    }
}

/// The wait after `losses` losses in a row: none, then `rto`, doubling.
fn backoff(rto_ms: i64, losses: u32) -> Duration {
    match losses {
        0 => Duration::ZERO,
        k => Duration::from_millis((rto_ms.max(0) as u64).saturating_mul(1 << (k - 1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIRTY: Loss = Loss { permille: 300, rto_ms: 200, syn_rto_ms: 1000, correlation_pct: 0 };

    /// Draws from a list, in order.
    fn draws(units: &[f64]) -> impl FnMut() -> f64 + '_ {
        let mut it = units.iter().copied();
        move || it.next().expect("no more draws")
    }

    #[test]
    fn each_loss_in_a_row_doubles_the_wait() {
        let mut prev = false;
        // Kept at once; lost once; lost three times.
        assert_eq!(THIRTY.late(false, &mut prev, &mut draws(&[0.5])), Duration::ZERO);
        assert_eq!(THIRTY.late(false, &mut prev, &mut draws(&[0.1, 0.9])), Duration::from_millis(200));
        assert!(!prev, "delivered in the end");
        let mut d = draws(&[0.1, 0.2, 0.29, 0.3]);
        assert_eq!(THIRTY.late(false, &mut prev, &mut d), Duration::from_millis(800));
    }

    #[test]
    fn a_first_chunk_also_waits_for_the_handshake() {
        let mut prev = false;
        // The first SYN-ACK lost (1 s), then both of the second round (2 s more); one of the third
        // round arrives; the chunk itself is lost once (200 ms).
        let mut d = draws(&[0.0, 0.0, 0.0, 0.9, 0.0, 0.9]);
        assert_eq!(THIRTY.late(true, &mut prev, &mut d), Duration::from_millis(3200));
        // The first lost, one of the second round arrives: 1 s.
        let mut d = draws(&[0.0, 0.0, 0.9, 0.9]);
        assert_eq!(THIRTY.late(true, &mut prev, &mut d), Duration::from_millis(1000));
    }

    #[test]
    fn a_handshake_is_late_by_a_second_with_p_and_later_with_about_p_cubed() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut prev = false;
        let n = 100_000;
        let late: Vec<Duration> = (0..n).map(|_| THIRTY.late(true, &mut prev, &mut || rng.f64())).collect();
        let share = |min: u64| late.iter().filter(|d| **d >= Duration::from_millis(min)).count() as f64 / n as f64;
        // A second with p = 0.3, three with p · p² (both of the second round lost).
        assert!((share(1000) - 0.3).abs() < 0.01, "{}", share(1000));
        assert!((share(3000) - 0.027).abs() < 0.003, "{}", share(3000));
    }

    #[test]
    fn no_loss_draws_never_delay_and_full_loss_gives_up_doubling() {
        let none = Loss { permille: 0, ..THIRTY };
        let mut prev = false;
        assert_eq!(none.late(true, &mut prev, &mut || 0.0), Duration::ZERO);
        let all = Loss { permille: 1000, ..THIRTY };
        let late = all.late(false, &mut prev, &mut || 0.999);
        assert_eq!(late, Duration::from_millis(200 << 14), "15 losses, then Linux would reset");
        assert!(prev);
    }

    #[test]
    fn correlation_makes_bursts_and_keeps_the_share() {
        let bursty = Loss { correlation_pct: 50, ..THIRTY };
        // After a loss: 0.3 + 0.5 · 0.7 = 0.65; after a delivery: 0.3 · 0.5 = 0.15.
        assert!(bursty.lost(true, 0.64) && !bursty.lost(true, 0.66));
        assert!(bursty.lost(false, 0.14) && !bursty.lost(false, 0.16));
        let mut rng = fastrand::Rng::with_seed(11);
        let mut prev = false;
        let (n, mut lost) = (200_000, 0);
        for _ in 0..n {
            let l = bursty.lost(prev, rng.f64());
            lost += l as u32;
            prev = l;
        }
        let share = lost as f64 / n as f64;
        assert!((share - 0.3).abs() < 0.005, "long-run loss {share}");
    }

    #[test]
    fn the_share_of_late_chunks_and_of_deep_losses_follow_p() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut prev = false;
        let n = 100_000;
        let late: Vec<Duration> = (0..n).map(|_| THIRTY.late(false, &mut prev, &mut || rng.f64())).collect();
        let share = |min: u64| late.iter().filter(|d| **d >= Duration::from_millis(min)).count() as f64 / n as f64;
        assert!((share(200) - 0.3).abs() < 0.01, "{}", share(200));
        assert!((share(400) - 0.09).abs() < 0.005, "{}", share(400));
        assert!((share(800) - 0.027).abs() < 0.003, "{}", share(800));
    }
}
