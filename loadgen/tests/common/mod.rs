//! Shared by the integration tests: run the client in-process with its metrics endpoint, and read
//! that endpoint the way Prometheus does (HTTP GET, text format).
#![allow(dead_code)]

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use chaoslab_loadgen::{Config, LoadGenerator, RunHandle, resp_server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// The client running in this process, with `/metrics` on a loopback port.
pub struct Running {
    pub run: RunHandle,
    pub metrics: SocketAddr,
    stop_metrics: CancellationToken,
}

pub async fn start(config: Config) -> Running {
    // The client's log (transitions, unreachable servers) goes with the test's output.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let registry = prometheus::Registry::new();
    let run = LoadGenerator::start(config, &registry).expect("start");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = listener.local_addr().unwrap();
    let stop_metrics = CancellationToken::new();
    let client = run.client().clone();
    let endpoints =
        chaoslab_telemetry::Endpoints { registry, before_scrape: Some(Arc::new(move || client.tick())), ready: None };
    tokio::spawn(chaoslab_telemetry::serve(listener, endpoints, stop_metrics.clone().cancelled_owned()));
    Running { run, metrics, stop_metrics }
}

impl Running {
    pub async fn scrape(&self) -> Scrape {
        scrape(self.metrics).await
    }

    pub async fn stop(self) -> chaoslab_loadgen::Summary {
        self.run.stop();
        let summary = self.run.wait().await;
        self.stop_metrics.cancel();
        summary
    }
}

/// The built-in server on a loopback port; stops when the token is cancelled.
pub async fn builtin() -> (String, CancellationToken) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move { resp_server::serve(l, s.cancelled_owned()).await });
    (addr, stop)
}

/// A server that answers every read with `reply` (and never closes).
pub async fn answering(reply: &'static [u8]) -> String {
    answering_after(reply, Duration::ZERO).await
}

/// A server that answers every read with `reply` after `delay`.
pub async fn answering_after(reply: &'static [u8], delay: Duration) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    tokio::time::sleep(delay).await;
                    if n == 0 || s.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// GET `path`; (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to the metrics endpoint");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

pub async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    Scrape::parse(&body)
}

/// One scrape: series (name + labels) → value.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let mut series = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (key, value) = line.rsplit_once(' ').expect("name value");
            let (name, labels) = match key.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (key, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            series.push((name.to_string(), labels, value.parse().expect("a number")));
        }
        Self { series }
    }

    /// The sum over the series of `name` that have all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    pub fn requests(&self, server: &str, outcome: &str) -> f64 {
        self.sum("chaoslab_client_requests_total", &[("server", server), ("outcome", outcome)])
    }

    /// error + timeout + rejected.
    pub fn failures(&self, server: &str) -> f64 {
        ["error", "timeout", "rejected"].iter().map(|o| self.requests(server, o)).sum()
    }

    pub fn state(&self, server: &str) -> f64 {
        self.sum("chaoslab_client_circuit_breaker_state", &[("server", server)])
    }

    pub fn transitions(&self, server: &str, from: &str, to: &str) -> f64 {
        self.sum("chaoslab_client_circuit_breaker_transitions_total", &[("server", server), ("from", from), ("to", to)])
    }

    pub fn pool(&self, server: &str, state: &str) -> f64 {
        self.sum("chaoslab_client_pool_connections", &[("server", server), ("state", state)])
    }
}

/// Successes per server between two scrapes.
pub fn success_delta(a: &Scrape, b: &Scrape, servers: &[&str]) -> Vec<f64> {
    servers.iter().map(|s| b.requests(s, "success") - a.requests(s, "success")).collect()
}
