//! What the operator's end-to-end tests share: a real kube-apiserver, the real operator binary,
//! test Pods whose podIP is a loopback address where a real toxiproxy-server fronts a real
//! redis-server, and the real chaoslab-loadgen as the client under test.
#![allow(dead_code)] // each test file uses its own part

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use chaoslab_core::{
    api::{ChaosScenario, Phase},
    faults::owner_of,
};
use chaoslab_testenv::{
    ControlPlane, Managed, RedisServer, ToxiproxyServer, free_port, loopback_ip, ready_pod, scenario_namespace,
    wait_for_port, workspace_bin,
};
use chaoslab_toxiproxy::{Client as Toxiproxy, NewProxy};
use kube::{Api, Client};
use serde_json::json;

pub const LABEL: &str = "app.kubernetes.io/component";

/// One backend "pod": redis behind a toxiproxy whose admin API listens on the pod's loopback IP.
pub struct Backend {
    pub redis: RedisServer,
    pub toxiproxy: ToxiproxyServer,
    /// Where the proxy listens (what the client connects to).
    pub listen: String,
}

impl Backend {
    pub fn client(&self) -> Toxiproxy {
        Toxiproxy::new(&self.toxiproxy.url()).unwrap()
    }
}

pub async fn backends(client: &Client, ns: &str, n: usize, admin_port: u16) -> Vec<Backend> {
    let mut out = Vec::new();
    for i in 0..n {
        let redis = RedisServer::start();
        let ip = loopback_ip();
        let toxiproxy = ToxiproxyServer::start_at(ip, admin_port);
        let listen = format!("127.0.0.1:{}", free_port());
        Toxiproxy::new(&toxiproxy.url())
            .unwrap()
            .create_proxy(&NewProxy {
                name: "backend".into(),
                listen: listen.clone(),
                upstream: redis.addr(),
                enabled: None,
            })
            .await
            .unwrap();
        let labels = BTreeMap::from([(LABEL.to_string(), "backend".to_string())]);
        ready_pod(client, ns, &format!("backend-{i}"), labels, &ip.to_string()).await;
        out.push(Backend { redis, toxiproxy, listen });
    }
    out
}

pub fn operator(ns: &str) -> Managed {
    operator_named(ns, &format!("operator-{ns}"))
}

/// The operator with its log under `name` (a restarted one must not share its predecessor's log:
/// the old handle deletes it when dropped).
pub fn operator_named(ns: &str, name: &str) -> Managed {
    operator_with(ns, name, &[]).0
}

/// The operator with `extra` arguments, and the URL of its `/metrics`.
pub fn operator_with(ns: &str, name: &str, extra: &[&str]) -> (Managed, String) {
    let cp = ControlPlane::shared();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaoslab-operator"));
    cmd.args(["run", "--namespace", ns, "--metrics-addr", &addr])
        .args(["--sample-interval", "500ms", "--toxiproxy-timeout", "2s"])
        .args(extra)
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("RUST_LOG", "info,kube=warn,chaoslab_operator=debug,chaoslab_toxiproxy=debug");
    (Managed::spawn(name, cmd), format!("http://{addr}/metrics"))
}

/// A toxiproxy-server with one proxy, `backend` (its upstream need not answer: no client connects).
pub async fn lone_proxy() -> ToxiproxyServer {
    let server = ToxiproxyServer::start();
    let new = NewProxy {
        name: "backend".into(),
        listen: format!("127.0.0.1:{}", free_port()),
        upstream: format!("127.0.0.1:{}", free_port()),
        enabled: None,
    };
    Toxiproxy::new(&server.url()).unwrap().create_proxy(&new).await.unwrap();
    server
}

/// The real chaoslab-loadgen binary, bounded to 90 s, exporting metrics on a free port. At a fixed
/// rate (open model): closed-loop workers at full speed in every test running in parallel starved
/// the operators and the apiserver on two cores (reconciles of 2 s and 15 s, phases applied late).
/// 1500 ops/s still gives each server hundreds of calls per breaker window.
pub fn loadgen(backends: &[Backend]) -> (Managed, String) {
    let bin = workspace_bin("chaoslab-loadgen");
    let port = free_port();
    let targets: Vec<&str> = backends.iter().map(|b| b.listen.as_str()).collect();
    let mut cmd = Command::new(bin);
    cmd.args(["--targets", &targets.join(","), "--rate", "1500", "--concurrency", "16", "--max-procs", "2"])
        .args(["--duration", "90s"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let lg = Managed::spawn("loadgen", cmd);
    // Up before a scenario starts, so that the operator observes Stabilization from its start.
    assert!(wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10)), "loadgen:\n{}", lg.log_tail());
    (lg, format!("http://127.0.0.1:{port}/metrics"))
}

pub fn scenario(
    name: &str,
    template: &str,
    admin_port: u16,
    metrics: Option<&str>,
    phases: (&str, &str, &str),
) -> ChaosScenario {
    let mut spec = json!({
        "template": template,
        "targets": {"selector": {"matchLabels": {LABEL: "backend"}}, "adminPort": admin_port},
        "phases": {"stabilization": phases.0, "testing": phases.1, "recovery": phases.2},
    });
    if let Some(url) = metrics {
        spec["client"] = json!({"metricsUrl": url});
    }
    serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

pub async fn setup(prefix: &str) -> (Client, String, Api<ChaosScenario>) {
    let (client, ns) = scenario_namespace(prefix).await;
    let api = Api::namespaced(client.clone(), &ns);
    (client, ns, api)
}

/// Polls until `done` holds for the scenario, or panics after `limit` with its last status.
pub async fn wait_for(
    api: &Api<ChaosScenario>,
    name: &str,
    limit: Duration,
    done: impl Fn(&ChaosScenario) -> bool,
) -> ChaosScenario {
    let start = Instant::now();
    loop {
        let s = api.get_opt(name).await.unwrap();
        if let Some(s) = &s
            && done(s)
        {
            return s.clone();
        }
        assert!(start.elapsed() < limit, "{name} not there after {limit:?}: {:#?}", s.and_then(|s| s.status));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn phase(s: &ChaosScenario) -> Option<Phase> {
    s.status.as_ref().and_then(|st| st.phase)
}

pub async fn chaoslab_toxics(backends: &[Backend]) -> Vec<String> {
    let servers: Vec<&ToxiproxyServer> = backends.iter().map(|b| &b.toxiproxy).collect();
    chaoslab_toxics_at(&servers).await
}

/// The chaoslab toxics on the proxy `backend` of each server.
pub async fn chaoslab_toxics_at(servers: &[impl std::borrow::Borrow<ToxiproxyServer>]) -> Vec<String> {
    let mut left = Vec::new();
    for s in servers {
        for t in Toxiproxy::new(&s.borrow().url()).unwrap().toxics("backend").await.unwrap() {
            if owner_of(&t.name).is_some() {
                left.push(t.name);
            }
        }
    }
    left
}
