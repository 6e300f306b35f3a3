//! What chaoslab's parts agree on, written once and dependency-free so that every crate can use it:
//! the metrics contract (the client's series the verdict reads, the scenario series the dashboard
//! reads) and the duration syntax of every flag and field.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `chaoslab_client_requests_total` | counter | `server`, `outcome` ([`Outcome`]) |
//! | `chaoslab_client_request_duration_seconds` | histogram | `server` |
//! | `chaoslab_client_circuit_breaker_state` | gauge ([`BreakerState::gauge`]) | `server` |
//! | `chaoslab_client_circuit_breaker_transitions_total` | counter | `server`, `from`, `to` ([`BreakerState::label`]) |
//! | `chaoslab_client_pool_connections` | gauge | `server`, `state` ([`PoolState`]) |
//! | `chaoslab_scenario_phase` | gauge, 1 for the current phase | `scenario`, `phase` ([`PHASES`]) |
//! | `chaoslab_scenario_toxic_active` | gauge, 1 while held | `scenario`, `server`, `toxic` |

mod client;
pub mod duration;
mod scenario;

pub use client::{
    BREAKER_STATE, BREAKER_TRANSITIONS, BreakerState, Outcome, POOL_CONNECTIONS, PoolState, REQUEST_DURATION, REQUESTS,
};
pub use scenario::{
    MEASURES, PHASES, SCENARIO_PHASE, SCENARIO_SECONDS, SCENARIO_TESTING_ERROR_RATIO, SCENARIO_TOXIC_ACTIVE,
};
