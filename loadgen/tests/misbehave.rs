//! `--misbehave`: each mode shows its flaw against servers that fail, hang up or answer slowly,
//! next to the resilient client on the same servers, which does not.

mod common;

use std::time::Duration;

use chaoslab_loadgen::{Config, Misbehaviour, RetryConfig, Summary, Target, resp_server};
use chaoslab_testenv::{eventually, free_port};
use common::{answering, answering_after, builtin};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn config(addrs: &[&str], misbehave: Option<Misbehaviour>) -> Config {
    let mut c = Config::new(Target::numbered(addrs));
    c.concurrency = 10;
    c.misbehave = misbehave;
    c
}

async fn run(c: Config) -> Summary {
    common::start(c).await.run.wait().await
}

/// Server `i`'s share of the requests sent (rejected ones were not sent).
fn sent_share(s: &Summary, i: usize) -> f64 {
    let sent = |x: &chaoslab_loadgen::report::ServerSummary| x.requests - x.rejected;
    sent(&s.servers[i]) as f64 / s.servers.iter().map(sent).sum::<u64>().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_breakers_keeps_a_failing_server_in_the_rotation() {
    let ((a, stop_a), (b, stop_b)) = (builtin().await, builtin().await);
    let failing = answering(b"-ERR down\r\n").await;
    let with = |m| {
        let mut c = config(&[&a, &b, &failing], m);
        c.requests = Some(3000);
        c.retry.enabled = false;
        c
    };
    let flawed = run(with(Some(Misbehaviour::NoBreakers))).await;
    let text = flawed.to_text();
    assert!(flawed.servers.iter().all(|s| s.breaker_opens == 0 && s.breaker_state == "closed"), "{text}");
    let share = sent_share(&flawed, 2);
    assert!((0.32..=0.34).contains(&share), "round-robin: a third goes to the failing server, got {share}: {text}");
    // The resilient client opens its breaker and sends it little.
    let resilient = run(with(None)).await;
    assert!(resilient.servers[2].breaker_opens >= 1, "{}", resilient.to_text());
    assert!(sent_share(&resilient, 2) < 0.05, "{}", resilient.to_text());
    stop_a.cancel();
    stop_b.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_half_open_never_tries_a_server_again_once_it_is_back() {
    let (good, stop_good) = builtin().await;
    let late = format!("127.0.0.1:{}", free_port());
    let mut c = config(&[&good, &late], Some(Misbehaviour::NoHalfOpen));
    c.breaker.wait_in_open = Duration::from_millis(500); // what the resilient client would wait
    c.duration = Some(Duration::from_secs(4));
    let running = common::start(c).await;
    eventually("its breaker opens", Duration::from_secs(10), || async {
        let s = running.scrape().await;
        if s.state("server-1") == 2.0 { Ok(()) } else { Err(format!("state {}", s.state("server-1"))) }
    })
    .await;
    // It comes up; when the run ends, seconds later, its breaker is still open and it got no request.
    let listener = TcpListener::bind(&late).await.unwrap();
    let stop_late = CancellationToken::new();
    tokio::spawn(resp_server::serve(listener, stop_late.clone().cancelled_owned()));
    let summary = running.run.wait().await;
    let text = summary.to_text();
    assert_eq!(summary.servers[1].breaker_state, "open", "{text}");
    assert_eq!(summary.servers[1].successes, 0, "{text}");
    let s = common::scrape(running.metrics).await;
    assert_eq!(s.transitions("server-1", "open", "half_open"), 0.0);
    stop_good.cancel();
    stop_late.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trip_all_opens_the_healthy_breakers_with_the_failing_one() {
    let ((a, stop_a), (b, stop_b)) = (builtin().await, builtin().await);
    let failing = answering(b"-ERR down\r\n").await;
    let with = |m| {
        let mut c = config(&[&a, &b, &failing], m);
        c.duration = Some(Duration::from_secs(2));
        c
    };
    let flawed = run(with(Some(Misbehaviour::TripAll))).await;
    assert!(flawed.servers.iter().all(|s| s.breaker_opens >= 1), "every breaker opened: {}", flawed.to_text());
    assert!(flawed.rejected > 0, "with all open, requests are refused: {}", flawed.to_text());
    let resilient = run(with(None)).await;
    let opens: Vec<u64> = resilient.servers.iter().map(|s| s.breaker_opens).collect();
    assert!(opens[0] == 0 && opens[1] == 0 && opens[2] >= 1, "only the failing one opens: {opens:?}");
    stop_a.cancel();
    stop_b.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_keeps_sending_a_slow_server_its_share() {
    let ((a, stop_a), (b, stop_b)) = (builtin().await, builtin().await);
    // Answers GET with nil after 50 ms: slow, never failing, under the 300 ms slow-call bar.
    let slow = answering_after(b"$-1\r\n", Duration::from_millis(50)).await;
    let with = |m| {
        let mut c = config(&[&a, &b, &slow], m);
        c.read_ratio = 1.0;
        c.duration = Some(Duration::from_secs(2));
        c
    };
    let flawed = run(with(Some(Misbehaviour::RoundRobin))).await;
    assert!(flawed.servers.iter().all(|s| s.breaker_opens == 0), "{}", flawed.to_text());
    let share = sent_share(&flawed, 2);
    assert!((0.32..=0.34).contains(&share), "the slow server keeps its third, got {share}: {}", flawed.to_text());
    let resilient = run(with(None)).await;
    assert!(sent_share(&resilient, 2) < 0.05, "load-aware routing avoids it: {}", resilient.to_text());
    stop_a.cancel();
    stop_b.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_storm_retries_every_failure_on_every_server() {
    let failing =
        [answering(b"-ERR down\r\n").await, answering(b"-ERR down\r\n").await, answering(b"-ERR down\r\n").await];
    let with = |m| {
        let mut c = config(&[&failing[0], &failing[1], &failing[2]], m);
        c.requests = Some(1000);
        c.breaker.minimum_calls = u32::MAX; // keep the breakers closed: this is about retries
        c.retry = RetryConfig { enabled: true, ratio: 0.2, min_per_sec: 0.0, burst: 1e6 };
        c
    };
    let flawed = run(with(Some(Misbehaviour::RetryStorm))).await;
    let text = flawed.to_text();
    assert_eq!((flawed.ops, flawed.failures), (1000, 1000), "{text}");
    assert_eq!(flawed.retries, 2000, "two retries per operation, whatever the budget: {text}");
    assert_eq!(flawed.servers.iter().map(|s| s.errors).sum::<u64>(), 3000, "{text}");
    let resilient = run(with(None)).await;
    assert!(resilient.retries <= 205, "the budget holds retries to 20 %: {}", resilient.to_text());
}

#[test]
fn every_mode_is_a_flag() {
    let modes = ["no-breakers", "no-half-open", "trip-all", "round-robin", "retry-storm"];
    for m in modes {
        let c =
            <chaoslab_loadgen::cli::Cli as clap::Parser>::try_parse_from(["x", "--targets", "h:1", "--misbehave", m])
                .unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(c.run.to_config().unwrap().misbehave.map(|m| m.label()), Some(m));
    }
    let err =
        <chaoslab_loadgen::cli::Cli as clap::Parser>::try_parse_from(["x", "--targets", "h:1", "--misbehave", "x"]);
    assert!(err.unwrap_err().to_string().contains("no-breakers"), "the modes are listed");
}
