//! One scenario per target at a time: first come, first served by creation time. Pure.

use chaoslab_core::api::{ChaosScenario, Phase};

use crate::targets::scenario_keys;

fn running(p: Option<Phase>) -> bool {
    matches!(p, Some(Phase::Stabilization | Phase::Testing | Phase::Recovery))
}

fn waiting(p: Option<Phase>) -> bool {
    matches!(p, None | Some(Phase::Pending | Phase::Queued))
}

fn order(s: &ChaosScenario) -> (Option<jiff::Timestamp>, String, String) {
    (
        s.metadata.creation_timestamp.as_ref().map(|t| t.0),
        s.metadata.namespace.clone().unwrap_or_default(),
        s.metadata.name.clone().unwrap_or_default(),
    )
}

/// The scenario `me` must wait for, if any: one running on a shared target, or one created earlier
/// that waits for a shared target. `started` lists scenarios this process just started whose status
/// the cache may not show yet (by uid).
pub fn blocker<'a>(me: &ChaosScenario, others: &'a [ChaosScenario], started: &[String]) -> Option<&'a ChaosScenario> {
    let mine = scenario_keys(me);
    let my_uid = me.metadata.uid.as_deref();
    others.iter().filter(|o| o.metadata.uid.as_deref() != my_uid && o.metadata.deletion_timestamp.is_none()).find(|o| {
        if scenario_keys(o).is_disjoint(&mine) {
            return false;
        }
        let phase = o.status.as_ref().and_then(|s| s.phase);
        let just_started = o.metadata.uid.as_ref().is_some_and(|u| started.contains(u));
        running(phase) || (waiting(phase) && !just_started && order(o) < order(me)) || (waiting(phase) && just_started)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaoslab_core::api::ChaosScenarioStatus;
    use serde_json::json;

    fn scenario(name: &str, created: &str, url: &str, phase: Option<&str>) -> ChaosScenario {
        let mut s: ChaosScenario = serde_json::from_value(json!({
            "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario",
            "metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": created},
            "spec": {"template": "server-0-latency-100ms", "targets": {"endpoints": [{"name": "s", "url": url}]}}
        }))
        .unwrap();
        if let Some(p) = phase {
            s.status =
                Some(ChaosScenarioStatus { phase: serde_json::from_value(json!(p)).unwrap(), ..Default::default() });
        }
        s
    }

    const T1: &str = "2026-11-27T00:00:00Z";
    const T2: &str = "2026-11-27T00:00:01Z";

    #[test]
    fn a_running_scenario_on_the_same_target_blocks() {
        let a = scenario("a", T2, "http://x:1", Some("Testing"));
        let b = scenario("b", T1, "http://x:1", None);
        assert_eq!(blocker(&b, &[a.clone(), b.clone()], &[]).map(|s| s.metadata.name.as_deref()), Some(Some("a")));
    }

    #[test]
    fn the_earlier_waiting_scenario_goes_first() {
        let a = scenario("a", T1, "http://x:1", Some("Queued"));
        let b = scenario("b", T2, "http://x:1", None);
        assert!(blocker(&b, &[a.clone(), b.clone()], &[]).is_some());
        assert!(blocker(&a, &[a.clone(), b.clone()], &[]).is_none());
    }

    #[test]
    fn other_targets_and_finished_scenarios_do_not_block() {
        let a = scenario("a", T1, "http://y:1", Some("Testing"));
        let done = scenario("c", T1, "http://x:1", Some("Completed"));
        let b = scenario("b", T2, "http://x:1", None);
        assert!(blocker(&b, &[a, done, b.clone()], &[]).is_none());
    }

    #[test]
    fn a_scenario_just_started_here_blocks_even_before_the_cache_shows_it() {
        let a = scenario("a", T2, "http://x:1", None);
        let b = scenario("b", T1, "http://x:1", None);
        assert!(blocker(&b, &[a.clone(), b.clone()], &["a".to_string()]).is_some());
    }
}
