//! The phase engine: where a scenario is at `now` and what every target must hold then.
//! Pure: takes the spec, the number of resolved targets, the start time and `now`.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{ChaosScenarioSpec, Fault, Phase, PhaseRecord, Phases},
    catalog,
    faults::{DesiredProxy, ProxyKind, desired_for},
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("spec.template {0:?} is not a catalog scenario; `chaoslab list` shows the names")]
    UnknownTemplate(String),
    #[error("set exactly one of spec.template or spec.faults")]
    TemplateXorFaults,
    #[error("no targets were resolved: the selector matched no pods, or endpoints is empty")]
    NoTargets,
    #[error("spec.faults targets index {target}, but only {targets} target(s) were resolved (indices start at 0)")]
    TargetOutOfRange { target: i32, targets: usize },
    #[error("spec.faults names target {0} more than once: put all effects for one target into one entry")]
    DuplicateTarget(i32),
}

/// How far ahead of a phase boundary a run is woken ([`crate::verification::next_check`]). The
/// step then does its work before the calls (reading status and targets, planning) and waits out the
/// rest ([`Plan::boundary_within_wake`]), so its calls start at the boundary. Where hundreds of runs
/// share a boundary, their steps' wait for a turn on the CPU falls before it too: woken at the
/// boundary, those waits were a third of a phase change's lateness.
pub const WAKE_AHEAD: Duration = Duration::from_millis(50);

/// The phase timeline of one run, anchored at its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub start: Timestamp,
    pub stabilization: Duration,
    pub testing: Duration,
    pub recovery: Duration,
    /// When Testing was cut short (spec.abort); Recovery then starts here and runs its full length.
    pub aborted_at: Option<Timestamp>,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

impl Plan {
    pub fn new(start: Timestamp, phases: &Phases) -> Self {
        Self {
            start,
            stabilization: phases.stabilization.0,
            testing: phases.testing.0,
            recovery: phases.recovery.0,
            aborted_at: None,
        }
    }

    /// The same plan with Testing ending at `at` (ignored outside Testing).
    pub fn abort_at(mut self, at: Option<Timestamp>) -> Self {
        self.aborted_at = at;
        self
    }

    /// When a timed phase starts; Completed "starts" when Recovery ends.
    pub fn starts(&self, phase: Phase) -> Option<Timestamp> {
        let testing = after(self.start, self.stabilization);
        let planned = after(testing, self.testing);
        let recovery = match self.aborted_at {
            Some(a) if a >= testing && a < planned => a,
            _ => planned,
        };
        match phase {
            Phase::Stabilization => Some(self.start),
            Phase::Testing => Some(testing),
            Phase::Recovery => Some(recovery),
            Phase::Completed => Some(after(recovery, self.recovery)),
            _ => None,
        }
    }

    pub fn end(&self) -> Timestamp {
        self.starts(Phase::Completed).expect("Completed has a start")
    }

    /// The phase at `now`: a deadline belongs to the phase it starts.
    pub fn phase_at(&self, now: Timestamp) -> Phase {
        if now < self.start {
            return Phase::Pending;
        }
        [Phase::Completed, Phase::Recovery, Phase::Testing]
            .into_iter()
            .find(|p| self.starts(*p).is_some_and(|s| now >= s))
            .unwrap_or(Phase::Stabilization)
    }

    /// Start and end of a timed phase.
    pub fn bounds(&self, phase: Phase) -> Option<(Timestamp, Timestamp)> {
        let next = match phase {
            Phase::Stabilization => Phase::Testing,
            Phase::Testing => Phase::Recovery,
            Phase::Recovery => Phase::Completed,
            _ => return None,
        };
        Some((self.starts(phase)?, self.starts(next)?))
    }

    /// The timed phases entered by `now`, with their start and (once over) end.
    pub fn timeline(&self, now: Timestamp) -> Vec<PhaseRecord> {
        Phase::TIMED
            .iter()
            .filter_map(|phase| {
                let (start, end) = self.bounds(*phase)?;
                (start <= now).then(|| PhaseRecord {
                    phase: *phase,
                    start: Time(start),
                    end: (end <= now).then_some(Time(end)),
                })
            })
            .collect()
    }

    /// The next phase boundary strictly after `now`, or None once the run is over.
    pub fn next_deadline(&self, now: Timestamp) -> Option<Timestamp> {
        [Phase::Stabilization, Phase::Testing, Phase::Recovery, Phase::Completed]
            .into_iter()
            .filter_map(|p| self.starts(p))
            .find(|s| *s > now)
    }

    /// The next boundary and the wait for it, when it is at most [`WAKE_AHEAD`] away: a step woken
    /// ahead of a boundary waits it out and then applies the new phase.
    pub fn boundary_within_wake(&self, now: Timestamp) -> Option<(Timestamp, Duration)> {
        let next = self.next_deadline(now)?;
        let left = Duration::try_from(next.duration_since(now)).ok()?;
        (left <= WAKE_AHEAD).then_some((next, left))
    }
}

/// The faults a spec asks for, from its template or its explicit list, checked against the targets.
pub fn resolve_faults(spec: &ChaosScenarioSpec, targets: usize) -> Result<&[Fault], EngineError> {
    let faults: &[Fault] = match (&spec.template, &spec.faults) {
        (Some(t), None) => &catalog::find(&t.0).ok_or_else(|| EngineError::UnknownTemplate(t.0.clone()))?.faults,
        (None, Some(f)) => f,
        _ => return Err(EngineError::TemplateXorFaults),
    };
    if targets == 0 {
        return Err(EngineError::NoTargets);
    }
    for (i, f) in faults.iter().enumerate() {
        if f.target < 0 || f.target as usize >= targets {
            return Err(EngineError::TargetOutOfRange { target: f.target, targets });
        }
        if faults[..i].iter().any(|g| g.target == f.target) {
            return Err(EngineError::DuplicateTarget(f.target));
        }
    }
    Ok(faults)
}

/// Where a scenario is and what its targets must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Moment {
    pub phase: Phase,
    /// When to look again; None once the run is over.
    pub next_deadline: Option<Timestamp>,
    /// One entry per target, in target order.
    pub targets: Vec<DesiredProxy>,
}

/// The scenario at `now` on `plan` (built from the same spec's phases). In Stabilization and Recovery
/// every target is reset (enabled, no toxic of the owner's nor any that is not chaoslab's); during
/// Testing each faulted target holds exactly its fault's toxics and the others are clean; before the
/// start and after the end the owner only lets go ([`DesiredProxy::release`]). `owner` tags the
/// toxic names; `proxies` has the kind of each target's proxy, in target order.
pub fn moment(
    spec: &ChaosScenarioSpec,
    owner: &str,
    proxies: &[ProxyKind],
    plan: &Plan,
    now: Timestamp,
) -> Result<Moment, EngineError> {
    let faults = resolve_faults(spec, proxies.len())?;
    let phase = plan.phase_at(now);
    let desired = (0..proxies.len())
        .map(|i| match faults.iter().find(|f| f.target as usize == i) {
            Some(f) if phase == Phase::Testing => desired_for(f, owner, proxies[i]),
            _ if phase == Phase::Testing => DesiredProxy::clean(owner),
            _ if Phase::TIMED.contains(&phase) => DesiredProxy::reset(owner),
            _ => DesiredProxy::release(owner),
        })
        .collect();
    Ok(Moment { phase, next_deadline: plan.next_deadline(now), targets: desired })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{Targets, TemplateName},
        catalog::{latency, loss},
        duration::PhaseDuration,
    };

    fn spec(template: &str) -> ChaosScenarioSpec {
        ChaosScenarioSpec {
            template: Some(TemplateName(template.into())),
            faults: None,
            targets: Targets { selector: None, admin_port: 8474, proxy: "backend".into(), endpoints: None },
            phases: Phases::default(),
            client: None,
            abort: None,
            expect: None,
        }
    }

    fn t0() -> Timestamp {
        "2026-11-27T00:00:00Z".parse().unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        t0() + SignedDuration::from_secs(secs)
    }

    fn run(s: &ChaosScenarioSpec, targets: usize, now: Timestamp) -> Result<Moment, EngineError> {
        moment(s, "o", &vec![ProxyKind::Toxiproxy; targets], &Plan::new(t0(), &s.phases), now)
    }

    fn toxic_counts(m: &Moment) -> Vec<usize> {
        m.targets.iter().map(|t| t.toxics.len()).collect()
    }

    #[test]
    fn before_start_is_pending_and_clean() {
        let m = run(&spec("multi-failure-2-servers-packet-loss"), 3, at(-5)).unwrap();
        assert_eq!(m.phase, Phase::Pending);
        assert_eq!(m.next_deadline, Some(t0()));
        assert!(m.targets.iter().all(|t| *t == DesiredProxy::release("o")));
    }

    #[test]
    fn every_boundary_belongs_to_the_phase_it_starts() {
        let s = spec("multi-failure-2-servers-packet-loss");
        let cases = [
            (0, Phase::Stabilization, Some(30), [0, 0, 0]),
            (29, Phase::Stabilization, Some(30), [0, 0, 0]),
            (30, Phase::Testing, Some(90), [2, 2, 0]),
            (89, Phase::Testing, Some(90), [2, 2, 0]),
            (90, Phase::Recovery, Some(150), [0, 0, 0]),
            (149, Phase::Recovery, Some(150), [0, 0, 0]),
            (150, Phase::Completed, None, [0, 0, 0]),
            (100_000, Phase::Completed, None, [0, 0, 0]),
        ];
        for (secs, phase, deadline, counts) in cases {
            let m = run(&s, 3, at(secs)).unwrap();
            assert_eq!(m.phase, phase, "at {secs}s");
            assert_eq!(m.next_deadline, deadline.map(at), "deadline at {secs}s");
            assert_eq!(toxic_counts(&m), counts, "toxics at {secs}s");
        }
    }

    #[test]
    fn one_nanosecond_before_a_deadline_is_still_the_earlier_phase() {
        let s = spec("server-0-latency-500ms");
        let just_before = at(30) - SignedDuration::from_nanos(1);
        assert_eq!(run(&s, 3, just_before).unwrap().phase, Phase::Stabilization);
        assert_eq!(run(&s, 3, at(30)).unwrap().phase, Phase::Testing);
    }

    #[test]
    fn a_step_woken_ahead_of_a_boundary_waits_for_it_and_no_other_does() {
        let s = spec("server-0-latency-500ms");
        let plan = Plan::new(t0(), &s.phases);
        let ms = SignedDuration::from_millis;
        assert_eq!(plan.boundary_within_wake(at(30) - ms(50)), Some((at(30), WAKE_AHEAD)));
        assert_eq!(plan.boundary_within_wake(at(30) - ms(1)), Some((at(30), Duration::from_millis(1))));
        // A check earlier than that, or a step at the boundary itself, applies what is due now.
        assert_eq!(plan.boundary_within_wake(at(30) - ms(51)), None);
        assert_eq!(plan.boundary_within_wake(at(30)), None);
        // The run's start is a boundary too; after its end there is none.
        assert_eq!(plan.boundary_within_wake(at(0) - ms(20)), Some((at(0), Duration::from_millis(20))));
        assert_eq!(plan.boundary_within_wake(plan.end() + ms(1)), None);
    }

    #[test]
    fn stabilization_and_recovery_reset_every_target() {
        let s = spec("multi-failure-2-servers-packet-loss");
        for secs in [0, 90] {
            let m = run(&s, 3, at(secs)).unwrap();
            assert!(m.targets.iter().all(|t| *t == DesiredProxy::reset("o")), "at {secs}s");
        }
    }

    #[test]
    fn testing_targets_hold_exactly_their_faults_and_others_are_clean() {
        let s = spec("multi-failure-2-servers-latency");
        let m = moment(&s, "abc", &[ProxyKind::Toxiproxy; 3], &Plan::new(t0(), &s.phases), at(45)).unwrap();
        assert_eq!(m.targets[0], desired_for(&latency(0, 500), "abc", ProxyKind::Toxiproxy));
        assert_eq!(m.targets[1], desired_for(&latency(1, 500), "abc", ProxyKind::Toxiproxy));
        assert_eq!(m.targets[2], DesiredProxy::clean("abc"));
    }

    #[test]
    fn each_target_gets_the_mapping_of_its_proxy() {
        let s = spec("multi-failure-2-servers-packet-loss");
        let mut s = ChaosScenarioSpec { template: None, faults: Some(vec![loss(0, 30.0), loss(1, 30.0)]), ..s };
        let proxies = [ProxyKind::Faultproxy, ProxyKind::Toxiproxy, ProxyKind::Faultproxy];
        let m = moment(&s, "o", &proxies, &Plan::new(t0(), &s.phases), at(45)).unwrap();
        assert_eq!(m.targets[0], desired_for(&loss(0, 30.0), "o", ProxyKind::Faultproxy));
        assert_eq!(m.targets[1], desired_for(&loss(1, 30.0), "o", ProxyKind::Toxiproxy));
        assert_ne!(m.targets[0].toxics, m.targets[1].toxics);
        s.faults = Some(vec![loss(0, 100.0), loss(1, 100.0)]);
        let m = moment(&s, "o", &proxies, &Plan::new(t0(), &s.phases), at(45)).unwrap();
        assert_eq!(m.targets[0].toxics, m.targets[1].toxics, "a blackhole is a blackhole on both");
    }

    #[test]
    fn an_edited_spec_takes_effect_from_the_same_start() {
        // Generation 2 shortens Testing to 10s while the run is 20s into Testing: it is now Recovery.
        let mut s = spec("multi-failure-2-servers-packet-loss");
        assert_eq!(run(&s, 3, at(50)).unwrap().phase, Phase::Testing);
        s.phases.testing = PhaseDuration::from_secs(10);
        let m = run(&s, 3, at(50)).unwrap();
        assert_eq!(m.phase, Phase::Recovery);
        assert_eq!(m.next_deadline, Some(at(100)));
        // Editing the faults mid-Testing changes the desired toxics at once.
        s.phases.testing = PhaseDuration::from_secs(60);
        s.template = None;
        s.faults = Some(vec![latency(2, 100)]);
        assert_eq!(toxic_counts(&run(&s, 3, at(50)).unwrap()), [0, 0, 1]);
    }

    #[test]
    fn zero_targets_is_an_error() {
        let err = run(&spec("server-0-latency-100ms"), 0, at(0)).unwrap_err();
        assert_eq!(err, EngineError::NoTargets);
    }

    #[test]
    fn bad_fault_lists_name_the_problem() {
        let mut s = spec("x");
        assert_eq!(run(&s, 3, at(0)).unwrap_err(), EngineError::UnknownTemplate("x".into()));
        s.template = None;
        s.faults = Some(vec![loss(3, 100.0)]);
        let err = run(&s, 3, at(0)).unwrap_err();
        assert_eq!(err, EngineError::TargetOutOfRange { target: 3, targets: 3 });
        assert!(err.to_string().contains("index 3"));
        s.faults = Some(vec![loss(1, 100.0), latency(1, 5)]);
        assert_eq!(run(&s, 3, at(0)).unwrap_err(), EngineError::DuplicateTarget(1));
        s.faults = None;
        assert_eq!(run(&s, 3, at(0)).unwrap_err(), EngineError::TemplateXorFaults);
    }

    #[test]
    fn single_server_scenarios_need_only_as_many_targets_as_they_fault() {
        assert!(run(&spec("server-0-packet-loss-100"), 1, at(40)).is_ok());
        assert!(run(&spec("server-2-packet-loss-100"), 2, at(40)).is_err());
    }

    #[test]
    fn an_abort_ends_testing_early_and_recovery_keeps_its_length() {
        let s = spec("multi-failure-2-servers-packet-loss");
        let plan = Plan::new(t0(), &s.phases).abort_at(Some(at(40)));
        assert_eq!(plan.phase_at(at(39)), Phase::Testing);
        assert_eq!(plan.phase_at(at(40)), Phase::Recovery);
        assert_eq!(plan.end(), at(100));
        assert_eq!(toxic_counts(&moment(&s, "o", &[ProxyKind::Toxiproxy; 3], &plan, at(45)).unwrap()), [0, 0, 0]);
        // An abort time outside Testing changes nothing.
        assert_eq!(Plan::new(t0(), &s.phases).abort_at(Some(at(5))).end(), at(150));
    }

    #[test]
    fn timeline_lists_entered_phases_with_ends_once_over() {
        let plan = Plan::new(t0(), &Phases::default());
        let tl = plan.timeline(at(45));
        assert_eq!(tl.len(), 2);
        assert_eq!((tl[0].phase, tl[0].end.as_ref().map(|t| t.0)), (Phase::Stabilization, Some(at(30))));
        assert_eq!((tl[1].phase, tl[1].end.clone()), (Phase::Testing, None));
        assert!(plan.timeline(at(-1)).is_empty());
        let done = plan.timeline(at(1000));
        assert_eq!(done.len(), 3);
        assert!(done.iter().all(|r| r.end.is_some()));
    }

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let mut s = spec("server-0-latency-100ms");
        s.phases.testing = PhaseDuration(Duration::from_secs(u64::MAX / 4));
        let m = run(&s, 3, at(40)).unwrap();
        assert_eq!(m.phase, Phase::Testing);
    }
}
