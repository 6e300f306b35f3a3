//! Hostile surroundings, against the real operator, apiserver and toxiproxy-servers: a client
//! metrics endpoint that is down, slow, garbage or huge costs bounded time and memory and leaves
//! the checks Inconclusive; status and annotations edited by hand to nonsense neither crash nor
//! wedge the operator.

mod common;

use std::time::Duration;

use chaoslab_core::api::{ChaosScenario, Phase, Verdict};
use chaoslab_testenv::{PeakRss, ToxiproxyServer, free_port, rss_kib};
use chaoslab_toxiproxy::Client as Toxiproxy;
use common::*;
use kube::api::PostParams;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// 100 ms of latency on one explicit endpoint, scraping `metrics`.
fn latency_on(name: &str, toxiproxy: &ToxiproxyServer, metrics: &str, phases: (&str, &str, &str)) -> ChaosScenario {
    serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario", "metadata": {"name": name},
        "spec": {
            "template": "server-0-latency-100ms",
            "targets": {"endpoints": [{"name": "s0", "url": toxiproxy.url()}]},
            "phases": {"stabilization": phases.0, "testing": phases.1, "recovery": phases.2},
            "client": {"metricsUrl": metrics},
        },
    }))
    .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// Answers (valid metrics) only after 30 s.
    Slow,
    /// 200 OK with bytes that are not metrics: binary, then almost-Prometheus text, in turn.
    Garbage,
    /// 200 OK with one line of 4 MiB that starts like a sample of the contract.
    LongLine,
    /// 200 OK with 100 MB of comment lines, no Content-Length (read until the connection closes).
    Huge,
}

const VALID: &str = "chaoslab_client_requests_total{server=\"s0\",outcome=\"success\"} 1\n";

async fn answer(mut conn: TcpStream, how: Hostile, nth: u64) {
    let _ = conn.read(&mut [0u8; 4096]).await;
    let body: Vec<u8> = match how {
        Hostile::Slow => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            VALID.into()
        }
        Hostile::Garbage if nth.is_multiple_of(2) => (0..=255u8).cycle().take(64 * 1024).collect(),
        Hostile::Garbage => "chaoslab_client_requests_total{server=\"s0\",outcome=} NaN{{\n\u{0}".repeat(1000).into(),
        Hostile::LongLine => format!("chaoslab_client_requests_total{{server=\"{}\"", "x".repeat(4 << 20)).into(),
        Hostile::Huge => {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await;
            let line = b"# a comment line that is long enough to make a hundred megabytes quickly #####\n";
            let chunk = line.repeat(64 * 1024 / line.len());
            for _ in 0..(100 * 1024 * 1024 / chunk.len()) {
                if conn.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            return;
        }
    };
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(&body).await;
}

/// A metrics endpoint that answers every scrape `how`; its URL.
async fn hostile_endpoint(how: Hostile) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut nth = 0;
        while let Ok((conn, _)) = listener.accept().await {
            nth += 1;
            tokio::spawn(answer(conn, how, nth));
        }
    });
    url
}

#[tokio::test]
async fn a_hostile_metrics_endpoint_costs_bounded_time_and_memory_and_leaves_the_checks_inconclusive() {
    let (_client, ns, api) = setup("metrics").await;
    let op = operator(&ns);
    let down = format!("http://127.0.0.1:{}/metrics", free_port());
    let cases = [
        ("down", down),
        ("slow", hostile_endpoint(Hostile::Slow).await),
        ("garbage", hostile_endpoint(Hostile::Garbage).await),
        ("long-line", hostile_endpoint(Hostile::LongLine).await),
        ("huge", hostile_endpoint(Hostile::Huge).await),
    ];
    let mut proxies = Vec::new();
    for _ in &cases {
        proxies.push(lone_proxy().await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib(op.pid());
    let peak = PeakRss::watch(op.pid(), Duration::from_millis(50));
    for ((name, url), proxy) in cases.iter().zip(&proxies) {
        api.create(&PostParams::default(), &latency_on(name, proxy, url, ("2s", "4s", "2s"))).await.unwrap();
    }
    let huge = wait_for(&api, "huge", Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
    let mid = rss_kib(op.pid());
    let said = huge.status.unwrap().message.unwrap_or_default();
    // The size limit, or under load the time limit (1 s) first.
    let bounded = said.contains("larger than the limit of 16 MiB") || said.contains("timed out");
    assert!(bounded, "the status names the bound: {said}");
    // A status message holds at most a line of the error: a 4 MiB one was refused by the apiserver.
    let long = wait_for(&api, "long-line", Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
    let said = long.status.unwrap().message.unwrap_or_default();
    assert!(said.contains("cannot read client metrics") && said.len() < 1024, "{} bytes: {said:.300}", said.len());
    for (name, _) in &cases {
        let done = wait_for(&api, name, Duration::from_secs(30), |s| phase(s).is_some_and(Phase::is_terminal)).await;
        let st = done.status.unwrap();
        assert_eq!(st.phase, Some(Phase::Completed), "{name}: {:?}", st.message);
        assert_eq!(st.verdict, Some(Verdict::Inconclusive), "{name}: no sample came: {:?}", st.checks);
        let judged: Vec<_> = st.checks.iter().filter(|c| c.passed.is_some()).collect();
        assert!(judged.is_empty(), "{name}: checks judged without a sample: {judged:?}");
    }
    let (peak, end) = (peak.kib(), rss_kib(op.pid()));
    println!("operator RSS: {baseline} KiB before, {mid} KiB 2 s in, peak {peak} KiB, {end} KiB at the end");
    // At most one body of 16 MiB per scrape, and the parser's copies of a 4 MiB line (measured:
    // +30 to +40 MiB, level over 44 s of scrapes); reading whole 100 MB bodies it grew by 240 MiB.
    assert!(peak < baseline + 64 * 1024, "the operator's memory grew by {} KiB", peak - baseline);
    assert!(chaoslab_toxics_at(&proxies).await.is_empty(), "faults left behind");
}

/// Edits of a running scenario's status and annotations, as a person or a broken tool may make them.
fn nonsense() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("status", json!({"status": {"phase": "Bogus"}})),
        ("status", json!({"status": {"phase": "Completed", "verdict": "Passed"}})),
        (
            "status",
            json!({"status": {"targets": [{"name": "x", "endpoint": "not a url", "proxy": "", "enabled": false,
            "toxics": ["chaoslab-zzzzzzzz-evil"]}]}}),
        ),
        (
            "status",
            json!({"status": {"verification": [{"phase": "Testing", "target": "nope", "verifiedSeconds": -5.0,
            "share": 99.0, "reapplied": -1, "failedChecks": -3}]}}),
        ),
        (
            "status",
            json!({"status": {"timeline": [{"phase": "Recovery", "start": "1970-01-01T00:00:00Z"}],
            "observations": [], "checks": [{"name": "x", "description": "", "expected": "", "observed": ""}]}}),
        ),
        (
            "metadata",
            json!({"metadata": {"annotations": {"chaoslab.dev/abandon-faults": "maybe",
            "chaoslab.dev/stop": "on the scenario, not its namespace", "x": "\u{0}"}}}),
        ),
        ("status", json!({"status": {"startedAt": "1970-01-01T00:00:00Z"}})),
        ("status", json!({"status": {"startedAt": "2999-01-01T00:00:00Z"}})),
    ]
}

#[tokio::test]
async fn status_and_annotations_edited_to_nonsense_neither_crash_nor_wedge_the_operator() {
    use kube::api::{Patch, PatchParams};
    let (_client, ns, api) = setup("edits").await;
    let op = operator(&ns);
    let edits = nonsense();
    let mut proxies = Vec::new();
    for i in 0..edits.len() {
        let metrics = format!("http://127.0.0.1:{}/metrics", free_port());
        proxies.push(lone_proxy().await);
        api.create(&PostParams::default(), &latency_on(&format!("e{i}"), &proxies[i], &metrics, ("1s", "6s", "1s")))
            .await
            .unwrap();
    }
    for (i, (part, body)) in edits.iter().enumerate() {
        let name = format!("e{i}");
        wait_for(&api, &name, Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
        let pp = PatchParams::default();
        let done = match *part {
            "status" => api.patch_status(&name, &pp, &Patch::Merge(body)).await,
            _ => api.patch(&name, &pp, &Patch::Merge(body)).await,
        };
        println!(
            "{name}: {body} -> {}",
            done.as_ref().map_or_else(|e| format!("refused: {e:.90}"), |_| "accepted".into())
        );
    }
    for (i, proxy) in proxies.iter().enumerate() {
        let name = format!("e{i}");
        let ended = wait_for(&api, &name, Duration::from_secs(20), |s| phase(s).is_some_and(Phase::is_terminal)).await;
        let st = ended.status.unwrap();
        println!("{name}: ends {:?}: {:.150}", st.phase.unwrap(), st.message.unwrap_or_default());
        assert!(chaoslab_toxics_at(std::slice::from_ref(proxy)).await.is_empty(), "{name}: faults left behind");
        let enabled = Toxiproxy::new(&proxy.url()).unwrap().proxy("backend").await.unwrap().enabled;
        assert!(enabled, "{name}: proxy left disabled");
    }
    assert!(std::fs::read_to_string(format!("/proc/{}/stat", op.pid())).is_ok_and(|s| !s.contains(") Z ")));
}
