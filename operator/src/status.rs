//! Building the status a reconcile writes. Pure: everything comes in as arguments, so the same
//! inputs give the same status and an unchanged scenario writes nothing.

use chaoslab_core::api::{Phase, Verdict};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::error::Problem;

/// One condition, keeping its lastTransitionTime while its status does not change.
fn condition(
    old: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: Some(generation),
    }
}

/// The four conditions for a scenario in `phase` (before any verdict, `verdict` is None).
pub fn conditions(
    old: &[Condition],
    phase: Phase,
    verdict: Option<Verdict>,
    message: &str,
    generation: i64,
    now: Timestamp,
) -> Vec<Condition> {
    conditions_with(old, phase, verdict, message, None, generation, now)
}

/// [`conditions`], with what stands in the run's way: in Testing, `FaultsInjected` is False with
/// the problem's reason (e.g. ToxiproxyUnreachable) and message naming the target and URL.
pub fn conditions_with(
    old: &[Condition],
    phase: Phase,
    verdict: Option<Verdict>,
    message: &str,
    trouble: Option<&Problem>,
    generation: i64,
    now: Timestamp,
) -> Vec<Condition> {
    let c = |t, s, r: &str, m: &str| condition(old, t, s, r, m.to_string(), generation, now);
    let after = |p: Phase| match phase {
        Phase::Stabilization => p == Phase::Pending,
        Phase::Testing => matches!(p, Phase::Pending | Phase::Stabilization),
        Phase::Recovery => matches!(p, Phase::Pending | Phase::Stabilization | Phase::Testing),
        Phase::Completed | Phase::Aborted => true,
        _ => false,
    };
    let stabilized = if after(Phase::Stabilization) {
        c("Stabilized", true, "StabilizationDone", "baseline observed with no faults")
    } else if phase == Phase::Stabilization {
        c("Stabilized", false, "Stabilizing", "targets reset, observing the baseline")
    } else {
        c("Stabilized", false, "NotStarted", "the run has not started")
    };
    let injected = match (phase, trouble) {
        (Phase::Testing, Some(p)) => c("FaultsInjected", false, p.kind.reason(), &p.message),
        (Phase::Testing, None) => c("FaultsInjected", true, "FaultsApplied", "faults are on the targets"),
        _ if after(Phase::Testing) => c("FaultsInjected", false, "FaultsRemoved", "faults were applied and removed"),
        _ => c("FaultsInjected", false, "NotYet", "no faults applied yet"),
    };
    let recovered = if after(Phase::Recovery) {
        c("Recovered", true, "RecoveryDone", "the Recovery phase ended")
    } else if phase == Phase::Recovery {
        c("Recovered", false, "Recovering", "faults removed, observing healing")
    } else {
        c("Recovered", false, "NotYet", "Recovery has not started")
    };
    let verdict = match (verdict, phase) {
        (Some(v), _) => c("VerdictReached", true, &format!("{v:?}"), message),
        (None, Phase::Failed) => c("VerdictReached", false, "RunFailed", message),
        _ => c("VerdictReached", false, "Running", "checks are judged when the run ends"),
    };
    vec![stabilized, injected, recovered, verdict]
}

#[cfg(test)]
mod tests {
    use chaoslab_testenv::at;

    use super::*;

    #[test]
    fn conditions_keep_their_transition_time_until_they_change() {
        let first = conditions(&[], Phase::Testing, None, "", 1, at(30));
        let again = conditions(&first, Phase::Testing, None, "", 1, at(40));
        assert_eq!(first, again, "nothing changed: same conditions, no status write");
        let later = conditions(&again, Phase::Recovery, None, "", 1, at(90));
        let injected = later.iter().find(|c| c.type_ == "FaultsInjected").unwrap();
        assert_eq!((injected.status.as_str(), injected.last_transition_time.0), ("False", at(90)));
        let stabilized = later.iter().find(|c| c.type_ == "Stabilized").unwrap();
        assert_eq!(stabilized.last_transition_time.0, at(30));
    }

    #[test]
    fn a_verdict_sets_verdict_reached() {
        let cs = conditions(&[], Phase::Completed, Some(Verdict::Passed), "all 8 checks passed", 2, at(150));
        let v = cs.iter().find(|c| c.type_ == "VerdictReached").unwrap();
        assert_eq!((v.status.as_str(), v.reason.as_str(), v.observed_generation), ("True", "Passed", Some(2)));
        assert!(cs.iter().all(|c| c.type_ == "VerdictReached" || c.status == "True" || c.type_ == "FaultsInjected"));
    }
}
