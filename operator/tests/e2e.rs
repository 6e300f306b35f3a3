//! The operator end to end: a real kube-apiserver, the real operator binary, test Pods whose podIP
//! is a loopback address where a real toxiproxy-server fronts a real redis-server, and the real
//! chaoslab-loadgen as the client under test. Each test runs its own operator on its own namespace.

mod common;

use std::time::{Duration, Instant};

use chaoslab_core::api::{ChaosScenario, Phase, Verdict};
use chaoslab_testenv::free_port;
use common::*;
use kube::{
    ResourceExt,
    api::{DeleteParams, PostParams},
};
use serde_json::json;

async fn run_to_verdict(template: &str) {
    let (client, ns, api) = setup("e2e").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let (loadgen, metrics) = loadgen(&backends);
    let op = operator(&ns);
    // Recovery holds two half-open attempts of the client's breakers (--wait-in-open 5 s) before its
    // late part (the last 40 %) begins: the breakers of a faulted server last reopen late in Testing,
    // and one attempt disturbed by a busy machine (trials slow or failed) must not decide the verdict.
    // With 15 s, the first trial (17 ms after the faults were removed) failed, the second closed the
    // breaker 8 s in, and traffic had not yet spread back when the late part began at 9 s (CI,
    // traffic-spreads-back 14.9 % < 16.7 %). With 20 s, both breakers closed, yet server-1 carried
    // 16.3 % of the late part (CI): the client's router keeps a failed server's cost (an EWMA that
    // decays) for a while after its breaker closes, so 24 s. The lab's default Recovery is 60 s.
    // Stabilization is 10 s: a phase is judged only when ≥ 90 % of it was verified, and on a busy
    // machine one check half a second late left a 5 s Stabilization at 89.99 % (CI, Inconclusive).
    api.create(&PostParams::default(), &scenario("run", template, admin, Some(&metrics), ("10s", "10s", "24s")))
        .await
        .unwrap();

    let mid = wait_for(&api, "run", Duration::from_secs(40), |s| phase(s) == Some(Phase::Testing)).await;
    let st = mid.status.unwrap();
    let faulted: Vec<_> = st.targets.iter().filter(|t| !t.toxics.is_empty()).map(|t| t.name.as_str()).collect();
    assert_eq!(faulted, ["backend-0", "backend-1"], "faults on 2 of 3 during Testing");
    assert_eq!(chaoslab_toxics(&backends).await.len(), if template.ends_with("packet-loss") { 4 } else { 2 });

    let done = wait_for(&api, "run", Duration::from_secs(60), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Completed), "{:#?}", st.message);
    assert!(st.checks.len() >= 6, "every check recorded: {:#?}", st.checks);
    assert!(st.checks.iter().all(|c| !c.expected.is_empty() && !c.observed.is_empty()));
    // On failure: when each phase was applied (the timeline, the operator's log) against what the
    // client saw (observations, its log).
    assert_eq!(
        st.verdict,
        Some(Verdict::Passed),
        "{:#?}\n{}\ntimeline: {:?}\nverification: {:?}\noperator:\n{}\nloadgen:\n{}",
        st.checks,
        serde_json::to_string_pretty(&st.observations).unwrap(),
        st.timeline,
        st.verification,
        std::fs::read_to_string(&op.log).unwrap_or_default(),
        loadgen.log_tail()
    );
    assert_eq!(st.timeline.len(), 3);
    assert_eq!(st.observations.len(), 3, "one observation per phase");
    let conditions: Vec<(&str, &str)> = st.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
    assert_eq!(
        conditions,
        [("Stabilized", "True"), ("FaultsInjected", "False"), ("Recovered", "True"), ("VerdictReached", "True")]
    );
    assert!(chaoslab_toxics(&backends).await.is_empty(), "no toxic left");
    let t = st.timings.expect("status.timings");
    println!("{template}: {t:?}");
    assert!(t.resolution_seconds > 0.0 && t.resolution_seconds < 2.0, "{t:?}");
    assert!(t.detect_seconds.is_some_and(|d| d < 10.0), "detected within Testing: {t:?}");
    assert!(t.recover_seconds.is_some_and(|r| r < 15.0), "recovered within Recovery: {t:?}");
}

#[tokio::test]
async fn multi_failure_packet_loss_passes() {
    run_to_verdict("multi-failure-2-servers-packet-loss").await;
}

#[tokio::test]
async fn multi_failure_latency_passes() {
    run_to_verdict("multi-failure-2-servers-latency").await;
}

#[tokio::test]
async fn a_killed_operator_resumes_and_leaves_nothing_behind() {
    let (client, ns, api) = setup("kill").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let mut op = operator(&ns);
    api.create(
        &PostParams::default(),
        &scenario("k", "multi-failure-2-servers-packet-loss", admin, None, ("3s", "8s", "4s")),
    )
    .await
    .unwrap();
    wait_for(&api, "k", Duration::from_secs(30), |s| phase(s) == Some(Phase::Testing)).await;
    op.kill();
    assert_eq!(chaoslab_toxics(&backends).await.len(), 4, "faults stay while the operator is down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _op = operator(&ns);
    let done = wait_for(&api, "k", Duration::from_secs(40), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Completed), "{:?}", st.message);
    assert!(chaoslab_toxics(&backends).await.is_empty());
    for b in &backends {
        assert!(b.client().proxy("backend").await.unwrap().enabled);
    }
}

#[tokio::test]
async fn deleting_a_running_scenario_removes_its_toxics() {
    let (client, ns, api) = setup("del").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    api.create(
        &PostParams::default(),
        &scenario("d", "multi-failure-2-servers-latency", admin, None, ("2s", "60s", "5s")),
    )
    .await
    .unwrap();
    let running = wait_for(&api, "d", Duration::from_secs(30), |s| phase(s) == Some(Phase::Testing)).await;
    assert!(running.metadata.finalizers.unwrap_or_default().contains(&"chaoslab.dev/cleanup".to_string()));
    assert_eq!(chaoslab_toxics(&backends).await.len(), 2);
    let t0 = Instant::now();
    api.delete("d", &DeleteParams::default()).await.unwrap();
    while !chaoslab_toxics(&backends).await.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "toxics still there after deletion");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("toxics removed {:?} after the delete", t0.elapsed());
    while api.get_opt("d").await.unwrap().is_some() {
        assert!(t0.elapsed() < Duration::from_secs(10), "finalizer not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The operator's mark on a run that needs nothing more.
fn labelled_finished(s: &ChaosScenario) -> bool {
    s.labels().get("chaoslab.dev/finished").is_some_and(|v| v == "true")
}

#[tokio::test]
async fn a_run_that_ended_clean_is_labelled_finished_and_deleted_at_once() {
    let (client, ns, api) = setup("finished").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    api.create(&PostParams::default(), &scenario("f", "server-0-latency-100ms", admin, None, ("1s", "2s", "1s")))
        .await
        .unwrap();
    let done = wait_for(&api, "f", Duration::from_secs(30), labelled_finished).await;
    assert_eq!(phase(&done), Some(Phase::Completed), "labelled only once its final status is written");
    assert!(done.finalizers().is_empty(), "no finalizer left: {:?}", done.finalizers());
    assert!(chaoslab_toxics(&backends).await.is_empty());
    let t0 = Instant::now();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none(), "gone at once, {:?} after the delete", t0.elapsed());
}

/// A finished run's series stay for `--finished-series-kept`, then go; those of a finished run that
/// is deleted go at once, its toxic series (at 0 since the run ended) too.
#[tokio::test]
async fn a_finished_runs_metric_series_go_a_while_after_it_ended_or_when_it_is_deleted() {
    let (client, ns, api) = setup("series").await;
    let admin = free_port();
    let _backends = backends(&client, &ns, 3, admin).await;
    let (_op, metrics) = operator_with(&ns, &format!("operator-{ns}"), &["--finished-series-kept", "8s"]);
    // The scenario's series on /metrics: `chaoslab_scenario_*` lines naming it.
    let series = async |name: &str| -> Vec<String> {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        let label = format!("scenario=\"{ns}/{name}\"");
        text.lines().filter(|l| l.starts_with("chaoslab_scenario_") && l.contains(&label)).map(String::from).collect()
    };
    let gone_within = async |name: &str, limit: Duration| {
        let t0 = Instant::now();
        while !series(name).await.is_empty() {
            assert!(t0.elapsed() < limit, "{name}'s series still there after {limit:?}: {:?}", series(name).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        t0.elapsed()
    };
    for name in ["kept", "deleted"] {
        let s = scenario(name, "server-0-latency-100ms", admin, None, ("1s", "1s", "1s"));
        api.create(&PostParams::default(), &s).await.unwrap();
        wait_for(&api, name, Duration::from_secs(30), labelled_finished).await;
        let now = series(name).await;
        let completed = format!("chaoslab_scenario_phase{{phase=\"Completed\",scenario=\"{ns}/{name}\"}} 1");
        assert!(now.contains(&completed), "{name}: {now:#?}");
        assert!(now.iter().any(|l| l.starts_with("chaoslab_scenario_toxic_active") && l.ends_with(" 0")), "{now:#?}");
        if name == "kept" {
            let after = gone_within(name, Duration::from_secs(25)).await;
            eprintln!("{name}: series gone {after:?} after it was seen labelled finished (kept 8s)");
        }
    }
    api.delete("deleted", &DeleteParams::default()).await.unwrap();
    let after = gone_within("deleted", Duration::from_secs(4)).await;
    eprintln!("deleted: series gone {after:?} after the delete");
}

#[tokio::test]
async fn scenarios_on_the_same_targets_queue_first_come_first_served() {
    let (client, ns, api) = setup("queue").await;
    let admin = free_port();
    let _backends = backends(&client, &ns, 3, admin).await;
    let _op = operator(&ns);
    api.create(&PostParams::default(), &scenario("first", "server-0-latency-100ms", admin, None, ("2s", "3s", "2s")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    api.create(&PostParams::default(), &scenario("second", "server-1-latency-100ms", admin, None, ("2s", "3s", "2s")))
        .await
        .unwrap();
    let queued = wait_for(&api, "second", Duration::from_secs(20), |s| phase(s).is_some()).await;
    assert_eq!(phase(&queued), Some(Phase::Queued), "{:?}", queued.status);
    assert!(queued.status.unwrap().message.unwrap().contains("/first"));
    let first = wait_for(&api, "first", Duration::from_secs(30), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let second = wait_for(&api, "second", Duration::from_secs(40), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let (f, s) = (first.status.unwrap(), second.status.unwrap());
    assert_eq!((f.phase, s.phase), (Some(Phase::Completed), Some(Phase::Completed)));
    let first_end = f.completed_at.unwrap().0;
    let second_start = s.started_at.unwrap().0;
    assert!(second_start >= first_end, "second started {second_start} before first ended {first_end}");
}

#[tokio::test]
async fn spec_expect_bounds_become_checks_judged_on_the_measured_times() {
    let (client, ns, api) = setup("expect").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let (_loadgen, metrics) = loadgen(&backends);
    let _op = operator(&ns);
    let mut obj = scenario("x", "multi-failure-2-servers-packet-loss", admin, Some(&metrics), ("8s", "10s", "15s"));
    // Generous time bounds the resilient client meets; an error budget no client meets when two
    // of three servers die (their first requests time out before any breaker can open).
    obj.spec.expect =
        serde_json::from_value(json!({"detectWithin": "10s", "recoverWithin": "15s", "maxErrorRate": 0.00001}))
            .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let done = wait_for(&api, "x", Duration::from_secs(60), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let st = done.status.unwrap();
    let t = st.timings.clone().expect("status.timings");
    let judged = |name: &str| st.checks.iter().find(|c| c.name == name).map(|c| (c.passed, c.observed.clone()));
    let checks = ["detected-within", "recovered-within", "error-budget"].map(|n| (n, judged(n)));
    println!("{t:?}\n{checks:#?}\n{:?}", st.verification);
    // A phase a busy machine let the targets hold for less than 90 % is not judged, by design
    // (README "Faults that hold"): then the check must say so; otherwise it must be as bounded.
    let judged_as = |i: usize, want: bool| {
        let (passed, observed) = checks[i].1.clone().unwrap_or_else(|| panic!("no {} check", checks[i].0));
        assert!(
            passed == Some(want) || (passed.is_none() && observed.contains("not verified")),
            "{}: {passed:?} {observed} ({t:?})",
            checks[i].0
        );
        passed.is_some()
    };
    judged_as(0, true);
    judged_as(1, true);
    if judged_as(2, false) {
        let observed = &checks[2].1.as_ref().unwrap().1;
        assert!(observed.contains(&format!("{} of {} failed", t.testing_failures, t.testing_requests)), "{observed}");
        assert_eq!(st.verdict, Some(Verdict::Failed), "{:?}", st.message);
        assert!(st.message.unwrap().contains("error-budget"));
    }
}

#[tokio::test]
async fn abort_ends_testing_early_and_the_run_ends_aborted() {
    let (client, ns, api) = setup("abort").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let (_loadgen, metrics) = loadgen(&backends);
    let _op = operator(&ns);
    // Every server down: the client's requests fail, far above the abort ratio.
    let obj: ChaosScenario = serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario", "metadata": {"name": "a"},
        "spec": {
            "faults": [{"target": 0, "down": true}, {"target": 1, "down": true}, {"target": 2, "down": true}],
            "targets": {"selector": {"matchLabels": {LABEL: "backend"}}, "adminPort": admin},
            "phases": {"stabilization": "3s", "testing": "60s", "recovery": "4s"},
            "client": {"metricsUrl": metrics},
            "abort": {"errorRate": 0.5, "for": "2s"}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let t0 = Instant::now();
    let done = wait_for(&api, "a", Duration::from_secs(40), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    assert!(t0.elapsed() < Duration::from_secs(30), "Testing (60s) was cut short");
    let st = done.status.unwrap();
    assert_eq!((st.phase, st.verdict), (Some(Phase::Aborted), Some(Verdict::Failed)), "{:?}", st.message);
    assert!(st.aborted_at.is_some());
    let abort = st.checks.iter().find(|c| c.name == "not-aborted").expect("the abort is a failed check");
    assert_eq!(abort.passed, Some(false));
    assert!(st.timeline.iter().any(|r| r.phase == Phase::Recovery), "Recovery still ran");
    for b in &backends {
        assert!(b.client().proxy("backend").await.unwrap().enabled, "proxies enabled again");
    }
}

#[tokio::test]
async fn the_start_up_sweep_removes_toxics_of_scenarios_not_in_testing() {
    let (client, ns, api) = setup("sweep").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let mut op = operator(&ns);
    api.create(&PostParams::default(), &scenario("s", "server-0-latency-100ms", admin, None, ("1s", "1s", "1s")))
        .await
        .unwrap();
    wait_for(&api, "s", Duration::from_secs(30), |s| phase(s) == Some(Phase::Completed)).await;
    op.kill();
    // A toxic left behind by a crash: chaoslab's name, no scenario in Testing owns it.
    let stale = chaoslab_core::toxic::Toxic {
        name: "chaoslab-deadbeef-latency-downstream".into(),
        kind: chaoslab_core::toxic::ToxicType::Latency,
        stream: chaoslab_core::toxic::Stream::Downstream,
        toxicity: 1.0,
        attributes: [("latency".to_string(), 100)].into(),
    };
    let foreign = chaoslab_core::toxic::Toxic { name: "someone-elses".into(), ..stale.clone() };
    backends[0].client().create_toxic("backend", &stale).await.unwrap();
    backends[0].client().create_toxic("backend", &foreign).await.unwrap();
    let _op = operator(&ns);
    let t0 = Instant::now();
    while !chaoslab_toxics(&backends).await.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(20), "the sweep did not remove the stale toxic");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left: Vec<String> = backends[0].client().toxics("backend").await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(left, ["someone-elses"], "toxics chaoslab did not make stay");
}
