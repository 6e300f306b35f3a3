//! The kube-rs Controller: watches ChaosScenarios, runs [`reconcile`] under a finalizer.

use std::{
    cell::Cell,
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chaoslab_core::api::ChaosScenario;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Resource, ResourceExt,
    core::{NamespaceResourceScope, PartialObjectMeta},
    runtime::{
        Controller, Predicate, PredicateConfig, WatchStreamExt,
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
        predicates,
        reflector::{self, ObjectRef},
        utils::Backoff,
        watcher,
    },
};
use tokio::sync::Mutex;

use crate::{
    boundaries::Boundaries,
    context::{Config, Context},
    error::Error,
    events::{Events, Reporter},
    finished, memory,
    metadata_patches::{self, Change, FINALIZER, MetadataPatches},
    metrics::{Metrics, SLOW_SECONDS, scenario_key},
    reconcile,
    sampler::Samplers,
    status_writer::Writers,
    stop::Stops,
};

/// How long until a failed reconcile is tried again: a blocked cleanup waits longer, since it
/// waits for a Toxiproxy to come back (and publishes an Event each time).
fn retry_after(err: &Error) -> Duration {
    use kube::runtime::finalizer::Error as F;
    match err {
        Error::Finalizer(e) if matches!(**e, F::CleanupFailed(Error::CleanupBlocked(_))) => Duration::from_secs(10),
        _ => Duration::from_secs(2),
    }
}

pub fn api<K: Resource<DynamicType = (), Scope = NamespaceResourceScope>>(
    client: &Client,
    namespace: Option<&str>,
) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn reconcile(obj: Arc<ChaosScenario>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = scenario_key(&*obj);
    tracing::debug!(scenario = %key, "reconciling");
    if obj.meta().deletion_timestamp.is_none() && !obj.finalizers().iter().any(|f| f == FINALIZER) {
        // Nothing happens before the finalizer is on (cleanup needs it); adding it here, not by
        // kube's helper below, keeps the apiserver's round trip out of the reconcile. The patch's
        // watch event brings the scenario back; the requeue is for a patch that was refused.
        ctx.metadata.submit(&obj, Change::AddFinalizer);
        ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
        return Ok(Action::requeue(metadata_patches::RETRY));
    }
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<ChaosScenario> = Api::namespaced(ctx.client.clone(), &ns);
    let (result, waited) = reconcile::WAITED
        .scope(Cell::new(Duration::ZERO), async {
            let result = finalizer(&api, FINALIZER, obj, |event| async {
                match event {
                    Finalizer::Apply(o) => reconcile::apply(o, ctx.clone()).await,
                    Finalizer::Cleanup(o) => reconcile::cleanup(o, ctx.clone()).await,
                }
            })
            .await;
            (result, reconcile::WAITED.with(Cell::get))
        })
        .await;
    let result = result.map_err(|e| Error::Finalizer(Box::new(e)));
    // The wait for a phase boundary is not the reconcile's work (see `WAKE_AHEAD`).
    let took = started.elapsed().saturating_sub(waited).as_secs_f64();
    ctx.metrics.reconcile_duration.observe(took);
    // With what comes next: a phase change that began late follows a requeue that was too long.
    let (took_ms, ok, next) = (took * 1e3, result.is_ok(), result.as_ref().ok());
    if took >= SLOW_SECONDS {
        // Its next phase change may be as late: see the "slow call" lines for which call it was.
        tracing::warn!(scenario = %key, took_ms, ok, ?next, "slow reconcile");
    } else {
        tracing::debug!(scenario = %key, took_ms, ok, ?next, "reconciled");
    }
    ctx.metrics.reconciles.with_label_values(&[if result.is_ok() { "ok" } else { "error" }]).inc();
    if let Err(e) = &result {
        ctx.metrics.errors.with_label_values(&[e.metric_label()]).inc();
    }
    result
}

/// How soon a failed watch is tried again: 0.25 s, doubling, at most 2 s, and from 0.25 s again once
/// an event comes. kube's default (0.8 s doubling up to 30 s) left the watches (new scenarios,
/// deletions, emergency stops) blind for 11 s after a 3.5 s apiserver restart.
struct WatchRetry(Duration);

impl WatchRetry {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(2);
}

impl Default for WatchRetry {
    fn default() -> Self {
        Self(Self::FIRST)
    }
}

impl Iterator for WatchRetry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.0;
        self.0 = (now * 2).min(Self::MAX);
        Some(now)
    }
}

impl Backoff for WatchRetry {
    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// What wakes a scenario's reconcile: a new spec, deletion (it bumps the generation), finalizers,
/// and annotations (the abandon-faults one). Not status: the operator writes it itself at every
/// phase, and each write woke a reconcile with nothing to do; a run's own timers bring it back
/// when its next boundary comes.
fn worth_a_reconcile() -> impl Predicate<ChaosScenario> {
    predicates::generation.combine(predicates::finalizers).combine(predicates::annotations)
}

fn error_policy(obj: Arc<ChaosScenario>, err: &Error, _ctx: Arc<Context>) -> Action {
    let after = retry_after(err);
    tracing::warn!(scenario = %scenario_key(&*obj), "reconcile failed, retrying in {after:?}: {err}");
    Action::requeue(after)
}

fn namespaces(client: &Client) -> Api<Namespace> {
    Api::all(client.clone())
}

/// All namespaces, or only the watched one.
fn namespace_watch(config: &Config) -> watcher::Config {
    match &config.namespace {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let samplers = Samplers::new(config.sample_interval, Some(client.clone())).map_err(|e| {
        anyhow::anyhow!(
            "cannot build the HTTP client that reads spec.client's metrics: {e:?} \
             (the system needs CA certificates, e.g. /etc/ssl/certs/ca-certificates.crt)"
        )
    })?;
    let toxiproxy_http = chaoslab_toxiproxy::Client::http(config.toxiproxy_policy)
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for Toxiproxy: {e:?}"))?;
    let scenarios_api: Api<ChaosScenario> = api(&client, config.namespace.as_deref());
    let stops = Arc::new(Stops::default());
    let (store, writer) = reflector::store();
    // managedFields are most of a scenario's metadata and nothing here reads them.
    let scenarios = watcher(scenarios_api, finished::unfinished())
        .inspect_ok(|e| {
            if matches!(e, watcher::Event::InitDone) {
                memory::release_free_heap();
            }
        })
        .modify(|s| s.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(worth_a_reconcile(), PredicateConfig::default());
    let controller = Controller::for_stream(scenarios, store.clone());
    let controller = controller
        .watches(namespaces(&client), namespace_watch(&config), {
            let (stops, store) = (stops.clone(), store.clone());
            move |ns: Namespace| {
                // The watch keeps the stops current and wakes the namespace's scenarios that have
                // not ended (a stop changes nothing for the others, and they can be thousands).
                stops.observe(&ns);
                let name = ns.name_any();
                let scenarios = store.state();
                let ended =
                    |s: &ChaosScenario| s.status.as_ref().and_then(|st| st.phase).is_some_and(|p| p.is_terminal());
                scenarios
                    .iter()
                    .filter(|s| s.namespace().as_deref() == Some(name.as_str()) && !ended(s))
                    .map(|s| ObjectRef::from_obj(&**s))
                    .collect::<Vec<_>>()
            }
        })
        .trigger_backoff(WatchRetry::default())
        .graceful_shutdown_on(shutdown);
    let controller_name = "chaoslab-operator".to_string();
    let instance = std::env::var("POD_NAME").unwrap_or_else(|_| controller_name.clone());
    let reporter = Reporter { controller: controller_name, instance };
    let boundaries = Arc::new(Boundaries::default());
    let ctx = Arc::new(Context {
        events: Events::new(client.clone(), reporter, metrics.clone(), boundaries.clone()),
        samplers,
        writers: Writers::new(client.clone(), store.clone(), metrics.clone(), boundaries.clone()),
        metadata: MetadataPatches::new(client.clone(), metrics.clone(), boundaries.clone()),
        boundaries,
        store,
        stops,
        toxiproxy_http,
        admitted: Mutex::new(HashMap::new()),
        known_keys: Default::default(),
        verifiers: std::sync::Mutex::new(HashMap::new()),
        client,
        config,
        metrics,
    });
    let metadata: Api<PartialObjectMeta<ChaosScenario>> = api(&ctx.client, ctx.config.namespace.as_deref());
    let series =
        tokio::spawn(finished::finished_series(metadata, ctx.metrics.clone(), ctx.config.finished_series_kept));
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("controller: {e}");
            }
        })
        .await;
    series.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_watch_is_retried_within_two_seconds_and_quickly_again_after_an_event() {
        let mut retry = WatchRetry::default();
        let ms: Vec<u128> = retry.by_ref().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 2000, 2000]);
        retry.reset();
        assert_eq!(retry.next(), Some(Duration::from_millis(250)));
    }
}
