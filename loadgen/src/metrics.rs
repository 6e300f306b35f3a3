//! The client part of the metrics contract, exported: names, labels and values come from
//! `chaoslab_contract`, which chaoslab's verdicts read through too.
//!
//! Every series of a server is created up front (counters at 0), so `rate()` and `increase()`
//! see the first event. Label handles are resolved once: recording is a few atomic operations.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use chaoslab_contract::{BREAKER_STATE, BREAKER_TRANSITIONS, POOL_CONNECTIONS, PoolState, REQUEST_DURATION, REQUESTS};

use crate::breaker::{State, Transition};

/// 0.1 ms .. 10 s.
pub const DURATION_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// What happened to one request to one server (the `outcome` label).
pub use chaoslab_contract::Outcome;

/// The metric families, registered once per registry.
#[derive(Clone)]
pub struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    state: IntGaugeVec,
    transitions: IntCounterVec,
    pool: IntGaugeVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                REQUESTS,
                "Requests by server and outcome (success, error, timeout, rejected = refused by the circuit breaker, not sent).",
            ),
            &["server", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(REQUEST_DURATION, "Duration of requests sent to a server (any outcome but rejected).")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["server"],
        )?;
        let state = IntGaugeVec::new(
            Opts::new(BREAKER_STATE, "Circuit breaker state: 0 closed, 1 half-open, 2 open."),
            &["server"],
        )?;
        let transitions = IntCounterVec::new(
            Opts::new(BREAKER_TRANSITIONS, "Circuit breaker state transitions (closed, open, half_open)."),
            &["server", "from", "to"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(POOL_CONNECTIONS, "Pooled connections by state (active = checked out, idle)."),
            &["server", "state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(state.clone()))?;
        registry.register(Box::new(transitions.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        Ok(Self { requests, duration, state, transitions, pool })
    }

    /// The handles of one server, every series created.
    pub fn server(&self, name: &str) -> ServerMetrics {
        let requests = Outcome::ALL.map(|o| self.requests.with_label_values(&[name, o.label()]));
        let transitions =
            Transition::ALL.map(|t| self.transitions.with_label_values(&[name, t.from.label(), t.to.label()]));
        let m = ServerMetrics {
            requests,
            duration: self.duration.with_label_values(&[name]),
            state: self.state.with_label_values(&[name]),
            transitions,
            pool_active: self.pool.with_label_values(&[name, PoolState::Active.label()]),
            pool_idle: self.pool.with_label_values(&[name, PoolState::Idle.label()]),
        };
        m.state.set(State::Closed.gauge());
        m
    }
}

#[derive(Clone)]
pub struct ServerMetrics {
    requests: [IntCounter; 4],
    pub duration: Histogram,
    pub state: IntGauge,
    transitions: [IntCounter; 4],
    pub pool_active: IntGauge,
    pub pool_idle: IntGauge,
}

impl ServerMetrics {
    pub fn requests(&self, o: Outcome) -> &IntCounter {
        &self.requests[o as usize]
    }

    pub fn transitions(&self, t: Transition) -> &IntCounter {
        let i = Transition::ALL.iter().position(|x| *x == t).expect("a breaker only makes the four transitions");
        &self.transitions[i]
    }

    /// Requests that reached the wire (everything but rejected).
    pub fn sent(&self) -> u64 {
        [Outcome::Success, Outcome::Error, Outcome::Timeout].iter().map(|o| self.requests(*o).get()).sum()
    }

    /// How many times the breaker opened.
    pub fn opens(&self) -> u64 {
        Transition::ALL.iter().filter(|t| t.to == State::Open).map(|t| self.transitions(*t).get()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_contract_with_every_series_up_front() {
        let registry = Registry::new();
        let m = Metrics::register(&registry).unwrap();
        let s = m.server("server-0");
        s.requests(Outcome::Timeout).inc();
        s.transitions(Transition { from: State::HalfOpen, to: State::Open }).inc();
        s.duration.observe(0.002);
        let mut text = String::new();
        prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut text).unwrap();
        for line in [
            r#"chaoslab_client_requests_total{outcome="success",server="server-0"} 0"#,
            r#"chaoslab_client_requests_total{outcome="timeout",server="server-0"} 1"#,
            r#"chaoslab_client_requests_total{outcome="rejected",server="server-0"} 0"#,
            r#"chaoslab_client_circuit_breaker_state{server="server-0"} 0"#,
            r#"chaoslab_client_circuit_breaker_transitions_total{from="closed",server="server-0",to="open"} 0"#,
            r#"chaoslab_client_circuit_breaker_transitions_total{from="half_open",server="server-0",to="open"} 1"#,
            r#"chaoslab_client_pool_connections{server="server-0",state="active"} 0"#,
            r#"chaoslab_client_request_duration_seconds_bucket{server="server-0",le="0.0025"} 1"#,
            r#"chaoslab_client_request_duration_seconds_bucket{server="server-0",le="0.0001"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert_eq!(s.opens(), 1);
        assert_eq!(s.sent(), 1);
        assert!(Metrics::register(&registry).is_err(), "a registry holds one client");
    }
}
