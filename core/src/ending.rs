//! How a run ends: its checks, verdict, final phase and message. Pure; the one implementation the
//! operator and `chaoslab run` share.

use jiff::Timestamp;

use crate::{
    api::{AbortSpec, Check, Expectations, Fault, Phase, PhaseObservation, TargetVerification, Timings, Verdict},
    checks,
    verification::unverified,
};

/// Why the run stopped.
#[derive(Clone, Copy, Debug)]
pub enum Stop<'a> {
    /// Recovery ran to its end.
    Completed,
    /// `spec.abort` ended Testing early at `at`.
    Aborted { at: Timestamp, rule: &'a AbortSpec },
    /// The user stopped a local run during this phase.
    Interrupted { during: Phase },
    /// An emergency stop (`chaoslab.dev/stop` on the namespace) removed the faults, for `reason`.
    Halted { reason: &'a str },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    pub phase: Phase,
    pub verdict: Verdict,
    pub checks: Vec<Check>,
    pub message: String,
}

/// What a run saw: the client's observations per phase and how well the targets held each phase's
/// state (empty where the caller does not verify).
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    pub observations: &'a [PhaseObservation],
    pub verification: &'a [TargetVerification],
    /// The times measured, where the caller measured them.
    pub timings: Option<&'a Timings>,
}

/// The end of a run with these faults and target names, from what it saw. `judged`: whether the
/// client's metrics were read at all (a scenario without `spec.client` ends Inconclusive with no
/// checks); `expect` adds a check per bound it sets. A check whose phases the targets did not hold
/// (see `verification`) is not judged.
pub fn end(
    faults: &[Fault],
    target_names: &[String],
    expect: Option<&Expectations>,
    seen: Seen,
    judged: bool,
    stop: Stop,
) -> Ending {
    let (mut checks, mut verdict) = if judged {
        checks::evaluate(faults, target_names, seen.observations)
    } else {
        (vec![], Verdict::Inconclusive)
    };
    if let Some(expect) = expect.filter(|_| judged) {
        checks.extend(checks::expected(expect, seen.timings, seen.observations));
        verdict = verdict_of(&checks);
    }
    if !seen.verification.is_empty() && withhold_unverified(&mut checks, seen.verification, target_names) {
        verdict = verdict_of(&checks);
    }
    let phase = match stop {
        Stop::Completed => Phase::Completed,
        Stop::Aborted { at, rule } => {
            checks.push(Check {
                name: "not-aborted".into(),
                description: "Testing runs to its end without hitting spec.abort".into(),
                expected: format!("error rate below {:.0}% throughout Testing", rule.error_rate * 100.0),
                observed: format!("error rate ≥ {:.0}% for {} at {at}", rule.error_rate * 100.0, rule.duration),
                passed: Some(false),
            });
            verdict = Verdict::Failed;
            Phase::Aborted
        }
        Stop::Interrupted { during } => {
            checks.push(Check {
                name: "not-interrupted".into(),
                description: "the run is not interrupted".into(),
                expected: "the run reaches the end of Recovery".into(),
                observed: format!("interrupted during {}", during.as_str()),
                passed: None,
            });
            verdict = Verdict::Inconclusive;
            Phase::Aborted
        }
        Stop::Halted { reason } => {
            checks.push(Check {
                name: "not-stopped".into(),
                description: "the run is not ended by an emergency stop".into(),
                expected: "no chaoslab.dev/stop on the namespace during the run".into(),
                observed: format!("stopped: {reason}"),
                passed: None,
            });
            verdict = Verdict::Inconclusive;
            Phase::Aborted
        }
    };
    let judgement = match (judged, checks::left_out(seen.observations)) {
        (false, _) => "no spec.client: nothing to judge".to_string(),
        (true, Some(why)) => format!("{}; {why}", summary(&checks, verdict)),
        (true, None) => summary(&checks, verdict),
    };
    let message = match stop {
        Stop::Interrupted { during } => format!("interrupted by the user during {}; {judgement}", during.as_str()),
        Stop::Halted { reason } => format!("emergency stop ({reason}): faults removed; {judgement}"),
        Stop::Completed | Stop::Aborted { .. } => judgement,
    };
    Ending { phase, verdict, checks, message }
}

/// The phases whose state a check relies on: its own, and the baseline it compares with.
fn judged_phases(check: &str) -> &'static [Phase] {
    match check {
        "traffic-shifts-away" | "error-rate-recovers" | "detected-within" | "routed-around-within" => {
            &[Phase::Stabilization, Phase::Testing]
        }
        "error-rate-baseline" | "recovered-within" => &[Phase::Stabilization, Phase::Recovery],
        "faulted-breakers-heal" | "breakers-closed-at-end" | "traffic-spreads-back" => &[Phase::Recovery],
        _ => &[Phase::Testing],
    }
}

/// Makes the checks that rely on a phase the targets did not hold Inconclusive, saying why; true if
/// any changed.
fn withhold_unverified(checks: &mut [Check], verification: &[TargetVerification], targets: &[String]) -> bool {
    let mut changed = false;
    for c in checks.iter_mut().filter(|c| c.passed.is_some()) {
        if let Some(why) = judged_phases(&c.name).iter().find_map(|p| unverified(verification, *p, targets)) {
            c.observed = format!("not judged: {why} (seen: {})", c.observed);
            c.passed = None;
            changed = true;
        }
    }
    changed
}

/// Passed only if every check passed; Failed if any failed; otherwise Inconclusive.
fn verdict_of(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.passed == Some(false)) {
        Verdict::Failed
    } else if checks.iter().all(|c| c.passed == Some(true)) {
        Verdict::Passed
    } else {
        Verdict::Inconclusive
    }
}

/// `verdict Passed: 8 of 8 checks passed`, naming the failed checks and counting those not judged.
fn summary(checks: &[Check], verdict: Verdict) -> String {
    let passed = checks.iter().filter(|c| c.passed == Some(true)).count();
    let failed: Vec<&str> = checks.iter().filter(|c| c.passed == Some(false)).map(|c| c.name.as_str()).collect();
    let open = checks.iter().filter(|c| c.passed.is_none()).count();
    let mut s = format!("verdict {verdict:?}: {passed} of {} checks passed", checks.len());
    if !failed.is_empty() {
        s += &format!("; failed: {}", failed.join(", "));
    }
    if open > 0 {
        s += &format!("; {open} could not be judged");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::loss;

    const NOTHING: Seen = Seen { observations: &[], verification: &[], timings: None };

    fn names() -> Vec<String> {
        (0..3).map(|i| format!("server-{i}")).collect()
    }

    #[test]
    fn without_observations_a_completed_run_is_inconclusive() {
        let e = end(&[loss(0, 100.0)], &names(), None, NOTHING, true, Stop::Completed);
        assert_eq!((e.phase, e.verdict), (Phase::Completed, Verdict::Inconclusive));
        assert!(e.message.starts_with("verdict Inconclusive: 0 of") && e.message.contains("could not be judged"));
    }

    #[test]
    fn an_abort_fails_the_run_with_a_check_that_says_why() {
        let rule = AbortSpec { error_rate: 0.5, duration: "10s".parse().unwrap() };
        let at: Timestamp = "2026-12-01T00:00:40Z".parse().unwrap();
        let e = end(&[loss(0, 100.0)], &names(), None, NOTHING, true, Stop::Aborted { at, rule: &rule });
        assert_eq!((e.phase, e.verdict), (Phase::Aborted, Verdict::Failed));
        let c = e.checks.iter().find(|c| c.name == "not-aborted").unwrap();
        assert_eq!(c.passed, Some(false));
        assert!(c.observed.contains("50%") && c.observed.contains("10s"), "{}", c.observed);
        assert!(e.message.contains("failed: not-aborted"), "{}", e.message);
    }

    #[test]
    fn an_interrupted_run_is_aborted_and_inconclusive() {
        let e = end(&[loss(0, 100.0)], &names(), None, NOTHING, true, Stop::Interrupted { during: Phase::Testing });
        assert_eq!((e.phase, e.verdict), (Phase::Aborted, Verdict::Inconclusive));
        assert!(e.message.starts_with("interrupted by the user during Testing"), "{}", e.message);
    }

    fn held(phase: Phase, share: f64) -> TargetVerification {
        TargetVerification {
            phase,
            target: "server-0".into(),
            verified_seconds: share * 10.0,
            share,
            reapplied: 0,
            failed_checks: 0,
        }
    }

    fn passed(name: &str) -> Check {
        Check {
            name: name.into(),
            description: String::new(),
            expected: "x".into(),
            observed: "y".into(),
            passed: Some(true),
        }
    }

    #[test]
    fn checks_of_a_phase_the_targets_did_not_hold_are_not_judged() {
        let mut checks = vec![passed("faulted-breakers-open"), passed("faulted-breakers-heal")];
        let verification = [held(Phase::Stabilization, 1.0), held(Phase::Testing, 0.5), held(Phase::Recovery, 0.95)];
        assert!(withhold_unverified(&mut checks, &verification, &["server-0".into()]));
        assert_eq!(checks[0].passed, None);
        assert!(
            checks[0].observed.starts_with("not judged: Testing not verified: server-0 held its state for only 50%")
        );
        assert_eq!(checks[1].passed, Some(true), "Recovery held");
        assert_eq!(verdict_of(&checks), Verdict::Inconclusive);
    }

    #[test]
    fn an_emergency_stop_aborts_the_run_and_says_why() {
        let e = end(&[loss(0, 100.0)], &names(), None, NOTHING, true, Stop::Halted { reason: "pager went off" });
        assert_eq!((e.phase, e.verdict), (Phase::Aborted, Verdict::Inconclusive));
        assert!(e.message.starts_with("emergency stop (pager went off)"), "{}", e.message);
    }

    #[test]
    fn an_expectation_missed_fails_the_run_and_one_of_an_unverified_phase_is_not_judged() {
        let observations: Vec<PhaseObservation> = [Phase::Stabilization, Phase::Testing, Phase::Recovery]
            .map(|phase| PhaseObservation { phase, samples: 5, servers: vec![] })
            .into();
        let timings = Timings { detect_seconds: None, resolution_seconds: 0.5, ..Default::default() };
        let expect = Expectations { detect_within: Some("5s".parse().unwrap()), ..Default::default() };
        let seen = Seen { observations: &observations, verification: &[], timings: Some(&timings) };
        let e = end(&[loss(0, 100.0)], &names(), Some(&expect), seen, true, Stop::Completed);
        let c = e.checks.iter().find(|c| c.name == "detected-within").unwrap();
        assert_eq!((c.passed, e.verdict), (Some(false), Verdict::Failed));
        let shaky = [held(Phase::Stabilization, 1.0), held(Phase::Testing, 0.5), held(Phase::Recovery, 1.0)];
        let seen = Seen { verification: &shaky, ..seen };
        let e = end(&[loss(0, 100.0)], &names(), Some(&expect), seen, true, Stop::Completed);
        assert_eq!(e.checks.iter().find(|c| c.name == "detected-within").unwrap().passed, None);
    }

    #[test]
    fn a_run_without_a_client_judges_nothing() {
        let e = end(&[loss(0, 100.0)], &names(), None, NOTHING, false, Stop::Completed);
        assert_eq!((e.verdict, e.checks.len()), (Verdict::Inconclusive, 0));
        assert!(e.message.contains("nothing to judge"));
    }
}
