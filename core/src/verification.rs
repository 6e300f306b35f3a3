//! Whether every target held what the run asked of it, checked at every sample: during Testing its
//! faults, during Stabilization and Recovery no fault at all. A check that finds the state in place
//! counts the time since the previous check as verified; one that had to re-apply it, or could not
//! reach the proxy, does not. Pure: checks and times come in as arguments.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::{
    api::{Phase, TargetVerification},
    engine::{Plan, WAKE_AHEAD},
};

/// Below this share of a phase verified in place, the checks that judge the phase are not judged.
pub const MIN_VERIFIED: f64 = 0.9;

/// What one check of one target found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The proxy already held the desired state.
    Held,
    /// It did not, and now does: the first application in a phase, or a re-application.
    Applied,
    /// The proxy could not be reached: its state is unknown.
    Unknown,
}

#[derive(Clone, Debug, Default)]
struct Track {
    verified: SignedDuration,
    /// Checks so far in the phase: an application after the first check is a re-application.
    checks: i32,
    reapplied: i32,
    failed: i32,
    /// The last check that saw the state in place.
    last: Option<Timestamp>,
}

/// The verification of a whole run, phase by phase.
#[derive(Clone, Debug)]
pub struct RunVerifier {
    plan: Plan,
    /// By (phase, target).
    tracks: BTreeMap<(usize, String), Track>,
}

fn index(phase: Phase) -> Option<usize> {
    Phase::TIMED.iter().position(|p| *p == phase)
}

impl RunVerifier {
    pub fn new(plan: Plan) -> Self {
        Self { plan, tracks: BTreeMap::new() }
    }

    /// Picks up what `status.verification` recorded before a restart; the time since its last
    /// check, while nothing checked, is not verified.
    pub fn resume(plan: Plan, recorded: &[TargetVerification]) -> Self {
        let tracks = recorded
            .iter()
            .filter_map(|v| {
                let track = Track {
                    verified: SignedDuration::from_secs_f64(v.verified_seconds.max(0.0)),
                    checks: 1,
                    reapplied: v.reapplied,
                    failed: v.failed_checks,
                    last: None,
                };
                Some(((index(v.phase)?, v.target.clone()), track))
            })
            .collect();
        Self { plan, tracks }
    }

    /// Adopts an edited plan (an abort, new phase lengths).
    pub fn set_plan(&mut self, plan: Plan) {
        self.plan = plan;
    }

    /// Folds in one check of `target` at `at`.
    pub fn record(&mut self, target: &str, at: Timestamp, finding: Finding) {
        let phase = self.plan.phase_at(at);
        let (Some(i), Some((start, _))) = (index(phase), self.plan.bounds(phase)) else { return };
        let t = self.tracks.entry((i, target.to_string())).or_default();
        let since = t.last.map_or(start, |l| l.max(start));
        // A phase's first check finding its state already in place vouches for the phase from its
        // start, as a check does for the time since the one before; one that had to apply it does not.
        let vouches = t.last.is_some() || t.checks == 0;
        match finding {
            Finding::Held if vouches => t.verified += at.duration_since(since).max(SignedDuration::ZERO),
            Finding::Held => {}
            Finding::Applied => t.reapplied += i32::from(t.checks > 0),
            Finding::Unknown => t.failed += 1,
        }
        t.checks += 1;
        // A check that could not see the proxy does not vouch for the time after it either.
        t.last = (finding != Finding::Unknown).then_some(at);
    }

    /// The verification so far: per timed phase entered and target, the share of the phase (of its
    /// part so far, for the phase in progress) verified in place.
    pub fn report(&self, now: Timestamp) -> Vec<TargetVerification> {
        self.tracks
            .iter()
            .filter_map(|((i, target), t)| {
                let phase = Phase::TIMED[*i];
                let (start, end) = self.plan.bounds(phase)?;
                let span = end.min(now).duration_since(start).as_secs_f64();
                let seconds = t.verified.as_secs_f64();
                Some(TargetVerification {
                    phase,
                    target: target.clone(),
                    verified_seconds: (seconds * 10.0).round() / 10.0,
                    share: if span > 0.0 { (seconds / span).clamp(0.0, 1.0) } else { 0.0 },
                    reapplied: t.reapplied,
                    failed_checks: t.failed,
                })
            })
            .collect()
    }
}

/// How long until the next check of a run in `phase`, whose next boundary is `deadline`: every
/// `interval` while a timed phase runs, once more just before it ends (so the verification covers it
/// to its end), and [`WAKE_AHEAD`] before the boundary (that step waits for it and applies the new
/// phase at once, see [`Plan::boundary_within_wake`]).
pub fn next_check(
    phase: Phase,
    deadline: Timestamp,
    now: Timestamp,
    interval: std::time::Duration,
) -> std::time::Duration {
    use std::time::Duration;
    let left = Duration::try_from(deadline.duration_since(now)).unwrap_or_default();
    let last = Duration::from_millis(100);
    if !Phase::TIMED.contains(&phase) || left <= last + Duration::from_millis(50) {
        left.saturating_sub(WAKE_AHEAD)
    } else {
        interval.min(left - last)
    }
}

/// How much more verified time of a running phase is worth a status write on its own.
pub const PROGRESS_STEP: SignedDuration = SignedDuration::from_secs(3);

/// Whether the verification figures `new` are worth a status write over `old`, what status says: a
/// new entry, a count that moved, or [`PROGRESS_STEP`] more verified in a phase that does not end
/// within the next step (the write of that phase change carries its figures; with many runs
/// sharing a boundary, progress written just before it competes with it for the apiserver).
pub fn worth_a_write(old: &[TargetVerification], new: &[TargetVerification], plan: &Plan, now: Timestamp) -> bool {
    let step = PROGRESS_STEP.as_secs_f64();
    let ends_soon = |phase| plan.bounds(phase).is_some_and(|(_, end)| end.duration_since(now) <= PROGRESS_STEP);
    let moved = |n: &TargetVerification| {
        old.iter().find(|o| o.phase == n.phase && o.target == n.target).is_none_or(|o| {
            o.reapplied != n.reapplied
                || o.failed_checks != n.failed_checks
                || (n.verified_seconds - o.verified_seconds >= step && !ends_soon(n.phase))
        })
    };
    new.len() != old.len() || new.iter().any(moved)
}

/// Why the checks that judge `phase` cannot be judged, if a target held its state for less than
/// [`MIN_VERIFIED`] of it (or was never checked in it).
pub fn unverified(verification: &[TargetVerification], phase: Phase, targets: &[String]) -> Option<String> {
    let weak: Vec<String> = targets
        .iter()
        .filter_map(|t| match verification.iter().find(|v| v.phase == phase && &v.target == t) {
            None => Some(format!("{t} was never checked")),
            Some(v) if v.share < MIN_VERIFIED => {
                Some(format!("{t} held its state for only {:.0}% of it", v.share * 100.0))
            }
            Some(_) => None,
        })
        .collect();
    (!weak.is_empty()).then(|| format!("{} not verified: {}", phase.as_str(), weak.join(", ")))
}

#[cfg(test)]
mod tests {
    use chaoslab_testenv::at;

    use super::*;
    use crate::api::Phases;

    fn plan() -> Plan {
        let p = "10s".parse().unwrap();
        Plan::new(at(0), &Phases { stabilization: p, testing: p, recovery: p })
    }

    fn testing(r: &RunVerifier, now: i64) -> TargetVerification {
        r.report(at(now)).into_iter().find(|v| v.phase == Phase::Testing).unwrap()
    }

    fn figures(verified_seconds: f64, reapplied: i32) -> Vec<TargetVerification> {
        let (phase, target, share, failed_checks) = (Phase::Testing, "s".to_string(), 0.0, 0);
        vec![TargetVerification { phase, target, verified_seconds, share, reapplied, failed_checks }]
    }

    #[test]
    fn progress_is_written_every_step_until_the_last_step_of_its_phase() {
        // Testing runs from 10 s to 20 s.
        let (old, plan) = (figures(0.0, 0), plan());
        assert!(!worth_a_write(&old, &figures(2.9, 0), &plan, at(13)));
        assert!(worth_a_write(&old, &figures(3.0, 0), &plan, at(13)));
        assert!(worth_a_write(&old, &figures(6.0, 0), &plan, at(16)));
        assert!(!worth_a_write(&old, &figures(7.0, 0), &plan, at(17)));
    }

    #[test]
    fn a_new_entry_or_a_moved_count_is_always_worth_a_write() {
        let (old, plan) = (figures(7.0, 0), plan());
        assert!(worth_a_write(&old, &figures(7.0, 1), &plan, at(19)));
        assert!(worth_a_write(&[], &old, &plan, at(19)));
        assert!(!worth_a_write(&old, &old, &plan, at(19)));
    }

    #[test]
    fn a_fault_checked_every_second_is_verified_for_the_whole_phase() {
        let mut r = RunVerifier::new(plan());
        r.record("s", at(10), Finding::Applied);
        for s in 11..20 {
            r.record("s", at(s), Finding::Held);
        }
        let v = testing(&r, 20);
        assert_eq!((v.verified_seconds, v.reapplied, v.failed_checks), (9.0, 0, 0));
        assert!((v.share - 0.9).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn a_fault_found_missing_does_not_count_the_time_before() {
        let mut r = RunVerifier::new(plan());
        r.record("s", at(10), Finding::Applied);
        r.record("s", at(12), Finding::Held);
        // A restarted Toxiproxy lost it: re-applied at 15 s; 12..15 is not verified.
        r.record("s", at(15), Finding::Applied);
        r.record("s", at(20) - SignedDuration::from_millis(1), Finding::Held);
        let v = testing(&r, 20);
        assert_eq!(v.reapplied, 1);
        assert!((v.verified_seconds - 7.0).abs() < 0.01, "{v:?}");
        let why = unverified(&r.report(at(20)), Phase::Testing, &["s".into()]).unwrap();
        assert!(why.contains("only 70%"), "{why}");
    }

    #[test]
    fn an_unreachable_proxy_vouches_for_nothing_until_seen_again() {
        let mut r = RunVerifier::new(plan());
        r.record("s", at(10), Finding::Applied);
        r.record("s", at(11), Finding::Unknown);
        r.record("s", at(16), Finding::Held);
        r.record("s", at(17), Finding::Held);
        let v = testing(&r, 20);
        assert_eq!((v.verified_seconds, v.failed_checks), (1.0, 1));
    }

    #[test]
    fn a_restart_keeps_what_was_recorded_and_not_the_time_it_was_down() {
        let mut r = RunVerifier::new(plan());
        r.record("s", at(10), Finding::Applied);
        r.record("s", at(14), Finding::Held);
        let mut resumed = RunVerifier::resume(plan(), &r.report(at(14)));
        resumed.record("s", at(18), Finding::Held);
        resumed.record("s", at(19), Finding::Held);
        let v = testing(&resumed, 20);
        assert_eq!((v.verified_seconds, v.reapplied), (5.0, 0));
    }

    #[test]
    fn checks_come_every_interval_once_just_before_a_boundary_and_ahead_of_it() {
        use std::time::Duration;
        let s = Duration::from_secs(1);
        assert_eq!(next_check(Phase::Testing, at(10), at(5), s), s);
        let near = at(10) - SignedDuration::from_millis(700);
        assert_eq!(next_check(Phase::Testing, at(10), near, s), Duration::from_millis(600));
        let last = at(10) - SignedDuration::from_millis(100);
        assert_eq!(next_check(Phase::Testing, at(10), last, s), Duration::from_millis(50));
        assert_eq!(next_check(Phase::Pending, at(10), at(5), s), Duration::from_millis(4950));
        // Woken ahead, or late: the step waits for the boundary itself, so no later wake is asked.
        let woken = at(10) - SignedDuration::from_millis(30);
        assert_eq!(next_check(Phase::Testing, at(10), woken, s), Duration::ZERO);
    }

    #[test]
    fn a_state_found_in_place_at_the_first_check_held_since_the_start() {
        let mut r = RunVerifier::new(plan());
        // Stabilization's first check comes 0.6 s late on a busy machine and finds no fault: fine.
        r.record("s", at(0) + SignedDuration::from_millis(600), Finding::Held);
        r.record("s", at(10) - SignedDuration::from_millis(100), Finding::Held);
        let v = r.report(at(10)).into_iter().find(|v| v.phase == Phase::Stabilization).unwrap();
        assert!((v.share - 0.99).abs() < 1e-6, "{v:?}");
        // Testing's first check applies the faults 0.6 s late: those 0.6 s had none.
        r.record("s", at(10) + SignedDuration::from_millis(600), Finding::Applied);
        r.record("s", at(20) - SignedDuration::from_millis(100), Finding::Held);
        assert!((testing(&r, 20).share - 0.93).abs() < 1e-6);
    }

    #[test]
    fn a_phase_never_checked_is_not_verified() {
        let r = RunVerifier::new(plan());
        assert!(unverified(&r.report(at(30)), Phase::Recovery, &["s".into()]).unwrap().contains("never checked"));
    }
}
