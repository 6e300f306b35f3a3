//! Load-aware routing: the power of two choices.
//!
//! Each request draws two distinct candidates at random (among servers whose breaker admits it)
//! and goes to the cheaper one. The cost of a server is
//! `(latency EWMA + floor) × (in-flight requests + 1)`:
//! - in-flight catches a server that has stopped answering (requests pile up on it) before any
//!   latency is known, and evens load between healthy servers;
//! - the latency EWMA catches a slow server (its replies are slow, so it costs more per request);
//! - the floor keeps the in-flight term meaningful when a server's EWMA has decayed to ~0 (a
//!   blackholed server gets no replies, so no latency samples): without it, requests would pile
//!   onto a server that looks free only because it never answers.
//!
//! Two random choices (rather than always the cheapest) avoid herding every client onto the same
//! server on stale information, and still leave the most expensive server almost no traffic.
//!
//! Outliers are left out of the draw: a server whose latency is far above the best one's (more
//! than `factor` times it, and more than `floor`) is not a candidate while another is. Without
//! this, with two bad servers of three, the one draw in three that pairs them sends a request to
//! a bad server whatever its cost. An outlier's latency decays (EWMA) or resets (a reply, or
//! nothing in flight), so it gets requests again: enough for its breaker to judge it and for
//! traffic to return when it recovers.

/// Where randomness comes from (a seeded generator in tests).
pub trait RandomSource {
    /// A uniform integer in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize;
}

impl RandomSource for fastrand::Rng {
    fn below(&mut self, n: usize) -> usize {
        self.usize(..n)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The server's index among the targets.
    pub server: usize,
    /// Its latency estimate in seconds ([`latency_estimate`]).
    pub latency: f64,
    /// Its cost ([`cost`]).
    pub cost: f64,
}

/// When a candidate is an outlier: latency above `factor` × the best and above `floor` seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outliers {
    pub factor: f64,
    pub floor: f64,
}

impl Outliers {
    /// Never leaves anyone out.
    pub const NONE: Outliers = Outliers { factor: f64::INFINITY, floor: f64::INFINITY };
}

/// What a server's latency is at least: its EWMA, or, while requests are in flight, the time since
/// it last replied (or since it became busy): a request outstanding that long has taken at least
/// that long. This is what makes a server that stopped answering expensive within milliseconds,
/// long before its requests time out.
pub fn latency_estimate(ewma_secs: f64, in_flight: usize, since_progress: std::time::Duration) -> f64 {
    if in_flight == 0 { ewma_secs } else { ewma_secs.max(since_progress.as_secs_f64()) }
}

/// The cost of sending one more request to a server.
pub fn cost(latency_ewma_secs: f64, in_flight: usize, floor_secs: f64) -> f64 {
    (latency_ewma_secs + floor_secs) * (in_flight as f64 + 1.0)
}

/// The server to use: among the candidates that are not outliers, the cheaper of two distinct
/// random ones (ties go to the first drawn), the only one if there is one; None if there are none.
pub fn choose(candidates: &[Candidate], outliers: Outliers, rng: &mut impl RandomSource) -> Option<usize> {
    let best = candidates.iter().map(|c| c.latency).fold(f64::INFINITY, f64::min);
    let limit = (best * outliers.factor).max(outliers.floor);
    // At most 64 candidates (the client's limit); indexes of those in the draw.
    let mut kept = [0u8; 64];
    let mut n = 0;
    for (i, c) in candidates.iter().enumerate().take(64) {
        if c.latency <= limit {
            kept[n] = i as u8;
            n += 1;
        }
    }
    match n {
        0 => None,
        1 => Some(candidates[kept[0] as usize].server),
        n => {
            let i = rng.below(n);
            let mut j = rng.below(n - 1);
            if j >= i {
                j += 1;
            }
            let (a, b) = (candidates[kept[i] as usize], candidates[kept[j] as usize]);
            Some(if b.cost < a.cost { b.server } else { a.server })
        }
    }
}

/// Round-robin (the `round-robin` and `no-breakers` misbehaviours): the server whose turn it is,
/// `turn` counting every pick over `servers` servers, or the next candidate after it when that one
/// is not a candidate (its breaker refuses).
pub fn round_robin(candidates: &[Candidate], turn: usize, servers: usize) -> Option<usize> {
    let n = servers.max(1);
    let start = turn % n;
    candidates.iter().map(|c| c.server).min_by_key(|s| (s + n - start) % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays fixed draws.
    struct Scripted(Vec<usize>);
    impl RandomSource for Scripted {
        fn below(&mut self, n: usize) -> usize {
            let v = self.0.remove(0);
            assert!(v < n, "scripted {v} not below {n}");
            v
        }
    }

    fn c(server: usize, cost: f64) -> Candidate {
        Candidate { server, latency: 0.001, cost }
    }

    const NONE: Outliers = Outliers::NONE;
    const LAB: Outliers = Outliers { factor: 10.0, floor: 0.02 };

    #[test]
    fn none_and_one() {
        assert_eq!(choose(&[], NONE, &mut Scripted(vec![])), None);
        assert_eq!(choose(&[c(7, 1.0)], NONE, &mut Scripted(vec![])), Some(7));
    }

    #[test]
    fn picks_the_cheaper_of_the_two_drawn() {
        let cands = [c(0, 3.0), c(1, 1.0), c(2, 2.0)];
        // Draws 0 then 1 of the remaining two (index 2): servers 0 and 2 → 2 is cheaper.
        assert_eq!(choose(&cands, NONE, &mut Scripted(vec![0, 1])), Some(2));
        // Draws 2 then 0: servers 2 and 0 → 2.
        assert_eq!(choose(&cands, NONE, &mut Scripted(vec![2, 0])), Some(2));
        // Draws 1 then 1 → the second index skips the first: servers 1 and 2 → 1.
        assert_eq!(choose(&cands, NONE, &mut Scripted(vec![1, 1])), Some(1));
        // Tie: the first drawn.
        assert_eq!(choose(&[c(4, 1.0), c(5, 1.0)], NONE, &mut Scripted(vec![1, 0])), Some(5));
    }

    #[test]
    fn never_draws_the_same_candidate_twice() {
        let mut rng = fastrand::Rng::with_seed(7);
        // With two candidates the expensive one must never be chosen.
        for _ in 0..1000 {
            assert_eq!(choose(&[c(0, 9.0), c(1, 1.0)], NONE, &mut rng), Some(1));
        }
    }

    #[test]
    fn the_most_expensive_of_three_gets_nothing_and_the_rest_share() {
        let mut rng = fastrand::Rng::with_seed(42);
        let cands = [c(0, 1.0), c(1, 1.0), c(2, 100.0)];
        let mut hits = [0; 3];
        for _ in 0..3000 {
            hits[choose(&cands, NONE, &mut rng).unwrap()] += 1;
        }
        assert_eq!(hits[2], 0);
        assert!(hits[0] > 1200 && hits[1] > 1200, "{hits:?}");
    }

    #[test]
    fn outliers_are_left_out_of_the_draw() {
        let slow = |server| Candidate { server, latency: 0.5, cost: 0.5 };
        let fast = Candidate { server: 2, latency: 0.001, cost: 0.04 };
        let mut rng = fastrand::Rng::with_seed(3);
        // Two +500 ms servers and one fast: without outlier exclusion the slow pair is drawn a
        // third of the time; with it, never.
        let cands = [slow(0), slow(1), fast];
        let to_slow = (0..3000).filter(|_| choose(&cands, NONE, &mut rng) != Some(2)).count();
        assert!((800..1200).contains(&to_slow), "{to_slow}");
        assert!((0..3000).all(|_| choose(&cands, LAB, &mut rng) == Some(2)));
        // Within the floor (20 ms) nobody is an outlier, whatever the ratio.
        let near =
            [Candidate { server: 0, latency: 0.015, cost: 0.015 }, Candidate { server: 1, latency: 0.0001, cost: 1.0 }];
        assert!((0..100).any(|_| choose(&near, LAB, &mut rng) == Some(0)));
        // Only outliers left: still the best of them is used.
        assert_eq!(choose(&[slow(0)], LAB, &mut rng), Some(0));
    }

    #[test]
    fn round_robin_takes_turns_whatever_the_cost_and_skips_refused_servers() {
        let all = [c(0, 1.0), c(1, 100.0), c(2, 1.0)];
        let picks: Vec<_> = (0..6).map(|turn| round_robin(&all, turn, 3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2].map(Some), "the expensive server keeps its turn");
        // Server 1's breaker refuses: its turn goes to the next one.
        let admitted = [c(0, 1.0), c(2, 1.0)];
        let picks: Vec<_> = (0..3).map(|turn| round_robin(&admitted, turn, 3)).collect();
        assert_eq!(picks, [0, 2, 2].map(Some));
        assert_eq!(round_robin(&[], 4, 3), None);
    }

    #[test]
    fn a_silent_server_looks_slow_while_requests_wait_on_it() {
        use std::time::Duration;
        assert_eq!(latency_estimate(0.002, 0, Duration::from_secs(5)), 0.002, "idle: nothing is waiting");
        assert_eq!(latency_estimate(0.002, 3, Duration::from_micros(100)), 0.002, "answering: the EWMA");
        assert_eq!(latency_estimate(0.0, 3, Duration::from_millis(50)), 0.05, "no reply for 50 ms");
    }

    #[test]
    fn cost_grows_with_latency_and_in_flight() {
        let floor = 0.001;
        assert_eq!(cost(0.0, 0, floor), 0.001);
        assert!(cost(0.5, 0, floor) > cost(0.0002, 20, floor), "a +500 ms server costs more than a busy fast one");
        assert!(cost(0.0, 30, floor) > cost(0.0002, 10, floor), "requests hanging on a silent server make it costly");
    }
}
