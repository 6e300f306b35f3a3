//! Operator benchmark (prints figures; not a test). Run with `bash hack/bench-operator.sh`.
//!
//! A real kube-apiserver, one real toxiproxy-server holding N proxies, the release operator binary.
//! Measures the operator's RSS and CPU idle and while N scenarios run at once on separate targets,
//! the lateness of phase transitions (planned boundary → reconcile that applied it) and reconcile
//! durations, from the operator's own histograms.

use std::{process::Command, time::Duration};

use chaoslab_core::api::{ChaosScenario, Phase, crd_yaml};
use chaoslab_testenv::{ControlPlane, Managed, ToxiproxyServer, free_port, install_crd, namespace};
use chaoslab_toxiproxy::{Client as Toxiproxy, NewProxy};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::json;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU use in % of one core and peak RSS over `d`.
async fn watch(pid: u32, d: Duration) -> (f64, f64) {
    let t0 = cpu_ticks(pid);
    let mut peak: f64 = 0.0;
    let start = std::time::Instant::now();
    while start.elapsed() < d {
        peak = peak.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ticks = (cpu_ticks(pid) - t0) as f64;
    (ticks / 100.0 / d.as_secs_f64() * 100.0, peak)
}

/// A quantile from a Prometheus histogram's cumulative buckets (linear within a bucket), over its
/// series whose line contains `matching` (e.g. `call="event"`; "" for all).
fn quantile(metrics: &str, family: &str, matching: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines().filter(|l| l.starts_with(&format!("{family}_bucket")) && l.contains(matching)) {
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
        let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
        match buckets.iter_mut().find(|(l, _)| *l == le) {
            Some(b) => b.1 += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, c) in buckets {
        if c >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let frac = if c > prev.1 { (rank - prev.1) / (c - prev.1) } else { 0.0 };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, c);
    }
    None
}

fn count(metrics: &str, family: &str, matching: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}_count")) && l.contains(matching))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("SCENARIOS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    install_crd(&client, &crd_yaml()).await;
    let ns = namespace(&client, "bench").await;
    let toxiproxy = ToxiproxyServer::start();
    let tp = Toxiproxy::new(&toxiproxy.url()).unwrap();
    for i in 0..n {
        let p = NewProxy {
            name: format!("p{i}"),
            listen: format!("127.0.0.1:{}", free_port()),
            upstream: "127.0.0.1:9".into(),
            enabled: None,
        };
        tp.create_proxy(&p).await.unwrap();
    }
    let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("chaoslab-operator");
    let metrics_port = free_port();
    let mut cmd = Command::new(&bin);
    cmd.args(["run", "--namespace", &ns, "--metrics-addr", &format!("127.0.0.1:{metrics_port}"), "--max-procs", "2"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("RUST_LOG", "warn");
    let op = Managed::spawn("bench-operator", cmd);
    let pid = op.pid();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_cpu, idle_rss) = watch(pid, Duration::from_secs(10)).await;

    let api: Api<ChaosScenario> = Api::namespaced(client.clone(), &ns);
    let mut busy = (0.0f64, 0.0f64);
    for round in 0..rounds {
        for i in 0..n {
            let obj: ChaosScenario = serde_json::from_value(json!({
                "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario",
                "metadata": {"name": format!("s{round}-{i}")},
                "spec": {
                    "faults": [{"target": 0, "latency": {"delayMs": 10}}],
                    "targets": {"endpoints": [{"name": "server-0", "url": toxiproxy.url(), "proxy": format!("p{i}")}]},
                    "phases": {"stabilization": "2s", "testing": "4s", "recovery": "2s"}
                }
            }))
            .unwrap();
            api.create(&PostParams::default(), &obj).await.unwrap();
        }
        let watcher = tokio::spawn(watch(pid, Duration::from_secs(8)));
        let start = std::time::Instant::now();
        loop {
            let list = api.list(&ListParams::default()).await.unwrap();
            let done = list
                .items
                .iter()
                .filter(|s| s.status.as_ref().and_then(|st| st.phase).is_some_and(Phase::is_terminal))
                .count();
            if done == list.items.len() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "scenarios did not finish: {done}/{}",
                list.items.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let w = watcher.await.unwrap();
        busy = (busy.0.max(w.0), busy.1.max(w.1));
    }
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.unwrap().text().await.unwrap();
    let late = "chaoslab_operator_phase_transition_lateness_seconds";
    let rec = "chaoslab_operator_reconcile_duration_seconds";
    let ms = |v: Option<f64>| v.map(|s| format!("{:.1} ms", s * 1000.0)).unwrap_or_else(|| "n/a".into());
    println!("operator benchmark: {n} concurrent scenarios × {rounds} round(s), phases 2s/4s/2s, --max-procs 2");
    println!("  idle:    CPU {idle_cpu:.1}% of a core, RSS {idle_rss:.1} MiB");
    println!("  running: CPU {:.1}% of a core (8 s window), peak RSS {:.1} MiB", busy.0, busy.1);
    println!(
        "  phase transitions: {} measured; lateness p50 {}, p99 {} (from histogram buckets)",
        count(&metrics, late, ""),
        ms(quantile(&metrics, late, "", 0.5)),
        ms(quantile(&metrics, late, "", 0.99))
    );
    println!(
        "  reconciles: {}; duration p50 {}, p99 {}",
        count(&metrics, rec, ""),
        ms(quantile(&metrics, rec, "", 0.5)),
        ms(quantile(&metrics, rec, "", 0.99))
    );
    // Where a reconcile's time goes: what it waits on, by call.
    let calls = "chaoslab_operator_call_duration_seconds";
    for call in ["resolve_targets", "toxiproxy_converge", "status_patch", "event"] {
        let matching = format!("call=\"{call}\"");
        println!(
            "    {call:<18} {:>6} calls; p50 {}, p99 {}",
            count(&metrics, calls, &matching),
            ms(quantile(&metrics, calls, &matching, 0.5)),
            ms(quantile(&metrics, calls, &matching, 0.99))
        );
    }
}
