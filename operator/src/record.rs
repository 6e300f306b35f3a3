//! The record in `status.targets` of every proxy that may hold a scenario's toxics. Pure.
//!
//! The rule that keeps faults from being orphaned: an entry is added *before* the first call that
//! could put a toxic on its proxy (see [`grow`]), and leaves the record only once a call proved the
//! proxy holds nothing of the scenario's (or its pod, and with it the Toxiproxy's memory, is gone).
//! A failed call keeps everything the proxy may hold: what it held, and what was asked of it.

use chaoslab_core::{api::TargetStatus, faults::DesiredProxy};

use crate::targets::Target;

fn same(entry: &TargetStatus, t: &Target) -> bool {
    entry.endpoint == t.url && entry.proxy == t.proxy
}

/// A fresh entry for a target that holds nothing of the scenario's yet.
fn fresh(t: &Target) -> TargetStatus {
    TargetStatus {
        name: t.name.clone(),
        endpoint: t.url.clone(),
        proxy: t.proxy.clone(),
        pod_uid: t.pod_uid.clone(),
        enabled: true,
        toxics: vec![],
        error: None,
    }
}

/// The record with the current `targets` first (in target order, their entries kept), then the
/// former entries that are not current any more. Never drops an entry.
pub fn grow(record: &[TargetStatus], targets: &[Target]) -> Vec<TargetStatus> {
    let current = targets.iter().map(|t| record.iter().find(|e| same(e, t)).cloned().unwrap_or_else(|| fresh(t)));
    let former = record.iter().filter(|e| !targets.iter().any(|t| same(e, t))).cloned();
    current.chain(former).collect()
}

/// Whether `grown` has an entry `record` lacks: then it must be written before any Toxiproxy call.
pub fn has_new_entries(record: &[TargetStatus], grown: &[TargetStatus]) -> bool {
    grown.iter().any(|g| !record.iter().any(|e| e.endpoint == g.endpoint && e.proxy == g.proxy))
}

/// Whether every entry is proven to hold nothing of the scenario's.
pub fn settled(record: &[TargetStatus]) -> bool {
    record.iter().all(TargetStatus::settled)
}

/// The entry after a call that succeeded: the proxy's flag and the scenario's toxics it now holds.
pub fn converged(entry: &TargetStatus, enabled: bool, held: Vec<String>) -> TargetStatus {
    TargetStatus { enabled, toxics: held, error: None, ..entry.clone() }
}

/// The entry after a call that failed: the proxy may hold what it held, and what was asked of it.
pub fn failed(entry: &TargetStatus, desired: &DesiredProxy, error: String) -> TargetStatus {
    let mut toxics = entry.toxics.clone();
    for t in &desired.toxics {
        if !toxics.contains(&t.name) {
            toxics.push(t.name.clone());
        }
    }
    let enabled = entry.enabled && desired.enabled != Some(false);
    TargetStatus { enabled, toxics, error: Some(error), ..entry.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaoslab_core::{
        catalog::loss,
        faults::{ProxyKind, desired_for},
    };

    fn target(name: &str, url: &str) -> Target {
        Target { name: name.into(), url: url.into(), proxy: "backend".into(), pod_uid: None }
    }

    fn holding(t: &Target, toxics: &[&str]) -> TargetStatus {
        TargetStatus { toxics: toxics.iter().map(|s| s.to_string()).collect(), ..fresh(t) }
    }

    #[test]
    fn growing_keeps_former_targets_after_the_current_ones() {
        let (a, b, c) = (target("a", "http://a:1"), target("b", "http://b:1"), target("c", "http://c:1"));
        let record = vec![holding(&a, &["x"]), holding(&b, &["y"])];
        // A mid-run edit: b left the target set, c joined.
        let grown = grow(&record, &[c.clone(), a.clone()]);
        let names: Vec<&str> = grown.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert_eq!(grown[1].toxics, ["x"], "a keeps what it holds");
        assert_eq!(grown[2].toxics, ["y"], "b stays until proven clean");
        assert!(has_new_entries(&record, &grown));
        assert!(!has_new_entries(&grown, &grow(&grown, &[a])));
    }

    #[test]
    fn a_failed_call_keeps_what_the_proxy_may_hold() {
        let t = target("a", "http://a:1");
        let before = holding(&t, &["old"]);
        let desired = desired_for(&loss(0, 100.0), "o", ProxyKind::Toxiproxy);
        let after = failed(&before, &desired, "no answer".into());
        assert_eq!(after.toxics.len(), 3, "old plus both loss toxics: {:?}", after.toxics);
        assert!(!after.settled());
        // Even a failed release of a proxy that held nothing is not proof: the call may never have landed.
        assert!(!failed(&fresh(&t), &DesiredProxy::release("o"), "refused".into()).settled());
    }

    #[test]
    fn only_a_successful_call_that_left_nothing_settles_an_entry() {
        let t = target("a", "http://a:1");
        let e = converged(&holding(&t, &["x"]), true, vec![]);
        assert!(e.settled());
        assert!(settled(std::slice::from_ref(&e)));
        assert!(!settled(&[e, holding(&t, &["x"])]));
    }
}
