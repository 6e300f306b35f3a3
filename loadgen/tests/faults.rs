//! The client against three real redis-servers behind three real toxiproxy-servers, with the
//! lab's default breaker and routing settings, judged on its metrics endpoint as Prometheus
//! would see it.

mod common;

use std::time::{Duration, Instant};

use chaoslab_core::{
    catalog::{latency, loss},
    faults::{DesiredProxy, ProxyKind, desired_for},
};
use chaoslab_loadgen::{Config, Target};
use chaoslab_testenv::eventually;
use chaoslab_testenv::{RedisServer, ToxiproxyServer};
use chaoslab_toxiproxy::{Client as Toxiproxy, NewProxy};
use common::{Scrape, success_delta};

const SERVERS: [&str; 3] = ["server-0", "server-1", "server-2"];
const OWNER: &str = "owner123";

/// These tests load the machine; one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Lab {
    _redis: Vec<RedisServer>,
    _toxiproxy: Vec<ToxiproxyServer>,
    proxies: Vec<Toxiproxy>,
    addrs: Vec<String>,
}

impl Lab {
    async fn start() -> Self {
        let redis: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
        let toxiproxy: Vec<ToxiproxyServer> = (0..3).map(|_| ToxiproxyServer::start()).collect();
        let mut proxies = Vec::new();
        let mut addrs = Vec::new();
        for (r, t) in redis.iter().zip(&toxiproxy) {
            let client = Toxiproxy::new(&t.url()).unwrap();
            let p = client
                .create_proxy(&NewProxy {
                    name: "redis".into(),
                    listen: "127.0.0.1:0".into(),
                    upstream: r.addr(),
                    enabled: None,
                })
                .await
                .unwrap();
            addrs.push(p.listen.clone());
            proxies.push(client);
        }
        Self { _redis: redis, _toxiproxy: toxiproxy, proxies, addrs }
    }

    async fn set(&self, i: usize, desired: &DesiredProxy) {
        self.proxies[i].converge("redis", desired).await.unwrap();
    }

    fn config(&self) -> Config {
        let mut c = Config::new(Target::numbered(&self.addrs.iter().map(String::as_str).collect::<Vec<_>>()));
        // The lab's defaults, but fewer workers than its 100: this machine is small and shared.
        c.concurrency = 40;
        c.value_size = 16;
        c
    }
}

fn share(delta: &[f64], i: usize) -> f64 {
    let total: f64 = delta.iter().sum();
    if total == 0.0 { 0.0 } else { delta[i] / total }
}

/// A server's requests by outcome and its mean duration, for failure messages.
fn outcomes(s: &Scrape, server: &str) -> String {
    let by = ["success", "error", "timeout", "rejected"].map(|o| format!("{o} {}", s.requests(server, o)));
    let count = s.sum("chaoslab_client_request_duration_seconds_count", &[("server", server)]);
    let sum = s.sum("chaoslab_client_request_duration_seconds_sum", &[("server", server)]);
    format!("{}, mean {:.1} ms", by.join(", "), 1000.0 * sum / count.max(1.0))
}

/// Waits until every server has served 200 requests: the baseline before a fault.
async fn all_serving(run: &common::Running) {
    eventually("every server serves", Duration::from_secs(15), || async {
        let s = run.scrape().await;
        let ok: Vec<f64> = SERVERS.iter().map(|n| s.requests(n, "success")).collect();
        if ok.iter().all(|&v| v > 200.0) { Ok(()) } else { Err(format!("successes {ok:?}")) }
    })
    .await;
}

async fn window(run: &common::Running, secs: u64) -> (Scrape, Scrape) {
    let a = run.scrape().await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (a, run.scrape().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_loss_on_two_opens_their_breakers_and_they_heal() {
    let _heavy = HEAVY.lock().await;
    let lab = Lab::start().await;
    let run = common::start(lab.config()).await;

    // Stabilization: all three serve.
    all_serving(&run).await;
    let s = run.scrape().await;
    for n in SERVERS {
        assert_eq!(s.state(n), 0.0, "{n} closed while healthy");
    }

    // Testing: 100 % packet loss (a blackhole) on server-0 and server-1.
    let faulted = Instant::now();
    lab.set(0, &desired_for(&loss(0, 100.0), OWNER, ProxyKind::Toxiproxy)).await;
    lab.set(1, &desired_for(&loss(1, 100.0), OWNER, ProxyKind::Toxiproxy)).await;
    let (_, took) = eventually("the breakers of the blackholed servers open", Duration::from_secs(15), || async {
        let s = run.scrape().await;
        if s.state("server-0") == 2.0 && s.state("server-1") == 2.0 {
            Ok(())
        } else {
            Err(format!("states {:?}", SERVERS.map(|n| s.state(n))))
        }
    })
    .await;
    eprintln!("breakers opened {took:?} after the fault ({:?} since)", faulted.elapsed());
    assert!(took < Duration::from_secs(8), "open within a few seconds, took {took:?}");

    // Traffic concentrates on server-2, whose breaker stays closed, and errors fall to ~0.
    let (a, b) = window(&run, 3).await;
    assert_eq!(b.state("server-2"), 0.0);
    assert_eq!(
        b.transitions("server-2", "closed", "open"),
        0.0,
        "the healthy server's breaker never opened: {}",
        outcomes(&b, "server-2")
    );
    let ok = success_delta(&a, &b, &SERVERS);
    let failed: f64 = SERVERS.iter().map(|n| b.failures(n) - a.failures(n)).sum();
    let total = ok.iter().sum::<f64>() + failed;
    eprintln!("while faulted: successes {ok:?}, failures {failed}");
    assert!(share(&ok, 2) > 0.97, "successes concentrate on server-2: {ok:?}");
    assert!(failed / total < 0.02, "error rate back near zero: {failed} of {total}");
    for n in ["server-0", "server-1"] {
        let (active, idle) = (b.pool(n, "active"), b.pool(n, "idle"));
        assert!(active + idle <= 40.0, "{n}: the pool stays bounded ({active} active, {idle} idle)");
        // Only half-open trial calls may hang there now.
        assert!(active <= 5.0, "{n}: {active} connections still checked out");
    }

    // Recovery: toxics removed → open → half-open → closed, and traffic spreads back.
    lab.set(0, &DesiredProxy::clean(OWNER)).await;
    lab.set(1, &DesiredProxy::clean(OWNER)).await;
    let (_, took) = eventually("the breakers heal through half-open", Duration::from_secs(25), || async {
        let s = run.scrape().await;
        let healed = |n: &str| {
            s.state(n) == 0.0
                && s.transitions(n, "open", "half_open") >= 1.0
                && s.transitions(n, "half_open", "closed") >= 1.0
        };
        if healed("server-0") && healed("server-1") {
            Ok(())
        } else {
            Err(format!("states {:?}", SERVERS.map(|n| s.state(n))))
        }
    })
    .await;
    eprintln!("breakers closed again {took:?} after the toxics were removed");
    eventually("traffic spreads back over all three", Duration::from_secs(20), || async {
        let (a, b) = window(&run, 2).await;
        let ok = success_delta(&a, &b, &SERVERS);
        if (0..3).all(|i| share(&ok, i) > 0.1) { Ok(()) } else { Err(format!("successes {ok:?}")) }
    })
    .await;

    let summary = run.stop().await;
    assert!(summary.successes > 0);
    assert_eq!(summary.servers[2].breaker_opens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_on_two_moves_traffic_to_the_fast_server() {
    let _heavy = HEAVY.lock().await;
    let lab = Lab::start().await;
    let run = common::start(lab.config()).await;
    all_serving(&run).await;

    lab.set(0, &desired_for(&latency(0, 500), OWNER, ProxyKind::Toxiproxy)).await;
    lab.set(1, &desired_for(&latency(1, 500), OWNER, ProxyKind::Toxiproxy)).await;
    let (share2, took) = eventually("most traffic moves to server-2", Duration::from_secs(15), || async {
        let (a, b) = window(&run, 2).await;
        let ok = success_delta(&a, &b, &SERVERS);
        let s = share(&ok, 2);
        if s > 0.9 { Ok(s) } else { Err(format!("successes {ok:?}")) }
    })
    .await;
    eprintln!("server-2 took {:.1}% of successes, {took:?} after +500 ms on the others", share2 * 100.0);
    let s = run.scrape().await;
    assert_eq!(s.state("server-2"), 0.0, "the fast server stays closed");
    let summary = run.stop().await;
    assert_eq!(summary.servers[2].breaker_opens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_loss_on_one_opens_its_breaker_while_the_others_carry_the_load() {
    let _heavy = HEAVY.lock().await;
    let lab = Lab::start().await;
    let run = common::start(lab.config()).await;
    all_serving(&run).await;
    lab.set(1, &desired_for(&loss(1, 100.0), OWNER, ProxyKind::Toxiproxy)).await;
    let (_, took) = eventually("the blackholed server's breaker opens", Duration::from_secs(15), || async {
        let s = run.scrape().await;
        if s.state("server-1") == 2.0 {
            Ok(())
        } else {
            Err(format!("states {:?}, timeouts {}", SERVERS.map(|n| s.state(n)), s.requests("server-1", "timeout")))
        }
    })
    .await;
    eprintln!("breaker opened {took:?} after the fault");
    assert!(took < Duration::from_secs(8), "open within a few seconds, took {took:?}");
    let (a, b) = window(&run, 2).await;
    let ok = success_delta(&a, &b, &SERVERS);
    assert!(
        share(&ok, 0) > 0.3 && share(&ok, 2) > 0.3 && share(&ok, 1) < 0.01,
        "the two healthy servers share: {ok:?}"
    );
    for n in ["server-0", "server-2"] {
        assert_eq!(b.transitions(n, "closed", "open"), 0.0, "{n} stayed closed; outcomes {}", outcomes(&b, n));
    }
    run.stop().await;
}
