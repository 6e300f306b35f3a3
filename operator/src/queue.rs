//! One scenario per proxy at a time: first come, first served by creation time. Pure: the keys of
//! every scenario (resolved proxy identities, see `targets::keys`) come in as arguments.

use std::collections::BTreeSet;

use chaoslab_core::api::ChaosScenarioStatus;
use jiff::Timestamp;

/// What one scenario claims of the shared proxies.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// `namespace/name`.
    pub key: String,
    pub uid: String,
    pub created: Option<Timestamp>,
    pub state: State,
    /// The proxies it drives or may drive.
    pub proxies: BTreeSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Admitted and not over, or over with faults not yet proven removed: its proxies are taken.
    Holds,
    /// Not admitted yet: goes first on shared proxies if it was created first.
    Waits,
    /// Over and clean, or being deleted and clean: claims nothing.
    Done,
}

/// The state of a scenario with `status`; `deleting` once it has a deletionTimestamp, `just_admitted`
/// when this process admitted it and the cached status may not show it yet.
pub fn state(status: Option<&ChaosScenarioStatus>, deleting: bool, just_admitted: bool) -> State {
    let default = ChaosScenarioStatus::default();
    let st = status.unwrap_or(&default);
    let over = st.phase.is_some_and(|p| p.is_terminal()) || deleting;
    let admitted = st.started_at.is_some() || just_admitted;
    if !crate::record::settled(&st.targets) || (admitted && !over) {
        State::Holds
    } else if over {
        State::Done
    } else {
        State::Waits
    }
}

/// A claim's place in the queue: creation time, then name.
fn order(c: &Claim) -> (Option<Timestamp>, &str) {
    (c.created, c.key.as_str())
}

/// The scenario `me` must wait for, if any, and a proxy they share: one that holds a shared proxy,
/// or one created earlier that waits for a shared proxy.
pub fn blocker<'a>(me: &Claim, others: &'a [Claim]) -> Option<(&'a Claim, &'a String)> {
    others.iter().filter(|o| o.uid != me.uid).find_map(|o| {
        let shared = o.proxies.iter().find(|p| me.proxies.contains(*p))?;
        let blocks = match o.state {
            State::Holds => true,
            State::Waits => order(o) < order(me),
            State::Done => false,
        };
        blocks.then_some((o, shared))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaoslab_core::api::{Phase, TargetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn claim(name: &str, created: i64, proxies: &[&str], state: State) -> Claim {
        Claim {
            key: format!("ns/{name}"),
            uid: name.into(),
            created: Some(Timestamp::from_second(created).unwrap()),
            state,
            proxies: proxies.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_scenario_holding_a_shared_proxy_blocks_whenever_it_was_created() {
        let a = claim("a", 2, &["x:1#p", "y:1#p"], State::Holds);
        let b = claim("b", 1, &["y:1#p"], State::Waits);
        let all = [a, b.clone()];
        let (blocker, shared) = blocker(&b, &all).unwrap();
        assert_eq!((blocker.key.as_str(), shared.as_str()), ("ns/a", "y:1#p"));
    }

    #[test]
    fn the_earlier_waiting_scenario_goes_first() {
        let a = claim("a", 1, &["x:1#p"], State::Waits);
        let b = claim("b", 2, &["x:1#p"], State::Waits);
        assert!(blocker(&b, &[a.clone(), b.clone()]).is_some());
        assert!(blocker(&a, &[a.clone(), b.clone()]).is_none());
    }

    #[test]
    fn other_proxies_and_finished_scenarios_do_not_block() {
        let a = claim("a", 1, &["y:1#p"], State::Holds);
        let other_proxy = claim("c", 1, &["x:1#q"], State::Holds);
        let done = claim("d", 1, &["x:1#p"], State::Done);
        let b = claim("b", 2, &["x:1#p"], State::Waits);
        assert!(blocker(&b, &[a, other_proxy, done, b.clone()]).is_none());
    }

    #[test]
    fn states_follow_admission_the_end_and_leftover_faults() {
        let at = |s| Some(Time(Timestamp::from_second(s).unwrap()));
        let status = |phase, started: Option<Time>, leftover: bool| ChaosScenarioStatus {
            phase: Some(phase),
            started_at: started,
            targets: vec![TargetStatus {
                name: "t".into(),
                endpoint: "http://x:1".into(),
                proxy: "p".into(),
                pod_uid: None,
                enabled: true,
                toxics: if leftover { vec!["chaoslab-o-loss-upstream".into()] } else { vec![] },
                error: None,
            }],
            ..Default::default()
        };
        assert_eq!(state(None, false, false), State::Waits);
        assert_eq!(state(None, false, true), State::Holds, "admitted here, not yet in the cache");
        assert_eq!(state(Some(&status(Phase::Queued, None, false)), false, false), State::Waits);
        // Admitted runs hold from their start time on, even while Pending until it comes.
        assert_eq!(state(Some(&status(Phase::Pending, at(1), false)), false, false), State::Holds);
        assert_eq!(state(Some(&status(Phase::Testing, at(1), false)), false, false), State::Holds);
        assert_eq!(state(Some(&status(Phase::Completed, at(1), false)), false, false), State::Done);
        assert_eq!(state(Some(&status(Phase::Completed, at(1), false)), false, true), State::Done, "over is over");
        assert_eq!(state(Some(&status(Phase::Testing, at(1), false)), true, false), State::Done);
        // A run that ended with faults it could not remove keeps its proxies until they are removed.
        assert_eq!(state(Some(&status(Phase::Failed, at(1), true)), false, false), State::Holds);
        assert_eq!(state(Some(&status(Phase::Failed, at(1), true)), true, false), State::Holds);
    }
}
