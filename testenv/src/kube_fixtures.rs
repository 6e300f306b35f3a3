//! Per-test namespaces, the CRD, and Pods that look Ready without a kubelet.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Namespace, Pod},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

/// A fresh namespace name per call: `<prefix>-<pid>-<n>`.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
    name
}

/// Applies a CRD manifest (YAML) and waits until it is Established.
pub async fn install_crd(client: &Client, yaml: &str) -> CustomResourceDefinition {
    let crd: CustomResourceDefinition = serde_yaml::from_str(yaml).expect("CRD YAML");
    let name = crd.metadata.name.clone().expect("CRD name");
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    api.patch(&name, &PatchParams::apply("chaoslab-testenv").force(), &Patch::Apply(&crd)).await.expect("apply CRD");
    for _ in 0..200 {
        let got = api.get(&name).await.expect("get CRD");
        let established = got
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        if established {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("CRD {name} did not become Established within 10s");
}

/// Creates a Pod and sets its status as a kubelet would: Running, Ready, with `pod_ip`
/// (a loopback address where a real process listens, so the operator's real path works).
pub async fn ready_pod(client: &Client, ns: &str, name: &str, labels: BTreeMap<String, String>, pod_ip: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "backend", "image": "redis:7"}]}
    }))
    .unwrap();
    run_pod(client, ns, pod, pod_ip).await
}

/// Creates `pod` (e.g. from a rendered pod template) and makes it Running and Ready at `pod_ip`.
pub async fn run_pod(client: &Client, ns: &str, pod: Pod, pod_ip: &str) -> Pod {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let name = pod.metadata.name.clone().expect("pod name");
    api.create(&PostParams::default(), &pod).await.expect("create pod");
    let status = json!({"status": {
        "phase": "Running",
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "conditions": [{"type": "Ready", "status": "True"}]
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("set pod status")
}

/// The shared control plane's client, with the ChaosScenario CRD installed, and a fresh namespace
/// `<prefix>-<pid>-<n>`: where every Kubernetes test starts.
pub async fn scenario_namespace(prefix: &str) -> (Client, String) {
    let client = crate::ControlPlane::shared().client().await;
    install_crd(&client, &chaoslab_core::api::crd_yaml()).await;
    let ns = namespace(&client, prefix).await;
    (client, ns)
}
