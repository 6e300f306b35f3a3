//! Trouble on the way, against the real operator, apiserver and toxiproxy-servers: transient
//! problems keep a run in its phase and say where; permanent ones end it with the fix; faults lost
//! by a restarted Toxiproxy come back within a check; a hung Toxiproxy delays no other scenario.

mod common;

use std::time::{Duration, Instant};

use chaoslab_core::api::{ChaosScenario, Phase};
use chaoslab_testenv::{ScratchDir, ToxiproxyServer, free_port};
use chaoslab_toxiproxy::NewProxy;
use common::*;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use serde_json::json;

const LOSS: &str = "multi-failure-2-servers-packet-loss";

async fn events(client: &kube::Client, ns: &str, reason: &str) -> Vec<Event> {
    let all = kube::Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap();
    all.items.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

/// A scenario on explicit endpoints (name, admin URL), with `extra` merged into its spec.
fn on_endpoints(name: &str, template: &str, endpoints: &[(&str, String)], phases: (&str, &str, &str)) -> ChaosScenario {
    let eps: Vec<_> = endpoints.iter().map(|(n, u)| json!({"name": n, "url": u})).collect();
    serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario", "metadata": {"name": name},
        "spec": {
            "template": template, "targets": {"endpoints": eps},
            "phases": {"stabilization": phases.0, "testing": phases.1, "recovery": phases.2},
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn an_unreachable_toxiproxy_keeps_the_run_in_its_phase_and_says_where() {
    let (client, ns, api) = setup("down").await;
    let admin = free_port();
    let mut backends = backends(&client, &ns, 3, admin).await;
    backends[1].toxiproxy.process.kill();
    let url = backends[1].toxiproxy.url();
    let _op = operator(&ns);
    api.create(&PostParams::default(), &scenario("f", LOSS, admin, None, ("2s", "4s", "2s"))).await.unwrap();
    let testing = wait_for(&api, "f", Duration::from_secs(30), |s| phase(s) == Some(Phase::Testing)).await;
    let st = testing.status.unwrap();
    let injected = st.conditions.iter().find(|c| c.type_ == "FaultsInjected").unwrap();
    assert_eq!((injected.status.as_str(), injected.reason.as_str()), ("False", "ToxiproxyUnreachable"));
    assert!(injected.message.contains("backend-1") && injected.message.contains(&url), "{}", injected.message);
    let note = events(&client, &ns, "ToxiproxyUnreachable").await.first().and_then(|e| e.note.clone());
    assert!(note.is_some_and(|n| n.contains(&url)), "an Event names the target's URL");

    let done = wait_for(&api, "f", Duration::from_secs(30), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Completed), "a blip is not a failure: {:?}", st.message);
    let lost = st.verification.iter().find(|v| v.phase == Phase::Testing && v.target == "backend-1");
    assert!(lost.is_none_or(|v| v.share == 0.0 && v.failed_checks > 0), "{:?}", st.verification);
    let held = st.verification.iter().find(|v| v.phase == Phase::Testing && v.target == "backend-0").unwrap();
    // Not the 0.9 bar of a verdict: a busy machine applies the faults late in so short a phase.
    assert!(held.share > 0.5 && held.failed_checks == 0, "the reachable targets were verified: {held:?}");
    assert!(st.targets.iter().any(|t| t.name == "backend-1" && t.error.is_some()), "backend-1 stays on record");
    for b in [&backends[0], &backends[2]] {
        assert!(b.client().toxics("backend").await.unwrap().is_empty(), "the reachable targets were cleaned");
    }
}

#[tokio::test]
async fn a_toxiproxy_without_the_named_proxy_fails_the_run_with_the_fix() {
    let (client, ns, api) = setup("noproxy").await;
    let admin = free_port();
    let _backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    let mut s = scenario("p", LOSS, admin, None, ("2s", "3s", "2s"));
    s.spec.targets.proxy = "redis".into();
    api.create(&PostParams::default(), &s).await.unwrap();
    let failed = wait_for(&api, "p", Duration::from_secs(30), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let st = failed.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Failed));
    let msg = st.message.unwrap();
    assert!(msg.contains("/proxies/redis") && msg.contains("spec.targets.proxy"), "{msg}");
}

#[tokio::test]
async fn faults_lost_by_a_restarted_toxiproxy_are_back_within_two_seconds() {
    let (client, ns, api) = setup("restart").await;
    let admin = free_port();
    let mut backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    api.create(&PostParams::default(), &scenario("r", LOSS, admin, None, ("1s", "10s", "2s"))).await.unwrap();
    wait_for(&api, "r", Duration::from_secs(30), |s| phase(s) == Some(Phase::Testing)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The sidecar restarts with an empty state; its proxy comes back from its config, without toxics,
    // before its admin API answers (created after, the operator could see it missing: a 404, which
    // fails the run).
    let (ip, listen) = (backends[0].toxiproxy.ip, backends[0].listen.clone());
    let dir = ScratchDir::new("restart-config");
    let proxy = NewProxy { name: "backend".into(), listen, upstream: backends[0].redis.addr(), enabled: Some(true) };
    std::fs::write(dir.join("config.json"), serde_json::to_string(&[&proxy]).unwrap()).unwrap();
    backends[0].toxiproxy.process.kill();
    backends[0].toxiproxy = ToxiproxyServer::start_at_with_config(ip, admin, &dir.join("config.json"));
    let t0 = Instant::now();
    while backends[0].client().toxics("backend").await.unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(2), "the faults are not back after 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("faults back on the restarted Toxiproxy after {:?}", t0.elapsed());
    let done = wait_for(&api, "r", Duration::from_secs(30), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Completed), "{:?}", st.message);
    let v = st.verification.iter().find(|v| v.phase == Phase::Testing && v.target == "backend-0").unwrap();
    assert!(v.reapplied >= 1, "the re-application is on record: {v:?}");
    assert!(chaoslab_toxics(&backends).await.is_empty());
}

#[tokio::test]
async fn a_hung_toxiproxy_delays_no_other_scenario() {
    let (client, ns, api) = setup("hang").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    let url = |i: usize| backends[i].toxiproxy.url();
    let pp = PostParams::default();
    // `hung` on backend-0 alone; `other` on backends 1 and 2, Testing starting while backend-0 hangs.
    api.create(&pp, &on_endpoints("hung", "server-0-packet-loss-100", &[("s0", url(0))], ("1s", "20s", "2s")))
        .await
        .unwrap();
    wait_for(&api, "hung", Duration::from_secs(30), |s| phase(s) == Some(Phase::Testing)).await;
    backends[0].toxiproxy.process.pause();
    let other = [("s1", url(1)), ("s2", url(2))];
    api.create(&pp, &on_endpoints("other", "server-0-packet-loss-100", &other, ("3s", "5s", "2s"))).await.unwrap();
    let started = wait_for(&api, "other", Duration::from_secs(20), |s| {
        s.status.as_ref().is_some_and(|st| st.started_at.is_some())
    })
    .await;
    let boundary = started.status.unwrap().started_at.unwrap().0 + SignedDuration::from_secs(3);
    while backends[1].client().toxics("backend").await.unwrap().is_empty() {
        assert!(Timestamp::now() < boundary + SignedDuration::from_secs(5), "other's Testing never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let late = Timestamp::now().duration_since(boundary);
    println!("other's faults applied {late:?} after its boundary while a Toxiproxy of another scenario hangs");
    backends[0].toxiproxy.process.resume();
    assert!(late < SignedDuration::from_secs(1), "a hung Toxiproxy delayed another scenario by {late:?}");
}

#[tokio::test]
async fn an_emergency_stop_removes_every_fault_at_once_and_holds_new_runs() {
    let (client, ns, api) = setup("stop").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    let pp = PostParams::default();
    api.create(&pp, &scenario("a", LOSS, admin, None, ("1s", "60s", "1s"))).await.unwrap();
    wait_for(&api, "a", Duration::from_secs(30), |s| phase(s) == Some(Phase::Testing)).await;
    assert_eq!(chaoslab_toxics(&backends).await.len(), 4);

    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    let annotate = |v: serde_json::Value| json!({"metadata": {"annotations": {"chaoslab.dev/stop": v}}});
    let patch = |v| kube::api::Patch::Merge(annotate(v));
    namespaces.patch(&ns, &kube::api::PatchParams::default(), &patch(json!("a test"))).await.unwrap();
    let t0 = Instant::now();
    while !chaoslab_toxics(&backends).await.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(3), "faults still there after the stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("every fault removed {:?} after the stop", t0.elapsed());
    let a = wait_for(&api, "a", Duration::from_secs(10), |s| phase(s) == Some(Phase::Aborted)).await;
    let msg = a.status.unwrap().message.unwrap();
    assert!(msg.starts_with("emergency stop (a test)"), "{msg}");

    api.create(&pp, &scenario("b", LOSS, admin, None, ("1s", "2s", "1s"))).await.unwrap();
    let b = wait_for(&api, "b", Duration::from_secs(10), |s| phase(s) == Some(Phase::Queued)).await;
    assert!(b.status.unwrap().message.unwrap().contains("chaoslab.dev/stop-"), "the message says how to lift it");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(phase(&api.get("b").await.unwrap()), Some(Phase::Queued), "held while the stop is on");
    namespaces.patch(&ns, &kube::api::PatchParams::default(), &patch(serde_json::Value::Null)).await.unwrap();
    let done = wait_for(&api, "b", Duration::from_secs(30), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    assert_eq!(phase(&done), Some(Phase::Completed), "the stop lifted, b ran");
}
