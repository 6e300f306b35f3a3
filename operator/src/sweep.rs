//! At start-up: remove chaoslab toxics left by scenarios that are gone or not in Testing
//! (a crash between a phase change and its cleanup, a deletion while the operator was down).

use std::collections::BTreeSet;

use chaoslab_core::{
    api::{ChaosScenario, Phase},
    faults::{DesiredProxy, owner_of, owner_tag},
};
use chaoslab_toxiproxy::{Client as Toxiproxy, RetryPolicy};
use kube::{Api, ResourceExt, api::ListParams};

use crate::finished::LIST_PAGE;

/// Sweeps the Toxiproxies that any scenario's status lists. Returns how many toxics it removed.
pub async fn sweep(api: &Api<ChaosScenario>, policy: RetryPolicy) -> Result<usize, kube::Error> {
    let (mut testing, mut proxies) = (BTreeSet::new(), BTreeSet::new());
    // By pages (see LIST_PAGE): finished scenarios are tens of KiB each.
    let mut page = ListParams::default().limit(LIST_PAGE);
    loop {
        let list = api.list(&page).await?;
        for s in &list.items {
            let Some(st) = &s.status else { continue };
            if st.phase == Some(Phase::Testing) {
                testing.insert(owner_tag(&s.uid().unwrap_or_default()));
            }
            proxies.extend(st.targets.iter().map(|t| (t.endpoint.clone(), t.proxy.clone())));
        }
        match list.metadata.continue_ {
            Some(token) if !token.is_empty() => page = page.continue_token(&token),
            _ => break,
        }
    }
    // One HTTP client for every proxy: building one loads the CA store, and a cluster's finished
    // scenarios can list thousands of proxies.
    let http = match Toxiproxy::http(policy) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("sweep: cannot build the HTTP client for Toxiproxy: {e}");
            return Ok(0);
        }
    };
    let mut removed = 0;
    for (url, proxy) in proxies {
        let Ok(client) = Toxiproxy::sharing(&url, policy, http.clone()) else { continue };
        let toxics = match client.toxics(&proxy).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("sweep: {e}");
                continue;
            }
        };
        let stale: BTreeSet<&str> =
            toxics.iter().filter_map(|t| owner_of(&t.name)).filter(|o| !testing.contains(*o)).collect();
        // Released the way their own run would: a proxy such a run disabled is enabled again.
        for owner in stale {
            match client.converge(&proxy, &DesiredProxy::release(owner)).await {
                Ok(report) => {
                    removed += report.removed.len();
                    tracing::info!(%url, %proxy, %owner, removed = ?report.removed, "sweep: released leftover faults");
                }
                Err(e) => tracing::warn!("sweep: {e}"),
            }
        }
    }
    Ok(removed)
}
