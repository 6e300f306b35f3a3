//! The operator SIGKILLed at 20 instants drawn from a printed seed, across every phase and
//! transition of three scenarios on disjoint targets, and restarted each time: every run still ends
//! with a consistent timeline, no toxic left and every proxy enabled.
//!
//! Reproduce a run: `CHAOSLAB_CHAOS_SEED=<seed> cargo test -p chaoslab-operator --test kills`.

mod common;

use std::{collections::BTreeSet, time::Duration};

use chaoslab_core::{
    api::{ChaosScenario, ChaosScenarioStatus, Phase},
    engine::Plan,
    faults::owner_of,
};
use chaoslab_testenv::{Managed, ToxiproxyServer};
use chaoslab_toxiproxy::Client as Toxiproxy;
use common::*;
use jiff::{SignedDuration, Timestamp};
use kube::{Api, api::PostParams};
use serde_json::{Value, json};

const KILLS: usize = 20;
/// Created 100 ms past a whole second, the runs start at the next one: their boundaries (start of
/// Stabilization, Testing, Recovery, the end) are this many ms after the creation.
const BOUNDARIES: [i64; 4] = [900, 4_900, 12_900, 16_900];

fn seed() -> u64 {
    match std::env::var("CHAOSLAB_CHAOS_SEED").ok().filter(|s| !s.is_empty()) {
        Some(s) => s.parse().expect("CHAOSLAB_CHAOS_SEED is a number"),
        None => fastrand::u64(..),
    }
}

/// One kill: at `at` ms after the creation, or, `on_write`, armed then and fired by the next change
/// on the first run's first proxy (between a Toxiproxy write and the status write that follows).
#[derive(Clone, Copy, Debug)]
struct Kill {
    at: i64,
    on_write: bool,
}

/// Two kills within [-100, +400) ms of each boundary, one of those at the start of Testing and of
/// Recovery armed 300 ms before it to fire on the faults' write; the others anywhere in the first 18 s.
fn schedule(seed: u64) -> Vec<Kill> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills: Vec<Kill> = Vec::new();
    for (i, b) in BOUNDARIES.iter().enumerate() {
        let armed = i == 1 || i == 2;
        kills.push(Kill { at: if armed { b - 300 } else { b + rng.i64(-100..400) }, on_write: armed });
        kills.push(Kill { at: b + rng.i64(-100..400), on_write: false });
    }
    kills.extend((0..KILLS - 8).map(|_| Kill { at: rng.i64(0..18_000), on_write: false }));
    kills.sort_by_key(|k| k.at);
    kills
}

/// Waits for a change of the toxics on `p`, up to 1.5 s (polled every 2 ms: the status write follows
/// within tens of milliseconds).
async fn next_write(p: &ToxiproxyServer) {
    let client = Toxiproxy::new(&p.url()).unwrap();
    let before = client.toxics("backend").await.unwrap().len();
    let t0 = std::time::Instant::now();
    while client.toxics("backend").await.unwrap().len() == before && t0.elapsed() < Duration::from_millis(1_500) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn on(name: &str, proxies: &[ToxiproxyServer], faults: Value) -> ChaosScenario {
    let eps: Vec<_> =
        proxies.iter().enumerate().map(|(i, p)| json!({"name": format!("s{i}"), "url": p.url()})).collect();
    let mut spec = json!({
        "targets": {"endpoints": eps},
        "phases": {"stabilization": "4s", "testing": "8s", "recovery": "4s"},
    });
    match faults {
        Value::String(template) => spec["template"] = json!(template),
        faults => spec["faults"] = faults,
    }
    serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

/// Three scenarios on disjoint proxies: loss on two of three, a proxy down, latency.
async fn scenarios() -> Vec<(ChaosScenario, Vec<ToxiproxyServer>)> {
    let mut out = Vec::new();
    let plans: [(&str, usize, Value); 3] = [
        ("loss", 3, json!("multi-failure-2-servers-packet-loss")),
        ("down", 1, json!([{"target": 0, "down": true}])),
        ("slow", 1, json!("server-0-latency-100ms")),
    ];
    for (name, n, faults) in plans {
        let mut proxies = Vec::new();
        for _ in 0..n {
            proxies.push(lone_proxy().await);
        }
        out.push((on(name, &proxies, faults), proxies));
    }
    out
}

/// What a proxy holds of chaoslab's, and whether it is enabled.
async fn held(p: &ToxiproxyServer) -> (BTreeSet<String>, bool) {
    let proxy = Toxiproxy::new(&p.url()).unwrap().proxy("backend").await.unwrap();
    (proxy.toxics.into_iter().map(|t| t.name).filter(|n| owner_of(n).is_some()).collect(), proxy.enabled)
}

/// Whether some proxy holds other than what the scenario's status records: a Toxiproxy write whose
/// status write had not come yet when the operator died.
async fn ahead_of_status(status: Option<&ChaosScenarioStatus>, proxies: &[ToxiproxyServer]) -> bool {
    let record = status.map(|s| s.targets.as_slice()).unwrap_or_default();
    for p in proxies {
        let recorded = record.iter().find(|t| t.endpoint == p.url());
        let on_record = recorded.map(|t| (t.toxics.iter().cloned().collect(), t.enabled)).unwrap_or_default();
        if held(p).await != on_record && (recorded.is_some() || !held(p).await.0.is_empty()) {
            return true;
        }
    }
    false
}

/// Three records in order, each ending where the next starts; completed at the plan's end.
fn assert_consistent(name: &str, st: &ChaosScenarioStatus, s: &ChaosScenario) {
    assert_eq!(st.phase, Some(Phase::Completed), "{name}: {:?}", st.message);
    let start = st.started_at.as_ref().expect("startedAt").0;
    let plan = Plan::new(start, &s.spec.phases);
    let phases: Vec<Phase> = st.timeline.iter().map(|r| r.phase).collect();
    assert_eq!(phases, Phase::TIMED, "{name}: {:?}", st.timeline);
    assert_eq!(st.timeline[0].start.0, start, "{name}");
    for pair in st.timeline.windows(2) {
        assert_eq!(pair[0].end.as_ref().map(|t| t.0), Some(pair[1].start.0), "{name}: {:?}", st.timeline);
    }
    assert_eq!(st.timeline[2].end.as_ref().map(|t| t.0), Some(plan.end()), "{name}");
    assert_eq!(st.completed_at.as_ref().map(|t| t.0), Some(plan.end()), "{name}");
    assert!(st.targets.iter().all(|t| t.settled()), "{name}: {:?}", st.targets);
}

/// Where a run of `plan` was at `t`: its phase and how far into it.
fn where_at(plan: &Plan, t: Timestamp) -> String {
    let phase = plan.phase_at(t);
    let since = plan.starts(phase).map_or(SignedDuration::ZERO, |s| t.duration_since(s));
    format!("{} {:+.2}s", phase.as_str(), since.as_secs_f64())
}

#[tokio::test]
async fn an_operator_killed_at_random_instants_leaves_every_run_consistent_and_no_fault_behind() {
    let seed = seed();
    let plan = schedule(seed);
    let planned: Vec<String> = plan.iter().map(|k| format!("{}{}", k.at, if k.on_write { "w" } else { "" })).collect();
    println!(
        "CHAOSLAB_CHAOS_SEED={seed}: kills at {} ms after the creation (w: armed then, fired on a write)",
        planned.join(", ")
    );
    let (_client, ns, api) = setup("kills").await;
    let runs = scenarios().await;
    let mut op = operator_named(&ns, &format!("operator-{ns}-0"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let into_second = Timestamp::now().subsec_millisecond() as u64;
    tokio::time::sleep(Duration::from_millis((1_100 - into_second) % 1_000)).await;
    let t0 = Timestamp::now();
    for (s, _) in &runs {
        api.create(&PostParams::default(), s).await.unwrap();
    }
    let (mut killed_at, mut caught) = (Vec::new(), 0);
    for (k, kill) in plan.iter().enumerate() {
        let at = t0 + SignedDuration::from_millis(kill.at);
        let wait = at.duration_since(Timestamp::now()).as_secs_f64().max(0.0);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        if kill.on_write {
            next_write(&runs[0].1[0]).await;
        }
        op.kill();
        killed_at.push(Timestamp::now());
        caught += usize::from(kill_caught_a_write(&api, &runs).await);
        op = operator_named(&ns, &format!("operator-{ns}-{}", k + 1));
    }
    report(&api, &runs, t0, &killed_at, caught).await;
    check_the_end(&api, &runs, &op).await;
}

/// Whether the proxies of some run were ahead of its status when the operator died.
async fn kill_caught_a_write(api: &Api<ChaosScenario>, runs: &[(ChaosScenario, Vec<ToxiproxyServer>)]) -> bool {
    for (s, proxies) in runs {
        let now = api.get(&s.metadata.name.clone().unwrap()).await.unwrap();
        if ahead_of_status(now.status.as_ref(), proxies).await {
            return true;
        }
    }
    false
}

/// Prints where each kill landed in the first run, and asserts that they hit each timed phase.
async fn report(
    api: &Api<ChaosScenario>,
    runs: &[(ChaosScenario, Vec<ToxiproxyServer>)],
    t0: Timestamp,
    killed_at: &[Timestamp],
    caught: usize,
) {
    assert!(caught > 0, "no kill came between a Toxiproxy write and its status write");
    let first =
        wait_for(api, "loss", Duration::from_secs(20), |s| s.status.as_ref().is_some_and(|st| st.started_at.is_some()))
            .await;
    let plan = Plan::new(first.status.unwrap().started_at.unwrap().0, &runs[0].0.spec.phases);
    let mut hit = Vec::new();
    for (k, t) in killed_at.iter().enumerate() {
        println!("kill {:2} at +{:5} ms: loss in {}", k + 1, t.duration_since(t0).as_millis(), where_at(&plan, *t));
        hit.push(plan.phase_at(*t));
    }
    println!("{caught} of {KILLS} kills found a proxy ahead of its run's status");
    for p in Phase::TIMED {
        assert!(hit.contains(&p), "no kill in {}: {hit:?}", p.as_str());
    }
}

async fn check_the_end(api: &Api<ChaosScenario>, runs: &[(ChaosScenario, Vec<ToxiproxyServer>)], op: &Managed) {
    for (s, proxies) in runs {
        let name = s.metadata.name.clone().unwrap();
        let done = wait_for(api, &name, Duration::from_secs(30), |s| phase(s).is_some_and(Phase::is_terminal)).await;
        let st = done.status.clone().unwrap();
        assert_consistent(&name, &st, &done);
        for p in proxies {
            assert_eq!(held(p).await, (BTreeSet::new(), true), "{name}: left behind\n{}", op.log_tail());
        }
        let testing = st.verification.iter().filter(|v| v.phase == Phase::Testing);
        let shares: Vec<String> = testing.map(|v| format!("{} {:.0} %", v.target, v.share * 100.0)).collect();
        println!("{name}: {:?}, Testing verified in place: {}", st.phase.unwrap(), shares.join(", "));
    }
}
