//! The client part of the metrics contract: what any client must export to be judged.

pub const REQUESTS: &str = "chaoslab_client_requests_total";
pub const REQUEST_DURATION: &str = "chaoslab_client_request_duration_seconds";
pub const BREAKER_STATE: &str = "chaoslab_client_circuit_breaker_state";
pub const BREAKER_TRANSITIONS: &str = "chaoslab_client_circuit_breaker_transitions_total";
pub const POOL_CONNECTIONS: &str = "chaoslab_client_pool_connections";

/// What happened to one request to one server: the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Success,
    /// Sent, and failed: connect error, I/O error, garbage, a server error reply.
    Error,
    /// Sent (or waiting for a connection), and no reply within the timeout.
    Timeout,
    /// Not sent: the breaker refused the call.
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Success, Outcome::Error, Outcome::Timeout, Outcome::Rejected];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Rejected => "rejected",
        }
    }

    pub fn from_label(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.label() == s)
    }
}

/// A circuit breaker's state: the `from`/`to` labels and the state gauge's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [BreakerState::Closed, BreakerState::HalfOpen, BreakerState::Open];

    pub fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    /// Also reads `half-open`, as some clients spell it.
    pub fn from_label(s: &str) -> Option<Self> {
        match s {
            "half-open" => Some(Self::HalfOpen),
            _ => Self::ALL.into_iter().find(|b| b.label() == s),
        }
    }

    /// The value of `chaoslab_client_circuit_breaker_state`: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }

    pub fn from_gauge(v: f64) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.gauge() as f64 == v.round())
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The `state` label of the pool gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolState {
    /// Checked out by a request.
    Active,
    Idle,
}

impl PoolState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Idle => "idle",
        }
    }

    pub fn from_label(s: &str) -> Option<Self> {
        [Self::Active, Self::Idle].into_iter().find(|p| p.label() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_values() {
        assert_eq!(BreakerState::ALL.map(BreakerState::label), ["closed", "half_open", "open"]);
        assert_eq!(BreakerState::ALL.map(BreakerState::gauge), [0, 1, 2]);
        assert_eq!(Outcome::ALL.map(Outcome::label), ["success", "error", "timeout", "rejected"]);
    }

    #[test]
    fn labels_and_gauges_read_back() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_label(o.label()), Some(o));
        }
        for b in BreakerState::ALL {
            assert_eq!(BreakerState::from_label(b.label()), Some(b));
            assert_eq!(BreakerState::from_gauge(b.gauge() as f64), Some(b));
        }
        assert_eq!(BreakerState::from_label("half-open"), Some(BreakerState::HalfOpen));
        assert_eq!(BreakerState::from_gauge(3.0), None);
        assert_eq!(Outcome::from_label("weird"), None);
        assert_eq!(PoolState::from_label("idle"), Some(PoolState::Idle));
    }
}
