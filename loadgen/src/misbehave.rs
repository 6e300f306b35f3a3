//! Ways to be wrong on purpose (`--misbehave MODE`, off by default). Each takes away one piece of
//! what makes the client resilient, so that a test, or a user, can see what a failing verdict
//! looks like and check that the lab fails a client that deserves it. Pure: the client asks the
//! mode what to do.

use std::time::Duration;

use crate::breaker::BreakerConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Misbehaviour {
    /// No circuit breakers at all: every server always admits calls, and requests go round-robin
    /// over every server.
    NoBreakers,
    /// Breakers open but never try again: no half-open state, an open breaker stays open.
    NoHalfOpen,
    /// Breakers all open when any one opens (one shared fate instead of one breaker per server).
    TripAll,
    /// Breakers, but no load-aware routing: round-robin over the servers whose breaker admits the
    /// call, so slow servers keep their share.
    RoundRobin,
    /// Retries without a budget: a failed request is retried on every other server, one after
    /// the other, until one succeeds.
    RetryStorm,
}

impl Misbehaviour {
    /// The flag's spelling.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoBreakers => "no-breakers",
            Self::NoHalfOpen => "no-half-open",
            Self::TripAll => "trip-all",
            Self::RoundRobin => "round-robin",
            Self::RetryStorm => "retry-storm",
        }
    }

    /// The breaker this mode gives each server: one that never trips (no breakers), one that waits
    /// for ever once open (no half-open), or the one configured.
    pub fn breaker(self, cfg: BreakerConfig) -> BreakerConfig {
        match self {
            // A rate is at most 100 %: it is never at or above infinity.
            Self::NoBreakers => {
                BreakerConfig { failure_rate_threshold: f64::INFINITY, slow_call_rate_threshold: f64::INFINITY, ..cfg }
            }
            Self::NoHalfOpen => BreakerConfig { wait_in_open: Duration::MAX, ..cfg },
            _ => cfg,
        }
    }

    /// Whether servers are chosen in turn instead of by load.
    pub fn round_robin(self) -> bool {
        matches!(self, Self::NoBreakers | Self::RoundRobin)
    }

    /// Whether one breaker opening opens them all.
    pub fn trips_all(self) -> bool {
        self == Self::TripAll
    }

    /// Whether a failed request is retried on every other server, without a budget.
    pub fn retries_everywhere(self) -> bool {
        self == Self::RetryStorm
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::breaker::{Breaker, State};

    /// The state after `n` calls that all failed, then a long wait.
    fn after_failures(mode: Option<Misbehaviour>, n: usize) -> State {
        let cfg = BreakerConfig::default();
        let cfg = mode.map_or(cfg.clone(), |m| m.breaker(cfg));
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg, t0);
        for _ in 0..n {
            if let Some(p) = b.try_acquire() {
                b.on_result(p, t0, Duration::from_secs(2), false);
            }
        }
        b.poll(t0 + Duration::from_secs(3600));
        b.state()
    }

    #[test]
    fn no_breakers_never_opens_no_half_open_never_leaves_open() {
        assert_eq!(after_failures(None, 100), State::HalfOpen, "the lab's breaker tries again");
        assert_eq!(after_failures(Some(Misbehaviour::NoBreakers), 100), State::Closed);
        assert_eq!(after_failures(Some(Misbehaviour::NoHalfOpen), 100), State::Open);
        assert_eq!(after_failures(Some(Misbehaviour::RoundRobin), 100), State::HalfOpen);
    }

    #[test]
    fn each_mode_changes_one_thing() {
        use Misbehaviour::*;
        let all = [NoBreakers, NoHalfOpen, TripAll, RoundRobin, RetryStorm];
        let picked = |f: fn(Misbehaviour) -> bool| all.into_iter().filter(|m| f(*m)).collect::<Vec<_>>();
        assert_eq!(picked(Misbehaviour::round_robin), [NoBreakers, RoundRobin]);
        assert_eq!(picked(Misbehaviour::trips_all), [TripAll]);
        assert_eq!(picked(Misbehaviour::retries_everywhere), [RetryStorm]);
        for m in all {
            assert_eq!(clap::ValueEnum::to_possible_value(&m).unwrap().get_name(), m.label());
        }
    }
}
