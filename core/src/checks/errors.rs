//! The error rate late in Testing and late in Recovery against the Stabilization baseline, each
//! judged over at least [`MIN_REQUESTS`](super::MIN_REQUESTS) requests.

use super::{Ctx, ERROR_FACTOR, ERROR_SLACK, check, failures, inconclusive, pct};
use crate::api::{Check, Phase};

pub(super) fn error_rate_near_baseline(ctx: &Ctx, phase: Phase) -> Check {
    let (name, desc, obs) = match phase {
        Phase::Testing => (
            "error-rate-recovers",
            "Testing: after the first failures the error rate falls back near the Stabilization baseline",
            ctx.testing,
        ),
        _ => ("error-rate-baseline", "Recovery: the error rate returns to the Stabilization baseline", ctx.recovery),
    };
    let Some(base) = ctx.stab.map(|st| failures(st, false)) else {
        return inconclusive(name, desc, "late error rate near the baseline".into(), "Stabilization not observed");
    };
    if let Some(why) = base.too_few("requests in Stabilization") {
        return inconclusive(name, desc, "late error rate near the baseline".into(), &why);
    }
    let limit = (base.ratio() * ERROR_FACTOR).max(base.ratio() + ERROR_SLACK);
    let expected = format!("late in {}, error rate ≤ {} (baseline {})", phase.as_str(), pct(limit), pct(base.ratio()));
    let Some(o) = obs else { return inconclusive(name, desc, expected, "phase not observed") };
    let late = failures(o, true);
    if let Some(why) = late.too_few(&format!("requests late in {}", phase.as_str())) {
        return inconclusive(name, desc, expected, &why);
    }
    let observed = format!(
        "error rate {} of {} requests late in {}; baseline over {} requests",
        pct(late.ratio()),
        late.total,
        phase.as_str(),
        base.total
    );
    check(name, desc, expected, observed, Some(late.ratio() <= limit))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;

    #[test]
    fn a_high_late_error_rate_in_testing_fails() {
        let mut run = healthy_run();
        run[1].servers[2].late_failures = 400;
        let c = judge(&two_dead(), &run, "error-rate-recovers");
        assert_eq!(c.passed, Some(false), "{c:#?}");
        assert_eq!(c.observed, "error rate 21.1% of 1900 requests late in Testing; baseline over 3003 requests");
    }

    #[test]
    fn error_rate_recovers_is_inconclusive_with_too_few_late_requests() {
        let mut run = healthy_run();
        run[1].servers[2].late_successes = 40;
        let c = judge(&two_dead(), &run, "error-rate-recovers");
        assert_eq!(c.passed, None);
        assert_eq!(c.observed, "not judged: only 40 requests late in Testing (fewer than 100)");
    }

    #[test]
    fn a_high_late_error_rate_in_recovery_fails() {
        let mut run = healthy_run();
        run[2].servers[0].late_failures = 100;
        let c = judge(&two_dead(), &run, "error-rate-baseline");
        assert_eq!(c.passed, Some(false), "{c:#?}");
        assert!(c.expected.contains("error rate ≤ 2.1% (baseline 0.1%)"), "{}", c.expected);
    }

    #[test]
    fn error_rate_baseline_is_inconclusive_with_too_few_baseline_requests() {
        let mut run = healthy_run();
        for s in &mut run[0].servers {
            s.successes = 20;
        }
        let c = judge(&two_dead(), &run, "error-rate-baseline");
        assert_eq!(c.passed, None);
        assert_eq!(c.observed, "not judged: only 63 requests in Stabilization (fewer than 100)");
        let mut run = healthy_run();
        run.pop();
        assert_eq!(judge(&two_dead(), &run, "error-rate-baseline").observed, "not judged: phase not observed");
    }
}
