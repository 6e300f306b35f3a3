//! The operator judging clients no one here designed for, as `spec.client` describes them: the real
//! resilience4j client (a JVM) through `preset: resilience4j` and `serverLabels`, and three replicas
//! of a client as pods (each on its own loopback address) through `podSelector` and through a real
//! Prometheus. Real kube-apiserver, toxiproxy-servers, redis-servers; test Pods as in e2e.rs.

mod common;

use std::{collections::BTreeMap, process::Command, time::Duration};

use chaoslab_core::api::{ChaosScenario, ChaosScenarioStatus, Phase, Verdict};
use chaoslab_testenv::{
    Managed, Prometheus, ScratchDir, free_port, loopback_ip, ready_pod, resilience4j_client_command, wait_for_port,
    workspace_bin,
};
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};

const LOSS: &str = "multi-failure-2-servers-packet-loss";

fn scenario_with_client(name: &str, admin_port: u16, client: Value) -> ChaosScenario {
    serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario",
        "metadata": {"name": name},
        "spec": {
            "template": LOSS,
            "targets": {"selector": {"matchLabels": {LABEL: "backend"}}, "adminPort": admin_port},
            // As e2e.rs: Stabilization long enough to be verified on a busy machine; Recovery for
            // two half-open attempts and 5 s more: three replicas' connections to a server that
            // lost packets can stall in TCP retransmission after the fault is gone (CI: 16.1 % of
            // successes on one server late in a 15 s Recovery, against a floor of 16.7 %).
            "phases": {"stabilization": "10s", "testing": "10s", "recovery": "20s"},
            "client": client,
        },
    }))
    .unwrap()
}

/// Runs the scenario to its end: its final status, and [the status message mid-Testing (after
/// deleting the pod `drop` if given), the operator's and the clients' logs].
async fn run(
    prefix: &str,
    admin: u16,
    drop: Option<&str>,
    backends_and_client: impl AsyncFnOnce(&kube::Client, &str, &[Backend]) -> (Vec<Managed>, Value),
) -> (ChaosScenarioStatus, Vec<String>) {
    let (client, ns, api) = setup(prefix).await;
    let backends = backends(&client, &ns, 3, admin).await;
    let (procs, spec_client) = backends_and_client(&client, &ns, &backends).await;
    let op = operator(&ns);
    api.create(&PostParams::default(), &scenario_with_client("run", admin, spec_client)).await.unwrap();
    // While it runs: what the status message says of the client.
    let mut mid = wait_for(&api, "run", Duration::from_secs(40), |s| phase(s) == Some(Phase::Testing)).await;
    if let Some(pod) = drop {
        Api::<Pod>::namespaced(client.clone(), &ns).delete(pod, &DeleteParams::default()).await.unwrap();
        let gone = format!("replicas gone: {pod}");
        mid = wait_for(&api, "run", Duration::from_secs(10), |s| {
            s.status.as_ref().and_then(|s| s.message.as_deref()).is_some_and(|m| m.contains(&gone))
        })
        .await;
    }
    let mid_message = mid.status.and_then(|s| s.message).unwrap_or_default();
    let done = wait_for(&api, "run", Duration::from_secs(60), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    let st = done.status.unwrap();
    let logs = std::iter::once(std::fs::read_to_string(&op.log).unwrap_or_default())
        .chain(procs.iter().map(Managed::log_tail))
        .collect::<Vec<_>>();
    assert!(chaoslab_toxics(&backends).await.is_empty(), "no toxic left");
    (st, vec![mid_message, logs.join("\n---\n")])
}

fn check(st: &ChaosScenarioStatus, name: &str) -> Option<bool> {
    st.checks.iter().find(|c| c.name == name).and_then(|c| c.passed)
}

fn resilience4j(backends: &[Backend], extra: &[&str]) -> (Managed, String) {
    let listen: Vec<&str> = backends.iter().map(|b| b.listen.as_str()).collect();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut cmd = resilience4j_client_command();
    cmd.args(["--targets", &listen.join(","), "--names", "redis-a,redis-b,redis-c", "--metrics-addr", &metrics])
        .args(["--concurrency", "4", "--duration", "90s"])
        .args(extra);
    let client = Managed::spawn(&format!("r4j-{}", metrics.replace(':', "-")), cmd);
    // Up (the JVM started) before the scenario starts, so that Stabilization is watched from its start.
    assert!(wait_for_port(metrics.parse().unwrap(), Duration::from_secs(30)), "{}", client.log_tail());
    (client, format!("http://{metrics}/metrics"))
}

fn resilience4j_client(url: &str) -> Value {
    json!({"metricsUrl": url, "preset": "resilience4j",
        "serverLabels": {"backend-0": "redis-a", "backend-1": "redis-b", "backend-2": "redis-c"}})
}

#[tokio::test]
async fn a_resilience4j_client_passes_through_its_micrometer_metrics() {
    let (st, logs) = run("r4j", free_port(), None, async |_, _, backends| {
        let (client, url) = resilience4j(backends, &[]);
        (vec![client], resilience4j_client(&url))
    })
    .await;
    assert_eq!(st.verdict, Some(Verdict::Passed), "{:#?}\n{}", st.checks, logs[1]);
    let names: Vec<&str> = st.observations[1].servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["backend-0", "backend-1", "backend-2"], "judged by target, through serverLabels");
    assert_eq!(check(&st, "faulted-breakers-open"), Some(true));
}

#[tokio::test]
async fn a_resilience4j_client_whose_breakers_never_trip_fails() {
    let (st, logs) = run("r4j-off", free_port(), None, async |_, _, backends| {
        let (client, url) = resilience4j(backends, &["--metrics-only"]);
        (vec![client], resilience4j_client(&url))
    })
    .await;
    assert_eq!(st.verdict, Some(Verdict::Failed), "{:#?}\n{}", st.checks, logs[1]);
    assert_eq!(check(&st, "faulted-breakers-open"), Some(false), "{:#?}", st.checks);
}

/// Three chaoslab-loadgen replicas on their own loopback addresses, as Ready pods `shop-0..2`
/// labelled app=shop; their metrics addresses.
async fn shop_pods(kube: &kube::Client, ns: &str, backends: &[Backend], port: u16) -> (Vec<Managed>, Vec<String>) {
    let listen: Vec<&str> = backends.iter().map(|b| b.listen.as_str()).collect();
    let (mut procs, mut addrs) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let ip = loopback_ip();
        let addr = format!("{ip}:{port}");
        let mut cmd = Command::new(workspace_bin("chaoslab-loadgen"));
        // At a fixed rate, as e2e.rs's client, split over three; breakers decide on fewer calls.
        cmd.args(["--targets", &listen.join(","), "--rate", "500", "--concurrency", "64", "--max-procs", "1"]).args([
            "--minimum-calls",
            "5",
            "--duration",
            "90s",
            "--metrics-addr",
            &addr,
        ]);
        let p = Managed::spawn(&format!("shop-{i}-{ns}"), cmd);
        assert!(wait_for_port(addr.parse().unwrap(), Duration::from_secs(10)), "{}", p.log_tail());
        let labels = BTreeMap::from([("app".to_string(), "shop".to_string())]);
        ready_pod(kube, ns, &format!("shop-{i}"), labels, &ip.to_string()).await;
        procs.push(p);
        addrs.push(addr);
    }
    (procs, addrs)
}

#[tokio::test]
async fn three_client_pods_are_judged_as_one_through_the_pod_selector() {
    let port = free_port();
    // One pod goes away in Testing: what it counted stays, the others go on being read.
    let (st, logs) = run("pods", free_port(), Some("shop-2"), async |kube, ns, backends| {
        let (procs, _) = shop_pods(kube, ns, backends, port).await;
        (procs, json!({"podSelector": {"matchLabels": {"app": "shop"}}, "port": port}))
    })
    .await;
    assert_eq!(st.verdict, Some(Verdict::Passed), "{:#?}\n{}", st.checks, logs[1]);
    assert!(logs[0].contains("client: 2 replicas (shop-0, shop-1); replicas gone: shop-2"), "{}", logs[0]);
}

#[tokio::test]
async fn three_client_pods_are_judged_as_one_through_prometheus() {
    let port = free_port();
    let dir = ScratchDir::new("own-prom-op");
    let (st, logs) = run("prom", free_port(), None, async |kube, ns, backends| {
        let (mut procs, addrs) = shop_pods(kube, ns, backends, port).await;
        let prometheus = Prometheus::scraping(dir.path(), "shop", &addrs);
        let url = prometheus.url.clone();
        procs.push(prometheus.process);
        wait_for_series(&url).await;
        (procs, json!({"prometheus": {"url": url, "selector": "job=\"shop\""}}))
    })
    .await;
    assert_eq!(st.verdict, Some(Verdict::Passed), "{:#?}\n{}", st.checks, logs[1]);
    assert!(logs[0].contains("client: 3 replicas"), "the status says: {}", logs[0]);
}

/// Until the Prometheus at `prometheus` has scraped all three replicas (so Stabilization is watched whole).
async fn wait_for_series(prometheus: &str) {
    chaoslab_toxiproxy::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut url = reqwest::Url::parse(&format!("{prometheus}/api/v1/query")).unwrap();
    url.query_pairs_mut().append_pair("query", "count(up{job=\"shop\"} == 1)");
    for _ in 0..60 {
        let got = match http.get(url.clone()).send().await {
            Ok(r) => r.json::<Value>().await.ok(),
            Err(_) => None,
        };
        if got.as_ref().and_then(|v| v["data"]["result"][0]["value"][1].as_str()) == Some("3") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("Prometheus did not scrape the three replicas within 30 s");
}
