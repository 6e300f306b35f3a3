//! chaoslab-loadgen vs redis-benchmark against the same real redis-server, no proxy (prints
//! figures; not a test). Run with `bash hack/bench-loadgen.sh`.
//!
//! For GET and SET at concurrency 50 and 100, a fixed number of requests each:
//!   redis-benchmark -c C -n N -t get|set -r KEYS -d VALUE --csv   (single-threaded, as shipped)
//!   chaoslab-loadgen --concurrency C --requests N --read-ratio 1|0 --max-procs PROCS --output json
//! prints ops/s of both, the ratio, p50/p99 of both, then loadgen's peak RSS at concurrency 100
//! and 1000.
//!
//! Env: N (requests per run, default 200000), PROCS (loadgen --max-procs, default 2), KEYS (default
//! 10000), VALUE (bytes, default 3 = redis-benchmark's default); the binaries REDIS_SERVER,
//! REDIS_BENCHMARK and LOADGEN (default: the chaoslab-loadgen built next to this example).

use std::{path::PathBuf, process::Command, str::FromStr};

use chaoslab_testenv::{RedisServer, redis_benchmark, redis_server_bin, run_measured, workspace_bin};

/// The knobs, from the environment.
struct Settings {
    requests: u64,
    procs: u32,
    keys: u64,
    value: u32,
    loadgen: PathBuf,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            requests: env_or("N", 200_000),
            procs: env_or("PROCS", 2),
            keys: env_or("KEYS", 10_000),
            value: env_or("VALUE", 3),
            loadgen: std::env::var_os("LOADGEN")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_bin("chaoslab-loadgen")),
        }
    }
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// Throughput and latency of one run.
struct Figures {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// redis-benchmark: `test` (get or set) at concurrency `c`.
fn benchmark(redis: &RedisServer, s: &Settings, c: u32, test: &str) -> Figures {
    let (c, n, keys, value) = (c.to_string(), s.requests.to_string(), s.keys.to_string(), s.value.to_string());
    let rows = redis_benchmark(redis.port, &["-c", &c, "-n", &n, "-t", test, "-r", &keys, "-d", &value]);
    let row = rows.first().unwrap_or_else(|| panic!("redis-benchmark -t {test}: no result"));
    Figures { ops_per_sec: row.ops_per_sec, p50_ms: row.p50_ms, p99_ms: row.p99_ms }
}

/// chaoslab-loadgen with the same load (`read_ratio` 1: GET, 0: SET); its figures and its peak RSS
/// in KiB.
fn loadgen(redis: &RedisServer, s: &Settings, c: u32, read_ratio: u8) -> (Figures, u64) {
    let mut cmd = Command::new(&s.loadgen);
    cmd.args(["--targets", &redis.addr(), "--concurrency", &c.to_string(), "--requests", &s.requests.to_string()])
        .args(["--read-ratio", &read_ratio.to_string(), "--keys", &s.keys.to_string()])
        .args(["--value-size", &s.value.to_string(), "--max-procs", &s.procs.to_string()])
        .args(["--metrics-addr", "off", "--progress-interval", "0", "--output", "json"]);
    let run = run_measured(&mut cmd);
    assert!(run.status.success(), "chaoslab-loadgen: {}\n{}", run.status, String::from_utf8_lossy(&run.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("loadgen's JSON summary");
    let number = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number in {summary}"));
    let figures = Figures {
        ops_per_sec: number(&summary["ops_per_sec"]),
        p50_ms: number(&summary["latency_ms"]["p50"]),
        p99_ms: number(&summary["latency_ms"]["p99"]),
    };
    (figures, run.peak_rss_kib)
}

/// `7.0.15` from `Redis server v=7.0.15 sha=...`.
fn redis_version() -> String {
    let out = Command::new(redis_server_bin()).arg("--version").output().expect("redis-server --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().find_map(|w| w.strip_prefix("v=")).unwrap_or("?").to_string()
}

fn table_line(cells: [&str; 9]) {
    let [test, c, b_ops, b_p50, b_p99, l_ops, l_p50, l_p99, ratio] = cells;
    println!("{test:<4} {c:>5} | {b_ops:>12} {b_p50:>8} {b_p99:>8} | {l_ops:>12} {l_p50:>8} {l_p99:>8} | {ratio:>6}");
}

fn compare(redis: &RedisServer, s: &Settings) {
    table_line(["test", "c", "bench ops/s", "p50ms", "p99ms", "loadgen ops/s", "p50ms", "p99ms", "ratio"]);
    for (test, read_ratio) in [("get", 1), ("set", 0)] {
        for c in [50, 100] {
            let b = benchmark(redis, s, c, test);
            let (l, _) = loadgen(redis, s, c, read_ratio);
            let (ops, ms) = (|v: f64| format!("{v:.0}"), |v: f64| format!("{v:.3}"));
            table_line([
                test,
                &c.to_string(),
                &ops(b.ops_per_sec),
                &ms(b.p50_ms),
                &ms(b.p99_ms),
                &ops(l.ops_per_sec),
                &ms(l.p50_ms),
                &ms(l.p99_ms),
                &format!("{:.2}x", l.ops_per_sec / b.ops_per_sec),
            ]);
        }
    }
}

fn main() {
    let s = Settings::from_env();
    let redis = RedisServer::start();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "redis-server {} on {}; {cpus} CPUs; N={} requests per run; loadgen --max-procs {}",
        redis_version(),
        redis.addr(),
        s.requests,
        s.procs
    );
    compare(&redis, &s);
    println!("\nloadgen peak RSS (GET, {} requests):", s.requests);
    for c in [100, 1000] {
        let (_, rss) = loadgen(&redis, &s, c, 1);
        println!("  concurrency {c}: {} MiB (peak {rss} KiB)", rss / 1024);
    }
}
