//! Throughput and latency through chaoslab's fault proxy vs through a real toxiproxy-server, no
//! toxics, same load (prints figures; not a test). Run with `bash hack/bench-faultproxy.sh`.
//!
//! A real redis-server, one proxy to it on each server (toxiproxy-server v2.12.0, and the fault proxy
//! as `chaoslab proxy`, the binary built next to this example), and redis-benchmark driving direct /
//! via toxiproxy-server / via the fault proxy, interleaved for ROUNDS rounds (medians reported).
//!
//! Then, with LATENCY_MS > 0 (default 50), a latency toxic of that many ms (downstream) on both
//! proxies and one more GET run each: how far the delay added is from the toxic's (p50/p99, against
//! the direct run's latency) and the memory each of the C connections costs the proxy process
//! (peak RSS during the run minus RSS before it, over C).
//!
//! Env: N (requests per run, default 200000), C (concurrency, 50), TESTS (redis-benchmark -t,
//! get,set), ROUNDS (3), LATENCY_MS (50; 0 skips); the binaries REDIS_SERVER, REDIS_BENCHMARK and
//! TOXIPROXY_SERVER.

use std::{collections::BTreeMap, net::SocketAddr, process::Command, str::FromStr, time::Duration};

use chaoslab_core::toxic::{Stream, Toxic, ToxicType};
use chaoslab_testenv::{
    BenchmarkRow, Managed, RedisServer, ToxiproxyServer, free_port, redis_benchmark, wait_for_port, workspace_bin,
};
use chaoslab_toxiproxy::{Client, NewProxy};

/// The ways to redis-server, in the order each round takes them.
const VIAS: [&str; 3] = ["direct", "toxiproxy", "faultproxy"];

/// The knobs, from the environment.
struct Settings {
    requests: u64,
    concurrency: u32,
    tests: String,
    rounds: usize,
    latency_ms: i64,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            requests: env_or("N", 200_000),
            concurrency: env_or("C", 50),
            tests: env_or("TESTS", "get,set".to_string()),
            rounds: env_or("ROUNDS", 3),
            latency_ms: env_or("LATENCY_MS", 50),
        }
    }

    /// redis-benchmark's arguments for `requests` requests.
    fn args(&self, requests: u64) -> [String; 6] {
        ["-c".into(), self.concurrency.to_string(), "-n".into(), requests.to_string(), "-t".into(), self.tests.clone()]
    }
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v}: not valid")),
        Err(_) => default,
    }
}

fn run_benchmark(port: u16, args: &[String]) -> Vec<BenchmarkRow> {
    redis_benchmark(port, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The fault proxy on its own (`chaoslab proxy`), its admin API on a free port; and that API's URL.
fn start_faultproxy() -> (Managed, String) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut cmd = Command::new(workspace_bin("chaoslab"));
    cmd.args(["proxy", "--listen", &addr.to_string()]);
    let process = Managed::spawn("bench-faultproxy", cmd);
    assert!(
        wait_for_port(addr, Duration::from_secs(10)),
        "chaoslab proxy did not listen on {addr}:\n{}",
        process.log_tail()
    );
    (process, format!("http://{addr}"))
}

/// Creates a proxy to `upstream` through the Toxiproxy API at `admin`; the port it listens on.
fn proxy_to(admin: &str, upstream: &str) -> u16 {
    let port = free_port();
    let proxy = NewProxy {
        name: "redis".into(),
        listen: format!("127.0.0.1:{port}"),
        upstream: upstream.into(),
        enabled: None,
    };
    let created = block_on(async { Client::new(admin)?.create_proxy(&proxy).await });
    created.unwrap_or_else(|e| panic!("creating a proxy on {admin}: {e}"));
    port
}

/// Every round's rows, by test and by way to the server.
#[derive(Default)]
struct Results(BTreeMap<String, BTreeMap<&'static str, Vec<BenchmarkRow>>>);

impl Results {
    fn add(&mut self, via: &'static str, rows: Vec<BenchmarkRow>) {
        for row in rows {
            self.0.entry(row.test.clone()).or_default().entry(via).or_default().push(row);
        }
    }

    /// The median over the rounds of one figure of a row.
    fn median(&self, test: &str, via: &str, figure: fn(&BenchmarkRow) -> f64) -> f64 {
        let mut v: Vec<f64> = self.0[test][via].iter().map(figure).collect();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
    }
}

const OPS: fn(&BenchmarkRow) -> f64 = |r| r.ops_per_sec;
const P50: fn(&BenchmarkRow) -> f64 = |r| r.p50_ms;
const P99: fn(&BenchmarkRow) -> f64 = |r| r.p99_ms;

fn report(results: &Results, s: &Settings) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "\nredis-benchmark -c {} -n {} -t {}, median of {} round(s), {cpus} cores",
        s.concurrency, s.requests, s.tests, s.rounds
    );
    println!(
        "{:<6} {:<11} {:>12} {:>9} {:>9} {:>14} {:>14}",
        "test", "via", "ops/s", "p50_ms", "p99_ms", "added_p50_ms", "added_p99_ms"
    );
    for test in results.0.keys() {
        let m = |via, figure| results.median(test, via, figure);
        for via in VIAS {
            let (p50, p99) = (m(via, P50), m(via, P99));
            let (added50, added99) = (p50 - m("direct", P50), p99 - m("direct", P99));
            println!("{test:<6} {via:<11} {:>12.0} {p50:>9.3} {p99:>9.3} {added50:>14.3} {added99:>14.3}", m(via, OPS));
        }
        let ratio = |figure| m("faultproxy", figure) / m("toxiproxy", figure);
        println!(
            "{test:<6} faultproxy/toxiproxy: throughput x{:.2}, p50 x{:.2}, p99 x{:.2} (above 1 is faster for throughput, slower for latency)",
            ratio(OPS),
            ratio(P50),
            ratio(P99)
        );
    }
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

fn rss_kib(pid: u32) -> f64 {
    chaoslab_testenv::rss_kib(pid) as f64
}

/// Runs `work` while sampling `pid`'s RSS every 20 ms; the peak (KiB) beside its result.
fn peak_rss_during<T>(pid: u32, work: impl FnOnce() -> T) -> (T, f64) {
    let peak = chaoslab_testenv::PeakRss::watch(pid, Duration::from_millis(20));
    let out = work();
    (out, peak.kib() as f64)
}

/// A latency toxic on each proxy (`(via, admin URL, proxy port, pid)`), then one GET run through
/// each: the delay's error against the toxic and the proxy's memory per connection.
fn latency_section(s: &Settings, direct: (f64, f64), proxies: &[(&str, String, u16, u32)]) {
    let toxic = Toxic {
        name: "bench-latency".into(),
        kind: ToxicType::Latency,
        stream: Stream::Downstream,
        toxicity: 1.0,
        attributes: [("latency".to_string(), s.latency_ms), ("jitter".to_string(), 0)].into(),
    };
    let args = ["-c".into(), s.concurrency.to_string(), "-n".into(), s.requests.to_string(), "-t".into(), "get".into()];
    println!(
        "\nlatency toxic {} ms downstream, redis-benchmark -c {} -n {} -t get (direct: p50 {:.3} ms, p99 {:.3} ms)",
        s.latency_ms, s.concurrency, s.requests, direct.0, direct.1
    );
    println!(
        "{:<11} {:>9} {:>9} {:>14} {:>14} {:>11} {:>11} {:>13}",
        "via", "p50_ms", "p99_ms", "p50_error_ms", "p99_error_ms", "rss_idle", "rss_peak", "KiB/conn"
    );
    for (via, admin, port, pid) in proxies {
        block_on(async { Client::new(admin)?.create_toxic("redis", &toxic).await })
            .unwrap_or_else(|e| panic!("latency toxic on {via}: {e}"));
        let idle = rss_kib(*pid);
        let (rows, peak) = peak_rss_during(*pid, || run_benchmark(*port, &args));
        let row = rows.first().unwrap_or_else(|| panic!("no GET row through {via}"));
        let want = s.latency_ms as f64;
        let (e50, e99) = (row.p50_ms - direct.0 - want, row.p99_ms - direct.1 - want);
        let per_conn = (peak - idle) / f64::from(s.concurrency);
        println!(
            "{via:<11} {:>9.3} {:>9.3} {e50:>14.3} {e99:>14.3} {:>7.1} MiB {:>7.1} MiB {per_conn:>13.1}",
            row.p50_ms,
            row.p99_ms,
            idle / 1024.0,
            peak / 1024.0
        );
    }
}

fn main() {
    let s = Settings::from_env();
    let redis = RedisServer::start();
    let toxiproxy = ToxiproxyServer::start();
    let (_faultproxy, faultproxy_url) = start_faultproxy();
    let ports = [redis.port, proxy_to(&toxiproxy.url(), &redis.addr()), proxy_to(&faultproxy_url, &redis.addr())];
    eprintln!("warming up...");
    for port in ports {
        run_benchmark(port, &s.args(10_000));
    }
    let mut results = Results::default();
    for round in 1..=s.rounds {
        eprintln!("round {round}/{}...", s.rounds);
        for (via, port) in VIAS.into_iter().zip(ports) {
            results.add(via, run_benchmark(port, &s.args(s.requests)));
        }
    }
    report(&results, &s);
    if s.latency_ms > 0 {
        let get = "GET".to_string();
        let direct = results
            .0
            .get(&get)
            .map_or((0.0, 0.0), |_| (results.median(&get, "direct", P50), results.median(&get, "direct", P99)));
        // Fresh processes: memory the throughput runs took is not given back, and would hide what
        // the connections cost.
        let toxiproxy = ToxiproxyServer::start();
        let (faultproxy, faultproxy_url) = start_faultproxy();
        let proxies = [
            ("toxiproxy", toxiproxy.url(), proxy_to(&toxiproxy.url(), &redis.addr()), toxiproxy.process.pid()),
            ("faultproxy", faultproxy_url.clone(), proxy_to(&faultproxy_url, &redis.addr()), faultproxy.pid()),
        ];
        latency_section(&s, direct, &proxies);
    }
}
