//! spec.expect: bounds on the measured times and Testing's error rate, each one set a check.
//!
//! A time is taken at the first sample that shows it, so the moment itself lies up to one
//! resolution earlier: a time over its bound by less than the resolution is not judged.

use super::{MIN_REQUESTS, check, inconclusive, pct};
use crate::{
    api::{Check, Expectations, Phase, PhaseObservation, Timings},
    duration::PhaseDuration,
};

/// The checks `expect` asks for; `observations` tell which phases were watched.
pub fn expected(expect: &Expectations, timings: Option<&Timings>, observations: &[PhaseObservation]) -> Vec<Check> {
    let watched = |phase| observations.iter().any(|o| o.phase == phase && o.samples > 0);
    let t = timings.filter(|_| watched(Phase::Testing));
    let r = timings.filter(|_| watched(Phase::Recovery));
    let mut checks = Vec::new();
    if let Some(bound) = &expect.detect_within {
        let what = "every faulted server detected (breaker open, or share halved) after Testing starts";
        checks.push(within("detected-within", what, bound, t.map(|t| (t.detect_seconds, t.resolution_seconds))));
    }
    if let Some(bound) = &expect.route_around_within {
        let what = "the healthy servers carry 95 % of successes after Testing starts";
        checks.push(within(
            "routed-around-within",
            what,
            bound,
            t.map(|t| (t.route_around_seconds, t.resolution_seconds)),
        ));
    }
    if let Some(bound) = &expect.recover_within {
        let what = "breakers closed and shares back after Recovery starts";
        checks.push(within("recovered-within", what, bound, r.map(|t| (t.recover_seconds, t.resolution_seconds))));
    }
    if let Some(max) = expect.max_error_rate {
        checks.push(error_budget(max, t));
    }
    checks
}

/// `measured`: the time (None: never reached) and the resolution, or None when the phase was not watched.
fn within(name: &str, what: &str, bound: &PhaseDuration, measured: Option<(Option<f64>, f64)>) -> Check {
    let limit = bound.0.as_secs_f64();
    let expected = format!("{what}, within {bound}");
    let Some((time, resolution)) = measured else {
        return inconclusive(name, what, expected, "its phase was not watched from its start");
    };
    let Some(time) = time else {
        return check(name, what, expected, "not reached".into(), Some(false));
    };
    let observed = format!("{time:.1} s (measured to {resolution:.1} s)");
    let passed = if time <= limit {
        Some(true)
    } else if time - resolution > limit {
        Some(false)
    } else {
        None
    };
    let observed =
        if passed.is_none() { format!("not judged: {observed}, over by less than the resolution") } else { observed };
    check(name, what, expected, observed, passed)
}

fn error_budget(max: f64, timings: Option<&Timings>) -> Check {
    let (name, what) = ("error-budget", "requests failed during Testing");
    let expected = format!("at most {} of requests failed during Testing", pct(max));
    let Some(t) = timings else {
        return inconclusive(name, what, expected, "Testing was not watched from its start");
    };
    if t.testing_requests < MIN_REQUESTS {
        let why = format!("only {} requests (fewer than {MIN_REQUESTS})", t.testing_requests);
        return inconclusive(name, what, expected, &why);
    }
    let observed = format!("{} of {} failed ({})", t.testing_failures, t.testing_requests, pct(t.testing_error_rate));
    check(name, what, expected, observed, Some(t.testing_error_rate <= max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched() -> Vec<PhaseObservation> {
        [Phase::Stabilization, Phase::Testing, Phase::Recovery]
            .map(|phase| PhaseObservation { phase, samples: 5, servers: vec![] })
            .into()
    }

    fn timings(detect: Option<f64>, recover: Option<f64>) -> Timings {
        Timings {
            detect_seconds: detect,
            route_around_seconds: None,
            recover_seconds: recover,
            resolution_seconds: 0.5,
            testing_failures: 30,
            testing_requests: 1000,
            testing_error_rate: 0.03,
        }
    }

    fn expect(detect: &str, recover: &str, errors: f64) -> Expectations {
        Expectations {
            detect_within: Some(detect.parse().unwrap()),
            route_around_within: None,
            recover_within: Some(recover.parse().unwrap()),
            max_error_rate: Some(errors),
        }
    }

    fn verdicts(checks: &[Check]) -> Vec<(&str, Option<bool>)> {
        checks.iter().map(|c| (c.name.as_str(), c.passed)).collect()
    }

    #[test]
    fn a_time_within_its_bound_passes_and_one_over_it_fails() {
        let checks = expected(&expect("3s", "10s", 0.05), Some(&timings(Some(2.5), Some(12.0))), &watched());
        assert_eq!(
            verdicts(&checks),
            [("detected-within", Some(true)), ("recovered-within", Some(false)), ("error-budget", Some(true))]
        );
        assert_eq!(checks[1].observed, "12.0 s (measured to 0.5 s)");
        assert_eq!(checks[2].observed, "30 of 1000 failed (3.0%)");
    }

    #[test]
    fn never_reached_fails_and_too_many_errors_fail() {
        let checks = expected(&expect("3s", "10s", 0.01), Some(&timings(None, Some(1.0))), &watched());
        assert_eq!(
            verdicts(&checks),
            [("detected-within", Some(false)), ("recovered-within", Some(true)), ("error-budget", Some(false))]
        );
        assert_eq!(checks[0].observed, "not reached");
    }

    #[test]
    fn over_by_less_than_the_resolution_or_unwatched_is_inconclusive() {
        let checks = expected(&expect("3s", "10s", 0.05), Some(&timings(Some(3.3), Some(1.0))), &watched());
        assert_eq!(checks[0].passed, None);
        assert!(checks[0].observed.starts_with("not judged: 3.3 s"), "{}", checks[0].observed);
        let checks = expected(&expect("3s", "10s", 0.05), Some(&timings(Some(1.0), Some(1.0))), &watched()[..1]);
        assert_eq!(verdicts(&checks), [("detected-within", None), ("recovered-within", None), ("error-budget", None)]);
        let few = Timings { testing_requests: 99, ..timings(Some(1.0), Some(1.0)) };
        assert_eq!(expected(&expect("3s", "10s", 0.05), Some(&few), &watched())[2].passed, None);
    }

    #[test]
    fn nothing_expected_adds_no_check() {
        assert!(expected(&Expectations::default(), Some(&timings(None, None)), &watched()).is_empty());
    }
}
