//! Resolving a scenario's targets: the Toxiproxies it drives, in target order, and what identifies
//! a proxy across spellings of its address.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant},
};

use chaoslab_core::api::{ChaosScenario, TargetStatus, Targets};
use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::LabelSelector};
use kube::{Api, Client, ResourceExt, api::ListParams};

use crate::error::{Kind, Problem};

/// One Toxiproxy proxy the scenario drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Pod name, or the endpoint's name.
    pub name: String,
    /// Toxiproxy admin URL.
    pub url: String,
    pub proxy: String,
    /// The pod's uid, for selector targets.
    pub pod_uid: Option<String>,
}

/// The keys that identify one proxy: `ip:port#proxy` for every address the admin URL's host
/// resolves to, so that `localhost`, `127.0.0.1` and a DNS name of a pod's IP are the same proxy.
/// A host that does not resolve (within 2 s) keeps its spelled key.
pub async fn identities(url: &str, proxy: &str) -> BTreeSet<String> {
    let Ok(parsed) = reqwest::Url::parse(url) else { return [format!("{url}#{proxy}")].into() };
    let host = parsed.host_str().unwrap_or_default().trim_matches(['[', ']']).to_ascii_lowercase();
    let port = parsed.port_or_known_default().unwrap_or(0);
    let ips = addresses(&host, port).await;
    if ips.is_empty() {
        return [format!("{host}:{port}#{proxy}")].into();
    }
    ips.iter().map(|ip| format!("{}:{port}#{proxy}", ip.to_canonical())).collect()
}

/// How long a host's addresses are reused: admission looks up every other scenario's targets, so
/// 500 runs on named targets would otherwise mean 250,000 lookups.
const RESOLVED_FOR: Duration = Duration::from_secs(5);

type Resolved = HashMap<(String, u16), (Instant, Vec<IpAddr>)>;

/// The addresses `host` resolves to (itself if it is one), empty if it does not resolve in 2 s.
async fn addresses(host: &str, port: u16) -> Vec<IpAddr> {
    static CACHE: LazyLock<Mutex<Resolved>> = LazyLock::new(Mutex::default);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    let key = (host.to_string(), port);
    if let Some((at, ips)) = CACHE.lock().expect("resolved").get(&key)
        && at.elapsed() < RESOLVED_FOR
    {
        return ips.clone();
    }
    let ips: Vec<IpAddr> =
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
            _ => vec![],
        };
    let mut cache = CACHE.lock().expect("resolved");
    cache.retain(|_, (at, _)| at.elapsed() < RESOLVED_FOR);
    cache.insert(key, (Instant::now(), ips.clone()));
    ips
}

/// Whether the pod an entry's Toxiproxy ran in is gone (deleted, or replaced by a new pod of the
/// same name): a Toxiproxy keeps its toxics in memory, so they went with it.
pub async fn pod_gone(client: &Client, ns: &str, entry: &TargetStatus) -> bool {
    let Some(uid) = &entry.pod_uid else { return false };
    // A list by name, not a get: the operator's role lists pods and needs nothing more.
    // From the apiserver's cache (see `resolve`): a pod shown there a moment after it went only
    // keeps the entry until the next call.
    let by_name = ListParams::default().fields(&format!("metadata.name={}", entry.name)).match_any();
    match Api::<Pod>::namespaced(client.clone(), ns).list(&by_name).await {
        Ok(pods) => !pods.items.iter().any(|p| p.metadata.uid.as_ref() == Some(uid)),
        Err(_) => false,
    }
}

/// The key of a selector before it is resolved: scenarios with the same selector will drive the
/// same pods, so they queue in creation order even before either is resolved.
fn selector_key(ns: &str, t: &Targets) -> Option<String> {
    let sel = serde_json::to_string(t.selector.as_ref()?).unwrap_or_default();
    Some(format!("selector:{ns}/{sel}:{}#{}", t.admin_port, t.proxy))
}

/// Every key of what a scenario drives or may drive: the proxies `resolved` now, those its record
/// holds, its spec's endpoints (all by [`identities`]) and its selector.
pub async fn keys(ns: &str, spec: &Targets, record: &[TargetStatus], resolved: &[Target]) -> BTreeSet<String> {
    let mut proxies: BTreeSet<(String, String)> = BTreeSet::new();
    for e in spec.endpoints.iter().flatten() {
        proxies
            .insert((e.url.trim_end_matches('/').to_string(), e.proxy.clone().unwrap_or_else(|| spec.proxy.clone())));
    }
    proxies.extend(record.iter().map(|e| (e.endpoint.clone(), e.proxy.clone())));
    proxies.extend(resolved.iter().map(|t| (t.url.clone(), t.proxy.clone())));
    let mut keys: BTreeSet<String> = selector_key(ns, spec).into_iter().collect();
    for (url, proxy) in proxies {
        keys.extend(identities(&url, &proxy).await);
    }
    keys
}

/// The [`keys`] of each scenario seen, by uid, with the resource version they were computed at:
/// admission needs those of every other scenario, and they change only with its spec or status.
#[derive(Default)]
pub struct KnownKeys(Mutex<HashMap<String, Versioned>>);

/// A scenario's keys, and the resource version they were computed at.
type Versioned = (String, Arc<BTreeSet<String>>);

impl KnownKeys {
    /// The keys of what `s` drives or may drive, from its spec and record. Shared, not copied: an
    /// admission asks for every other scenario's, under the admission lock.
    pub async fn of(&self, s: &ChaosScenario) -> Arc<BTreeSet<String>> {
        let (uid, version) = (s.metadata.uid.as_deref().unwrap_or_default(), s.metadata.resource_version.as_deref());
        if let Some((at, keys)) = self.0.lock().expect("keys").get(uid)
            && Some(at.as_str()) == version
        {
            return keys.clone();
        }
        let record = s.status.as_ref().map(|st| st.targets.as_slice()).unwrap_or_default();
        let keys = Arc::new(keys(&s.namespace().unwrap_or_default(), &s.spec.targets, record, &[]).await);
        self.0.lock().expect("keys").insert(uid.to_string(), (version.unwrap_or_default().to_string(), keys.clone()));
        keys
    }

    pub fn forget(&self, uid: &str) {
        self.0.lock().expect("keys").remove(uid);
    }
}

fn label_selector(t: &Targets) -> Result<String, String> {
    label_query(t.selector.as_ref().ok_or("no selector")?, "spec.targets.selector")
}

/// A label selector as the list call's query, e.g. `app=x,tier in (a,b)`; `field` names it in errors.
pub fn label_query(sel: &LabelSelector, field: &str) -> Result<String, String> {
    let mut parts: Vec<String> = sel.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => return Err(format!("{field}: unknown operator {op:?} for key {:?}", e.key)),
        });
    }
    Ok(parts.join(","))
}

/// `http://ip:port`, IPv6 bracketed.
pub fn pod_url(ip: &str, port: i32) -> String {
    if ip.contains(':') { format!("http://[{ip}]:{port}") } else { format!("http://{ip}:{port}") }
}

/// The targets of `s`: pods matching the selector in its namespace sorted by name, or its endpoints.
/// The problem says which target and why.
pub async fn resolve(client: &Client, s: &ChaosScenario) -> Result<Vec<Target>, Problem> {
    let t = &s.spec.targets;
    if let Some(eps) = &t.endpoints {
        return Ok(eps
            .iter()
            .map(|e| Target {
                name: e.name.clone(),
                url: e.url.trim_end_matches('/').to_string(),
                proxy: e.proxy.clone().unwrap_or_else(|| t.proxy.clone()),
                pod_uid: None,
            })
            .collect());
    }
    let ns = s.metadata.namespace.as_deref().unwrap_or("default");
    let selector = label_selector(t).map_err(|e| Problem::new(Kind::SpecInvalid, e))?;
    // Served from the apiserver's watch cache (resourceVersion 0), not read through from etcd: a
    // reconcile lists its pods every sample, and a consistent read costs the apiserver an etcd round
    // trip and waits out any etcd stall (a slow disk). A pod the cache shows late is found next sample.
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector).match_any())
        .await
        .map_err(|e| Problem::new(Kind::KubeApi, format!("listing pods matching {selector:?} in {ns}: {e}")))?;
    let mut pods: Vec<Pod> = pods.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if pods.is_empty() {
        return Err(Problem::new(
            Kind::TargetsMissing,
            format!("no pods match spec.targets.selector ({selector}) in namespace {ns}: check the pods' labels"),
        ));
    }
    pods.iter()
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).ok_or_else(|| {
                Problem::new(Kind::TargetsMissing, format!("target pod {name} has no IP yet (is it running?)"))
            })?;
            Ok(Target {
                url: pod_url(&ip, t.admin_port),
                name,
                proxy: t.proxy.clone(),
                pod_uid: p.metadata.uid.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

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
        assert_eq!(pod_url("fd00::1", 8474), "http://[fd00::1]:8474");
        assert_eq!(pod_url("127.0.0.2", 8474), "http://127.0.0.2:8474");
    }

    #[test]
    fn same_selector_same_key() {
        let sel =
            LabelSelector { match_labels: Some([("a".to_string(), "b".to_string())].into()), match_expressions: None };
        assert_eq!(selector_key("ns", &targets(sel.clone())), selector_key("ns", &targets(sel.clone())));
        assert_ne!(selector_key("ns", &targets(sel.clone())), selector_key("other", &targets(sel)));
    }

    #[tokio::test]
    async fn one_proxy_has_one_identity_however_its_address_is_spelled() {
        let by_ip = identities("http://127.0.0.1:8474", "backend").await;
        assert_eq!(by_ip, ["127.0.0.1:8474#backend".to_string()].into());
        let by_name = identities("http://localhost:8474/", "backend").await;
        assert!(!by_name.is_disjoint(&by_ip), "localhost is 127.0.0.1: {by_name:?}");
        assert!(identities("http://127.0.0.1:8474", "other").await.is_disjoint(&by_ip), "another proxy");
        assert!(identities("http://127.0.0.1:8475", "backend").await.is_disjoint(&by_ip), "another port");
        assert_eq!(identities("http://[::ffff:127.0.0.1]:8474", "backend").await, by_ip);
        let unknown = identities("http://no-such-host.invalid:8474", "backend").await;
        assert_eq!(unknown, ["no-such-host.invalid:8474#backend".to_string()].into());
    }
}
