//! The apiserver and etcd killed and restarted mid-Testing (this file has its own control plane):
//! the operator reconnects, the faults stay in place through the outage and the run completes on
//! time, with nothing lost.

mod common;

use std::time::{Duration, Instant};

use chaoslab_core::api::Phase;
use chaoslab_testenv::{ControlPlane, free_port};
use common::*;
use jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;

#[tokio::test]
async fn the_operator_reconnects_after_the_apiserver_and_etcd_restart_and_the_run_completes() {
    let (client, ns, api) = setup("cp").await;
    let admin = free_port();
    let backends = backends(&client, &ns, 3, admin).await;
    let op = operator(&ns);
    let s = scenario("r", "multi-failure-2-servers-packet-loss", admin, None, ("1s", "14s", "3s"));
    api.create(&PostParams::default(), &s).await.unwrap();
    let testing = wait_for(&api, "r", Duration::from_secs(30), |s| phase(s) == Some(Phase::Testing)).await;
    let start = testing.status.unwrap().started_at.unwrap().0;
    let recovery = start + SignedDuration::from_secs(15);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let down_for = tokio::task::spawn_blocking(|| ControlPlane::shared().restart()).await.unwrap();
    println!("apiserver and etcd killed and ready again after {down_for:?}");
    assert_eq!(chaoslab_toxics(&backends).await.len(), 4, "the faults held through the outage");
    assert!(Timestamp::now() < recovery, "the outage outlasted Testing: make Testing longer");
    // The watch is back: a scenario created now is seen (and queued behind r, which holds the
    // proxies) within 10 s; with kube's default watch backoff it was not before r ended (13 s).
    let t0 = Instant::now();
    let after = scenario("after", "server-0-latency-100ms", admin, None, ("1s", "1s", "1s"));
    api.create(&PostParams::default(), &after).await.unwrap();
    wait_for(&api, "after", Duration::from_secs(10), |s| phase(s) == Some(Phase::Queued)).await;
    println!("a scenario created after the restart queued within {:?}", t0.elapsed());

    // The first thing the operator does after its reconnection: end Testing at its boundary.
    while !chaoslab_toxics(&backends).await.is_empty() {
        assert!(Timestamp::now() < recovery + SignedDuration::from_secs(10), "faults still there after Testing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("faults removed {:?} after Testing's end", Timestamp::now().duration_since(recovery));
    let done = wait_for(&api, "r", Duration::from_secs(30), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let end = start + SignedDuration::from_secs(18);
    println!("Completed seen {:?} after the plan's end", Timestamp::now().duration_since(end));
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Completed), "{:?}", st.message);
    assert_eq!(st.started_at.map(|t| t.0), Some(start), "the run kept its start");
    let records: Vec<(Phase, Option<Timestamp>)> =
        st.timeline.iter().map(|r| (r.phase, r.end.as_ref().map(|t| t.0))).collect();
    let plan_ends = [1, 15, 18].map(|s| Some(start + SignedDuration::from_secs(s)));
    assert_eq!(records, Phase::TIMED.into_iter().zip(plan_ends).collect::<Vec<_>>());
    assert!(st.targets.iter().all(|t| t.settled()), "{:?}", st.targets);
    let next = wait_for(&api, "after", Duration::from_secs(30), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    assert_eq!(phase(&next), Some(Phase::Completed), "the scenario queued after the restart ran");
    assert!(std::fs::read_to_string(format!("/proc/{}/stat", op.pid())).is_ok_and(|s| !s.contains(") Z ")));
}
