//! The generated CRD against a real kube-apiserver: it installs, the example is accepted, invalid
//! resources are rejected by the apiserver itself with a message naming the field, the printer
//! columns read well, and status is written only through its subresource.

use chaoslab_core::api::{ChaosScenario, ChaosScenarioSpec, ChaosScenarioStatus, Phase, Verdict, crd_yaml};
use chaoslab_testenv::{ControlPlane, install_crd, scenario_namespace};
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde::Deserialize;
use serde_json::{Value, json};

async fn setup() -> (Client, String) {
    scenario_namespace("crd").await
}

fn dynamic_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("chaoslab.dev", "v1alpha1", "ChaosScenario"),
        "chaosscenarios",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn object(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1",
        "kind": "ChaosScenario",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn valid_spec() -> Value {
    json!({
        "template": "multi-failure-2-servers-packet-loss",
        "targets": {"endpoints": [
            {"name": "server-0", "url": "http://127.0.0.1:8474"},
            {"name": "server-1", "url": "http://127.0.0.1:8475"},
            {"name": "server-2", "url": "http://127.0.0.1:8476"}
        ]}
    })
}

/// `valid_spec()` with one JSON-pointer path replaced (or removed when `value` is None).
fn with(path: &str, value: Option<Value>) -> Value {
    let mut spec = valid_spec();
    let (parent, key) = path.rsplit_once('/').unwrap();
    let target = spec.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
    match (target, value) {
        (Value::Object(m), Some(v)) => {
            m.insert(key.to_string(), v);
        }
        (Value::Object(m), None) => {
            m.remove(key);
        }
        (Value::Array(a), Some(v)) => a[key.parse::<usize>().unwrap()] = v,
        _ => panic!("bad path {path}"),
    }
    spec
}

fn faults(list: Value) -> Value {
    let mut spec = with("/template", None);
    spec["faults"] = list;
    spec
}

#[tokio::test]
async fn the_crd_installs_and_becomes_established() {
    let client = ControlPlane::shared().client().await;
    let crd = install_crd(&client, &crd_yaml()).await;
    assert_eq!(crd.spec.names.short_names, Some(vec!["chaos".to_string()]));
}

#[tokio::test]
async fn the_multi_failure_example_is_accepted() {
    let (client, ns) = setup().await;
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/multi-failure.yaml")).unwrap();
    let obj: ChaosScenario = serde_yaml::from_str(&yaml).unwrap();
    let api = Api::<ChaosScenario>::namespaced(client, &ns);
    let created = api.create(&PostParams::default(), &obj).await.expect("example accepted");
    assert_eq!(created.spec.template.as_ref().unwrap().0, "multi-failure-2-servers-packet-loss");
    assert_eq!(created.spec.targets.admin_port, 8474);
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/own-client.yaml")).unwrap();
    let obj: ChaosScenario = serde_yaml::from_str(&yaml).unwrap();
    let created = api.create(&PostParams::default(), &obj).await.expect("own-client example accepted");
    let client = created.spec.client.unwrap();
    assert_eq!((client.port, client.preset), (Some(8080), Some(chaoslab_core::api::Preset::Resilience4j)));
}

#[tokio::test]
async fn each_kind_of_client_is_accepted() {
    let (client, ns) = setup().await;
    let api = dynamic_api(&client, &ns);
    let mapping: Value = serde_yaml::from_str(include_str!("../../examples/client-mapping.yaml")).unwrap();
    let clients = [
        json!({"metricsUrl": "http://shop:9090/metrics", "preset": "resilience4j",
            "serverLabels": {"server-0": "redis-a:6379"}}),
        json!({"podSelector": {"matchLabels": {"app": "shop"}}, "port": 9090, "path": "/actuator/prometheus"}),
        json!({"prometheus": {"url": "http://prometheus:9090", "selector": "job=\"shop\""}, "preset": "custom",
            "custom": mapping}),
    ];
    for (i, c) in clients.into_iter().enumerate() {
        let obj = object(&format!("client-{i}"), with("/client", Some(c.clone())));
        let created = api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("{c}: {e}"));
        let spec: ChaosScenarioSpec = serde_json::from_value(created.data["spec"].clone()).unwrap();
        assert_eq!(serde_json::to_value(spec.client.unwrap()).unwrap(), c, "round trip");
    }
}

#[tokio::test]
async fn defaults_are_filled_in_by_the_apiserver() {
    let (client, ns) = setup().await;
    dynamic_api(&client, &ns).create(&PostParams::default(), &object("defaults", valid_spec())).await.unwrap();
    let got = Api::<ChaosScenario>::namespaced(client, &ns).get("defaults").await.unwrap();
    assert_eq!(got.spec.phases.stabilization.to_string(), "30s");
    assert_eq!(got.spec.phases.testing.to_string(), "1m");
    assert_eq!(got.spec.targets.proxy, "backend");
}

#[tokio::test]
async fn invalid_resources_are_rejected_with_a_message_naming_the_field() {
    let (client, ns) = setup().await;
    let api = dynamic_api(&client, &ns);
    let endpoints = |names: &[&str]| -> Value {
        names.iter().map(|n| json!({"name": n, "url": "http://127.0.0.1:8474"})).collect::<Vec<_>>().into()
    };
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "template and faults both set",
            with("/faults", Some(json!([{"target": 0, "down": true}]))),
            &["spec", "set exactly one of spec.template"],
        ),
        ("neither template nor faults", with("/template", None), &["spec", "set exactly one of spec.template"]),
        ("unknown template", with("/template", Some(json!("nope"))), &["spec.template", "Unsupported value"]),
        (
            "unknown toxic type",
            faults(json!([{"target": 0, "toxics": [{"type": "explode"}]}])),
            &["spec.faults[0].toxics[0].type", "Unsupported value"],
        ),
        (
            // The operator's targets are toxiproxy-servers; packetLoss is how to ask for it.
            "chaoslab's own toxic type as a custom toxic",
            faults(json!([{"target": 0, "toxics": [{"type": "packet_loss", "attributes": {}}]}])),
            &["spec.faults[0].toxics[0].type", "Unsupported value"],
        ),
        (
            "unknown stream",
            faults(json!([{"target": 0, "toxics": [{"type": "bandwidth", "stream": "sideways"}]}])),
            &["spec.faults[0].toxics[0].stream", "Unsupported value"],
        ),
        (
            "zero duration",
            with("/phases", Some(json!({"testing": "0s"}))),
            &["spec.phases.testing", "greater than zero"],
        ),
        ("negative duration", with("/phases", Some(json!({"stabilization": "-5s"}))), &["spec.phases.stabilization"]),
        ("malformed duration", with("/phases", Some(json!({"recovery": "soon"}))), &["spec.phases.recovery"]),
        ("duration without unit", with("/phases", Some(json!({"recovery": "30"}))), &["spec.phases.recovery"]),
        (
            "percent 150",
            faults(json!([{"target": 0, "packetLoss": {"percent": 150}}])),
            &["spec.faults[0].packetLoss.percent", "100"],
        ),
        (
            "negative latency",
            faults(json!([{"target": 0, "latency": {"delayMs": -1}}])),
            &["spec.faults[0].latency.delayMs", "0"],
        ),
        (
            "negative jitter",
            faults(json!([{"target": 0, "latency": {"delayMs": 5, "jitterMs": -3}}])),
            &["spec.faults[0].latency.jitterMs"],
        ),
        ("empty endpoints list", with("/targets/endpoints", Some(json!([]))), &["spec.targets.endpoints"]),
        (
            "selector and endpoints both set",
            with("/targets/selector", Some(json!({"matchLabels": {"app": "x"}}))),
            &["spec.targets", "set exactly one of targets.selector"],
        ),
        ("neither selector nor endpoints", with("/targets/endpoints", None), &["spec.targets", "set exactly one"]),
        (
            "duplicate fault targets",
            faults(json!([{"target": 1, "down": true}, {"target": 1, "latency": {"delayMs": 5}}])),
            &["spec.faults", "only one fault"],
        ),
        (
            "wrong type for percent",
            faults(json!([{"target": 0, "packetLoss": {"percent": "lots"}}])),
            &["spec.faults[0].packetLoss.percent", "number"],
        ),
        (
            "wrong type for adminPort",
            with("/targets/adminPort", Some(json!("x"))),
            &["spec.targets.adminPort", "integer"],
        ),
        ("a fault without an effect", faults(json!([{"target": 0}])), &["spec.faults[0]", "at least one effect"]),
        ("negative target index", faults(json!([{"target": -1, "down": true}])), &["spec.faults[0].target"]),
        (
            "toxicity above 1",
            faults(json!([{"target": 0, "toxics": [{"type": "bandwidth", "toxicity": 2}]}])),
            &["spec.faults[0].toxics[0].toxicity"],
        ),
        (
            "an attribute the toxic type does not have",
            faults(json!([{"target": 0, "toxics": [{"type": "bandwidth", "attributes": {"latency": 5}}]}])),
            &["spec.faults[0].toxics[0]", "an attribute this toxic type does not read"],
        ),
        (
            "duplicate endpoint names",
            with("/targets/endpoints", Some(endpoints(&["server-0", "server-0"]))),
            &["spec.targets.endpoints[1]", "Duplicate value"],
        ),
        (
            "endpoint url that is not http",
            with("/targets/endpoints", Some(json!([{"name": "a", "url": "ftp://x"}]))),
            &["spec.targets.endpoints[0].url"],
        ),
        ("missing targets", with("/targets", None), &["spec.targets", "Required value"]),
        (
            "client with two sources",
            with("/client", Some(json!({"metricsUrl": "http://c/metrics", "prometheus": {"url": "http://p"}}))),
            &["spec.client", "set exactly one of client.metricsUrl"],
        ),
        ("client with no source", with("/client", Some(json!({"preset": "resilience4j"}))), &["spec.client"]),
        (
            "client pods without a port",
            with("/client", Some(json!({"podSelector": {"matchLabels": {"app": "shop"}}}))),
            &["spec.client", "needs client.port"],
        ),
        (
            "custom preset without a mapping",
            with("/client", Some(json!({"metricsUrl": "http://c/metrics", "preset": "custom"}))),
            &["spec.client", "client.custom"],
        ),
        (
            "unknown preset",
            with("/client", Some(json!({"metricsUrl": "http://c/metrics", "preset": "hystrix"}))),
            &["spec.client.preset", "Unsupported value"],
        ),
        (
            "custom mapping without requests",
            with(
                "/client",
                Some(json!({"metricsUrl": "http://c/metrics", "preset": "custom",
                    "custom": {"serverLabel": "s", "requests": []}})),
            ),
            &["spec.client.custom.requests"],
        ),
        (
            "request series that says no outcome",
            with(
                "/client",
                Some(json!({"metricsUrl": "http://c/metrics", "preset": "custom",
                    "custom": {"serverLabel": "s", "requests": [{"metric": "calls_total"}]}})),
            ),
            &["spec.client.custom.requests[0]", "set outcomeLabel"],
        ),
        (
            "adminPort out of range",
            with("/targets/adminPort", Some(json!(70000))),
            &["spec.targets.adminPort", "65535"],
        ),
    ];
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for (i, (what, spec, expected)) in cases.into_iter().enumerate() {
        match api.create(&PostParams::default(), &object(&format!("bad-{i}"), spec)).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(e)) => {
                let missing: Vec<_> = expected.iter().filter(|s| !e.message.contains(**s)).collect();
                if e.code != 422 || !missing.is_empty() {
                    failures.push(format!("{what}: code {} message {:?} lacks {missing:?}", e.code, e.message));
                }
            }
            Err(other) => failures.push(format!("{what}: {other}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn kubectl_get_chaos_prints_phase_template_verdict_and_age() {
    let (client, ns) = setup().await;
    dynamic_api(&client, &ns).create(&PostParams::default(), &object("cols", valid_spec())).await.unwrap();
    let status = json!({"status": {"phase": "Testing", "verdict": "Passed"}});
    dynamic_api(&client, &ns).patch_status("cols", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let (ok, out, err) = ControlPlane::shared().kubectl(&["get", "chaos", "-n", &ns], None);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "TEMPLATE", "VERDICT", "AGE"], "{out}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["cols", "Testing", "multi-failure-2-servers-packet-loss", "Passed"], "{out}");
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    let (client, ns) = setup().await;
    let api = Api::<ChaosScenario>::namespaced(client, &ns);
    let mut obj: ChaosScenario = serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario",
        "metadata": {"name": "st"}, "spec": valid_spec(),
        "status": {"phase": "Completed"}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.status, None, "status in a create is dropped");

    obj.metadata.resource_version = created.metadata.resource_version.clone();
    obj.status = Some(ChaosScenarioStatus { phase: Some(Phase::Completed), ..Default::default() });
    let replaced = api.replace("st", &PostParams::default(), &obj).await.unwrap();
    assert_eq!(replaced.status, None, "status in an update of the main resource is ignored");

    let patch = json!({"status": {"phase": "Completed", "verdict": "Passed"}});
    let patched = api.patch_status("st", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let status = patched.status.unwrap();
    assert_eq!((status.phase, status.verdict), (Some(Phase::Completed), Some(Verdict::Passed)));

    let bad = json!({"status": {"phase": "Exploded"}});
    let err = api.patch_status("st", &PatchParams::default(), &Patch::Merge(&bad)).await.unwrap_err();
    assert!(err.to_string().contains("status.phase"), "{err}");
}

#[tokio::test]
async fn all_scenarios_example_holds_the_whole_catalog_and_is_accepted() {
    let (client, ns) = setup().await;
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/all-scenarios.yaml")).unwrap();
    let api = Api::<ChaosScenario>::namespaced(client, &ns);
    let mut templates = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let obj = ChaosScenario::deserialize(doc).expect("a ChaosScenario");
        templates.push(obj.spec.template.clone().expect("uses a template").0);
        api.create(&PostParams::default(), &obj).await.expect("accepted");
    }
    let catalog: Vec<&str> = chaoslab_core::catalog::scenarios().iter().map(|s| s.name).collect();
    assert_eq!(templates, catalog, "examples/all-scenarios.yaml lists the catalog in order");
}
