//! No fault left behind, none removed behind a running run's back: the operator against a real
//! kube-apiserver and real toxiproxy-servers, through deletions, edits, hangs and dead targets.

mod common;

use std::time::{Duration, Instant};

use chaoslab_core::{
    api::{ChaosScenario, Phase},
    faults::owner_of,
};
use chaoslab_testenv::{RedisServer, ToxiproxyServer, free_port};
use chaoslab_toxiproxy::{Client as Toxiproxy, NewProxy};
use common::*;
use k8s_openapi::api::{core::v1::Pod, events::v1::Event};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// A scenario from explicit parts of its spec (faults, targets, phases).
fn custom(name: &str, spec: Value) -> ChaosScenario {
    serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn selector(admin: u16) -> Value {
    json!({"selector": {"matchLabels": {LABEL: "backend"}}, "adminPort": admin})
}

fn phases(s: &str, t: &str, r: &str) -> Value {
    json!({"stabilization": s, "testing": t, "recovery": r})
}

/// The chaoslab toxics on one backend's proxy, and whether it is enabled.
async fn held(b: &Backend) -> (Vec<String>, bool) {
    let p = b.client().proxy("backend").await.unwrap();
    let mut names: Vec<String> = p.toxics.into_iter().map(|t| t.name).filter(|n| owner_of(n).is_some()).collect();
    names.sort();
    (names, p.enabled)
}

async fn gone(api: &Api<ChaosScenario>, name: &str, limit: Duration) {
    let t0 = Instant::now();
    while api.get_opt(name).await.unwrap().is_some() {
        assert!(t0.elapsed() < limit, "{name} still there after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn events(client: &kube::Client, ns: &str, reason: &str) -> Vec<Event> {
    let all = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap();
    all.items.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

#[tokio::test]
async fn letting_go_of_a_queued_or_finished_scenario_keeps_the_running_ones_faults() {
    let (client, ns, api) = setup("keep").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    let pp = PostParams::default();
    api.create(&pp, &scenario("old", "server-0-latency-100ms", admin, None, ("1s", "1s", "1s"))).await.unwrap();
    wait_for(&api, "old", Duration::from_secs(30), |s| phase(s) == Some(Phase::Completed)).await;
    // The running one: server 0 down and slow.
    let faults = json!([{"target": 0, "down": true, "latency": {"delayMs": 300}}]);
    let spec = json!({"faults": faults, "targets": selector(admin), "phases": phases("1s", "60s", "1s")});
    api.create(&pp, &custom("a", spec)).await.unwrap();
    wait_for(&api, "a", Duration::from_secs(30), |s| phase(s) == Some(Phase::Testing)).await;
    let (faulted, enabled) = held(&backends[0]).await;
    assert_eq!((faulted.len(), enabled), (2, false), "latency and the down marker: {faulted:?}");
    api.create(&pp, &scenario("b", "server-0-latency-100ms", admin, None, ("1s", "1s", "1s"))).await.unwrap();
    let b = wait_for(&api, "b", Duration::from_secs(20), |s| phase(s).is_some()).await;
    assert_eq!(phase(&b), Some(Phase::Queued));

    api.delete("b", &DeleteParams::default()).await.unwrap();
    api.delete("old", &DeleteParams::default()).await.unwrap();
    gone(&api, "b", Duration::from_secs(10)).await;
    gone(&api, "old", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(held(&backends[0]).await, (faulted, false), "a's faults are still in place");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    gone(&api, "a", Duration::from_secs(10)).await;
    for b in &backends {
        assert_eq!(held(b).await, (vec![], true), "a's deletion released everything");
    }
}

#[tokio::test]
async fn two_spellings_of_one_toxiproxy_are_one_target() {
    let (_client, ns, api) = setup("alias").await;
    let redis = RedisServer::start();
    let toxiproxy = ToxiproxyServer::start();
    let new = NewProxy { name: "backend".into(), listen: "127.0.0.1:0".into(), upstream: redis.addr(), enabled: None };
    Toxiproxy::new(&toxiproxy.url()).unwrap().create_proxy(&new).await.unwrap();
    let _op = operator(&ns);
    let on = |url: String| {
        json!({
            "faults": [{"target": 0, "latency": {"delayMs": 100}}],
            "targets": {"endpoints": [{"name": "s0", "url": url}]},
            "phases": phases("1s", "30s", "1s"),
        })
    };
    let pp = PostParams::default();
    api.create(&pp, &custom("by-ip", on(toxiproxy.url()))).await.unwrap();
    wait_for(&api, "by-ip", Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
    api.create(&pp, &custom("by-name", on(format!("http://localhost:{}/", toxiproxy.port)))).await.unwrap();
    let queued = wait_for(&api, "by-name", Duration::from_secs(20), |s| phase(s).is_some()).await;
    let st = queued.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Queued), "{:?}", st.message);
    let expected = format!("127.0.0.1:{}#backend", toxiproxy.port);
    assert!(st.message.as_deref().unwrap_or_default().contains(&expected), "{:?}", st.message);
}

#[tokio::test]
async fn an_edit_that_drops_targets_fails_the_run_and_leaves_no_fault_on_them() {
    let (client, ns, api) = setup("edit").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    let endpoints: Vec<Value> =
        backends.iter().enumerate().map(|(i, b)| json!({"name": format!("b{i}"), "url": b.toxiproxy.url()})).collect();
    let faults = json!([{"target": 1, "packetLoss": {"percent": 100}}, {"target": 2, "packetLoss": {"percent": 100}}]);
    let spec = json!({"faults": faults, "targets": {"endpoints": endpoints}, "phases": phases("1s", "60s", "1s")});
    api.create(&PostParams::default(), &custom("e", spec)).await.unwrap();
    wait_for(&api, "e", Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
    assert_eq!(chaoslab_toxics(&backends).await.len(), 4);

    // Endpoint 0 removed: the faults now name index 2 of two targets.
    let patch = json!([{"op": "remove", "path": "/spec/targets/endpoints/0"}]);
    api.patch("e", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(patch).unwrap())).await.unwrap();
    let failed = wait_for(&api, "e", Duration::from_secs(20), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let st = failed.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Failed));
    assert!(st.message.as_deref().unwrap_or_default().contains("index 2"), "{:?}", st.message);
    assert_eq!(chaoslab_toxics(&backends).await, Vec::<String>::new(), "nothing left on any proxy");
    let recorded: Vec<(&str, bool)> = st.targets.iter().map(|t| (t.name.as_str(), t.settled())).collect();
    assert_eq!(recorded, [("b1", true), ("b2", true)], "the current targets stay on record, proven clean");
}

#[tokio::test]
async fn faults_on_a_toxiproxy_that_hung_are_removed_once_it_answers_again() {
    let (client, ns, api) = setup("hung").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    let template = "multi-failure-2-servers-packet-loss";
    api.create(&PostParams::default(), &scenario("h", template, admin, None, ("1s", "4s", "10s"))).await.unwrap();
    wait_for(&api, "h", Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
    // Hung through the end of Testing: the operator cannot remove the faults it put there. A hang
    // is transient: the run goes on to its end, the target stays on record with its faults.
    backends[1].toxiproxy.process.pause();
    let done = wait_for(&api, "h", Duration::from_secs(40), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Completed), "{:?}", st.message);
    let entry = st.targets.iter().find(|t| t.name == "backend-1").expect("backend-1 stays on record");
    assert!(entry.error.is_some() && entry.toxics.len() == 2, "{entry:?}");
    backends[1].toxiproxy.process.resume();
    let t0 = Instant::now();
    while !chaoslab_toxics(&backends).await.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(30), "the leftover faults were not removed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("leftover faults removed {:?} after the Toxiproxy answered again", t0.elapsed());
    let settled = wait_for(&api, "h", Duration::from_secs(10), |s| {
        s.status.as_ref().is_some_and(|st| st.targets.iter().all(|t| t.settled()))
    })
    .await;
    assert_eq!(phase(&settled), Some(Phase::Completed));
}

#[tokio::test]
async fn a_deleted_scenario_waits_until_its_faults_are_removed() {
    let (client, ns, api) = setup("wait").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    let template = "multi-failure-2-servers-packet-loss";
    api.create(&PostParams::default(), &scenario("w", template, admin, None, ("1s", "60s", "1s"))).await.unwrap();
    wait_for(&api, "w", Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
    backends[0].toxiproxy.process.pause();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    // A check already waiting on the hung Toxiproxy, then the cleanup's own tries (2 s each, 3).
    let t0 = Instant::now();
    let note = loop {
        let blocked = events(&client, &ns, "CleanupBlocked").await;
        if let Some(note) = blocked.first().and_then(|e| e.note.clone()) {
            break note;
        }
        assert!(t0.elapsed() < Duration::from_secs(40), "no CleanupBlocked event");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(api.get_opt("w").await.unwrap().is_some(), "deleted while backend-0 still holds its faults");
    assert!(note.contains("backend-0") && note.contains("abandon-faults"), "{note}");
    backends[0].toxiproxy.process.resume();
    gone(&api, "w", Duration::from_secs(30)).await;
    assert!(chaoslab_toxics(&backends).await.is_empty());
}

#[tokio::test]
async fn a_target_gone_for_good_releases_the_deletion() {
    let (client, ns, api) = setup("dead").await;
    let admin = free_port();
    let mut backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    let template = "multi-failure-2-servers-packet-loss";
    let pp = PostParams::default();
    api.create(&pp, &scenario("pod", template, admin, None, ("1s", "60s", "1s"))).await.unwrap();
    wait_for(&api, "pod", Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
    // The pod goes, and its Toxiproxy with it: so do the faults it held.
    backends[0].toxiproxy.process.kill();
    Api::<Pod>::namespaced(client.clone(), &ns).delete("backend-0", &DeleteParams::default()).await.unwrap();
    api.delete("pod", &DeleteParams::default()).await.unwrap();
    gone(&api, "pod", Duration::from_secs(20)).await;
    assert!(held(&backends[1]).await.0.is_empty());

    // An endpoint no pod stands for: its faults are given up only when the user says so.
    let spec = json!({
        "faults": [{"target": 0, "latency": {"delayMs": 100}}],
        "targets": {"endpoints": [{"name": "s1", "url": backends[1].toxiproxy.url()}]},
        "phases": phases("1s", "60s", "1s"),
    });
    api.create(&pp, &custom("url", spec)).await.unwrap();
    wait_for(&api, "url", Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
    backends[1].toxiproxy.process.kill();
    api.delete("url", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(api.get_opt("url").await.unwrap().is_some(), "deleted with its faults unaccounted for");
    let annotate = json!({"metadata": {"annotations": {"chaoslab.dev/abandon-faults": "true"}}});
    api.patch("url", &PatchParams::default(), &Patch::Merge(&annotate)).await.unwrap();
    gone(&api, "url", Duration::from_secs(20)).await;
    assert!(!events(&client, &ns, "FaultsAbandoned").await.is_empty(), "the abandon is on record");
}
