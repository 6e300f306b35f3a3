//! Operator benchmark (prints figures; not a test). Run with `bash hack/bench-operator.sh`.
//!
//! A real kube-apiserver, real toxiproxy-servers holding one proxy per scenario, the release operator
//! binary. Measures the operator's RSS and CPU idle and in rounds of SCENARIOS concurrent scenarios
//! (phases 2 s / 4 s / 2 s, each on its own proxy), from the operator's own histograms, each round
//! on its own: the lateness of phase transitions (planned boundary → the reconcile that applies
//! it), reconcile durations and where they go (the calls a reconcile waits on). Rounds:
//! - shared boundaries: every scenario is held by the namespace's emergency stop until all exist,
//!   then released at once, so they all start at the same whole second (the worst case);
//!   SHARED=k runs it k times (default 1), for figures that vary from round to round;
//! - spread (SPREAD=s, default 10): created evenly over s seconds, as in a cluster used by many;
//! - one slow target (SLOW=1): the shared round plus one scenario whose Toxiproxy answers 2 s late;
//! - finished present (FINISHED=k): a second operator process starts with k finished scenarios in
//!   the namespace and runs the shared round again (SHARED times, so that the two can be compared
//!   over as many rounds each).

mod floor;
mod histogram;
mod slow;

use std::{process::Command, time::Duration};

use chaoslab_core::api::{ChaosScenario, ChaosScenarioStatus, Phase, crd_yaml};
use chaoslab_testenv::{ControlPlane, Managed, ToxiproxyServer, free_port, install_crd, namespace};
use chaoslab_toxiproxy::{Client as Toxiproxy, NewProxy};
use futures::{StreamExt, stream};
use histogram::Buckets;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, reflector, watcher},
};
use serde_json::json;

const STOP: &str = "chaoslab.dev/stop";
const LATENESS: &str = "chaoslab_operator_phase_transition_lateness_seconds";
const RECONCILE: &str = "chaoslab_operator_reconcile_duration_seconds";
const CALLS: &str = "chaoslab_operator_call_duration_seconds";
const EVENTS: &str = "chaoslab_operator_events_total";
/// How many of a round's operator warnings are printed.
const WARNINGS_SHOWN: usize = 8;
/// Proxies per toxiproxy-server.
const PER_SERVER: usize = 50;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// `ticks` of CPU time (1/100 s each) over `elapsed`, as % of one core.
fn cpu_percent(ticks: u64, elapsed: Duration) -> f64 {
    ticks as f64 / 100.0 / elapsed.as_secs_f64() * 100.0
}

/// CPU use (% of one core) and peak RSS of `pid` while `work` runs.
async fn watch<T>(pid: u32, work: impl Future<Output = T>) -> (T, f64, f64) {
    let (t0, start) = (cpu_ticks(pid), std::time::Instant::now());
    let peak = chaoslab_testenv::PeakRss::watch(pid, Duration::from_millis(200));
    let out = work.await;
    let cpu = cpu_percent(cpu_ticks(pid) - t0, start.elapsed());
    (out, cpu, peak.kib() as f64 / 1024.0)
}

/// The peers every round shares: the control plane, the toxiproxy-servers and their proxies.
struct Lab {
    client: Client,
    ns: String,
    kubeconfig: std::path::PathBuf,
    /// kube-apiserver's and etcd's pids: the other side of every status write.
    control_plane: Vec<u32>,
    /// (admin URL, proxy name) of each scenario's target, one per scenario of a round.
    targets: Vec<(String, String)>,
    /// The admin URL of a Toxiproxy answering 2 s late, and its proxy.
    slow: (String, String),
    _servers: Vec<ToxiproxyServer>,
}

impl Lab {
    async fn start(n: usize) -> Self {
        let cp = ControlPlane::shared();
        let client = cp.client().await;
        install_crd(&client, &crd_yaml()).await;
        let ns = namespace(&client, "bench").await;
        let servers: Vec<ToxiproxyServer> = (0..n.div_ceil(PER_SERVER) + 1).map(|_| ToxiproxyServer::start()).collect();
        let mut targets = Vec::new();
        for i in 0..n + 1 {
            let url = servers[i / PER_SERVER].url();
            let name = format!("p{i}");
            let proxy = NewProxy {
                name: name.clone(),
                listen: format!("127.0.0.1:{}", free_port()),
                upstream: "127.0.0.1:9".into(),
                enabled: None,
            };
            Toxiproxy::new(&url).unwrap().create_proxy(&proxy).await.unwrap();
            targets.push((url, name));
        }
        let (last_url, last_proxy) = targets.pop().unwrap();
        let slow_port = slow::start(last_url.trim_start_matches("http://").into(), Duration::from_secs(2)).await;
        Self {
            client,
            ns,
            kubeconfig: cp.kubeconfig.clone(),
            control_plane: ["apiserver.pid", "etcd.pid"]
                .iter()
                .filter_map(|f| std::fs::read_to_string(cp.dir.join(f)).ok()?.trim().parse().ok())
                .collect(),
            targets,
            slow: (format!("http://127.0.0.1:{slow_port}"), last_proxy),
            _servers: servers,
        }
    }

    fn api(&self) -> Api<ChaosScenario> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn set_stop(&self, on: bool) {
        let value = if on { json!("benchmark: hold until all exist") } else { serde_json::Value::Null };
        let patch = json!({"metadata": {"annotations": {STOP: value}}});
        Api::<Namespace>::all(self.client.clone())
            .patch(&self.ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate the namespace");
    }
}

/// The fault of every scenario of a round, on its one target.
fn fault() -> serde_json::Value {
    json!({"target": 0, "latency": {"delayMs": 10}})
}

fn scenario(name: &str, (url, proxy): &(String, String)) -> ChaosScenario {
    serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario",
        "metadata": {"name": name},
        "spec": {
            "faults": [fault()],
            "targets": {"endpoints": [{"name": "server-0", "url": url, "proxy": proxy}]},
            "phases": {"stabilization": "2s", "testing": "4s", "recovery": "2s"}
        }
    }))
    .unwrap()
}

/// The operator under test, started on the lab's namespace.
struct Operator {
    process: Managed,
    metrics_url: String,
}

impl Operator {
    async fn start(lab: &Lab) -> Self {
        let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("chaoslab-operator");
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["run", "--namespace", &lab.ns, "--metrics-addr", &format!("127.0.0.1:{port}"), "--max-procs", "2"])
            .env("KUBECONFIG", &lab.kubeconfig)
            .env("RUST_LOG", "warn,chaoslab_operator::lateness=debug,chaoslab_operator::controller=debug");
        let op = Self {
            process: Managed::spawn("bench-operator", cmd),
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        op
    }

    async fn metrics(&self) -> String {
        reqwest::get(&self.metrics_url).await.unwrap().text().await.unwrap()
    }

    /// From the operator's debug lines, which give each phase change's exact lateness: those of the
    /// scenarios whose key contains `prefix` but not `apart`, and the latest of those containing it.
    fn lateness(&self, prefix: &str, apart: &str) -> Lateness {
        let log = std::fs::read_to_string(&self.process.log).unwrap_or_default();
        let mut out = Lateness { late: Vec::new(), began: Vec::new(), apart_worst: 0.0, latest: String::new() };
        let mut latest = 0.0;
        let field = |line: &str, name: &str| {
            line.split(&format!("{name}=")).nth(1).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        };
        for line in log.lines().filter(|l| l.contains("phase change applied") && l.contains(prefix)) {
            let Some(ms) = field(line, "late_ms") else { continue };
            if line.contains(apart) {
                out.apart_worst = out.apart_worst.max(ms);
            } else {
                if ms > latest {
                    (latest, out.latest) = (ms, line.to_string());
                }
                out.late.push(ms);
                out.began.extend(field(line, "began_ms"));
            }
        }
        out.late.sort_by(f64::total_cmp);
        out.began.sort_by(f64::total_cmp);
        out
    }

    /// The operator's warnings logged from line `from` on (slow calls and reconciles, failed writes),
    /// and the number of lines so far: what explains an outlier in the figures.
    fn warnings_since(&self, from: usize) -> (Vec<String>, usize) {
        let log = std::fs::read_to_string(&self.process.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let warnings = lines.iter().skip(from).filter(|l| l.contains(" WARN ")).map(|l| l.to_string()).collect();
        (warnings, lines.len())
    }

    /// The last `n` reconciles of the scenario a warning names, before it: for a phase change that
    /// began late, the action each returned.
    fn reconciles_before(&self, warning: &str, n: usize) -> Vec<String> {
        let Some(scenario) = warning.split("scenario=").nth(1).and_then(|s| s.split_whitespace().next()) else {
            return vec![];
        };
        let log = std::fs::read_to_string(&self.process.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().take_while(|l| *l != warning).collect();
        let mut mine: Vec<String> = lines
            .iter()
            .rev()
            .filter(|l| l.contains("reconciled") && l.contains(&format!("scenario={scenario} ")))
            .take(n)
            .map(|l| l.to_string())
            .collect();
        mine.reverse();
        mine
    }

    /// Over 10 s from 3 s after the start, which may still be listing finished scenarios: the peak,
    /// and what is left at the end.
    async fn idle(&self) -> String {
        let ((), cpu, rss) = watch(self.process.pid(), tokio::time::sleep(Duration::from_secs(10))).await;
        let now = chaoslab_testenv::rss_kib(self.process.pid()) as f64 / 1024.0;
        format!("CPU {cpu:.1}% of a core, RSS peak {rss:.1} MiB, {now:.1} MiB at the end")
    }
}

/// Phase changes' lateness in ms, sorted: in all, and of its reconcile's start.
struct Lateness {
    late: Vec<f64>,
    began: Vec<f64>,
    apart_worst: f64,
    /// The debug line of the latest one.
    latest: String,
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> f64 {
    v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0)
}

enum Release {
    /// Held by the emergency stop until all exist, then let go at once.
    AtOnce,
    /// Created evenly over this long.
    Spread(Duration),
}

/// Creates `scenarios`, `concurrency` at a time, or at even intervals over a spread.
async fn create(api: &Api<ChaosScenario>, scenarios: Vec<ChaosScenario>, release: &Release) {
    match release {
        Release::AtOnce => {
            stream::iter(scenarios)
                .for_each_concurrent(16, |s| async move {
                    api.create(&PostParams::default(), &s).await.expect("create a scenario");
                })
                .await
        }
        Release::Spread(over) => {
            let gap = *over / scenarios.len().max(1) as u32;
            let mut tick = tokio::time::interval(gap);
            let mut creating = Vec::new();
            for s in scenarios {
                tick.tick().await;
                let api = api.clone();
                creating.push(tokio::spawn(async move { api.create(&PostParams::default(), &s).await }));
            }
            for c in creating {
                c.await.unwrap().expect("create a scenario");
            }
        }
    }
}

/// The operator's label on a run that needs nothing more (operator/src/finished.rs).
const FINISHED: &str = "chaoslab.dev/finished";

/// The label on a round's scenarios, whose value is the round's name prefix.
const ROUND: &str = "bench.chaoslab.dev/round";

/// Waits until all `count` scenarios of round `prefix` are in a phase `done` accepts; the count by
/// phase then. Watches them: listing every scenario each second, as this did before, cost the
/// apiserver the operator shares more than the operator's own writes, the more so with 5,000
/// finished scenarios in the namespace.
async fn wait_all(api: &Api<ChaosScenario>, prefix: &str, count: usize, done: fn(Option<Phase>) -> bool) -> String {
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().labels(&format!("{ROUND}={prefix}"));
    let watch = tokio::spawn(watcher(api.clone(), config).reflect(writer).for_each(|_| async {}));
    let start = std::time::Instant::now();
    loop {
        let phases: Vec<Option<Phase>> =
            store.state().iter().map(|s| s.status.as_ref().and_then(|st| st.phase)).collect();
        if phases.len() >= count && phases.iter().all(|p| done(*p)) {
            watch.abort();
            let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
            for p in &phases {
                *by.entry(p.map_or("none", Phase::as_str)).or_default() += 1;
            }
            return by.iter().map(|(p, c)| format!("{c} {p}")).collect::<Vec<_>>().join(", ");
        }
        assert!(start.elapsed() < Duration::from_secs(300), "{prefix}: scenarios did not get there in 5 min");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One round: creates the scenarios, waits until all have ended, prints what the operator's
/// histograms gained meanwhile.
async fn round(lab: &Lab, op: &Operator, label: &str, prefix: &str, release: Release, with_slow: bool) {
    let api = lab.api();
    let mut scenarios: Vec<ChaosScenario> =
        lab.targets.iter().enumerate().map(|(i, t)| scenario(&format!("{prefix}-{i}"), t)).collect();
    if with_slow {
        scenarios.push(scenario(&format!("{prefix}-slow"), &lab.slow));
    }
    for s in &mut scenarios {
        s.metadata.labels = Some([(ROUND.to_string(), prefix.to_string())].into());
    }
    let count = scenarios.len();
    let before = op.metrics().await;
    let (_, log_from) = op.warnings_since(usize::MAX);
    let held = matches!(release, Release::AtOnce);
    if held {
        lab.set_stop(true).await;
    }
    create(&api, scenarios, &release).await;
    if held {
        wait_all(&api, prefix, count, |p| p == Some(Phase::Queued)).await;
        lab.set_stop(false).await;
    }
    let cp_ticks: u64 = lab.control_plane.iter().map(|p| cpu_ticks(*p)).sum();
    let started = std::time::Instant::now();
    let (phases, cpu, rss) =
        watch(op.process.pid(), wait_all(&api, prefix, count, |p| p.is_some_and(Phase::is_terminal))).await;
    let cp_ticks = lab.control_plane.iter().map(|p| cpu_ticks(*p)).sum::<u64>() - cp_ticks;
    let cp_cpu = cpu_percent(cp_ticks, started.elapsed());
    let after = op.metrics().await;
    let gained = |family: &str, matching: &str| {
        Buckets::read(&after, family, matching).since(&Buckets::read(&before, family, matching))
    };
    println!("\n{label}: {count} scenarios ({phases})");
    println!(
        "  running {:.1} s: CPU {cpu:.1}% of a core, peak RSS {rss:.1} MiB; kube-apiserver + etcd CPU {cp_cpu:.0}% of a core",
        started.elapsed().as_secs_f64()
    );
    let late = gained(LATENESS, "");
    println!("  phase transitions: {} measured; lateness {}", late.count(), late.summary());
    for phase in ["Stabilization", "Testing", "Recovery", "Completed"] {
        let l = gained(LATENESS, &format!("phase=\"{phase}\""));
        println!("    into {phase:<14} {:>5}; lateness {}", l.count(), l.summary());
    }
    let l = op.lateness(&format!("/{prefix}-"), &format!("/{prefix}-slow"));
    let (late, began) = (&l.late, &l.began);
    println!(
        "  exact, from the debug lines{}: {} phase changes; lateness p50 {:.1} ms, p99 {:.1} ms, latest {:.1} ms",
        if with_slow { " (not counting the slow one's)" } else { "" },
        late.len(),
        quantile(late, 0.5),
        quantile(late, 0.99),
        late.last().copied().unwrap_or(0.0)
    );
    println!(
        "    its reconcile began, from the boundary (negative: woken ahead): p50 {:.1} ms, p99 {:.1} ms",
        quantile(began, 0.5),
        quantile(began, 0.99)
    );
    println!("    the latest: {}", l.latest.split("phase change applied").nth(1).unwrap_or_default().trim());
    if with_slow {
        println!("  the slow one's latest: {:.1} ms", l.apart_worst);
    }
    let (warnings, _) = op.warnings_since(log_from);
    println!("  operator warnings: {}", warnings.len());
    for w in warnings.iter().take(WARNINGS_SHOWN) {
        println!("    {w}");
        if w.contains("phase change began late") {
            for r in op.reconciles_before(w, 4) {
                println!("      before it: {r}");
            }
        }
    }
    let rec = gained(RECONCILE, "");
    println!("  reconciles: {}; duration {}", rec.count(), rec.summary());
    for call in ["resolve_targets", "toxiproxy_converge", "status_patch", "event", "metadata_patch"] {
        let c = gained(CALLS, &format!("call=\"{call}\""));
        println!("    {call:<18} {:>6} calls; {}", c.count(), c.summary());
    }
    // Since the process started: Events wait in a queue and may still be going out from a round before.
    let events: Vec<String> = ["published", "failed", "dropped"]
        .iter()
        .map(|o| format!("{o} {}", counter(&after, &format!("{EVENTS}{{outcome=\"{o}\"}}"))))
        .collect();
    println!("  events so far: {}", events.join(", "));
}

/// A counter's value in `metrics`, by its whole series name (`family{labels}`); 0 if absent.
fn counter(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

/// Waits (at most 60 s) until the operator has labelled every scenario finished, so that the next
/// process finds only finished ones, as it would in a cluster: a process started while the ended
/// runs were still unlabelled would take them all in at once, which the idle figure is not about.
async fn all_labelled_finished(api: &Api<ChaosScenario>) -> String {
    let unlabelled = ListParams::default().labels(&format!("{FINISHED}!=true"));
    let start = std::time::Instant::now();
    let mut first = None;
    loop {
        let left = api.list_metadata(&unlabelled).await.unwrap().items.len();
        let first = *first.get_or_insert(left);
        if left == 0 || start.elapsed() > Duration::from_secs(60) {
            return format!(
                "the first process: {first} ended scenarios not yet labelled finished after its last round, {left} after {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `k` scenarios that ended long ago, as a busy cluster keeps them: the status of a real finished
/// run (`model`), labelled finished and without a finalizer, as the operator leaves them. Created
/// while no operator runs.
async fn finished(lab: &Lab, k: usize, model: &ChaosScenarioStatus) {
    let api = lab.api();
    stream::iter(0..k)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            let mut s = scenario(&format!("done-{i}"), &lab.targets[i % lab.targets.len()]);
            // As the operator leaves a run that ended clean (operator/src/finished.rs).
            s.metadata.labels = Some([(FINISHED.to_string(), "true".to_string())].into());
            async move {
                api.create(&PostParams::default(), &s).await.expect("create a finished scenario");
                let status = json!({"apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario", "status": model});
                let name = s.metadata.name.unwrap();
                api.patch_status(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&status))
                    .await
                    .expect("write a finished status");
            }
        })
        .await;
}

#[tokio::main]
async fn main() {
    let n = env("SCENARIOS", 50);
    let shared = env("SHARED", 1);
    let spread = env("SPREAD", 10);
    let with_slow = env("SLOW", 1) == 1;
    let k = env("FINISHED", 0);
    let lab = Lab::start(n).await;
    println!(
        "operator benchmark: {n} scenarios per round on {} toxiproxy-servers, phases 2s/4s/2s, operator --max-procs 2",
        n.div_ceil(PER_SERVER)
    );
    let floor = floor::measure(&lab.targets, &serde_json::from_value(fault()).unwrap()).await;
    println!(
        "  anchor, the Toxiproxy calls of a shared boundary made at once from one process (no operator, no apiserver writes):"
    );
    for (what, done) in [("add a toxic to each", &floor.add), ("remove them", &floor.remove)] {
        println!(
            "    {what}: done p50 {:.1} ms, p99 {:.1} ms, all {:.1} ms after the start",
            quantile(done, 0.5),
            quantile(done, 0.99),
            done.last().copied().unwrap_or(0.0)
        );
    }
    let op = Operator::start(&lab).await;
    println!("  idle: {}", op.idle().await);
    round(&lab, &op, "shared boundaries", "shared", Release::AtOnce, false).await;
    for i in 2..=shared {
        round(&lab, &op, &format!("shared boundaries, again ({i})"), &format!("shared{i}"), Release::AtOnce, false)
            .await;
    }
    if spread > 0 {
        let label = format!("spread: created evenly over {spread} s");
        round(&lab, &op, &label, "spread", Release::Spread(Duration::from_secs(spread as u64)), false).await;
    }
    if with_slow {
        let label = "shared boundaries + one scenario whose Toxiproxy answers 2 s late";
        round(&lab, &op, label, "slow", Release::AtOnce, true).await;
    }
    if k > 0 {
        let model = lab.api().get("shared-0").await.unwrap().status.expect("a finished status");
        println!("\n{}", all_labelled_finished(&lab.api()).await);
        drop(op);
        finished(&lab, k, &model).await;
        let op = Operator::start(&lab).await;
        println!("\na new operator process with {k} finished scenarios in its namespace");
        println!("  idle: {}", op.idle().await);
        round(&lab, &op, &format!("shared boundaries, {k} finished present"), "again", Release::AtOnce, false).await;
        for i in 2..=shared {
            let label = format!("shared boundaries, {k} finished present, again ({i})");
            round(&lab, &op, &label, &format!("again{i}"), Release::AtOnce, false).await;
        }
    }
}
