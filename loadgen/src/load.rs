//! The load models and a run's lifecycle.
//!
//! - Closed model: `concurrency` workers, each sending its next operation when the previous one
//!   is done. Latency is from send to completion.
//! - Open model: operations are due at a fixed rate whatever happens to earlier ones; latency is
//!   measured from the *scheduled* send time (so a stall shows up as latency, not as a lower rate
//!   nobody sees: no coordinated omission). At most `concurrency` are in flight; a send due
//!   beyond that is missed and counted. A thread of its own keeps the schedule (`Pacer`), waking
//!   at most every 250 µs: sends due within that go together. The schedule kept (sent per
//!   second, send lag, latency from the actual send) is reported (`schedule.rs`).
//!
//! A run ends on [`RunHandle::stop`], after `duration`, or after `requests` operations. Operations
//! in flight then finish (each within at most two timeouts), and are counted.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use prometheus::Registry;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    client::{Client, OpResult},
    config::{Config, ConfigError},
    latency::LatencySummary,
    lock,
    metrics::{Metrics, Outcome},
    report::{ServerSummary, Snapshot, Summary},
    schedule::{ScheduleStats, ScheduleSummary},
    workload::Workload,
};

/// How often breakers are polled for time-based transitions and pool gauges refreshed.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("registering the client metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("LoadGenerator::start must be called within a Tokio runtime")]
    NoRuntime,
}

/// Starts runs.
pub struct LoadGenerator;

impl LoadGenerator {
    /// Validates `config`, registers the client metrics in `registry` and starts the load on the
    /// current Tokio runtime. Returns at once.
    pub fn start(config: Config, registry: &Registry) -> Result<RunHandle, StartError> {
        config.validate()?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let metrics = Metrics::register(registry)?;
        let client = Arc::new(Client::new(&config, &metrics));
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let task = rt.spawn(run(client.clone(), config.clone(), cancel.clone()));
        Ok(RunHandle { client, cancel, task, started, config })
    }
}

/// A running load. Dropping it does not stop the load: call [`RunHandle::stop`].
pub struct RunHandle {
    client: Arc<Client>,
    cancel: CancellationToken,
    task: JoinHandle<Totals>,
    started: Instant,
    config: Config,
}

impl RunHandle {
    /// Live per-server state: requests by outcome, breaker state, pool, in flight.
    pub fn stats(&self) -> Snapshot {
        Snapshot { elapsed: self.started.elapsed(), servers: self.client.snapshot() }
    }

    /// A cheap, cloneable source of snapshots (for a progress task that outlives `&self`).
    pub fn progress(&self) -> Progress {
        Progress { client: self.client.clone(), started: self.started }
    }

    /// Asks the load to stop; [`RunHandle::wait`] returns once operations in flight are done.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Cancelled when the run is asked to stop (by `stop`, duration or request count).
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Waits for the end of the run and summarises it.
    pub async fn wait(self) -> Summary {
        let totals = match self.task.await {
            Ok(t) => t,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Totals::new(self.started.elapsed()),
        };
        self.client.tick();
        let secs = totals.elapsed.as_secs_f64().max(1e-9);
        let ops = totals.counts.ok + totals.counts.failed + totals.counts.rejected;
        Summary {
            model: if self.config.rate.is_some() { "open" } else { "closed" }.to_string(),
            concurrency: self.config.concurrency,
            rate: self.config.rate,
            duration_secs: secs,
            ops,
            successes: totals.counts.ok,
            failures: totals.counts.failed,
            rejected: totals.counts.rejected,
            retries: self.client.retries(),
            missed_sends: totals.schedule.as_ref().map_or(0, |s| s.missed),
            ops_per_sec: ops as f64 / secs,
            warnings: totals.schedule.as_ref().and_then(|s| s.shortfall(self.config.concurrency)).into_iter().collect(),
            schedule: totals.schedule,
            latency_ms: LatencySummary::from_micros(&totals.hist),
            servers: self.client.snapshot().iter().map(ServerSummary::from).collect(),
        }
    }
}

/// Snapshots of a run, from anywhere.
#[derive(Clone)]
pub struct Progress {
    client: Arc<Client>,
    started: Instant,
}

impl Progress {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { elapsed: self.started.elapsed(), servers: self.client.snapshot() }
    }
}

/// What the load itself measured.
struct Totals {
    elapsed: Duration,
    hist: Histogram<u64>,
    counts: Counts,
    /// The open model's schedule.
    schedule: Option<ScheduleSummary>,
}

impl Totals {
    fn new(elapsed: Duration) -> Self {
        Self { elapsed, hist: new_histogram(), counts: Counts::default(), schedule: None }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    ok: u64,
    failed: u64,
    rejected: u64,
}

impl Counts {
    fn add(&mut self, r: &OpResult) {
        match r.outcome {
            Outcome::Success => self.ok += 1,
            Outcome::Rejected if r.attempts == 0 => self.rejected += 1,
            _ => self.failed += 1,
        }
    }
}

/// Latencies in microseconds, 1 µs .. 1 min, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, r: &OpResult, latency: Duration) {
    if r.attempts > 0 {
        h.saturating_record(latency.as_micros().max(1) as u64);
    }
}

/// When to stop: cancellation, or the request budget spent.
struct Control {
    cancel: CancellationToken,
    remaining: Option<AtomicU64>,
}

impl Control {
    /// Takes one operation from the budget; false when the run is over.
    fn claim(&self) -> bool {
        if self.cancel.is_cancelled() {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(r) => r.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok(),
        }
    }
}

async fn run(client: Arc<Client>, cfg: Config, cancel: CancellationToken) -> Totals {
    let started = Instant::now();
    let housekeeping = CancellationToken::new();
    tokio::spawn({
        let (client, done) = (client.clone(), housekeeping.clone());
        async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => client.tick(),
                    _ = done.cancelled() => break,
                }
            }
        }
    });
    if let Some(d) = cfg.duration {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(d) => cancel.cancel(),
                _ = cancel.cancelled() => {}
            }
        });
    }
    let ctl = Arc::new(Control { cancel: cancel.clone(), remaining: cfg.requests.map(AtomicU64::new) });
    let workload = Arc::new(Workload::new(cfg.read_ratio, cfg.keys, cfg.value_size));
    let seed = cfg.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut totals = match cfg.rate {
        None => closed(&client, &cfg, &workload, &ctl, seed).await,
        Some(rate) => open(&client, &cfg, &workload, &ctl, rate, seed).await,
    };
    totals.elapsed = started.elapsed();
    cancel.cancel();
    housekeeping.cancel();
    client.tick();
    totals
}

async fn closed(client: &Arc<Client>, cfg: &Config, workload: &Arc<Workload>, ctl: &Arc<Control>, seed: u64) -> Totals {
    let backoff = cfg.all_open_backoff;
    let shards = Arc::new(Shards::new());
    let workers: Vec<_> = (0..cfg.concurrency as u64)
        .map(|w| {
            let (client, workload, ctl, shards) = (client.clone(), workload.clone(), ctl.clone(), shards.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(w.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
                while ctl.claim() {
                    let op = workload.next(&mut rng);
                    let t0 = Instant::now();
                    let r = client.execute(op, workload.value(), &mut rng).await;
                    shards.record(w, &r, t0.elapsed());
                    if r.attempts == 0 {
                        // Every breaker is open: do not spin.
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = ctl.cancel.cancelled() => {}
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        if let Err(e) = w.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    shards.totals()
}

/// Latencies and counts, in a few shards so that recording rarely contends. (One histogram per
/// worker would cost ~150 KB each: 150 MB at concurrency 1000.)
struct Shards(Vec<Mutex<(Histogram<u64>, Counts)>>);

impl Shards {
    const N: u64 = 16;

    fn new() -> Self {
        Self((0..Self::N).map(|_| Mutex::new((new_histogram(), Counts::default()))).collect())
    }

    fn record(&self, key: u64, r: &OpResult, latency: Duration) {
        let mut shard = lock(&self.0[(key % Self::N) as usize]);
        record(&mut shard.0, r, latency);
        shard.1.add(r);
    }

    fn totals(&self) -> Totals {
        let mut totals = Totals::new(Duration::ZERO);
        for s in &self.0 {
            let s = lock(s);
            let _ = totals.hist.add(&s.0);
            totals.counts.ok += s.1.ok;
            totals.counts.failed += s.1.failed;
            totals.counts.rejected += s.1.rejected;
        }
        totals
    }
}

/// The open model's schedule, kept on a thread of its own: tokio's timer has 1 ms ticks, and the
/// sends due within a tick went out together, each counted late by up to 1 ms (the send lag was
/// p50 0.74 ms at 20,000 ops/s against 0.13 ms of latency from the send). A thread's sleep has
/// microseconds of resolution; it sleeps at least [`PACE`], so it wakes at most 4,000 times a
/// second whatever the rate.
struct Pacer {
    runtime: tokio::runtime::Handle,
    client: Arc<Client>,
    workload: Arc<Workload>,
    ctl: Arc<Control>,
    shared: Arc<OpenShared>,
    concurrency: usize,
    rate: f64,
    start: Instant,
    rng: fastrand::Rng,
}

/// The pacer's shortest sleep: sends due within it go together. Against a local redis-server
/// (`--concurrency 256 --pool-size 64`, 5 s) the send lag p50 and the loadgen's CPU were, at
/// 20,000 / 50,000 ops/s: 1 ms timer 0.73 / 0.85 ms and 19 / 38 %; 500 µs (a spawn per send)
/// 0.39 / 0.43 ms and 26 / 43 %; 250 µs 0.25 / 0.26 ms and 30 / 47 %; 100 µs 0.16 / 0.17 ms and
/// 40 / 62 %.
const PACE: Duration = Duration::from_micros(250);
/// Its longest, so that a stop is seen this soon at a low rate.
const PACE_MAX: Duration = Duration::from_millis(10);

impl Pacer {
    /// Sends each operation when it is due, until the run is over; how many were due, and how
    /// many of those were missed (the in-flight bound was full).
    fn run(mut self) -> (u64, u64) {
        let (mut i, mut missed) = (0, 0);
        loop {
            let now = Instant::now();
            let mut batch = Vec::new();
            while self.due(i) <= now {
                if !self.ctl.claim() {
                    self.send(batch);
                    return (i, missed);
                }
                let scheduled = self.due(i);
                i += 1;
                if self.shared.in_flight.load(Relaxed) >= self.concurrency {
                    missed += 1;
                    continue;
                }
                self.shared.in_flight.fetch_add(1, Relaxed);
                batch.push((scheduled, self.rng.u64(..)));
            }
            self.send(batch);
            if self.ctl.cancel.is_cancelled() {
                return (i, missed);
            }
            std::thread::sleep(self.due(i).saturating_duration_since(Instant::now()).clamp(PACE, PACE_MAX));
        }
    }

    /// When the `i`th operation is due.
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// The operations due together, each with its seed, handed to the runtime at once: one wakeup
    /// of a worker for all of them, not one each (with 100 µs steps, a spawn per send took 52 %
    /// of a core against 40 % at 20,000 ops/s, 64 against 62 % at 50,000). Each latency counts
    /// from its `scheduled` time.
    fn send(&self, batch: Vec<(Instant, u64)>) {
        if batch.is_empty() {
            return;
        }
        let (client, workload, shared) = (self.client.clone(), self.workload.clone(), self.shared.clone());
        self.runtime.spawn(async move {
            for (scheduled, op_seed) in batch {
                let (client, workload, shared) = (client.clone(), workload.clone(), shared.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    shared.schedule.record_lag(sent.saturating_duration_since(scheduled));
                    let mut rng = fastrand::Rng::with_seed(op_seed);
                    let op = workload.next(&mut rng);
                    let r = client.execute(op, workload.value(), &mut rng).await;
                    shared.shards.record(op_seed, &r, scheduled.elapsed());
                    if r.attempts > 0 {
                        shared.schedule.record_service(sent.elapsed());
                    }
                    shared.in_flight.fetch_sub(1, Relaxed);
                });
            }
        });
    }
}

/// Shared by the open model's in-flight operations.
struct OpenShared {
    shards: Shards,
    schedule: ScheduleStats,
    in_flight: AtomicUsize,
}

async fn open(
    client: &Arc<Client>,
    cfg: &Config,
    workload: &Arc<Workload>,
    ctl: &Arc<Control>,
    rate: f64,
    seed: u64,
) -> Totals {
    let shared = Arc::new(OpenShared {
        shards: Shards::new(),
        schedule: ScheduleStats::new(new_histogram),
        in_flight: AtomicUsize::new(0),
    });
    let start = Instant::now();
    let pacer = Pacer {
        runtime: tokio::runtime::Handle::current(),
        client: client.clone(),
        workload: workload.clone(),
        ctl: ctl.clone(),
        shared: shared.clone(),
        concurrency: cfg.concurrency,
        rate,
        start,
        rng: fastrand::Rng::with_seed(seed),
    };
    let (due, missed) = tokio::task::spawn_blocking(move || pacer.run()).await.expect("the pacer thread");
    let span = start.elapsed();
    // Operations in flight finish within two timeouts (a retry) plus scheduling slack.
    let deadline = Instant::now() + cfg.timeout * 2 + Duration::from_secs(1);
    while shared.in_flight.load(Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut totals = shared.shards.totals();
    totals.schedule = Some(shared.schedule.summary(rate, due, missed, span));
    totals
}
