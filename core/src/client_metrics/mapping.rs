//! A client's own series, turned into what the checks read ([`Scrape`]) by a [`MetricsMapping`]:
//! chaoslab's contract, resilience4j's names, or the user's.

use chaoslab_contract::{BreakerState, Outcome};

use super::{ParseError, Scrape, ServerMetrics, exposition::Sample};
use crate::api::{MetricsMapping, OutcomeName, RequestSeries, StateValues};

/// Whether `mapping` reads series named `name` (a latency metric's `_sum` and `_count` included).
pub fn wants(mapping: &MetricsMapping, name: &str) -> bool {
    let latency = mapping.latency.as_ref().and_then(|l| name.strip_prefix(l.metric.as_str()));
    mapping.requests.iter().any(|r| r.metric == name)
        || mapping.breaker.as_ref().is_some_and(|b| b.metric == name)
        || mapping.transitions.as_ref().is_some_and(|t| t.metric == name)
        || mapping.pool.as_ref().is_some_and(|p| p.metric == name)
        || matches!(latency, Some("_sum" | "_count"))
}

/// One replica's samples as the checks see them. Fails when no requests series names a server:
/// without requests nothing can be judged, and the error names what was looked for.
pub fn read(mapping: &MetricsMapping, samples: &[Sample]) -> Result<Scrape, ParseError> {
    let mut out = Scrape::new();
    let mut saw_requests = false;
    for s in samples {
        let Some(server) = s.labels.get(&mapping.server_label) else { continue };
        let entry = || ServerMetrics::default();
        for r in mapping.requests.iter().filter(|r| r.metric == s.name) {
            saw_requests = true;
            let m = out.entry(server.clone()).or_insert_with(entry);
            match outcome(r, s) {
                Some(Outcome::Success) => m.success += s.value,
                Some(Outcome::Error) => m.error += s.value,
                Some(Outcome::Timeout) => m.timeout += s.value,
                Some(Outcome::Rejected) => m.rejected += s.value,
                None => {}
            }
        }
        if let Some(b) = mapping.breaker.as_ref().filter(|b| b.metric == s.name) {
            let state = match &b.state_label {
                Some(label) if s.value > 0.0 => s.labels.get(label).and_then(|v| state_of(&b.states, v)),
                Some(_) => None,
                None => gauge_state(&b.states, s.value),
            };
            if let Some(state) = state {
                out.entry(server.clone()).or_insert_with(entry).breaker = Some(state);
            }
        }
        if let Some(t) = mapping.transitions.as_ref().filter(|t| t.metric == s.name) {
            let from = s.labels.get(&t.from_label).and_then(|v| state_of(&t.states, v));
            let to = s.labels.get(&t.to_label).and_then(|v| state_of(&t.states, v));
            if let (Some(from), Some(to)) = (from, to) {
                *out.entry(server.clone()).or_insert_with(entry).transitions.entry((from, to)).or_default() += s.value;
            }
        }
        if let Some(l) = &mapping.latency {
            match s.name.strip_prefix(l.metric.as_str()) {
                Some("_sum") => out.entry(server.clone()).or_insert_with(entry).duration_sum += s.value,
                Some("_count") => out.entry(server.clone()).or_insert_with(entry).duration_count += s.value,
                _ => {}
            }
        }
        if let Some(p) = mapping.pool.as_ref().filter(|p| p.metric == s.name) {
            let state = s.labels.get(&p.state_label);
            let m = out.entry(server.clone()).or_insert_with(entry);
            if state.is_some_and(|v| p.active.contains(v)) {
                m.pool_active += s.value;
            } else if state.is_some_and(|v| p.idle.contains(v)) {
                m.pool_idle += s.value;
            }
        }
    }
    if saw_requests {
        Ok(out)
    } else {
        let metrics: Vec<&str> = mapping.requests.iter().map(|r| r.metric.as_str()).collect();
        Err(ParseError::NoRequests { metrics: metrics.join(" or "), server_label: mapping.server_label.clone() })
    }
}

fn outcome(r: &RequestSeries, s: &Sample) -> Option<Outcome> {
    let Some(label) = &r.outcome_label else {
        return r.outcome.map(|o| match o {
            OutcomeName::Success => Outcome::Success,
            OutcomeName::Error => Outcome::Error,
            OutcomeName::Timeout => Outcome::Timeout,
            OutcomeName::Rejected => Outcome::Rejected,
        });
    };
    let v = s.labels.get(label)?;
    [(&r.success, Outcome::Success), (&r.error, Outcome::Error), (&r.timeout, Outcome::Timeout)]
        .into_iter()
        .chain([(&r.rejected, Outcome::Rejected)])
        .find(|(values, _)| values.contains(v))
        .map(|(_, o)| o)
}

/// The state whose list holds a value `matches` accepts.
fn state_where(states: &StateValues, matches: impl Fn(&str) -> bool) -> Option<BreakerState> {
    [(&states.closed, BreakerState::Closed), (&states.half_open, BreakerState::HalfOpen)]
        .into_iter()
        .chain([(&states.open, BreakerState::Open)])
        .find(|(values, _)| values.iter().any(|x| matches(x)))
        .map(|(_, s)| s)
}

fn state_of(states: &StateValues, v: &str) -> Option<BreakerState> {
    state_where(states, |x| x == v)
}

/// A gauge whose value is the state: the lists hold numbers.
fn gauge_state(states: &StateValues, value: f64) -> Option<BreakerState> {
    state_where(states, |x| x.parse::<f64>().is_ok_and(|n| n == value.round()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::PoolSeries, client_metrics::exposition::samples};

    fn read_text(mapping: &MetricsMapping, text: &str) -> Result<Scrape, ParseError> {
        read(mapping, &samples(text, |n| wants(mapping, n))?)
    }

    const R4J: &str = include_str!("testdata/resilience4j.txt");

    #[test]
    fn resilience4j_names_are_read_per_breaker() {
        let s = read_text(&MetricsMapping::resilience4j(), R4J).unwrap();
        assert_eq!(s.keys().collect::<Vec<_>>(), ["server-0", "server-1", "server-2"]);
        let dead = &s["server-1"];
        assert_eq!(dead.breaker, Some(BreakerState::Open));
        assert_eq!((dead.error, dead.success), (32.0, 957.0));
        let healthy = &s["server-0"];
        assert_eq!(healthy.breaker, Some(BreakerState::Closed));
        assert_eq!(healthy.success, 2960.0);
        assert_eq!(healthy.duration_count, 2960.0, "the calls timer's count over every kind");
        assert!(healthy.duration_sum > 0.0);
        assert_eq!(healthy.rejected, 0.0);
    }

    #[test]
    fn a_disabled_breaker_reads_as_closed_it_lets_every_call_through() {
        let text = r#"resilience4j_circuitbreaker_state{name="a",state="disabled"} 1.0
resilience4j_circuitbreaker_state{name="a",state="open"} 0.0
resilience4j_circuitbreaker_calls_seconds_count{kind="failed",name="a"} 9
"#;
        let s = read_text(&MetricsMapping::resilience4j(), text).unwrap();
        assert_eq!((s["a"].breaker, s["a"].error), (Some(BreakerState::Closed), 9.0));
    }

    #[test]
    fn a_custom_mapping_adds_up_labels_and_metrics() {
        let mapping = MetricsMapping {
            server_label: "upstream".into(),
            requests: vec![
                RequestSeries {
                    metric: "calls_total".into(),
                    outcome_label: Some("status".into()),
                    success: vec!["ok".into()],
                    error: vec!["err".into(), "reset".into()],
                    timeout: vec!["deadline".into()],
                    ..Default::default()
                },
                RequestSeries {
                    metric: "shed_total".into(),
                    outcome: Some(OutcomeName::Rejected),
                    ..Default::default()
                },
            ],
            breaker: Some(crate::api::BreakerSeries {
                metric: "cb_state".into(),
                state_label: None,
                states: StateValues { closed: vec!["0".into()], half_open: vec!["2".into()], open: vec!["1".into()] },
            }),
            transitions: None,
            latency: Some(crate::api::LatencySeries { metric: "call_seconds".into() }),
            pool: Some(PoolSeries {
                metric: "conns".into(),
                state_label: "s".into(),
                active: vec!["busy".into()],
                idle: vec!["free".into()],
            }),
        };
        let text = r#"calls_total{upstream="a",status="ok",method="GET"} 10
calls_total{upstream="a",status="ok",method="SET"} 5
calls_total{upstream="a",status="err"} 1
calls_total{upstream="a",status="reset"} 2
calls_total{upstream="a",status="deadline"} 3
calls_total{upstream="a",status="cancelled"} 100
shed_total{upstream="a"} 4
cb_state{upstream="a"} 1
call_seconds_bucket{upstream="a",le="0.1"} 7
call_seconds_sum{upstream="a",method="GET"} 0.5
call_seconds_sum{upstream="a",method="SET"} 0.25
call_seconds_count{upstream="a"} 15
conns{upstream="a",s="busy"} 2
conns{upstream="a",s="free"} 6
unrelated_total{upstream="a"} 1
"#;
        let a = &read_text(&mapping, text).unwrap()["a"];
        assert_eq!(
            (a.success, a.error, a.timeout, a.rejected),
            (15.0, 3.0, 3.0, 4.0),
            "unlisted values are not counted"
        );
        assert_eq!(a.breaker, Some(BreakerState::Open));
        assert_eq!((a.duration_sum, a.duration_count), (0.75, 15.0));
        assert_eq!((a.pool_active, a.pool_idle), (2.0, 6.0));
    }

    #[test]
    fn a_mapping_the_endpoint_does_not_satisfy_names_what_it_looked_for() {
        let err = read_text(&MetricsMapping::resilience4j(), "jvm_threads_live_threads 12\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("resilience4j_circuitbreaker_calls_seconds_count"), "{text}");
        assert!(text.contains("`name`"), "{text}");
        // The series exist but lack the server label.
        let err = read_text(&MetricsMapping::resilience4j(), "resilience4j_circuitbreaker_calls_seconds_count 3\n");
        assert!(matches!(err, Err(ParseError::NoRequests { .. })), "{err:?}");
    }
}
