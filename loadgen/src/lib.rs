//! chaoslab-loadgen: the client under test.
//!
//! A RESP (Redis protocol) client that spreads GET/SET load over a few servers the way a careful
//! production client would, and exports what it sees in chaoslab's metrics contract:
//!
//! - a bounded connection pool per server ([`pool`]);
//! - a circuit breaker per server with resilience4j semantics ([`breaker`], on a time-based
//!   [`window`]);
//! - power-of-two-choices routing on latency × in-flight requests over the servers whose breaker
//!   admits the call, latency outliers left out ([`router`], [`ewma`]), so traffic leaves slow
//!   servers as well as dead ones;
//! - a timeout on every attempt, at most one retry on another server, within a retry budget ([`budget`]);
//! - closed and open load models ([`load`]), HDR-histogram percentiles, progress and summary ([`report`]);
//! - the metrics ([`metrics`]) on `/metrics` and `/healthz` (the shared `chaoslab-telemetry` endpoint);
//! - a built-in RESP server so the lab needs nothing installed ([`resp_server`]);
//! - ways to be wrong on purpose, off by default ([`misbehave`]), to see the lab fail a client.
//!
//! The pure cores (breaker, window, router, EWMA, budget, RESP codec) take time and randomness as
//! arguments and are unit-tested as functions; the I/O modules are thin around them.
//!
//! In-process use (the local runner):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use chaoslab_loadgen::{Config, LoadGenerator, Target};
//! let registry = prometheus::Registry::new();
//! let mut config = Config::new(Target::numbered(&["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]));
//! config.concurrency = 20;
//! let run = LoadGenerator::start(config, &registry)?;
//! let live = run.stats(); // per server: requests by outcome, breaker state, pool active/idle
//! # let _ = live;
//! run.stop();
//! let summary = run.wait().await;
//! println!("{}", summary.to_text());
//! # Ok(()) }
//! ```
//!
//! When every breaker is open the request is not sent: it fails fast as `rejected` and the worker
//! pauses 25 ms. See `loadgen/README.md` for the defaults and why.

pub mod breaker;
pub mod budget;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod ewma;
pub mod latency;
pub mod load;
pub mod metrics;
pub mod misbehave;
pub mod pool;
pub mod report;
pub mod resp;
pub mod resp_server;
pub mod router;
pub mod schedule;
pub mod window;
pub mod workload;

pub use breaker::{BreakerConfig, State as BreakerState};
pub use budget::RetryConfig;
pub use client::{Client, ServerSnapshot};
pub use config::{Config, ConfigError, RoutingConfig, Target};
pub use load::{LoadGenerator, Progress, RunHandle, StartError};
pub use metrics::{Metrics, Outcome};
pub use misbehave::Misbehaviour;
pub use report::{Snapshot, Summary};

/// Locks a mutex, ignoring poisoning: the data behind our locks stays consistent even if a holder
/// panicked (every critical section is a few field updates).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
