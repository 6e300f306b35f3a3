//! The client under test: per-server breaker, pool and latency EWMA; p2c routing over the servers
//! whose breaker admits the call; a timeout on every attempt; at most one retry, on another server,
//! within the retry budget. Every attempt is recorded in the metrics.
//!
//! When every breaker refuses, the request is not sent: it fails fast as `rejected`, counted on
//! the server the router would have picked among all of them (so the label stays one of the
//! servers), and the closed-model worker pauses briefly (`all_open_backoff`) so it does not spin.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use crate::{
    breaker::{Breaker, Permit, State, Transition},
    budget::RetryBudget,
    config::Config,
    conn::CallError,
    ewma::Ewma,
    lock,
    metrics::{Metrics, Outcome, ServerMetrics},
    misbehave::Misbehaviour,
    pool::{GetError, Pool},
    resp::Frame,
    router::{self, Candidate, Outliers},
    workload::{Op, OpKind, key_name, reply_ok},
};

/// Most servers a client handles (exclusion sets are a u64 bit mask).
pub const MAX_SERVERS: usize = 64;

/// What became of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpResult {
    /// The last attempt's outcome; `Rejected` with 0 attempts: every breaker refused, nothing sent.
    pub outcome: Outcome,
    /// Attempts sent: 0, 1, or 2 with a retry (up to one per server with `--misbehave retry-storm`).
    pub attempts: u8,
}

/// A point-in-time view of one server, for progress bars.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSnapshot {
    pub name: String,
    pub addr: String,
    pub state: State,
    pub success: u64,
    pub error: u64,
    pub timeout: u64,
    pub rejected: u64,
    pub breaker_opens: u64,
    pub in_flight: usize,
    pub pool_active: usize,
    pub pool_idle: usize,
    pub pool_max: usize,
}

impl ServerSnapshot {
    /// All requests: sent or rejected.
    pub fn requests(&self) -> u64 {
        self.success + self.error + self.timeout + self.rejected
    }

    /// Requests that did not succeed, rejected included.
    pub fn failures(&self) -> u64 {
        self.error + self.timeout + self.rejected
    }
}

/// Whether a server was reachable at its last connect, so that losing and regaining it are
/// logged once each, not per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    Unknown,
    Up,
    Down,
}

/// A [`Reach`] shared by the requests to one server (an `AtomicU8` underneath).
struct AtomicReach(AtomicU8);

impl AtomicReach {
    fn new(r: Reach) -> Self {
        Self(AtomicU8::new(Self::encode(r)))
    }

    fn load(&self) -> Reach {
        Self::decode(self.0.load(Relaxed))
    }

    /// Stores `r`; the previous value.
    fn swap(&self, r: Reach) -> Reach {
        Self::decode(self.0.swap(Self::encode(r), Relaxed))
    }

    fn encode(r: Reach) -> u8 {
        match r {
            Reach::Unknown => 0,
            Reach::Up => 1,
            Reach::Down => 2,
        }
    }

    fn decode(v: u8) -> Reach {
        match v {
            1 => Reach::Up,
            2 => Reach::Down,
            _ => Reach::Unknown,
        }
    }
}

/// What one request got back from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The reply the operation expects.
    Right,
    /// The server answered, wrongly: an error reply, or one we do not understand.
    Wrong,
    /// No usable answer: connect or I/O error, or garbage.
    Unusable,
}

/// A server as routing sees it at one instant.
struct Peek {
    /// Whether its breaker admits a call.
    admits: bool,
    /// The latency estimate, in seconds.
    latency: f64,
    /// The routing cost.
    cost: f64,
}

struct Core {
    breaker: Breaker,
    ewma: Ewma,
    in_flight: usize,
    /// The last reply, or when requests started being in flight after none were.
    progress: Instant,
}

struct Server {
    name: String,
    addr: String,
    core: Mutex<Core>,
    pool: Pool,
    metrics: ServerMetrics,
    reach: AtomicReach,
    garbage_reported: AtomicBool,
}

enum Pick {
    Admitted(usize, Permit),
    /// Every breaker refused; the server the router would have used.
    Refused(usize),
    Nobody,
}

pub struct Client {
    servers: Vec<Server>,
    timeout: Duration,
    cost_floor: f64,
    outliers: Outliers,
    budget: Mutex<RetryBudget>,
    retries: AtomicU64,
    misbehave: Option<Misbehaviour>,
    /// Picks so far, for round-robin.
    turn: AtomicUsize,
}

impl Client {
    /// Builds the client for `config.targets`, its metrics in `metrics`. Connections are made
    /// lazily by the first requests.
    pub fn new(config: &Config, metrics: &Metrics) -> Self {
        let now = Instant::now();
        if let Some(m) = config.misbehave {
            tracing::warn!("misbehaving on purpose: --misbehave {}", m.label());
        }
        let breaker = config.misbehave.map_or(config.breaker.clone(), |m| m.breaker(config.breaker.clone()));
        let servers = config
            .targets
            .iter()
            .take(MAX_SERVERS)
            .map(|t| Server {
                name: t.name.clone(),
                addr: t.addr.clone(),
                core: Mutex::new(Core {
                    breaker: Breaker::new(breaker.clone(), now),
                    ewma: Ewma::new(config.routing.ewma_decay),
                    in_flight: 0,
                    progress: now,
                }),
                pool: Pool::new(&t.addr, config.pool_size()),
                metrics: metrics.server(&t.name),
                reach: AtomicReach::new(Reach::Unknown),
                garbage_reported: AtomicBool::new(false),
            })
            .collect();
        Self {
            servers,
            timeout: config.timeout,
            cost_floor: config.routing.cost_floor.as_secs_f64(),
            outliers: Outliers {
                factor: config.routing.outlier_factor,
                floor: config.routing.outlier_floor.as_secs_f64(),
            },
            budget: Mutex::new(RetryBudget::new(config.retry.clone())),
            retries: AtomicU64::new(0),
            misbehave: config.misbehave,
            turn: AtomicUsize::new(0),
        }
    }

    /// Runs one operation: route, send, maybe retry once elsewhere.
    pub async fn execute(&self, op: Op, value: &[u8], rng: &mut fastrand::Rng) -> OpResult {
        let (first, permit) = match self.pick(0, rng) {
            Pick::Admitted(i, p) => (i, p),
            Pick::Refused(i) => {
                self.servers[i].metrics.requests(Outcome::Rejected).inc();
                return OpResult { outcome: Outcome::Rejected, attempts: 0 };
            }
            Pick::Nobody => return OpResult { outcome: Outcome::Rejected, attempts: 0 },
        };
        let outcome = self.attempt(first, permit, op, value).await;
        if outcome == Outcome::Success {
            return OpResult { outcome, attempts: 1 };
        }
        if self.misbehaves(Misbehaviour::retries_everywhere) {
            return self.retry_everywhere(first, outcome, op, value, rng).await;
        }
        if !lock(&self.budget).enabled() {
            // Not even a look for a retry target: under round-robin that look takes a turn.
            return OpResult { outcome, attempts: 1 };
        }
        // The retry goes only to another server whose breaker admits it, and only within the
        // budget; otherwise the first failure stands (it is not also counted as rejected).
        match self.pick(1 << first, rng) {
            Pick::Admitted(j, p) if self.retry_allowed() => {
                self.retries.fetch_add(1, Relaxed);
                OpResult { outcome: self.attempt(j, p, op, value).await, attempts: 2 }
            }
            Pick::Admitted(j, p) => {
                self.servers[j].abandon(p);
                OpResult { outcome, attempts: 1 }
            }
            Pick::Refused(_) | Pick::Nobody => OpResult { outcome, attempts: 1 },
        }
    }

    fn misbehaves(&self, how: fn(Misbehaviour) -> bool) -> bool {
        self.misbehave.is_some_and(how)
    }

    /// `retry-storm`: retries on every other server in turn until one succeeds, with no budget.
    async fn retry_everywhere(
        &self,
        first: usize,
        mut outcome: Outcome,
        op: Op,
        value: &[u8],
        rng: &mut fastrand::Rng,
    ) -> OpResult {
        let (mut tried, mut attempts) = (1u64 << first, 1u8);
        while outcome != Outcome::Success {
            let Pick::Admitted(j, p) = self.pick(tried, rng) else { break };
            tried |= 1 << j;
            attempts += 1;
            self.retries.fetch_add(1, Relaxed);
            outcome = self.attempt(j, p, op, value).await;
        }
        OpResult { outcome, attempts }
    }

    fn retry_allowed(&self) -> bool {
        // Only first attempts fund the budget: if retries funded it too, they could reach
        // ratio / (1 - ratio) of the operations (25 % instead of 20 %). A retry is counted here
        // before it is sent, so this can dip below an earlier value; the budget waits that out.
        let sent: u64 = self.servers.iter().map(|s| s.metrics.sent()).sum();
        let first_attempts = sent.saturating_sub(self.retries.load(Relaxed));
        lock(&self.budget).try_withdraw(Instant::now(), first_attempts)
    }

    fn pick(&self, exclude: u64, rng: &mut fastrand::Rng) -> Pick {
        let now = Instant::now();
        let mut admitted = Candidates::default();
        let mut refused = Candidates::default();
        for (i, s) in self.servers.iter().enumerate() {
            if exclude & (1 << i) != 0 {
                continue;
            }
            let p = s.peek(now, self.cost_floor);
            let c = Candidate { server: i, latency: p.latency, cost: p.cost };
            if p.admits { admitted.push(c) } else { refused.push(c) }
        }
        while let Some(i) = self.choose(admitted.as_slice(), rng) {
            if let Some(p) = self.servers[i].acquire() {
                return Pick::Admitted(i, p);
            }
            // Its last half-open trial slot went to another request since we looked.
            let c = admitted.remove(i);
            refused.push(c);
        }
        match router::choose(refused.as_slice(), Outliers::NONE, rng) {
            Some(i) => Pick::Refused(i),
            None => Pick::Nobody,
        }
    }

    /// p2c on cost, or round-robin when misbehaving so.
    fn choose(&self, candidates: &[Candidate], rng: &mut fastrand::Rng) -> Option<usize> {
        if self.misbehaves(Misbehaviour::round_robin) {
            router::round_robin(candidates, self.turn.fetch_add(1, Relaxed), self.servers.len())
        } else {
            router::choose(candidates, self.outliers, rng)
        }
    }

    /// `trip-all`: the breaker of server `opened` opened, so every other one opens too.
    fn trip_others(&self, opened: usize) {
        let now = Instant::now();
        for s in self.servers.iter().enumerate().filter(|(j, _)| *j != opened).map(|(_, s)| s) {
            let mut core = lock(&s.core);
            if let Some(t) = core.breaker.trip(now) {
                s.transitioned(&mut core, t);
            }
        }
    }

    async fn attempt(&self, i: usize, permit: Permit, op: Op, value: &[u8]) -> Outcome {
        let s = &self.servers[i];
        let mut pending = Pending { server: s, permit: Some(permit) };
        let start = Instant::now();
        let res = tokio::time::timeout(self.timeout, s.send(op, value)).await;
        let end = Instant::now();
        let took = end.saturating_duration_since(start);
        let (outcome, answered) = match res {
            Err(_) => (Outcome::Timeout, false),
            Ok(Answer::Right) => (Outcome::Success, true),
            Ok(Answer::Wrong) => (Outcome::Error, true),
            Ok(Answer::Unusable) => (Outcome::Error, false),
        };
        if let Some(permit) = pending.permit.take() {
            let t = s.record(permit, end, took, outcome, answered);
            if t.is_some_and(|t| t.to == State::Open) && self.misbehaves(Misbehaviour::trips_all) {
                self.trip_others(i);
            }
        }
        outcome
    }

    /// Applies time-based breaker transitions and refreshes the pool gauges (call it every few
    /// hundred milliseconds, and before a scrape).
    pub fn tick(&self) {
        let now = Instant::now();
        for s in &self.servers {
            s.peek(now, self.cost_floor);
            s.metrics.pool_active.set(s.pool.active() as i64);
            s.metrics.pool_idle.set(s.pool.idle() as i64);
        }
    }

    pub fn snapshot(&self) -> Vec<ServerSnapshot> {
        self.servers
            .iter()
            .map(|s| {
                let m = &s.metrics;
                let (state, in_flight) = {
                    let core = lock(&s.core);
                    (core.breaker.state(), core.in_flight)
                };
                ServerSnapshot {
                    name: s.name.clone(),
                    addr: s.addr.clone(),
                    state,
                    success: m.requests(Outcome::Success).get(),
                    error: m.requests(Outcome::Error).get(),
                    timeout: m.requests(Outcome::Timeout).get(),
                    rejected: m.requests(Outcome::Rejected).get(),
                    breaker_opens: m.opens(),
                    in_flight,
                    pool_active: s.pool.active(),
                    pool_idle: s.pool.idle(),
                    pool_max: s.pool.max(),
                }
            })
            .collect()
    }

    /// Retries sent so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    pub fn server_names(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.name.clone()).collect()
    }
}

impl Server {
    /// Applies time-based transitions; whether the breaker admits a call, the latency estimate
    /// and the routing cost.
    fn peek(&self, now: Instant, floor: f64) -> Peek {
        let mut core = lock(&self.core);
        if let Some(t) = core.breaker.poll(now) {
            self.transitioned(&mut core, t);
        }
        let admits = core.breaker.admits();
        let latency =
            router::latency_estimate(core.ewma.get(now), core.in_flight, now.saturating_duration_since(core.progress));
        Peek { admits, latency, cost: router::cost(latency, core.in_flight, floor) }
    }

    /// A permit, and the request counted in flight.
    fn acquire(&self) -> Option<Permit> {
        let mut core = lock(&self.core);
        let permit = core.breaker.try_acquire()?;
        core.in_flight += 1;
        if core.in_flight == 1 {
            core.progress = Instant::now();
        }
        Some(permit)
    }

    /// Undoes [`Server::acquire`] for a request that will not be sent (or whose future was
    /// dropped): out of the in-flight count, permit back to the breaker.
    fn abandon(&self, permit: Permit) {
        let mut core = lock(&self.core);
        core.in_flight -= 1;
        core.breaker.release(permit);
    }

    /// Sends `op` on a pooled connection. It goes back to the pool only while it is in step with
    /// the server: after the right reply or an error reply.
    async fn send(&self, op: Op, value: &[u8]) -> Answer {
        let mut checkout = match self.pool.get().await {
            Ok(c) => c,
            Err(GetError::Connect { source, .. }) => {
                if self.reach.swap(Reach::Down) != Reach::Down {
                    tracing::warn!("{} ({}) unreachable: {source}; will keep trying", self.name, self.addr);
                }
                return Answer::Unusable;
            }
        };
        let mut buf = [0; 24];
        let key = key_name(op.key, &mut buf);
        let reply = match op.kind {
            OpKind::Get => checkout.conn().call(&[b"GET", key]).await,
            OpKind::Set => checkout.conn().call(&[b"SET", key, value]).await,
        };
        if self.reach.load() != Reach::Up && self.reach.swap(Reach::Up) == Reach::Down {
            tracing::info!("{} ({}) reachable again", self.name, self.addr);
        }
        match reply {
            Ok(frame) if reply_ok(op.kind, &frame) => {
                checkout.release();
                Answer::Right
            }
            Ok(frame) => {
                // An error reply leaves the protocol in step: keep the connection. Any other
                // unexpected reply means we do not understand the server: drop it.
                if matches!(frame, Frame::Error(_)) {
                    checkout.release();
                } else {
                    self.report_garbage(&format!("unexpected reply {frame:?}"));
                }
                Answer::Wrong
            }
            Err(CallError::Protocol(e)) => {
                self.report_garbage(&e.to_string());
                Answer::Unusable
            }
            Err(_) => Answer::Unusable,
        }
    }

    fn report_garbage(&self, what: &str) {
        if !self.garbage_reported.swap(true, Relaxed) {
            let what: String = what.chars().take(200).collect();
            tracing::warn!(
                "{} ({}) does not speak RESP as expected: {what}; counted as errors (reported once)",
                self.name,
                self.addr
            );
        }
    }

    /// Records a result; the breaker transition it caused, if any.
    fn record(
        &self,
        permit: Permit,
        end: Instant,
        took: Duration,
        outcome: Outcome,
        answered: bool,
    ) -> Option<Transition> {
        let mut core = lock(&self.core);
        core.in_flight -= 1;
        // Only replies are latency samples: a timeout measures our patience, not the server.
        if answered {
            core.ewma.observe(end, took);
            core.progress = core.progress.max(end);
        }
        let transition = core.breaker.on_result(permit, end, took, outcome == Outcome::Success);
        if let Some(t) = transition {
            self.transitioned(&mut core, t);
        }
        drop(core);
        self.metrics.requests(outcome).inc();
        self.metrics.duration.observe(took.as_secs_f64());
        transition
    }

    /// Side effects of a transition, under the core lock so gauges follow the order of events.
    fn transitioned(&self, core: &mut Core, t: Transition) {
        if t.to == State::HalfOpen {
            // The trial should reach the server: forget the latency that made it look expensive.
            core.ewma.reset();
        }
        self.metrics.state.set(t.to.gauge());
        self.metrics.transitions(t).inc();
        tracing::info!("{} ({}): circuit breaker {} -> {}", self.name, self.addr, t.from, t.to);
    }
}

/// An admitted request until its result is recorded. If its future is dropped first (the run
/// is torn down), it still leaves the in-flight count and gives back its breaker permit, so a
/// half-open trial slot is not lost.
struct Pending<'a> {
    server: &'a Server,
    permit: Option<Permit>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.server.abandon(p);
        }
    }
}

/// A fixed-capacity list of candidates (no allocation per request).
struct Candidates {
    items: [Candidate; MAX_SERVERS],
    len: usize,
}

impl Default for Candidates {
    fn default() -> Self {
        Self { items: [Candidate { server: 0, latency: 0.0, cost: 0.0 }; MAX_SERVERS], len: 0 }
    }
}

impl Candidates {
    fn push(&mut self, c: Candidate) {
        self.items[self.len] = c;
        self.len += 1;
    }

    fn as_slice(&self) -> &[Candidate] {
        &self.items[..self.len]
    }

    /// Removes the candidate for `server` and returns it.
    fn remove(&mut self, server: usize) -> Candidate {
        let at = self.as_slice().iter().position(|c| c.server == server).expect("present");
        let c = self.items[at];
        self.items.copy_within(at + 1..self.len, at);
        self.len -= 1;
        c
    }
}
