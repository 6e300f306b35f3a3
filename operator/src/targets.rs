//! Resolving a scenario's targets: the Toxiproxies it drives, in target order.

use std::collections::BTreeSet;

use chaoslab_core::api::{ChaosScenario, Targets};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::ListParams};

/// One Toxiproxy proxy the scenario drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Pod name, or the endpoint's name.
    pub name: String,
    /// Toxiproxy admin URL.
    pub url: String,
    pub proxy: String,
}

/// Keys that identify a scenario's targets before they are resolved (from the spec alone), so
/// scenarios that have not been reconciled yet still queue in creation order.
pub fn spec_keys(ns: &str, t: &Targets) -> BTreeSet<String> {
    match (&t.endpoints, &t.selector) {
        (Some(eps), _) => eps.iter().map(|e| format!("{}#{}", e.url, e.proxy.as_deref().unwrap_or(&t.proxy))).collect(),
        (None, Some(sel)) => {
            let sel = serde_json::to_string(sel).unwrap_or_default();
            [format!("selector:{ns}/{sel}:{}#{}", t.admin_port, t.proxy)].into()
        }
        (None, None) => BTreeSet::new(),
    }
}

/// All keys of a scenario: from its spec and from the targets its status recorded.
pub fn scenario_keys(s: &ChaosScenario) -> BTreeSet<String> {
    let ns = s.metadata.namespace.as_deref().unwrap_or_default();
    let mut keys = spec_keys(ns, &s.spec.targets);
    if let Some(st) = &s.status {
        keys.extend(st.targets.iter().map(|t| format!("{}#{}", t.endpoint, t.proxy)));
    }
    keys
}

fn label_selector(t: &Targets) -> Result<String, String> {
    let sel = t.selector.as_ref().ok_or("no selector")?;
    let mut parts: Vec<String> = sel.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => return Err(format!("spec.targets.selector: unknown operator {op:?} for key {:?}", e.key)),
        });
    }
    Ok(parts.join(","))
}

fn admin_url(ip: &str, port: i32) -> String {
    if ip.contains(':') { format!("http://[{ip}]:{port}") } else { format!("http://{ip}:{port}") }
}

/// The targets of `s`: pods matching the selector in its namespace sorted by name, or its endpoints.
/// The error says which target and why.
pub async fn resolve(client: &Client, s: &ChaosScenario) -> Result<Vec<Target>, String> {
    let t = &s.spec.targets;
    if let Some(eps) = &t.endpoints {
        return Ok(eps
            .iter()
            .map(|e| Target {
                name: e.name.clone(),
                url: e.url.trim_end_matches('/').to_string(),
                proxy: e.proxy.clone().unwrap_or_else(|| t.proxy.clone()),
            })
            .collect());
    }
    let ns = s.metadata.namespace.as_deref().unwrap_or("default");
    let selector = label_selector(t)?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("listing pods matching {selector:?} in {ns}: {e}"))?;
    let mut pods: Vec<Pod> = pods.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if pods.is_empty() {
        return Err(format!("no pods match spec.targets.selector ({selector}) in namespace {ns}"));
    }
    pods.iter()
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let ip = p
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .ok_or_else(|| format!("target pod {name} has no IP yet (is it running?)"))?;
            Ok(Target { url: admin_url(&ip, t.admin_port), name, proxy: t.proxy.clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn targets(sel: LabelSelector) -> Targets {
        Targets { selector: Some(sel), admin_port: 8474, proxy: "backend".into(), endpoints: None }
    }

    #[test]
    fn selectors_become_label_queries() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "x".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert_eq!(label_selector(&targets(sel)).unwrap(), "app=x,tier in (a,b)");
    }

    #[test]
    fn ipv6_pod_ips_are_bracketed() {
        assert_eq!(admin_url("fd00::1", 8474), "http://[fd00::1]:8474");
        assert_eq!(admin_url("127.0.0.2", 8474), "http://127.0.0.2:8474");
    }

    #[test]
    fn same_selector_same_key() {
        let sel =
            LabelSelector { match_labels: Some([("a".to_string(), "b".to_string())].into()), match_expressions: None };
        assert_eq!(spec_keys("ns", &targets(sel.clone())), spec_keys("ns", &targets(sel.clone())));
        assert_ne!(spec_keys("ns", &targets(sel.clone())), spec_keys("other", &targets(sel)));
    }
}
