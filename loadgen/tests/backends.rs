//! The client against real redis-server, the built-in RESP server, and bad peers: a server that
//! answers garbage, one that never answers, and one that is not there yet.

mod common;

use std::time::Duration;

use chaoslab_loadgen::{Config, Outcome, RetryConfig, Target, conn::Conn, resp::Frame, resp_server};
use chaoslab_testenv::eventually;
use chaoslab_testenv::{RedisServer, free_port};
use common::{answering, builtin};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

fn config(addrs: &[&str]) -> Config {
    let mut c = Config::new(Target::numbered(addrs));
    c.concurrency = 10;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_resp_to_real_redis_and_to_the_builtin_server() {
    let redis = RedisServer::start();
    let (builtin, stop) = builtin().await;
    let mut c = config(&[&redis.addr(), &builtin]);
    c.requests = Some(4000);
    c.read_ratio = 0.5;
    c.keys = 50;
    c.value_size = 7;
    let run = common::start(c).await;
    let summary = run.run.wait().await;
    assert_eq!(summary.ops, 4000);
    assert_eq!(summary.successes, 4000, "{}", summary.to_text());
    assert_eq!(summary.failures + summary.rejected, 0);
    for s in &summary.servers {
        assert!(s.successes > 500, "both get traffic: {}", summary.to_text());
        assert_eq!(s.errors, 0);
    }
    assert!(
        summary.latency_ms.p50 > 0.0
            && summary.latency_ms.p50 <= summary.latency_ms.p99
            && summary.latency_ms.p99 <= summary.latency_ms.max
    );
    // What was SET reads back from both servers as SET.
    for addr in [redis.addr(), builtin.clone()] {
        let mut conn = Conn::connect(&addr).await.unwrap();
        let mut found = 0;
        for k in 0..50 {
            match conn.call(&[b"GET", format!("key:{k:012}").as_bytes()]).await.unwrap() {
                Frame::Bulk(v) => {
                    assert_eq!(v, b"xxxxxxx");
                    found += 1;
                }
                Frame::Null => {}
                other => panic!("{addr}: {other:?}"),
            }
        }
        assert!(found > 10, "{addr}: {found} keys set");
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_garbage_is_an_error_not_a_panic() {
    let (good, stop) = builtin().await;
    let garbage = answering(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    let wrong_type = answering(b":1\r\n").await;
    let mut c = config(&[&good, &garbage, &wrong_type]);
    c.requests = Some(3000);
    let run = common::start(c).await;
    let summary = run.run.wait().await;
    let text = summary.to_text();
    assert_eq!(summary.ops, 3000, "{text}");
    for bad in [1, 2] {
        let s = &summary.servers[bad];
        assert_eq!(s.successes, 0, "{text}");
        assert!(s.errors >= 10 && s.breaker_opens >= 1, "garbage counts as errors and opens the breaker: {text}");
    }
    // Retries and routing keep the operations whole: only the first few fail.
    assert!(summary.failures < 100, "{text}");
    assert!(summary.servers[0].successes > 2800, "{text}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_add_at_most_the_budget_ratio_of_the_operations() {
    // Every request fails, so every operation asks for a retry: only the budget holds them back.
    let failing = [answering(b"-ERR down\r\n").await, answering(b"-ERR down\r\n").await];
    let mut c = config(&[&failing[0], &failing[1]]);
    c.requests = Some(5000);
    c.breaker.minimum_calls = u32::MAX; // keep the breakers closed: this is about the budget
    c.retry = RetryConfig { enabled: true, ratio: 0.2, min_per_sec: 0.0, burst: 1e6 };
    let summary = common::start(c).await.run.wait().await;
    let text = summary.to_text();
    assert_eq!((summary.ops, summary.failures), (5000, 5000), "{text}");
    let share = summary.retries as f64 / summary.ops as f64;
    assert!(
        (0.19..=0.205).contains(&share),
        "--retry-budget-ratio 0.2: retries add at most 20 % to the operations, got {:.1} %: {text}",
        100.0 * share
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_retried_until_it_comes_up() {
    let (good, stop_good) = builtin().await;
    let port = free_port();
    let late = format!("127.0.0.1:{port}");
    let mut c = config(&[&good, &late]);
    c.breaker.wait_in_open = Duration::from_secs(1);
    let run = common::start(c).await;
    eventually("its breaker opens", Duration::from_secs(10), || async {
        let s = run.scrape().await;
        if s.state("server-1") == 2.0 && s.requests("server-1", "error") > 0.0 {
            Ok(())
        } else {
            Err(format!("state {}", s.state("server-1")))
        }
    })
    .await;
    assert!(run.scrape().await.requests("server-0", "success") > 0.0, "the reachable one serves meanwhile");
    // It comes up: half-open trials find it and it takes traffic.
    let listener = TcpListener::bind(&late).await.unwrap();
    let stop_late = CancellationToken::new();
    tokio::spawn(resp_server::serve(listener, stop_late.clone().cancelled_owned()));
    eventually("it heals and serves", Duration::from_secs(15), || async {
        let s = run.scrape().await;
        if s.state("server-1") == 0.0 && s.requests("server-1", "success") > 100.0 {
            Ok(())
        } else {
            Err(format!("state {}, successes {}", s.state("server-1"), s.requests("server-1", "success")))
        }
    })
    .await;
    run.stop().await;
    stop_good.cancel();
    stop_late.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_breaker_open_requests_fail_fast_as_rejected_without_spinning() {
    let nobody = [free_port(), free_port()].map(|p| format!("127.0.0.1:{p}"));
    let mut c = config(&[&nobody[0], &nobody[1]]);
    c.duration = Some(Duration::from_secs(2));
    let run = common::start(c).await;
    let summary = run.run.wait().await;
    let text = summary.to_text();
    assert_eq!(summary.successes, 0);
    assert!(summary.servers.iter().all(|s| s.breaker_opens >= 1), "{text}");
    assert!(summary.rejected > 0, "{text}");
    // 10 workers pausing 25 ms after each rejection: at most ~400 per second each way.
    assert!(summary.rejected < 2000, "workers back off: {text}");
}

/// A server that accepts connections and never answers; its address.
async fn silent_server() -> String {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_never_return_connections_to_the_pool() {
    // Accepts and never answers: every request times out.
    let silent_addr = silent_server().await;
    let mut c = config(&[&silent_addr]);
    c.pool_size = Some(3);
    c.timeout = Duration::from_millis(100);
    c.breaker.minimum_calls = 1000; // keep it closed: this is about the pool
    c.duration = Some(Duration::from_millis(1500));
    c.retry.enabled = false;
    let run = common::start(c).await;
    let mut max_seen = 0;
    while !run.run.is_finished() {
        let s = &run.run.stats().servers[0];
        assert_eq!(s.pool_idle, 0, "a timed-out connection went back to the pool");
        max_seen = max_seen.max(s.pool_active);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let summary = run.run.wait().await;
    assert!(max_seen <= 3, "bounded by the pool size: {max_seen}");
    assert!(summary.servers[0].timeouts >= 10, "{}", summary.to_text());
    assert_eq!(summary.servers[0].successes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_holds_its_rate_and_counts_missed_sends() {
    let (good, stop) = builtin().await;
    let mut c = config(&[&good]);
    c.rate = Some(500.0);
    // Room for a catch-up burst after a scheduling stall of up to 200 ms on a busy machine.
    c.concurrency = 100;
    c.duration = Some(Duration::from_secs(2));
    let summary = common::start(c).await.run.wait().await;
    let text = summary.to_text();
    assert_eq!(summary.model, "open");
    assert!((850..=1010).contains(&summary.ops), "about 500/s for 2 s: {text}");
    assert_eq!((summary.missed_sends, summary.failures), (0, 0), "{text}");
    stop.cancel();

    // A server that never answers, one request in flight at most: nearly every send is missed,
    // and latency is counted from the scheduled time.
    let silent_addr = silent_server().await;
    let mut c = config(&[&silent_addr]);
    c.rate = Some(200.0);
    c.concurrency = 1;
    c.timeout = Duration::from_millis(300);
    c.retry.enabled = false;
    c.requests = Some(200);
    let summary = common::start(c).await.run.wait().await;
    let text = summary.to_text();
    assert!(summary.missed_sends > 150, "{text}");
    assert!(summary.latency_ms.p50 >= 290.0, "{text}");
    assert_eq!(summary.ops + summary.missed_sends, 200, "{text}");
}

#[tokio::test]
async fn metrics_and_healthz_endpoints() {
    let (good, stop) = builtin().await;
    let mut c = config(&[&good]);
    c.requests = Some(100);
    let run = common::start(c).await;
    let (status, body) = common::http_get(run.metrics, "/healthz").await;
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok\n"));
    let (status, _) = common::http_get(run.metrics, "/nope").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    eventually("100 successes exported", Duration::from_secs(10), || async {
        let s = run.scrape().await;
        let n = s.requests("server-0", Outcome::Success.label());
        if n == 100.0 { Ok(()) } else { Err(n.to_string()) }
    })
    .await;
    let s = run.scrape().await;
    assert_eq!(s.sum("chaoslab_client_request_duration_seconds_count", &[("server", "server-0")]), 100.0);
    assert_eq!(
        s.sum("chaoslab_client_request_duration_seconds_bucket", &[("server", "server-0"), ("le", "+Inf")]),
        100.0
    );
    run.stop().await;
    stop.cancel();
}

#[tokio::test]
async fn the_builtin_server_pipelines_and_refuses_garbage() {
    let (addr, stop) = builtin().await;
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Three commands in one write (one inline), three replies in order.
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").await.unwrap();
    let mut got = Vec::new();
    let want = b"+OK\r\n+PONG\r\n$2\r\nv1\r\n";
    while got.len() < want.len() {
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early after {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, want);
    // Garbage: an error, then the connection is closed.
    s.write_all(b"*1\r\n:5\r\n").await.unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).await.unwrap();
    assert!(rest.starts_with("-ERR Protocol error"), "{rest}");
    // The server itself is fine.
    let mut conn = Conn::connect(&addr).await.unwrap();
    assert_eq!(conn.call(&[b"GET", b"k"]).await.unwrap(), Frame::Bulk(b"v1".to_vec()));
    stop.cancel();
}
