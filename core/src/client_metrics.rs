//! Reading the client part of the metrics contract from Prometheus text exposition.
//! Only the contract's families are read; everything else in the scrape is ignored.

use std::collections::BTreeMap;

pub use chaoslab_contract::BreakerState;
use chaoslab_contract::{
    BREAKER_STATE, BREAKER_TRANSITIONS, Outcome, POOL_CONNECTIONS, PoolState, REQUEST_DURATION, REQUESTS,
};

/// One server's counters and gauges in one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerMetrics {
    pub success: f64,
    pub error: f64,
    pub timeout: f64,
    pub rejected: f64,
    pub breaker: Option<BreakerState>,
    /// Cumulative transitions by (from, to).
    pub transitions: BTreeMap<(BreakerState, BreakerState), f64>,
    pub pool_active: f64,
    pub pool_idle: f64,
    /// The duration histogram's `_sum` (seconds) and `_count`: counters, like the requests.
    pub duration_sum: f64,
    pub duration_count: f64,
}

impl ServerMetrics {
    pub fn transitions_to(&self, to: BreakerState) -> f64 {
        self.transitions.iter().filter(|((_, t), _)| *t == to).map(|(_, v)| v).sum()
    }
}

/// A scrape, by `server` label.
pub type Scrape = BTreeMap<String, ServerMetrics>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("line {line}: {reason}: {text:?}")]
    BadLine { line: usize, reason: &'static str, text: String },
    #[error("no chaoslab_client_requests_total series: is this a chaoslab client's /metrics?")]
    NotAClient,
}

/// Parses a scrape. Unknown families are skipped; malformed lines of the contract's families are errors.
pub fn parse(text: &str) -> Result<Scrape, ParseError> {
    let mut out = Scrape::new();
    let mut saw_requests = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || !line.starts_with("chaoslab_client_") {
            continue;
        }
        let bad = |reason| ParseError::BadLine { line: i + 1, reason, text: raw.to_string() };
        let (name, labels, value) = split_sample(line).ok_or_else(|| bad("not a sample"))?;
        let server = match labels.get("server") {
            Some(s) => s.clone(),
            None => continue,
        };
        let m = || -> ServerMetrics { ServerMetrics::default() };
        match name {
            REQUESTS => {
                saw_requests = true;
                let e = out.entry(server).or_insert_with(m);
                match labels.get("outcome").and_then(|o| Outcome::from_label(o)) {
                    Some(Outcome::Success) => e.success = value,
                    Some(Outcome::Error) => e.error = value,
                    Some(Outcome::Timeout) => e.timeout = value,
                    Some(Outcome::Rejected) => e.rejected = value,
                    None => return Err(bad("unknown outcome")),
                }
            }
            BREAKER_STATE => {
                out.entry(server).or_insert_with(m).breaker =
                    Some(BreakerState::from_gauge(value).ok_or_else(|| bad("breaker state not 0, 1 or 2"))?);
            }
            BREAKER_TRANSITIONS => {
                let from = labels.get("from").and_then(|s| BreakerState::from_label(s));
                let to = labels.get("to").and_then(|s| BreakerState::from_label(s));
                let (Some(from), Some(to)) = (from, to) else { return Err(bad("unknown breaker state label")) };
                out.entry(server).or_insert_with(m).transitions.insert((from, to), value);
            }
            _ if name.strip_prefix(REQUEST_DURATION) == Some("_sum") => {
                out.entry(server).or_insert_with(m).duration_sum = value;
            }
            _ if name.strip_prefix(REQUEST_DURATION) == Some("_count") => {
                out.entry(server).or_insert_with(m).duration_count = value;
            }
            POOL_CONNECTIONS => {
                let e = out.entry(server).or_insert_with(m);
                match labels.get("state").and_then(|s| PoolState::from_label(s)) {
                    Some(PoolState::Active) => e.pool_active = value,
                    Some(PoolState::Idle) => e.pool_idle = value,
                    None => return Err(bad("unknown pool state")),
                }
            }
            _ => {}
        }
    }
    if saw_requests { Ok(out) } else { Err(ParseError::NotAClient) }
}

/// `name{a="b",c="d"} value [timestamp]` → parts. Label values may hold escaped quotes.
fn split_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i..]),
        None => {
            let mut it = line.split_whitespace();
            let name = it.next()?;
            return Some((name, BTreeMap::new(), parse_value(it.next()?)?));
        }
    };
    let mut labels = BTreeMap::new();
    let bytes = rest.as_bytes();
    let mut i = 1;
    loop {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i] == b' ') {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        if bytes[i] == b'}' {
            i += 1;
            break;
        }
        let eq = rest[i..].find('=')? + i;
        let key = rest[i..eq].trim().to_string();
        if bytes.get(eq + 1) != Some(&b'"') {
            return None;
        }
        let mut j = eq + 2;
        let mut value = String::new();
        loop {
            match bytes.get(j)? {
                b'\\' => {
                    // The escaped character may be wider than one byte: step over it whole.
                    let escaped = rest.get(j + 1..)?.chars().next()?;
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                    j += 1 + escaped.len_utf8();
                }
                b'"' => break,
                _ => {
                    let ch = rest[j..].chars().next()?;
                    value.push(ch);
                    j += ch.len_utf8();
                }
            }
        }
        labels.insert(key, value);
        i = j + 1;
    }
    let value = parse_value(rest[i..].split_whitespace().next()?)?;
    Some((name, labels, value))
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP chaoslab_client_requests_total Requests by server and outcome.
# TYPE chaoslab_client_requests_total counter
chaoslab_client_requests_total{outcome="success",server="server-0"} 1200
chaoslab_client_requests_total{outcome="error",server="server-0"} 3
chaoslab_client_requests_total{outcome="timeout",server="server-0"} 7
chaoslab_client_requests_total{outcome="rejected",server="server-0"} 40
chaoslab_client_requests_total{outcome="success",server="server-1"} 1.5e3
chaoslab_client_circuit_breaker_state{server="server-0"} 2
chaoslab_client_circuit_breaker_state{server="server-1"} 0
chaoslab_client_circuit_breaker_transitions_total{from="closed",server="server-0",to="open"} 1
chaoslab_client_circuit_breaker_transitions_total{from="half_open",server="server-0",to="open"} 2
chaoslab_client_pool_connections{server="server-1",state="active"} 12
chaoslab_client_pool_connections{server="server-1",state="idle"} 4
chaoslab_client_request_duration_seconds_bucket{server="server-0",le="0.001"} 5
chaoslab_client_request_duration_seconds_sum{server="server-0"} 2.5
chaoslab_client_request_duration_seconds_count{server="server-0"} 1250
process_cpu_seconds_total 12.5
"#;

    #[test]
    fn reads_the_contract_families() {
        let s = parse(SCRAPE).unwrap();
        let s0 = &s["server-0"];
        assert_eq!((s0.success, s0.error, s0.timeout, s0.rejected), (1200.0, 3.0, 7.0, 40.0));
        assert_eq!(s0.breaker, Some(BreakerState::Open));
        assert_eq!(s0.transitions_to(BreakerState::Open), 3.0);
        let s1 = &s["server-1"];
        assert_eq!(s1.success, 1500.0);
        assert_eq!((s1.pool_active, s1.pool_idle), (12.0, 4.0));
        assert_eq!(s1.breaker, Some(BreakerState::Closed));
        assert_eq!((s0.duration_sum, s0.duration_count), (2.5, 1250.0));
        assert_eq!((s1.duration_sum, s1.duration_count), (0.0, 0.0), "no histogram: nothing to average");
    }

    #[test]
    fn something_else_is_not_a_client() {
        assert_eq!(parse("process_cpu_seconds_total 1\n"), Err(ParseError::NotAClient));
        assert_eq!(parse("<html>not found</html>"), Err(ParseError::NotAClient));
    }

    #[test]
    fn malformed_contract_lines_are_errors_with_the_line_number() {
        let err = parse("chaoslab_client_requests_total{server=\"a\",outcome=\"weird\"} 1\n").unwrap_err();
        assert!(matches!(err, ParseError::BadLine { line: 1, .. }), "{err}");
        let err = parse("chaoslab_client_requests_total{server=\"a\" 1\n").unwrap_err();
        assert!(matches!(err, ParseError::BadLine { .. }), "{err}");
    }

    #[test]
    fn label_values_with_escapes_and_timestamps() {
        let (name, labels, v) = split_sample(r#"m{server="a\"b",x="y"} 2 1700000000000"#).unwrap();
        assert_eq!((name, labels["server"].as_str(), v), ("m", "a\"b", 2.0));
    }
}
