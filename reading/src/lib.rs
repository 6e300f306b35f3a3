//! One reading of a client under test, replica by replica: scraped from each replica's metrics URL,
//! or queried from a Prometheus that scrapes them. The operator and `chaoslab run` both read
//! through here; [`Reader`] turns what comes back into what the checks see.

use std::collections::BTreeMap;

use chaoslab_core::client_metrics::{Reader, Sample, Scrape};
use futures::future::join_all;
use jiff::Timestamp;

use chaoslab_telemetry::{METRICS_LIMIT, fetch_metrics};

/// A reading: each replica that answered, and what went wrong with the others.
#[derive(Debug, Default)]
pub struct Reading {
    pub replicas: BTreeMap<String, Scrape>,
    pub errors: Vec<String>,
    /// When the values were taken, where the source says: a Prometheus answers with what it scraped
    /// up to a scrape interval ago (the replicas' scrapes on average). None: just now.
    pub at: Option<Timestamp>,
}

impl Reading {
    /// The first error when no replica answered (nothing to record), else None.
    pub fn failed(&self) -> Option<String> {
        self.replicas.is_empty().then(|| self.errors.first().cloned().unwrap_or_else(|| "no replica".into()))
    }
}

/// Where a client's metrics are read without Kubernetes: one URL per replica, or a Prometheus that
/// scrapes them. (The operator adds the pods of a selector, which it resolves to URLs.)
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Urls(Vec<String>),
    Prometheus { url: String, selector: Option<String> },
}

impl Source {
    /// One reading; each URL is its own replica, named by the URL.
    pub async fn read(&self, http: &reqwest::Client, reader: &Reader) -> Reading {
        match self {
            Self::Urls(urls) => {
                let replicas: Vec<(String, String)> = urls.iter().map(|u| (u.clone(), u.clone())).collect();
                scrape_all(http, reader, &replicas).await
            }
            Self::Prometheus { url, selector } => query_prometheus(http, reader, url, selector.as_deref()).await,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Urls(urls) => write!(f, "{}", urls.join(", ")),
            Self::Prometheus { url, .. } => write!(f, "Prometheus {url}"),
        }
    }
}

/// Scrapes every `(replica, url)` at once, each bounded by the client's timeout and METRICS_LIMIT.
pub async fn scrape_all(http: &reqwest::Client, reader: &Reader, replicas: &[(String, String)]) -> Reading {
    let results = join_all(replicas.iter().map(|(_, url)| async move {
        let text = fetch_metrics(http, url, METRICS_LIMIT).await.map_err(|e| format!("scraping {url}: {e}"))?;
        reader.parse(&text).map_err(|e| format!("scraping {url}: {e}"))
    }))
    .await;
    let mut reading = Reading::default();
    for ((name, _), result) in replicas.iter().zip(results) {
        match result {
            Ok(scrape) => {
                reading.replicas.insert(name.clone(), scrape);
            }
            Err(e) => reading.errors.push(e),
        }
    }
    reading
}

/// The PromQL instant query that selects every series the mapping reads, e.g.
/// `{__name__=~"a|b",job="x"}`: paste it into Prometheus or Grafana to see what chaoslab sees.
pub fn instant_query(reader: &Reader, selector: Option<&str>) -> String {
    let m = reader.mapping();
    let mut names: Vec<String> = m.requests.iter().map(|r| r.metric.clone()).collect();
    names.extend(m.breaker.iter().map(|b| b.metric.clone()));
    names.extend(m.transitions.iter().map(|t| t.metric.clone()));
    names.extend(m.pool.iter().map(|p| p.metric.clone()));
    names.extend(m.latency.iter().flat_map(|l| [format!("{}_sum", l.metric), format!("{}_count", l.metric)]));
    instant_query_of(&names, selector)
}

fn instant_query_of(names: &[String], selector: Option<&str>) -> String {
    let mut quoted: Vec<String> = Vec::new();
    for n in names.iter().map(|n| regex_quote(n)) {
        if !quoted.contains(&n) {
            quoted.push(n);
        }
    }
    let selector = selector.map(|s| s.trim().trim_start_matches('{').trim_end_matches('}').trim()).unwrap_or("");
    let extra = if selector.is_empty() { String::new() } else { format!(",{selector}") };
    format!("{{__name__=~\"{}\"{extra}}}", quoted.join("|"))
}

/// A metric name as a literal in a PromQL regex (names hold only [a-zA-Z0-9_:]; kept safe anyway).
fn regex_quote(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect()
}

/// The client's series from a Prometheus, one replica per `instance` (and `pod`, when labelled).
pub async fn query_prometheus(http: &reqwest::Client, reader: &Reader, base: &str, selector: Option<&str>) -> Reading {
    let query = instant_query(reader, selector);
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    // The values, and when each replica was scraped: all its series share its scrape's time, so one
    // metric's do (timestamp() of several metrics would clash once it drops their names).
    let stamps = format!("timestamp({})", instant_query_of(&[reader.mapping().requests[0].metric.clone()], selector));
    let (values, times) = futures::join!(query_body(http, &url, &query), query_body(http, &url, &stamps));
    let read = values.and_then(|v| replicas_of(&v, reader)).map_err(|e| format!("querying {url} for {query}: {e}"));
    match read {
        Ok(replicas) => Reading { at: times.ok().and_then(|t| mean_scrape(&t)), replicas, errors: vec![] },
        Err(e) => Reading { errors: vec![e], ..Default::default() },
    }
}

/// When the replicas were scraped, on average, from a `timestamp(...)` answer (seconds as values).
/// Their scrapes are spread over the scrape interval; the mean keeps each reading's rate true where
/// the replicas run at similar rates (the oldest would make it swing with which replica is oldest).
fn mean_scrape(body: &serde_json::Value) -> Option<Timestamp> {
    let mut per_replica: BTreeMap<&str, f64> = BTreeMap::new();
    for s in body["data"]["result"].as_array()? {
        let Some(t) = s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) else { continue };
        per_replica.insert(s["metric"]["instance"].as_str().unwrap_or_default(), t);
    }
    let mean = per_replica.values().sum::<f64>() / per_replica.len() as f64;
    (!per_replica.is_empty()).then(|| Timestamp::from_millisecond((mean * 1000.0).round() as i64).ok()).flatten()
}

async fn query_body(http: &reqwest::Client, url: &str, query: &str) -> Result<serde_json::Value, String> {
    let mut url = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    url.query_pairs_mut().append_pair("query", query);
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| format!("{status}, not Prometheus JSON: {e}"))?;
    if body["status"] != "success" {
        return Err(format!("{status}: {}", body["error"].as_str().unwrap_or("no error text")));
    }
    Ok(body)
}

/// A query's vector result, grouped into replicas and read by `reader`.
fn replicas_of(body: &serde_json::Value, reader: &Reader) -> Result<BTreeMap<String, Scrape>, String> {
    let result = body["data"]["result"].as_array().ok_or("the answer has no data.result vector")?;
    let mut grouped: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for series in result {
        let mut labels: BTreeMap<String, String> = series["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let Some(name) = labels.remove("__name__") else { continue };
        let Some(value) = series["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let instance = labels.get("instance").cloned().unwrap_or_default();
        let replica = match labels.get("pod") {
            Some(pod) => format!("{pod} ({instance})"),
            None => instance,
        };
        grouped.entry(replica).or_default().push(Sample { name, labels, value });
    }
    if grouped.is_empty() {
        return Err("no series: check the selector and that Prometheus scrapes the client".into());
    }
    grouped
        .into_iter()
        .map(|(replica, samples)| Ok((replica, reader.read(&samples).map_err(|e| e.to_string())?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use chaoslab_core::api::MetricsMapping;

    use super::*;

    #[test]
    fn the_query_names_every_series_the_mapping_reads() {
        let reader = Reader::new(MetricsMapping::resilience4j(), None);
        assert_eq!(
            instant_query(&reader, Some(r#"{job="shop"}"#)),
            "{__name__=~\"resilience4j_circuitbreaker_calls_seconds_count|resilience4j_circuitbreaker_not_permitted_calls_total|\
             resilience4j_circuitbreaker_state|resilience4j_circuitbreaker_calls_seconds_sum\",job=\"shop\"}"
        );
    }

    #[test]
    fn series_are_grouped_into_replicas_by_instance() {
        let reader = Reader::new(MetricsMapping::chaoslab(), None);
        let series = |instance: &str, v: &str| {
            serde_json::json!({"metric": {"__name__": "chaoslab_client_requests_total", "instance": instance,
                "server": "s", "outcome": "success", "job": "c"}, "value": [1.7e9, v]})
        };
        let body = serde_json::json!({"status": "success", "data": {"resultType": "vector",
            "result": [series("10.0.0.1:9090", "5"), series("10.0.0.2:9090", "7")]}});
        let r = replicas_of(&body, &reader).unwrap();
        assert_eq!(r.keys().collect::<Vec<_>>(), ["10.0.0.1:9090", "10.0.0.2:9090"]);
        assert_eq!(r["10.0.0.2:9090"]["s"].success, 7.0);
        let empty = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}});
        assert!(replicas_of(&empty, &reader).unwrap_err().contains("selector"));
    }

    #[test]
    fn a_reading_from_prometheus_is_as_old_as_its_replicas_scrapes_on_average() {
        let stamp = |i: &str, v: &str| serde_json::json!({"metric": {"instance": i}, "value": [1.7e9, v]});
        let body = serde_json::json!({"status": "success", "data": {"resultType": "vector",
            "result": [stamp("a", "1700000000.5"), stamp("a", "1700000000.5"), stamp("b", "1700000001.5")]}});
        assert_eq!(mean_scrape(&body), Some(Timestamp::from_millisecond(1_700_000_001_000).unwrap()));
        let none = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}});
        assert_eq!(mean_scrape(&none), None);
    }
}
