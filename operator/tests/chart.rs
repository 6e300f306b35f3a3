//! The Helm chart with the real tools: helm lint and template, the vendored dependency charts, the
//! rendered manifests applied with --dry-run=server to the real apiserver in a namespace that
//! enforces the restricted Pod Security Standard, the bundled Prometheus's own scrape job run by a
//! real Prometheus that finds the operator and loadgen pods through the apiserver, and `helm
//! install` followed by the operator running a scenario as the chart's ServiceAccount
//! (impersonation): no forbidden call, and every permission the chart grants is one the operator
//! used (from the apiserver's audit log). Grafana can't run here: its provisioning is checked
//! against the rendered objects it would read.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

use chaoslab_core::api::{ChaosScenario, Phase};
use chaoslab_testenv::{
    ControlPlane, Managed, Prometheus, RedisServer, ScratchDir, ToxiproxyServer, free_port, helm_bin, loopback_ip,
    namespace, ready_pod, repo_root, run_pod, tool_version, workspace_bin,
};
use chaoslab_toxiproxy::{Client as Toxiproxy, NewProxy};
use k8s_openapi::{
    api::rbac::v1::{ClusterRole, Role},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{Api, api::PostParams};
use serde::Deserialize;
use serde_json::{Value, json};

fn chart() -> PathBuf {
    repo_root().join("charts/chaoslab")
}

/// What `helm template` prints, with `--set` for each of `sets`.
fn template(release: &str, ns: &str, sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec!["template", release, chart.to_str().unwrap(), "--namespace", ns];
    args.extend(sets.iter().flat_map(|s| ["--set", *s]));
    String::from_utf8(helm(&args).stdout).unwrap()
}

/// The documents `helm template` renders, as JSON values.
fn render(release: &str, ns: &str, sets: &[&str]) -> Vec<Value> {
    let out = template(release, ns, sets);
    serde_yaml::Deserializer::from_str(&out).map(|d| Value::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn helm(args: &[&str]) -> Output {
    let cp = ControlPlane::shared();
    let out = Command::new(helm_bin()).args(args).env("KUBECONFIG", &cp.kubeconfig).output().expect("helm");
    assert!(out.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn the_toxiproxy_sidecar_runs_the_version_the_tests_run() {
    let values = std::fs::read_to_string(chart().join("values.yaml")).unwrap();
    let expected =
        format!("image: {{repository: ghcr.io/shopify/toxiproxy, tag: \"{}\"", tool_version("TOXIPROXY_VERSION"));
    assert!(values.contains(&expected), "charts/chaoslab/values.yaml should say {expected} (hack/versions.env)");
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

#[test]
fn the_vendored_dependency_charts_are_the_ones_chart_yaml_asks_for() {
    let out = String::from_utf8(helm(&["dependency", "list", chart().to_str().unwrap()]).stdout).unwrap();
    let rows: Vec<Vec<&str>> =
        out.lines().skip(1).map(|l| l.split_whitespace().collect()).filter(|r: &Vec<_>| !r.is_empty()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(names, ["prometheus", "grafana"], "{out}");
    assert!(
        rows.iter().all(|r| r.last() == Some(&"ok")),
        "a vendored archive is missing or of another version (run hack/vendor-charts.sh):\n{out}"
    );
}

#[tokio::test]
async fn rendered_manifests_apply_with_dry_run_server_under_the_restricted_pod_security_standard() {
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    let ns = namespace(&client, "chart-dry").await;
    let (ok, _, stderr) = cp.kubectl(
        &[
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let other = [
        "operator.watchNamespace=team-a",
        "operator.leaderElection=false",
        "loadgen.enabled=false",
        "networkPolicy.enabled=false",
        "dashboards.enabled=false",
        "prometheus.enabled=false",
        "grafana.enabled=false",
        "backends.replicas=5",
        "loadgen.concurrency=1000",
    ];
    for (values, monitoring) in [(&[][..], true), (&other[..], false)] {
        let manifests = template("chaoslab", &ns, values);
        assert!(manifests.contains("kind: CustomResourceDefinition") && manifests.contains("kind: StatefulSet"));
        assert_eq!(manifests.contains("name: chaoslab-prometheus-server\n"), monitoring, "{values:?}");
        assert_eq!(manifests.contains("name: chaoslab-grafana\n"), monitoring, "{values:?}");
        let (ok, stdout, stderr) = cp.kubectl(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], Some(&manifests));
        assert!(ok, "dry-run=server refused {values:?}:\n{stderr}");
        assert!(stdout.contains("(server dry run)"), "{stdout}");
        // PodSecurity admission warns about workloads whose pods it would refuse.
        assert!(!stderr.contains("PodSecurity"), "{values:?} breaks the restricted standard:\n{stderr}");
    }
}

#[test]
fn grafana_is_provisioned_with_the_bundled_prometheus_and_the_chaoslab_dashboard() {
    let dashboard = std::fs::read_to_string(repo_root().join("dashboards/chaoslab.json")).unwrap();
    // The Prometheus server's Service name depends on the release name (the prometheus chart shortens
    // it when the release already says "prometheus"); the datasource must follow it either way.
    for release in ["chaoslab", "my-prometheus"] {
        let docs = render(release, "lab", &[]);
        let grafana_cm = object(&docs, "ConfigMap", &format!("{release}-grafana"));
        let ds: Value = serde_yaml::from_str(grafana_cm["data"]["datasources.yaml"].as_str().unwrap()).unwrap();
        let ds = &ds["datasources"][0];
        assert_eq!(ds["uid"], "chaoslab-prometheus", "the dashboard's panels name this uid");
        assert_eq!(ds["type"], "prometheus");
        let url = ds["url"].as_str().unwrap();
        let service = docs
            .iter()
            .find(|d| {
                d["kind"] == "Service" && url == format!("http://{}.lab.svc", d["metadata"]["name"].as_str().unwrap())
            })
            .unwrap_or_else(|| panic!("{release}: no rendered Service answers {url}"));
        assert_eq!(service["metadata"]["labels"]["app.kubernetes.io/name"], "prometheus");
        assert_eq!(service["spec"]["ports"][0]["port"], 80, "the url has no port");

        // The provider's folder is where the Deployment mounts the ConfigMap holding the dashboard.
        let providers: Value =
            serde_yaml::from_str(grafana_cm["data"]["dashboardproviders.yaml"].as_str().unwrap()).unwrap();
        let path = providers["providers"][0]["options"]["path"].as_str().unwrap();
        let pod = &object(&docs, "Deployment", &format!("{release}-grafana"))["spec"]["template"]["spec"];
        let mount = pod["containers"][0]["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == path);
        let volume_name = mount.unwrap_or_else(|| panic!("nothing mounted at {path}"))["name"].clone();
        let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == volume_name).unwrap();
        let cm = object(&docs, "ConfigMap", volume["configMap"]["name"].as_str().unwrap());
        assert_eq!(
            cm["data"]["chaoslab.json"].as_str().unwrap(),
            dashboard,
            "the chart ships dashboards/chaoslab.json"
        );
        assert!(
            grafana_cm["data"]["grafana.ini"].as_str().unwrap().contains(&format!("{path}/chaoslab.json")),
            "the dashboard is the home page"
        );
    }
}

#[tokio::test]
async fn the_bundled_prometheus_finds_and_scrapes_the_operator_and_the_loadgen() {
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    let ns = namespace(&client, "chart-prom").await;
    let docs = render("chaoslab", &ns, &[]);

    // The chart's own kubernetes-pods job, as rendered. Outside a cluster Prometheus reaches the
    // apiserver through a kubeconfig instead of the pod's ServiceAccount: the only change.
    let rendered = object(&docs, "ConfigMap", "chaoslab-prometheus-server")["data"]["prometheus.yml"].as_str().unwrap();
    let config: Value = serde_yaml::from_str(rendered).unwrap();
    let mut job = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "kubernetes-pods")
        .expect("the kubernetes-pods job")
        .clone();
    for sd in job["kubernetes_sd_configs"].as_array_mut().unwrap() {
        sd["kubeconfig_file"] = json!(cp.kubeconfig);
    }
    assert_eq!(config["global"]["scrape_interval"], "5s");
    let dir = ScratchDir::new("chart-prometheus");
    let config = json!({"global": config["global"], "scrape_configs": [job]});
    std::fs::write(dir.join("prometheus.yml"), serde_yaml::to_string(&config).unwrap()).unwrap();

    // The operator and loadgen pods from their rendered templates, each on its own loopback IP where
    // the real binary listens on the port the pod's annotation names.
    let redis = RedisServer::start();
    let mut procs = Vec::new();
    for component in ["operator", "loadgen"] {
        let template = &object(&docs, "Deployment", &format!("chaoslab-{component}"))["spec"]["template"];
        let ip = loopback_ip();
        let port = template["metadata"]["annotations"]["prometheus.io/port"].as_str().unwrap();
        let addr = format!("{ip}:{port}");
        let mut cmd = Command::new(workspace_bin(&format!("chaoslab-{component}")));
        match component {
            // The chart's own arguments, so that one the binary does not take fails here; only where
            // /metrics listens changes, and the namespace watched (the chart's default is all).
            "operator" => cmd
                .args(template["spec"]["containers"][0]["args"].as_array().unwrap().iter().map(|a| {
                    let a = a.as_str().unwrap();
                    if a.starts_with("--metrics-addr=") { format!("--metrics-addr={addr}") } else { a.to_string() }
                }))
                .args(["--namespace", &ns])
                .env("KUBECONFIG", &cp.kubeconfig)
                .env("POD_NAME", "chaoslab-operator-0")
                .env("POD_NAMESPACE", &ns),
            _ => cmd.args([
                "--targets",
                &redis.addr(),
                "--concurrency",
                "2",
                "--duration",
                "60s",
                "--metrics-addr",
                &addr,
            ]),
        };
        procs.push(Managed::spawn(&format!("{component}-{ns}"), cmd));
        let mut pod = json!({"metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
        pod["metadata"]["name"] = json!(format!("chaoslab-{component}-0"));
        run_pod(&client, &ns, serde_json::from_value(pod).unwrap(), &ip.to_string()).await;
    }

    let prometheus = Prometheus::configured(dir.path(), &ns);
    let api = &format!("{}/api/v1/query", prometheus.url);
    chaoslab_toxiproxy::install_crypto_provider();
    let http = reqwest::Client::new();
    let query = |q: String| {
        let http = http.clone();
        async move {
            let mut url = reqwest::Url::parse(api).unwrap();
            url.query_pairs_mut().append_pair("query", &q);
            let r = http.get(url).send().await.ok()?;
            r.json::<Value>().await.ok().map(|v| v["data"]["result"].as_array().cloned().unwrap_or_default())
        }
    };
    let t0 = Instant::now();
    let up = loop {
        let up = query(format!("up{{job=\"kubernetes-pods\",namespace=\"{ns}\"}} == 1")).await.unwrap_or_default();
        if up.len() == 2 {
            break up;
        }
        assert!(t0.elapsed() < Duration::from_secs(40), "scraped so far: {up:?}\n{}", prometheus.process.log_tail());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut pods: Vec<&str> = up.iter().map(|s| s["metric"]["pod"].as_str().unwrap()).collect();
    pods.sort();
    assert_eq!(pods, ["chaoslab-loadgen-0", "chaoslab-operator-0"]);
    // The series carry the pod's labels, and both contracts' metrics arrive.
    for (metric, component) in
        [("chaoslab_client_requests_total", "loadgen"), ("chaoslab_operator_reconciles_total", "operator")]
    {
        let found = query(format!("{metric}{{namespace=\"{ns}\",app_kubernetes_io_component=\"{component}\"}}"))
            .await
            .unwrap_or_default();
        assert!(!found.is_empty(), "no {metric} from the {component} pod");
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
        let ip = loopback_ip();
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

    // The release's lifecycle keeps the CRD and so every scenario and its verdict: an upgrade
    // re-applies the CRD, an uninstall leaves it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_name = "chaosscenarios.chaoslab.dev";
    helm(&["upgrade", "chaoslab", chart().to_str().unwrap(), "--namespace", &ns, "--set", "loadgen.concurrency=200"]);
    let crd = crds.get(crd_name).await.unwrap();
    assert_eq!(crd.metadata.labels.unwrap()["app.kubernetes.io/managed-by"], "Helm");
    let kept = api.get("rbac").await.expect("the scenario survives helm upgrade");
    assert_eq!(kept.status.unwrap().phase, Some(Phase::Completed));
    let out = helm(&["uninstall", "chaoslab", "--namespace", &ns]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept due to the resource policy"), "helm says what it kept");
    assert!(crds.get(crd_name).await.is_ok(), "helm uninstall left the CRD");
    assert!(api.get("rbac").await.is_ok(), "helm uninstall left the scenarios");
    let role = role.get_opt("chaoslab-operator-leader").await.unwrap();
    assert!(role.is_none(), "the rest of the release is gone");
}

#[test]
fn without_the_loadgen_the_notes_say_where_your_client_connects_and_how_to_name_it() {
    let out = helm(&[
        "install",
        "chaoslab",
        chart().to_str().unwrap(),
        "--dry-run=client",
        // helm still looks at the cluster, where another test's release may own the CRD.
        "--take-ownership",
        "--namespace",
        "shop",
        "--set",
        "loadgen.enabled=false",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let notes = &stdout[stdout.find("NOTES:").expect("NOTES printed")..];
    for i in 0..3 {
        assert!(notes.contains(&format!("chaoslab-backend-{i}.chaoslab-backend.shop.svc:26379")), "{notes}");
    }
    assert!(notes.contains("examples/own-client.yaml"), "{notes}");
}
