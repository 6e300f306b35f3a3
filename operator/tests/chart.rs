//! The Helm chart with the real tools: helm lint and template, the rendered manifests applied with
//! --dry-run=server to the real apiserver, and `helm install` followed by the operator running a
//! scenario as the chart's ServiceAccount (impersonation): no forbidden call, and every permission
//! the chart grants is one the operator used (from the apiserver's audit log).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

use chaoslab_core::api::{ChaosScenario, Phase};
use chaoslab_testenv::{
    ControlPlane, Managed, RedisServer, ToxiproxyServer, free_port, helm_bin, namespace, ready_pod,
};
use chaoslab_toxiproxy::{Client as Toxiproxy, NewProxy};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::{Api, api::PostParams};
use serde_json::{Value, json};

fn chart() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/chaoslab"))
}

fn helm(args: &[&str]) -> Output {
    let cp = ControlPlane::shared();
    let out = Command::new(helm_bin()).args(args).env("KUBECONFIG", &cp.kubeconfig).output().expect("helm");
    assert!(out.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn helm_lint_passes_strict() {
    let out = helm(&["lint", "--strict", chart().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 chart(s) failed"));
}

#[test]
fn bad_values_are_refused_by_the_schema_naming_the_value() {
    let out = Command::new(helm_bin())
        .args(["template", "x", chart().to_str().unwrap(), "--set", "loadgen.concurrency=0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/loadgen/concurrency"));
}

#[tokio::test]
async fn rendered_manifests_apply_with_dry_run_server_for_default_and_other_values() {
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    let ns = namespace(&client, "chart-dry").await;
    let other: Vec<&str> = [
        "operator.watchNamespace=team-a",
        "operator.leaderElection=false",
        "loadgen.enabled=false",
        "networkPolicy.enabled=false",
        "dashboards.enabled=false",
        "backends.replicas=5",
        "loadgen.concurrency=1000",
    ]
    .iter()
    .flat_map(|s| ["--set", s])
    .collect();
    let chart = chart();
    for values in [vec![], other] {
        let mut args = vec!["template", "chaoslab", chart.to_str().unwrap(), "--namespace", &ns];
        args.extend(values.iter().copied());
        let manifests = String::from_utf8(helm(&args).stdout).unwrap();
        assert!(manifests.contains("kind: CustomResourceDefinition") && manifests.contains("kind: StatefulSet"));
        let (ok, stdout, stderr) = cp.kubectl(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], Some(&manifests));
        assert!(ok, "dry-run=server refused {values:?}:\n{stderr}");
        assert!(stdout.contains("(server dry run)"), "{stdout}");
    }
}

/// (apiGroup, resource[/subresource], verb) as RBAC names them.
type Grant = (String, String, String);

fn grants(rules: &[k8s_openapi::api::rbac::v1::PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// What `user` did successfully, from the apiserver's audit log.
fn used_by(audit: &str, user: &str) -> (BTreeSet<Grant>, Vec<String>) {
    let mut used = BTreeSet::new();
    let mut forbidden = Vec::new();
    for line in audit.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else { continue };
        let who = e["impersonatedUser"]["username"].as_str().or(e["user"]["username"].as_str());
        // A watch is logged as ResponseStarted when it begins and ResponseComplete only when it ends.
        if who != Some(user) || !matches!(e["stage"].as_str(), Some("ResponseStarted" | "ResponseComplete")) {
            continue;
        }
        let o = &e["objectRef"];
        let Some(resource) = o["resource"].as_str() else { continue };
        let resource = match o["subresource"].as_str() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        let g: Grant = (o["apiGroup"].as_str().unwrap_or("").into(), resource, e["verb"].as_str().unwrap_or("").into());
        if e["responseStatus"]["code"].as_i64() == Some(403) {
            forbidden.push(format!("{g:?}"));
        } else {
            used.insert(g);
        }
    }
    (used, forbidden)
}

#[tokio::test]
async fn the_installed_chart_lets_the_operator_run_a_scenario_with_exactly_the_rights_it_uses() {
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    let ns = namespace(&client, "chart").await;
    helm(&["install", "chaoslab", chart().to_str().unwrap(), "--namespace", &ns]);

    // Backends: real toxiproxy + redis behind Pods with loopback IPs, as the chart's StatefulSet would make.
    let admin = free_port();
    let mut keep = Vec::new();
    for i in 0..3 {
        let redis = RedisServer::start();
        let ip = Ipv4Addr::new(127, 0, (std::process::id() % 200 + 20) as u8, 200 + i);
        let tp = ToxiproxyServer::start_at(ip, admin);
        Toxiproxy::new(&tp.url())
            .unwrap()
            .create_proxy(&NewProxy {
                name: "backend".into(),
                listen: format!("127.0.0.1:{}", free_port()),
                upstream: redis.addr(),
                enabled: None,
            })
            .await
            .unwrap();
        let labels = BTreeMap::from([("app.kubernetes.io/component".to_string(), "backend".to_string())]);
        ready_pod(&client, &ns, &format!("backend-{i}"), labels, &ip.to_string()).await;
        keep.push((redis, tp));
    }

    let sa = format!("system:serviceaccount:{ns}:chaoslab-operator");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaoslab-operator"));
    cmd.args([
        "run",
        "--leader-election",
        "--lease-namespace",
        &ns,
        "--metrics-addr",
        &format!("127.0.0.1:{}", free_port()),
    ])
    .args(["--sample-interval", "500ms"])
    .env("KUBECONFIG", &cp.kubeconfig)
    .env("KUBE_RS_DEBUG_IMPERSONATE_USER", &sa)
    .env("RUST_LOG", "info,kube=warn");
    let mut op = Managed::spawn(&format!("operator-as-sa-{ns}"), cmd);

    let api: Api<ChaosScenario> = Api::namespaced(client.clone(), &ns);
    let obj: ChaosScenario = serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario", "metadata": {"name": "rbac"},
        "spec": {"template": "server-0-latency-100ms",
                 "targets": {"selector": {"matchLabels": {"app.kubernetes.io/component": "backend"}}, "adminPort": admin},
                 "phases": {"stabilization": "2s", "testing": "3s", "recovery": "2s"}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let t0 = Instant::now();
    loop {
        let s = api.get("rbac").await.unwrap();
        if s.status.as_ref().and_then(|st| st.phase).is_some_and(Phase::is_terminal) {
            assert_eq!(s.status.unwrap().phase, Some(Phase::Completed));
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(40), "not done as the chart's ServiceAccount:\n{}", op.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = op.log_tail();
    op.kill();
    assert!(!log.to_lowercase().contains("forbidden"), "{log}");

    let audit = std::fs::read_to_string(cp.dir.join("audit.log")).unwrap();
    let (used, forbidden) = used_by(&audit, &sa);
    assert!(forbidden.is_empty(), "forbidden calls: {forbidden:?}");
    let cr: Api<ClusterRole> = Api::all(client.clone());
    let role: Api<Role> = Api::namespaced(client.clone(), &ns);
    let mut granted = grants(&cr.get("chaoslab-operator").await.unwrap().rules.unwrap_or_default());
    granted.extend(grants(&role.get("chaoslab-operator-leader").await.unwrap().rules.unwrap_or_default()));
    // Event series: the recorder patches an event only when the same one repeats, which a short run
    // need not do; every other grant must have been used.
    let unused: Vec<&Grant> = granted
        .iter()
        .filter(|g| !used.contains(*g) && **g != ("events.k8s.io".into(), "events".into(), "patch".into()))
        .collect();
    assert!(unused.is_empty(), "granted but not used: {unused:?}; used: {used:?}");
}
