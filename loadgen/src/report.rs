//! What a run reports: live snapshots (progress lines) and the final summary (text or JSON).

use std::{fmt::Write as _, time::Duration};

use serde::Serialize;

use crate::{breaker::State, client::ServerSnapshot, latency::LatencySummary, schedule::ScheduleSummary};

/// Live state of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Since the run started.
    pub elapsed: Duration,
    pub servers: Vec<ServerSnapshot>,
}

impl Snapshot {
    pub fn requests(&self) -> u64 {
        self.servers.iter().map(ServerSnapshot::requests).sum()
    }

    pub fn failures(&self) -> u64 {
        self.servers.iter().map(ServerSnapshot::failures).sum()
    }
}

/// One progress line: request and error rates since `prev`, breaker state and pool per server.
/// Requests count attempts (a retry is a second request) and rejections.
pub fn progress_line(prev: &Snapshot, cur: &Snapshot) -> String {
    let dt = cur.elapsed.saturating_sub(prev.elapsed).as_secs_f64().max(1e-3);
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
    let mut line = format!(
        "[{:>5.0}s] {:>8.0} req/s {:>7.1} err/s",
        cur.elapsed.as_secs_f64(),
        rate(cur.requests(), prev.requests()),
        rate(cur.failures(), prev.failures())
    );
    for (i, s) in cur.servers.iter().enumerate() {
        let before = prev.servers.get(i);
        let ok = rate(s.success, before.map_or(0, |p| p.success));
        let state = match s.state {
            State::Closed => "closed",
            State::HalfOpen => "HALF-OPEN",
            State::Open => "OPEN",
        };
        let _ =
            write!(line, " | {} {state} {ok:.0} ok/s pool {}/{}", s.name, s.pool_active, s.pool_active + s.pool_idle);
    }
    line
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ServerSummary {
    pub name: String,
    pub address: String,
    /// Every request for this server: sent, or rejected by its breaker.
    pub requests: u64,
    pub successes: u64,
    /// Sent and failed: error replies, I/O errors, garbage, timeouts.
    pub errors: u64,
    /// Of `errors`, those that timed out.
    pub timeouts: u64,
    /// Not sent: refused by the breaker.
    pub rejected: u64,
    pub breaker_opens: u64,
    pub breaker_state: String,
}

impl From<&ServerSnapshot> for ServerSummary {
    fn from(s: &ServerSnapshot) -> Self {
        Self {
            name: s.name.clone(),
            address: s.addr.clone(),
            requests: s.requests(),
            successes: s.success,
            errors: s.error + s.timeout,
            timeouts: s.timeout,
            rejected: s.rejected,
            breaker_opens: s.breaker_opens,
            breaker_state: s.state.label().to_string(),
        }
    }
}

/// The end of a run. Operations are logical (a retried operation counts once); `latency_ms` is
/// over operations that sent at least one request (rejected ones are left out), from the scheduled
/// send time in the open model.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// "closed" or "open".
    pub model: String,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub duration_secs: f64,
    /// successes + failures + rejected.
    pub ops: u64,
    pub successes: u64,
    /// Sent and failed (after the retry, if any).
    pub failures: u64,
    /// Refused by every breaker, not sent.
    pub rejected: u64,
    pub retries: u64,
    /// Open model: sends that were due while `concurrency` requests were in flight.
    pub missed_sends: u64,
    pub ops_per_sec: f64,
    pub latency_ms: LatencySummary,
    pub servers: Vec<ServerSummary>,
    /// Open model: the schedule kept (sent per second, lag, latency from the actual send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSummary>,
    /// What the run should tell its user, e.g. that it fell short of `--rate` (also on stderr).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Summary {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a summary serializes")
    }

    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let rate = self.rate.map(|r| format!(", {r} ops/s scheduled")).unwrap_or_default();
        let _ = writeln!(
            t,
            "chaoslab-loadgen: {} model, concurrency {}{rate}, {:.1} s",
            self.model, self.concurrency, self.duration_secs
        );
        let _ = writeln!(
            t,
            "ops: {} ({:.0} ops/s)  successes: {}  failures: {}  rejected: {}  retries: {}  missed sends: {}",
            self.ops, self.ops_per_sec, self.successes, self.failures, self.rejected, self.retries, self.missed_sends
        );
        let line = |t: &mut String, what: &str, l: &LatencySummary| {
            let _ = writeln!(
                t,
                "{what}: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
                l.p50, l.p90, l.p99, l.p999, l.max, l.mean
            );
        };
        match &self.schedule {
            None => line(&mut t, "latency ms", &self.latency_ms),
            Some(s) => {
                let _ = writeln!(
                    t,
                    "schedule: {} due, {} sent ({:.0} ops/s, {:.1}% of the rate), {} missed",
                    s.due,
                    s.sent,
                    s.sent_per_sec,
                    s.achieved * 100.0,
                    s.missed
                );
                line(&mut t, "latency ms from the scheduled send", &self.latency_ms);
                line(&mut t, "latency ms from the actual send", &s.service_ms);
                line(&mut t, "send lag ms", &s.lag_ms);
            }
        }
        let _ = writeln!(
            t,
            "{:<12} {:<22} {:>10} {:>10} {:>8} {:>8} {:>8} {:>6}  breaker",
            "server", "address", "requests", "successes", "errors", "timeouts", "rejected", "opens"
        );
        for s in &self.servers {
            let _ = writeln!(
                t,
                "{:<12} {:<22} {:>10} {:>10} {:>8} {:>8} {:>8} {:>6}  {}",
                s.name,
                s.address,
                s.requests,
                s.successes,
                s.errors,
                s.timeouts,
                s.rejected,
                s.breaker_opens,
                s.breaker_state
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, state: State, success: u64, error: u64) -> ServerSnapshot {
        ServerSnapshot {
            name: name.into(),
            addr: "127.0.0.1:1".into(),
            state,
            success,
            error,
            timeout: 0,
            rejected: 0,
            breaker_opens: 0,
            in_flight: 0,
            pool_active: 1,
            pool_idle: 2,
            pool_max: 10,
        }
    }

    #[test]
    fn progress_shows_rates_and_states() {
        let prev = Snapshot {
            elapsed: Duration::from_secs(5),
            servers: vec![server("server-0", State::Closed, 0, 0), server("server-1", State::Closed, 0, 0)],
        };
        let cur = Snapshot {
            elapsed: Duration::from_secs(10),
            servers: vec![server("server-0", State::Closed, 5000, 0), server("server-1", State::Open, 0, 50)],
        };
        let line = progress_line(&prev, &cur);
        assert!(line.starts_with("[   10s]     1010 req/s    10.0 err/s"), "{line}");
        assert!(line.contains("server-0 closed 1000 ok/s pool 1/3"), "{line}");
        assert!(line.contains("server-1 OPEN 0 ok/s"), "{line}");
    }

    #[test]
    fn json_has_the_promised_fields() {
        let s = Summary {
            model: "closed".into(),
            concurrency: 1,
            rate: None,
            duration_secs: 1.0,
            ops: 1,
            successes: 1,
            failures: 0,
            rejected: 0,
            retries: 0,
            missed_sends: 0,
            ops_per_sec: 1.0,
            latency_ms: LatencySummary { p50: 1.0, p90: 1.0, p99: 1.0, p999: 1.0, max: 1.0, mean: 1.0 },
            servers: vec![ServerSummary::from(&server("server-0", State::Closed, 1, 0))],
            schedule: None,
            warnings: vec![],
        };
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        for k in ["p50", "p90", "p99", "max"] {
            assert!(v["latency_ms"][k].is_number(), "{k}");
        }
        assert!(v["ops_per_sec"].is_number());
        for k in ["name", "requests", "successes", "errors", "breaker_opens"] {
            assert!(!v["servers"][0][k].is_null(), "{k}");
        }
        assert!(s.to_text().contains("server-0"));
    }
}
