//! redis-benchmark as the benchmarks drive it: its `--csv` summary read into figures.

use std::{path::PathBuf, process::Command};

/// One test's line of `redis-benchmark --csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchmarkRow {
    /// As redis-benchmark names it: `GET`, `SET`, ...
    pub test: String,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `$REDIS_BENCHMARK`, or Debian's redis-benchmark.
fn redis_benchmark_bin() -> PathBuf {
    std::env::var_os("REDIS_BENCHMARK").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/redis-benchmark".into())
}

/// Runs redis-benchmark against 127.0.0.1:`port` with `args` (e.g. `-c 50 -n 100000 -t get,set`);
/// one row per test. Something must already listen there: redis-benchmark spins forever on a
/// refused connection.
pub fn redis_benchmark(port: u16, args: &[&str]) -> Vec<BenchmarkRow> {
    let bin = redis_benchmark_bin();
    let out = Command::new(&bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--csv"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (hack/install-deps.sh installs it)", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-benchmark {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    parse_csv(&stdout).unwrap_or_else(|e| panic!("redis-benchmark {args:?}: {e}:\n{stdout}"))
}

/// The header names the columns; values are quoted.
fn parse_csv(text: &str) -> Result<Vec<BenchmarkRow>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split(',').map(|v| v.trim_matches('"')));
    let head: Vec<&str> = lines.next().ok_or("no CSV header")?.collect();
    let column = |name: &str| head.iter().position(|h| *h == name).ok_or(format!("no column {name}"));
    let (test, rps, p50, p99) = (column("test")?, column("rps")?, column("p50_latency_ms")?, column("p99_latency_ms")?);
    lines
        .map(|values| {
            let values: Vec<&str> = values.collect();
            let bad = || format!("bad row {values:?}");
            let number = |i: usize| values.get(i).and_then(|v| v.parse::<f64>().ok()).ok_or_else(bad);
            Ok(BenchmarkRow {
                test: values.get(test).ok_or_else(bad)?.to_string(),
                ops_per_sec: number(rps)?,
                p50_ms: number(p50)?,
                p99_ms: number(p99)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmark_7_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"73502.12\",\"0.380\",\"0.080\",\"0.343\",\"0.600\",\"0.919\",\"3.000\"\n\
                   \"GET\",\"73099.00\",\"0.370\",\"0.080\",\"0.343\",\"0.580\",\"0.839\",\"2.500\"\n";
        let rows = parse_csv(csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], BenchmarkRow { test: "SET".into(), ops_per_sec: 73502.12, p50_ms: 0.343, p99_ms: 0.919 });
        assert_eq!(rows[1].test, "GET");
        assert!(parse_csv("").is_err());
        assert!(parse_csv("\"test\",\"rps\"\n").is_err(), "the percentile columns are required");
    }
}
