//! Where a running scenario's client metrics come from (spec.client): one URL, every Ready pod of
//! a selector, or a Prometheus; one reading of them, replica by replica.

use chaoslab_core::{api::ClientSpec, client_metrics::Reader};
use chaoslab_reading::{Reading, scrape_all};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::ListParams};

use crate::targets::{label_query, pod_url};

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// metricsUrl or prometheus: read as `chaoslab run` reads them.
    Direct(chaoslab_reading::Source),
    Pods {
        ns: String,
        selector: String,
        port: i32,
        path: String,
    },
}

impl Source {
    /// The source of a scenario in namespace `ns`; the apiserver's rules make exactly one be set.
    pub fn of(ns: &str, client: &ClientSpec) -> Result<Self, String> {
        if let Some(url) = &client.metrics_url {
            return Ok(Self::Direct(chaoslab_reading::Source::Urls(vec![url.clone()])));
        }
        if let Some(sel) = &client.pod_selector {
            return Ok(Self::Pods {
                ns: ns.into(),
                selector: label_query(sel, "spec.client.podSelector")?,
                port: client.port.ok_or("spec.client.podSelector needs spec.client.port")?,
                path: client.path.clone().unwrap_or_else(|| "/metrics".into()),
            });
        }
        if let Some(p) = &client.prometheus {
            let (url, selector) = (p.url.clone(), p.selector.clone());
            return Ok(Self::Direct(chaoslab_reading::Source::Prometheus { url, selector }));
        }
        Err("spec.client sets none of metricsUrl, podSelector, prometheus".into())
    }

    pub async fn read(&self, http: &reqwest::Client, kube: Option<&Client>, reader: &Reader) -> Reading {
        match self {
            Self::Direct(source) => source.read(http, reader).await,
            Self::Pods { ns, selector, port, path } => {
                let Some(kube) = kube else { return failed("no Kubernetes client to list the client's pods".into()) };
                match ready_pods(kube, ns, selector).await {
                    Ok(pods) if pods.is_empty() => {
                        failed(format!("no Ready pod matches spec.client.podSelector ({selector}) in {ns}"))
                    }
                    Ok(pods) => {
                        let replicas: Vec<(String, String)> = pods
                            .into_iter()
                            .map(|(name, ip)| (name, format!("{}{path}", pod_url(&ip, *port))))
                            .collect();
                        scrape_all(http, reader, &replicas).await
                    }
                    Err(e) => failed(e),
                }
            }
        }
    }
}

fn failed(error: String) -> Reading {
    Reading { errors: vec![error], ..Default::default() }
}

/// (name, IP) of the Ready, not terminating pods matching `selector` in `ns`.
async fn ready_pods(kube: &Client, ns: &str, selector: &str) -> Result<Vec<(String, String)>, String> {
    let pods = Api::<Pod>::namespaced(kube.clone(), ns)
        // From the apiserver's cache, as the targets are (see `targets::resolve`).
        .list(&ListParams::default().labels(selector).match_any())
        .await
        .map_err(|e| format!("listing the client's pods ({selector}) in {ns}: {e}"))?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
        .filter_map(|p| Some((p.metadata.name?, p.status?.pod_ip?)))
        .collect())
}

fn ready(p: &Pod) -> bool {
    let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}
