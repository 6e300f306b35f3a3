//! A circuit breaker with resilience4j semantics, as a pure state machine: every method takes the
//! time as an argument, so every transition is tested without sleeping.
//!
//! - Closed: calls pass; outcomes go into a time-based sliding window. Once the window holds at
//!   least `minimum_calls`, a failure rate or a slow-call rate at or above its threshold opens it.
//! - Open: calls are refused until `wait_in_open` has passed; then [`Breaker::poll`] moves it to
//!   half-open.
//! - Half-open: exactly `permitted_calls_in_half_open` calls are let through; when all of them
//!   have completed, their failure and slow rates decide: closed (window cleared) or open again.
//!
//! A call's [`Permit`] remembers the state generation it was admitted in; a result arriving after
//! the state changed (a call admitted while closed that times out after the breaker opened) is
//! ignored, so it cannot count towards a later half-open trial.

use std::time::{Duration, Instant};

use crate::window::{Counts, SlidingWindow};

#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Percent of failed calls in the window at or above which the breaker opens.
    pub failure_rate_threshold: f64,
    /// Percent of slow calls in the window at or above which the breaker opens.
    pub slow_call_rate_threshold: f64,
    /// A call taking at least this long is slow (failed or not).
    pub slow_call_duration: Duration,
    /// Rates are not judged before the window holds this many calls.
    pub minimum_calls: u32,
    /// Length of the time-based sliding window (whole seconds). It also bounds how fast a dead
    /// server is detected: the successes from before the fault have to age out of it first.
    pub sliding_window: Duration,
    /// How long the breaker stays open before letting trial calls through; `Duration::MAX`: for
    /// ever (the `no-half-open` misbehaviour).
    pub wait_in_open: Duration,
    /// Trial calls in half-open.
    pub permitted_calls_in_half_open: u32,
}

impl Default for BreakerConfig {
    /// The lab's defaults; `loadgen/README.md` explains each.
    fn default() -> Self {
        Self {
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 80.0,
            slow_call_duration: Duration::from_millis(300),
            minimum_calls: 10,
            sliding_window: Duration::from_secs(3),
            wait_in_open: Duration::from_secs(5),
            permitted_calls_in_half_open: 5,
        }
    }
}

/// The breaker's states, as the metrics contract names them and encodes them in its gauge.
pub use chaoslab_contract::BreakerState as State;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

impl Transition {
    /// The four transitions a breaker can make.
    pub const ALL: [Transition; 4] = [
        Transition { from: State::Closed, to: State::Open },
        Transition { from: State::Open, to: State::HalfOpen },
        Transition { from: State::HalfOpen, to: State::Closed },
        Transition { from: State::HalfOpen, to: State::Open },
    ];
}

/// Admission of one call; hand it back with the call's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permit {
    generation: u64,
}

#[derive(Clone, Debug)]
enum Phase {
    Closed,
    /// Until when; None: for ever.
    Open {
        until: Option<Instant>,
    },
    HalfOpen {
        admitted: u32,
        counts: Counts,
    },
}

#[derive(Clone, Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    phase: Phase,
    generation: u64,
    window: SlidingWindow,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, now: Instant) -> Self {
        let window = SlidingWindow::new(cfg.sliding_window, now);
        Self { cfg, phase: Phase::Closed, generation: 0, window }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Applies the passage of time: open → half-open once the wait is over.
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        match self.phase {
            Phase::Open { until: Some(until) } if now >= until => {
                Some(self.enter(Phase::HalfOpen { admitted: 0, counts: Counts::default() }, now))
            }
            _ => None,
        }
    }

    /// Whether a call would be admitted now (after [`Breaker::poll`]), without taking a permit.
    pub fn admits(&self) -> bool {
        match &self.phase {
            Phase::Closed => true,
            Phase::Open { .. } => false,
            Phase::HalfOpen { admitted, .. } => *admitted < self.cfg.permitted_calls_in_half_open,
        }
    }

    /// Admits a call or refuses it (open, or half-open with every trial call taken).
    /// Call [`Breaker::poll`] first so an expired open state becomes half-open.
    pub fn try_acquire(&mut self) -> Option<Permit> {
        if !self.admits() {
            return None;
        }
        if let Phase::HalfOpen { admitted, .. } = &mut self.phase {
            *admitted += 1;
        }
        Some(Permit { generation: self.generation })
    }

    /// Gives back a permit whose call was abandoned without a result (not a failure of the
    /// server): in half-open its trial slot is free again.
    pub fn release(&mut self, permit: Permit) {
        if permit.generation == self.generation
            && let Phase::HalfOpen { admitted, .. } = &mut self.phase
        {
            *admitted = admitted.saturating_sub(1);
        }
    }

    /// Records the result of an admitted call that took `duration`.
    pub fn on_result(&mut self, permit: Permit, now: Instant, duration: Duration, success: bool) -> Option<Transition> {
        if permit.generation != self.generation {
            return None;
        }
        let failure = !success;
        let slow = duration >= self.cfg.slow_call_duration;
        match &mut self.phase {
            Phase::Closed => {
                self.window.record(now, failure, slow);
                let c = self.window.totals(now);
                (c.calls >= self.cfg.minimum_calls && self.exceeds(&c)).then(|| self.open(now))
            }
            Phase::HalfOpen { counts, .. } => {
                counts.record(failure, slow);
                let c = *counts;
                if c.calls < self.cfg.permitted_calls_in_half_open {
                    None
                } else if self.exceeds(&c) {
                    Some(self.open(now))
                } else {
                    Some(self.enter(Phase::Closed, now))
                }
            }
            // Unreachable with a current permit (no permit is issued while open); ignore.
            Phase::Open { .. } => None,
        }
    }

    fn exceeds(&self, c: &Counts) -> bool {
        c.failure_rate() >= self.cfg.failure_rate_threshold || c.slow_rate() >= self.cfg.slow_call_rate_threshold
    }

    /// Opens it at once, from closed or half-open (the `trip-all` misbehaviour: another server's
    /// breaker opened); None if it is open already.
    pub fn trip(&mut self, now: Instant) -> Option<Transition> {
        (self.state() != State::Open).then(|| self.open(now))
    }

    fn open(&mut self, now: Instant) -> Transition {
        self.enter(Phase::Open { until: now.checked_add(self.cfg.wait_in_open) }, now)
    }

    fn enter(&mut self, phase: Phase, _now: Instant) -> Transition {
        let from = self.state();
        if matches!(phase, Phase::Closed) {
            self.window.reset();
        }
        self.phase = phase;
        self.generation += 1;
        Transition { from, to: self.state() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const FAST: Duration = Duration::from_millis(1);

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 80.0,
            slow_call_duration: Duration::from_millis(300),
            minimum_calls: 4,
            sliding_window: Duration::from_secs(10),
            wait_in_open: Duration::from_secs(5),
            permitted_calls_in_half_open: 2,
        }
    }

    fn call(b: &mut Breaker, now: Instant, took: Duration, ok: bool) -> Option<Transition> {
        let p = b.try_acquire().expect("admitted");
        b.on_result(p, now, took, ok)
    }

    fn opened(t0: Instant) -> Breaker {
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..3 {
            call(&mut b, t0, FAST, false);
        }
        assert_eq!(call(&mut b, t0, FAST, false), Some(Transition { from: State::Closed, to: State::Open }));
        b
    }

    #[test]
    fn starts_closed_and_admits() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        assert_eq!(b.state(), State::Closed);
        assert!(b.admits());
        assert!(b.try_acquire().is_some());
        assert_eq!(b.poll(t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn closed_to_open_on_failure_rate_only_after_minimum_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        // 3 failures: 100% but below the minimum of 4 calls.
        for _ in 0..3 {
            assert_eq!(call(&mut b, t0, FAST, false), None);
        }
        assert_eq!(b.state(), State::Closed);
        assert_eq!(call(&mut b, t0 + MS, FAST, false), Some(Transition { from: State::Closed, to: State::Open }));
        assert_eq!(b.state(), State::Open);
        assert!(!b.admits());
        assert_eq!(b.try_acquire(), None);
    }

    #[test]
    fn failure_rate_exactly_at_threshold_opens_below_does_not() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for ok in [true, true, true, false, false] {
            assert_eq!(call(&mut b, t0, FAST, ok), None, "2 of 5 = 40% < 50%");
        }
        assert_eq!(
            call(&mut b, t0, FAST, false),
            Some(Transition { from: State::Closed, to: State::Open }),
            "3 of 6 = 50%"
        );
    }

    #[test]
    fn closed_to_open_on_slow_call_rate() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        let slow = Duration::from_millis(300);
        for _ in 0..3 {
            assert_eq!(call(&mut b, t0, slow, true), None);
        }
        // 4 of 4 successful but slow calls: 100% >= 80%.
        assert_eq!(call(&mut b, t0, slow, true), Some(Transition { from: State::Closed, to: State::Open }));
    }

    #[test]
    fn slow_rate_below_threshold_keeps_it_closed() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for took in [400, 400, 400, 10, 10] {
            assert_eq!(call(&mut b, t0, took * MS, true), None, "3 of 5 slow = 60% < 80%");
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..3 {
            call(&mut b, t0, FAST, false);
        }
        // 11 s later those three failures are out of the 10 s window: one more is 1 of 1.
        let later = t0 + Duration::from_secs(11);
        for _ in 0..3 {
            assert_eq!(call(&mut b, later, FAST, true), None);
        }
        assert_eq!(call(&mut b, later, FAST, false), None, "1 failure of 4 = 25%");
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn open_to_half_open_after_the_wait() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        assert_eq!(b.poll(t0 + Duration::from_millis(4999)), None);
        assert!(!b.admits());
        assert_eq!(b.poll(t0 + Duration::from_secs(5)), Some(Transition { from: State::Open, to: State::HalfOpen }));
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.poll(t0 + Duration::from_secs(6)), None, "a transition happens once");
    }

    #[test]
    fn a_breaker_that_waits_for_ever_never_half_opens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig { wait_in_open: Duration::MAX, ..cfg() }, t0);
        for _ in 0..4 {
            call(&mut b, t0, FAST, false);
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.poll(t0 + Duration::from_secs(86_400 * 365)), None);
        assert!(!b.admits());
    }

    #[test]
    fn trip_opens_a_closed_or_half_open_breaker_once() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        assert_eq!(b.trip(t0), Some(Transition { from: State::Closed, to: State::Open }));
        assert_eq!(b.trip(t0), None, "already open");
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.poll(t1), Some(Transition { from: State::Open, to: State::HalfOpen }));
        let trial = b.try_acquire().unwrap();
        assert_eq!(b.trip(t1), Some(Transition { from: State::HalfOpen, to: State::Open }));
        assert_eq!(b.on_result(trial, t1, FAST, true), None, "the trial admitted before is ignored");
        assert_eq!(b.poll(t1 + Duration::from_secs(5)), Some(Transition { from: State::Open, to: State::HalfOpen }));
    }

    #[test]
    fn half_open_admits_only_the_permitted_calls() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        b.poll(t0 + Duration::from_secs(5));
        assert!(b.try_acquire().is_some());
        assert!(b.admits());
        assert!(b.try_acquire().is_some());
        assert!(!b.admits());
        assert_eq!(b.try_acquire(), None);
    }

    #[test]
    fn a_released_permit_frees_its_trial_slot() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        b.poll(t0 + Duration::from_secs(5));
        let p = b.try_acquire().unwrap();
        b.try_acquire().unwrap();
        assert!(!b.admits());
        b.release(p);
        assert!(b.admits());
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[test]
    fn half_open_to_closed_when_trials_succeed() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t1 = t0 + Duration::from_secs(5);
        b.poll(t1);
        let (p1, p2) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
        assert_eq!(b.on_result(p1, t1, FAST, true), None, "waits for every trial call");
        assert_eq!(b.on_result(p2, t1, FAST, true), Some(Transition { from: State::HalfOpen, to: State::Closed }));
        assert_eq!(b.state(), State::Closed);
        // The window was cleared: the failures that opened it do not count any more.
        for _ in 0..3 {
            assert_eq!(call(&mut b, t1, FAST, true), None);
        }
        assert_eq!(call(&mut b, t1, FAST, false), None);
    }

    #[test]
    fn half_open_to_open_when_trials_fail() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t1 = t0 + Duration::from_secs(5);
        b.poll(t1);
        let (p1, p2) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
        assert_eq!(b.on_result(p1, t1, FAST, true), None);
        // 1 of 2 failed: 50% >= 50%.
        assert_eq!(b.on_result(p2, t1 + MS, FAST, false), Some(Transition { from: State::HalfOpen, to: State::Open }));
        // A fresh wait starts from the reopening.
        assert_eq!(b.poll(t1 + Duration::from_secs(5)), None);
        assert_eq!(
            b.poll(t1 + MS + Duration::from_secs(5)),
            Some(Transition { from: State::Open, to: State::HalfOpen })
        );
    }

    #[test]
    fn half_open_to_open_when_trials_are_slow() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t1 = t0 + Duration::from_secs(5);
        b.poll(t1);
        assert_eq!(call(&mut b, t1, Duration::from_millis(500), true), None);
        assert_eq!(
            call(&mut b, t1, Duration::from_millis(500), true),
            Some(Transition { from: State::HalfOpen, to: State::Open })
        );
    }

    #[test]
    fn results_from_an_earlier_state_are_ignored() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        let stale = b.try_acquire().unwrap();
        for _ in 0..4 {
            call(&mut b, t0, FAST, false);
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.on_result(stale, t0, FAST, true), None);
        let t1 = t0 + Duration::from_secs(5);
        b.poll(t1);
        let p = b.try_acquire().unwrap();
        // The stale success must not count as a half-open trial.
        assert_eq!(b.on_result(stale, t1, FAST, true), None);
        assert_eq!(b.on_result(p, t1, FAST, true), None, "one trial of two so far");
        assert_eq!(b.state(), State::HalfOpen);
    }
}
