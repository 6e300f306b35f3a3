//! Everything a run needs, with the lab's defaults. The CLI builds one from flags; the local runner
//! builds one in code.

use std::time::Duration;

use thiserror::Error;

pub use crate::{breaker::BreakerConfig, budget::RetryConfig, misbehave::Misbehaviour};

/// One server: its metrics name and `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: String,
}

impl Target {
    /// `server-0`, `server-1`, ... by position.
    pub fn numbered(addrs: &[&str]) -> Vec<Target> {
        addrs.iter().enumerate().map(|(i, a)| Target { name: format!("server-{i}"), addr: (*a).to_string() }).collect()
    }
}

/// How the router weighs servers (see `router`).
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingConfig {
    /// Time constant of the latency EWMA: how fast it forgets, and how fast an avoided server's
    /// cost decays so it gets tried again.
    pub ewma_decay: Duration,
    /// Added to the EWMA so the in-flight count matters for servers without latency samples.
    pub cost_floor: Duration,
    /// A server whose latency is above this many times the best one's (and above
    /// `outlier_floor`) is left out of the draw while another is available.
    pub outlier_factor: f64,
    pub outlier_floor: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            ewma_decay: Duration::from_secs(1),
            cost_floor: Duration::from_millis(1),
            outlier_factor: 10.0,
            outlier_floor: Duration::from_millis(20),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub targets: Vec<Target>,
    /// Closed model: workers. Open model: most requests in flight (a send beyond it is missed).
    pub concurrency: usize,
    /// Open model: operations per second. None: closed model.
    pub rate: Option<f64>,
    /// Stop after this long. None (and no `requests`): run until stopped.
    pub duration: Option<Duration>,
    /// Stop after this many operations.
    pub requests: Option<u64>,
    /// Per attempt: waiting for a connection, connecting, sending and the reply.
    pub timeout: Duration,
    /// Fraction of GETs (the rest are SETs).
    pub read_ratio: f64,
    pub keys: u64,
    pub value_size: usize,
    /// Connections per server; None: `concurrency` (so one server can take the whole load).
    pub pool_size: Option<usize>,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
    pub routing: RoutingConfig,
    /// Closed model: how long a worker pauses after a request every breaker refused.
    pub all_open_backoff: Duration,
    /// Seed of the workers' random generators (routing and keys); None: random.
    pub seed: Option<u64>,
    /// Be wrong on purpose, to see the lab fail a client (None: the resilient client).
    pub misbehave: Option<Misbehaviour>,
}

impl Config {
    /// The defaults, for these targets.
    pub fn new(targets: Vec<Target>) -> Self {
        Self {
            targets,
            concurrency: 100,
            rate: None,
            duration: None,
            requests: None,
            timeout: Duration::from_secs(1),
            read_ratio: 0.9,
            keys: 10_000,
            value_size: 100,
            pool_size: None,
            breaker: BreakerConfig::default(),
            retry: RetryConfig::default(),
            routing: RoutingConfig::default(),
            all_open_backoff: Duration::from_millis(25),
            seed: None,
            misbehave: None,
        }
    }

    pub fn pool_size(&self) -> usize {
        self.pool_size.unwrap_or(self.concurrency).max(1)
    }

    /// Checks what flags' value parsers cannot: each error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |flag: &'static str, why: String| Err(ConfigError { flag, why });
        if self.targets.is_empty() {
            return bad("--targets", "at least one HOST:PORT is needed".into());
        }
        if self.targets.len() > 64 {
            return bad("--targets", format!("at most 64 servers, got {}", self.targets.len()));
        }
        for t in &self.targets {
            if let Err(why) = check_addr(&t.addr) {
                return bad("--targets", format!("{:?}: {why}", t.addr));
            }
            if t.name.is_empty()
                || t.name.len() > 64
                || !t.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return bad("--names", format!("{:?}: use 1..64 of A-Z a-z 0-9 - _ .", t.name));
            }
        }
        for (i, t) in self.targets.iter().enumerate() {
            if self.targets[..i].iter().any(|o| o.name == t.name) {
                return bad("--names", format!("{:?} is used twice", t.name));
            }
        }
        if self.concurrency == 0 {
            return bad("--concurrency", "must be at least 1".into());
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return bad("--rate", format!("must be a positive number of operations per second, got {r}"));
        }
        if self.timeout.is_zero() {
            return bad("--timeout", "must be more than 0".into());
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return bad("--read-ratio", format!("must be between 0 and 1, got {}", self.read_ratio));
        }
        if self.keys == 0 {
            return bad("--keys", "must be at least 1".into());
        }
        let b = &self.breaker;
        for (flag, v) in [
            ("--failure-rate-threshold", b.failure_rate_threshold),
            ("--slow-call-rate-threshold", b.slow_call_rate_threshold),
        ] {
            if !(v > 0.0 && v <= 100.0) {
                return bad(flag, format!("must be a percentage in (0, 100], got {v}"));
            }
        }
        if b.minimum_calls == 0 {
            return bad("--minimum-calls", "must be at least 1".into());
        }
        if b.permitted_calls_in_half_open == 0 {
            return bad("--half-open-calls", "must be at least 1".into());
        }
        if b.sliding_window < Duration::from_secs(1) {
            return bad("--sliding-window", "must be at least 1s (the window counts whole seconds)".into());
        }
        if self.routing.outlier_factor.is_nan() || self.routing.outlier_factor < 1.0 {
            return bad("--outlier-factor", format!("must be at least 1, got {}", self.routing.outlier_factor));
        }
        if !(self.retry.ratio >= 0.0 && self.retry.ratio.is_finite()) {
            return bad("--retry-budget-ratio", format!("must be 0 or more, got {}", self.retry.ratio));
        }
        Ok(())
    }
}

/// HOST:PORT with a numeric port.
fn check_addr(addr: &str) -> Result<(), String> {
    let (host, port) = addr.rsplit_once(':').ok_or("expected HOST:PORT")?;
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{port:?} is not a port")),
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("invalid {flag}: {why}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub why: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::new(Target::numbered(&["127.0.0.1:1", "localhost:6379", "[::1]:2"]))
    }

    #[test]
    fn defaults_are_valid() {
        let c = cfg();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.targets[2].name, "server-2");
        assert_eq!(c.pool_size(), 100);
    }

    #[test]
    fn errors_name_the_flag() {
        type Change = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.targets[0].addr = "nohost".into()), "--targets"),
            (Box::new(|c| c.targets[0].addr = "h:0".into()), "--targets"),
            (Box::new(|c| c.targets[0].addr = ":80".into()), "--targets"),
            (Box::new(|c| c.targets.clear()), "--targets"),
            (Box::new(|c| c.targets[1].name = "server-0".into()), "--names"),
            (Box::new(|c| c.targets[1].name = "a b".into()), "--names"),
            (Box::new(|c| c.concurrency = 0), "--concurrency"),
            (Box::new(|c| c.rate = Some(0.0)), "--rate"),
            (Box::new(|c| c.read_ratio = 1.5), "--read-ratio"),
            (Box::new(|c| c.timeout = Duration::ZERO), "--timeout"),
            (Box::new(|c| c.breaker.failure_rate_threshold = 0.0), "--failure-rate-threshold"),
            (Box::new(|c| c.breaker.sliding_window = Duration::from_millis(10)), "--sliding-window"),
        ];
        for (change, flag) in cases {
            let mut c = cfg();
            change(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err.flag, flag, "{err}");
            assert!(err.to_string().contains(flag));
        }
    }
}
