//! Observations of made-up runs for the checks' unit tests: a resilient client's, to be spoilt one
//! field at a time.

use super::evaluate;
use crate::{
    api::{Check, Fault, Phase, PhaseObservation, ServerObservation},
    catalog::loss,
};

/// A server with `ok` successes (half of them late), `fail` failures (none late), every request
/// timed at 2 ms.
pub fn srv(name: &str, ok: i64, fail: i64, states: &[&str], end: &str) -> ServerObservation {
    ServerObservation {
        name: name.into(),
        successes: ok,
        failures: fail,
        late_successes: ok / 2,
        late_failures: 0,
        breaker_states: states.iter().map(|s| s.to_string()).collect(),
        final_breaker_state: Some(end.into()),
        timed: ok + fail,
        mean_latency_ms: Some(2.0),
        late_timed: ok / 2,
        late_mean_latency_ms: Some(2.0),
        ..Default::default()
    }
}

pub fn targets() -> Vec<String> {
    vec!["server-0".into(), "server-1".into(), "server-2".into()]
}

/// Every server closed, 1000 successes and 1 failure each.
pub fn even(phase: Phase) -> PhaseObservation {
    PhaseObservation {
        phase,
        samples: 10,
        servers: (0..3).map(|i| srv(&format!("server-{i}"), 1000, 1, &["closed"], "closed")).collect(),
    }
}

/// A resilient client with servers 0 and 1 dead during Testing.
pub fn healthy_run() -> Vec<PhaseObservation> {
    let mut testing = PhaseObservation {
        phase: Phase::Testing,
        samples: 10,
        servers: vec![
            ServerObservation { opened: 1, rejected: 500, ..srv("server-0", 20, 30, &["closed", "open"], "open") },
            ServerObservation { opened: 1, rejected: 500, ..srv("server-1", 20, 30, &["closed", "open"], "open") },
            srv("server-2", 3000, 0, &["closed"], "closed"),
        ],
    };
    testing.servers[0].late_successes = 0;
    testing.servers[1].late_successes = 0;
    let mut recovery = even(Phase::Recovery);
    for s in &mut recovery.servers[..2] {
        s.half_opened = 1;
        s.closed = 1;
        s.breaker_states = vec!["closed".into(), "half_open".into(), "open".into()];
    }
    vec![even(Phase::Stabilization), testing, recovery]
}

/// A resilient client with servers 0 and 1 slowed by 500 ms during Testing: they keep 2 × 10 of
/// 1520 late successes, well under their former third, and the few requests they get are slow.
pub fn slow_run() -> Vec<PhaseObservation> {
    let mut testing = even(Phase::Testing);
    for s in &mut testing.servers[..2] {
        let slow = Some(502.0);
        *s = ServerObservation {
            mean_latency_ms: slow,
            late_mean_latency_ms: slow,
            ..srv(&s.name, 20, 0, &["closed"], "closed")
        };
    }
    testing.servers[2] = srv("server-2", 3000, 0, &["closed"], "closed");
    vec![even(Phase::Stabilization), testing, even(Phase::Recovery)]
}

pub fn get<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}"))
}

/// The check `name` of a run with these faults.
pub fn judge(faults: &[Fault], run: &[PhaseObservation], name: &str) -> Check {
    get(&evaluate(faults, &targets(), run).0, name).clone()
}

/// Servers 0 and 1 dead.
pub fn two_dead() -> Vec<Fault> {
    vec![loss(0, 100.0), loss(1, 100.0)]
}
