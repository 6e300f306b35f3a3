//! Leader election with the real operator binary against the real kube-apiserver: one replica
//! drives, the other takes over; a leader cut off from the apiserver (a blackhole: connections held
//! open, nothing delivered, made with chaoslab's own fault proxy) exits before its lease can be taken
//! and never writes to a Toxiproxy after; a standby replica is Ready, so a one-replica rolling update
//! of the chart's Deployment hands the lease over.

mod common;

use common::{LABEL, backends, phase, setup, wait_for};

use std::{
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chaoslab_core::{
    api::{ChaosScenario, Phase},
    faults::owner_of,
    toxic::{Stream, Toxic, ToxicType},
};
use chaoslab_faultproxy::FaultProxy;
use chaoslab_testenv::{
    ControlPlane, Managed, ScratchDir, ToxiproxyServer, free_port, helm_bin, loopback_ip, repo_root,
};
use chaoslab_toxiproxy::{Client as Toxiproxy, NewProxy};
use jiff::Timestamp;
use k8s_openapi::api::{coordination::v1::Lease, events::v1::Event};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const LEASE: &str = "chaoslab-operator";

/// One operator replica with leader election on a Lease in `ns`, as POD_NAME `name`, its metrics on
/// `port`, talking to the apiserver through `kubeconfig`; `env` e.g. HTTP_PROXY.
fn replica(ns: &str, name: &str, port: u16, lease: &str, kubeconfig: &Path, env: &[(&str, &str)]) -> Managed {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaoslab-operator"));
    cmd.args(["run", "--namespace", ns, "--metrics-addr", &format!("127.0.0.1:{port}"), "--leader-election"])
        .args(["--lease-namespace", ns, "--lease-duration", lease, "--sample-interval", "500ms"])
        .args(["--toxiproxy-timeout", "2s"])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", name)
        .env("RUST_LOG", "info,kube=warn,chaoslab_operator=debug,chaoslab_toxiproxy=debug")
        .envs(env.iter().copied());
    Managed::spawn(&format!("replica-{name}-{ns}"), cmd)
}

async fn status_of(port: u16, path: &str) -> u16 {
    reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// `chaoslab_operator_leader` of the replica whose metrics are on `port`; None if it does not answer.
async fn leader_metric(port: u16) -> Option<i64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("chaoslab_operator_leader ")).and_then(|v| v.trim().parse().ok())
}

/// Polls `cond` every 50 ms until it holds; panics with `what` (and `log`) after `limit`.
async fn until<F: Future<Output = bool>>(limit: Duration, what: &str, log: &Managed, mut cond: impl FnMut() -> F) {
    let t0 = Instant::now();
    while !cond().await {
        assert!(t0.elapsed() < limit, "{what} within {limit:?}; log:\n{}", log.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The process has ended (gone, or a zombie its handle has not reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z"),
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases.get_opt(LEASE).await.ok().flatten().and_then(|l| l.spec).and_then(|s| s.holder_identity)
}

/// A scenario on explicit `targets` (a selector or endpoints).
fn scenario_on(name: &str, template: &str, targets: Value, phases: (&str, &str, &str)) -> ChaosScenario {
    serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario", "metadata": {"name": name},
        "spec": {
            "template": template,
            "targets": targets,
            "phases": {"stabilization": phases.0, "testing": phases.1, "recovery": phases.2},
        },
    }))
    .unwrap()
}

async fn toxics_on(tp: &Toxiproxy) -> Vec<String> {
    tp.toxics("backend").await.unwrap().into_iter().map(|t| t.name).filter(|n| owner_of(n).is_some()).collect()
}

#[tokio::test]
async fn with_leader_election_one_replica_drives_and_the_other_takes_over() {
    let (client, ns, api) = setup("lead").await;
    let admin = free_port();
    let _backends = backends(&client, &ns, 3, admin).await;
    let cp = ControlPlane::shared();
    chaoslab_toxiproxy::install_crypto_provider();
    let (pa, pb) = (free_port(), free_port());
    let mut a = replica(&ns, "a", pa, "6s", &cp.kubeconfig, &[]);
    until(Duration::from_secs(20), "replica a leads", &a, || async { leader_metric(pa).await == Some(1) }).await;
    let b = replica(&ns, "b", pb, "6s", &cp.kubeconfig, &[]);
    until(Duration::from_secs(20), "the standby is Ready", &b, || async { status_of(pb, "/readyz").await == 200 })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(leader_metric(pb).await, Some(0), "the second replica waits while the first leads");
    assert_eq!(status_of(pb, "/readyz").await, 200, "a standby replica is Ready");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    assert_eq!(holder(&leases).await.as_deref(), Some("a"));

    let targets = json!({"selector": {"matchLabels": {LABEL: "backend"}}, "adminPort": admin});
    api.create(&PostParams::default(), &scenario_on("l", "server-0-latency-100ms", targets, ("2s", "6s", "2s")))
        .await
        .unwrap();
    wait_for(&api, "l", Duration::from_secs(20), |s| phase(s) == Some(Phase::Testing)).await;
    a.kill();
    let done = wait_for(&api, "l", Duration::from_secs(40), |s| phase(s).is_some_and(Phase::is_terminal)).await;
    assert_eq!(phase(&done), Some(Phase::Completed), "replica b finished the run");
    assert_eq!(leader_metric(pb).await, Some(1));
    assert_eq!(holder(&leases).await.as_deref(), Some("b"));
}

/// What a replica asked of Toxiproxies through its HTTP_PROXY: (when it arrived, method, URL).
type Calls = Arc<Mutex<Vec<(Timestamp, String, String)>>>;

/// A minimal HTTP/1.1 forward proxy that records each request and forwards it: set as one replica's
/// HTTP_PROXY, it tells that replica's Toxiproxy calls from the other's (kube's client takes only
/// HTTPS_PROXY, the apiserver is not affected).
async fn recording_proxy() -> (String, Calls) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls: Calls = Arc::default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    tokio::spawn({
        let calls = calls.clone();
        async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(forward(conn, http.clone(), calls.clone()));
            }
        }
    });
    (url, calls)
}

async fn forward(conn: tokio::net::TcpStream, http: reqwest::Client, calls: Calls) -> std::io::Result<()> {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, url) =
            (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
        let (mut len, mut ctype) = (0usize, None);
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "content-type" => ctype = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await?;
        calls.lock().unwrap().push((Timestamp::now(), method.clone(), url.clone()));
        let mut req = http.request(method.parse().unwrap_or(reqwest::Method::GET), &url).body(body);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        let (status, ctype, body) = match req.send().await {
            Ok(resp) => {
                let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
                (resp.status(), ctype, resp.bytes().await.unwrap_or_default().to_vec())
            }
            Err(_) => (reqwest::StatusCode::BAD_GATEWAY, None, vec![]),
        };
        let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
        if let Some(c) = ctype {
            head += &format!("Content-Type: {c}\r\n");
        }
        w.write_all(format!("{head}\r\n").as_bytes()).await?;
        w.write_all(&body).await?;
    }
}

fn micro(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

/// The issue's repro: A leads; its link to the apiserver is blackholed (connections stay open, no
/// byte passes); B takes the Lease. A must exit before B's acquireTime, and never write to a
/// Toxiproxy once its lease could have expired — the scenario's Testing starts after that, so its
/// faults come from B alone, and once deleted through B nothing puts them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_apiserver_exits_before_its_lease_can_be_taken_and_never_acts_after() {
    let (client, ns, api) = setup("cut").await;
    let cp = ControlPlane::shared();
    chaoslab_toxiproxy::install_crypto_provider();

    // A reaches the apiserver through chaoslab's fault proxy. The serving certificate has 127.0.0.1
    // as an IP SAN (hack/testenv/up.sh), so A's kubeconfig keeps TLS verification with its CA.
    let fp = FaultProxy::start("127.0.0.1:0").await.unwrap();
    let faults = Toxiproxy::new(&fp.url()).unwrap();
    let via = format!("127.0.0.1:{}", free_port());
    let upstream = cp.url.trim_start_matches("https://").to_string();
    faults
        .create_proxy(&NewProxy { name: "apiserver".into(), listen: via.clone(), upstream, enabled: None })
        .await
        .unwrap();
    let scratch = ScratchDir::new("leader-cut");
    let kubeconfig_a = scratch.join("kubeconfig");
    let original = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    assert!(original.contains(&format!("server: {}", cp.url)));
    std::fs::write(&kubeconfig_a, original.replace(&format!("server: {}", cp.url), &format!("server: https://{via}")))
        .unwrap();

    // The target: a real toxiproxy-server, named by URL (no apiserver call needed to find it, so a
    // cut-off replica could still reach it, as in the issue).
    let tp = ToxiproxyServer::start_at(loopback_ip(), free_port());
    let tpc = Toxiproxy::new(&tp.url()).unwrap();
    let backend = NewProxy {
        name: "backend".into(),
        listen: format!("127.0.0.1:{}", free_port()),
        upstream: "127.0.0.1:9".into(),
        enabled: None,
    };
    tpc.create_proxy(&backend).await.unwrap();
    let (proxy_url, calls_a) = recording_proxy().await;

    let (pa, pb) = (free_port(), free_port());
    let a = replica(&ns, "a", pa, "6s", &kubeconfig_a, &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "")]);
    until(Duration::from_secs(20), "replica a leads", &a, || async { leader_metric(pa).await == Some(1) }).await;
    let b = replica(&ns, "b", pb, "6s", &cp.kubeconfig, &[]);
    until(Duration::from_secs(20), "the standby is Ready", &b, || async { status_of(pb, "/readyz").await == 200 })
        .await;
    assert_eq!(leader_metric(pb).await, Some(0));

    // Testing starts 10 s after the run does: after A's lease can expire (6 s after its last renewal).
    let targets = json!({"endpoints": [{"name": "server-0", "url": tp.url(), "proxy": "backend"}]});
    api.create(&PostParams::default(), &scenario_on("cut", "server-0-packet-loss-100", targets, ("10s", "8s", "2s")))
        .await
        .unwrap();
    let started = wait_for(&api, "cut", Duration::from_secs(20), |s| phase(s) == Some(Phase::Stabilization)).await;
    let started_at = started.status.as_ref().and_then(|s| s.started_at.as_ref()).map(|t| t.0).unwrap();
    // A's reconcile is over (its Event is out), so it sits on its requeue for the Testing boundary.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    until(Duration::from_secs(10), "A's Stabilization event", &a, || async {
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Stabilization"))
    })
    .await;
    assert!(!calls_a.lock().unwrap().is_empty(), "A's Toxiproxy calls go through the recording proxy");

    // The blackhole: held, never delivered, never closed, on existing connections and new ones.
    let cut = Timestamp::now();
    for stream in [Stream::Upstream, Stream::Downstream] {
        let name = format!("blackhole-{stream:?}").to_lowercase();
        let toxic =
            Toxic { name, kind: ToxicType::Timeout, stream, toxicity: 1.0, attributes: [("timeout".into(), 0)].into() };
        faults.create_toxic("apiserver", &toxic).await.unwrap();
    }

    // Until B holds the Lease (and 3 s more, if A is still there): when A exits, A's last renewal.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let t0 = Instant::now();
    let (mut a_exit, mut a_renewed, mut b_lease, mut b_seen) = (None, None, None, None);
    loop {
        if a_exit.is_none() && exited(a.pid()) {
            a_exit = Some(Timestamp::now());
        }
        if b_lease.is_none()
            && let Some(spec) = leases.get(LEASE).await.unwrap().spec
        {
            match spec.holder_identity.as_deref() {
                Some("a") => a_renewed = micro(&spec.renew_time).max(a_renewed),
                Some("b") => (b_lease, b_seen) = (Some(spec), Some(Instant::now())),
                _ => {}
            }
        }
        if b_seen.is_some_and(|t| a_exit.is_some() || t.elapsed() > Duration::from_secs(3)) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(25), "B never took the Lease; B:\n{}", b.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b_lease = b_lease.unwrap();
    let b_acquired = micro(&b_lease.acquire_time).unwrap();
    let a_renewed = a_renewed.expect("A's renewal seen before the cut took effect");
    let a_expiry = a_renewed + jiff::SignedDuration::from_secs(b_lease.lease_duration_seconds.unwrap_or(6).into());
    let since_cut = |t: Timestamp| format!("{:+.2}s", t.duration_since(cut).as_secs_f64());
    println!(
        "cut at {cut}; A's last renewal {}; A exited {}; A's lease could expire {}; B acquired {}",
        since_cut(a_renewed),
        a_exit.map_or("never (still running)".into(), since_cut),
        since_cut(a_expiry),
        since_cut(b_acquired)
    );

    // Testing begins (driven by B), the scenario is deleted through B, its toxics must stay gone.
    wait_for(&api, "cut", Duration::from_secs(30), |s| phase(s) == Some(Phase::Testing)).await;
    let testing_at = started_at + jiff::SignedDuration::from_secs(10);
    let t1 = Instant::now();
    while toxics_on(&tpc).await.is_empty() {
        assert!(t1.elapsed() < Duration::from_secs(5), "no faults in Testing; B:\n{}", b.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the boundary by a second: a cut-off A would have acted by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.delete("cut", &DeleteParams::default()).await.unwrap();
    let t2 = Instant::now();
    while api.get_opt("cut").await.unwrap().is_some() || !toxics_on(&tpc).await.is_empty() {
        assert!(t2.elapsed() < Duration::from_secs(10), "the deletion through B did not finish; B:\n{}", b.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = toxics_on(&tpc).await;

    let mut problems = Vec::new();
    match a_exit {
        None => problems.push(format!("A was still running {:?} after B took the Lease", Duration::from_secs(3))),
        Some(x) if x >= b_acquired => problems.push(format!(
            "A exited at {}, after B acquired the Lease at {}",
            since_cut(x),
            since_cut(b_acquired)
        )),
        Some(_) => {}
    }
    let log_a = std::fs::read_to_string(&a.log).unwrap_or_default();
    if a_exit.is_some() && !log_a.contains("lost leadership") {
        problems.push("A's log does not say it lost leadership".into());
    }
    let late: Vec<String> = calls_a
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, method, _)| method != "GET" && *at >= a_expiry)
        .map(|(at, method, url)| format!("{method} {url} at {}", since_cut(*at)))
        .collect();
    if !late.is_empty() {
        problems.push(format!(
            "A wrote to a Toxiproxy after its lease could expire ({}; Testing began {}): {late:?}",
            since_cut(a_expiry),
            since_cut(testing_at)
        ));
    }
    if !left.is_empty() {
        problems.push(format!("toxics back after the scenario was deleted through B: {left:?}"));
    }
    assert!(problems.is_empty(), "{}\nA's log:\n{}", problems.join("\n"), a.log_tail());
    assert!(b_acquired > a_expiry, "B took the Lease only once it could expire");
}

/// What the chart's rolling update does with one replica (RollingUpdate, maxUnavailable 0): start
/// the new pod, wait for its readinessProbe, then stop the old one. The new replica must get Ready as
/// a standby, and take the Lease once the old one, stopping on SIGTERM, released it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_one_replica_rolling_update_gets_the_new_pod_ready_and_hands_the_lease_over() {
    let chart = repo_root().join("charts/chaoslab");
    let out = Command::new(helm_bin())
        .args(["template", "r", chart.to_str().unwrap(), "--namespace", "x", "-s", "templates/operator.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text).map(|d| Value::deserialize(d).unwrap()).collect();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("the operator Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    // Kubernetes' defaults where the chart sets nothing: RollingUpdate, maxUnavailable 25 % (rounded down).
    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(strategy["type"].as_str().unwrap_or("RollingUpdate"), "RollingUpdate", "{strategy}");
    let unavailable = match &strategy["rollingUpdate"]["maxUnavailable"] {
        Value::Null => 0, // 25 % of 1
        Value::String(p) => p.trim_end_matches('%').parse::<i64>().unwrap() / 100,
        v => v.as_i64().unwrap(),
    };
    assert_eq!(unavailable, 0, "the old pod stays until the new one is Ready: {strategy}");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let probe = container["readinessProbe"]["httpGet"]["path"].as_str().unwrap().to_string();
    assert!(container["args"].as_array().unwrap().iter().any(|a| a == "--leader-election"));

    let (client, ns, _api) = setup("roll").await;
    let cp = ControlPlane::shared();
    let (p_old, p_new) = (free_port(), free_port());
    let old = replica(&ns, "old", p_old, "6s", &cp.kubeconfig, &[]);
    until(Duration::from_secs(20), "the old pod leads", &old, || async { leader_metric(p_old).await == Some(1) }).await;
    let new = replica(&ns, "new", p_new, "6s", &cp.kubeconfig, &[]);
    let t0 = Instant::now();
    until(Duration::from_secs(15), &format!("the new pod Ready ({probe}) while the old one leads"), &new, || async {
        status_of(p_new, &probe).await == 200
    })
    .await;
    let ready_after = t0.elapsed();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    assert_eq!(holder(&leases).await.as_deref(), Some("old"));
    assert_eq!(leader_metric(p_new).await, Some(0));

    // The rollout goes on: the old pod, running (watching) by now, is stopped (SIGTERM, as the kubelet does).
    until(Duration::from_secs(10), "the old pod watches", &old, || async {
        std::fs::read_to_string(&old.log).unwrap_or_default().contains("watching ChaosScenarios")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t1 = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &old.pid().to_string()]).status().unwrap().success());
    until(Duration::from_secs(10), "the new pod leads (the old pod's log below)", &old, || async {
        holder(&leases).await.as_deref() == Some("new") && leader_metric(p_new).await == Some(1)
    })
    .await;
    let handed_over = t1.elapsed();
    until(Duration::from_secs(10), "the old pod exits", &old, || async { exited(old.pid()) }).await;
    let log_old = std::fs::read_to_string(&old.log).unwrap_or_default();
    assert!(log_old.contains("shutting down") && !log_old.contains("lost leadership"), "{}", old.log_tail());
    println!("new pod Ready {ready_after:?} after it started; leading {handed_over:?} after the old one got SIGTERM");
}
