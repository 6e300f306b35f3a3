//! The kube-rs Controller: watches ChaosScenarios, runs [`reconcile`] under a finalizer.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use chaoslab_core::api::ChaosScenario;
use chaoslab_toxiproxy::RetryPolicy;
use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller,
        controller::Action,
        events::{Recorder, Reporter},
        finalizer::{Event as Finalizer, finalizer},
        reflector::Store,
        watcher,
    },
};
use tokio::sync::Mutex;

use crate::{metrics::Metrics, reconcile, sampler::Samplers};

pub const FINALIZER: &str = "chaoslab.dev/cleanup";

#[derive(Clone, Debug)]
pub struct Config {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    pub sample_interval: Duration,
    /// How often a Queued scenario looks again.
    pub queue_poll: Duration,
    pub toxiproxy_policy: RetryPolicy,
    /// Whether this process still leads: ask `holds_for` before writing to a Toxiproxy.
    pub leadership: crate::leader::Leadership,
}

pub struct Context {
    pub client: Client,
    pub config: Config,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub samplers: Samplers,
    pub store: Store<ChaosScenario>,
    /// The proxies of the runs this process admitted, by uid, whose status the cache may not show
    /// yet (queue decisions).
    pub admitted: Mutex<HashMap<String, BTreeSet<String>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The lease runs out before a Toxiproxy call could end: nothing was done.
    #[error("not acting: this replica's lease runs out")]
    NotLeading,
    /// A deleted scenario's faults could not all be removed: its finalizer stays.
    #[error("{0}")]
    CleanupBlocked(String),
}

/// How long until a failed reconcile is tried again: a blocked cleanup waits longer, since it
/// waits for a Toxiproxy to come back (and publishes an Event each time).
fn retry_after(err: &Error) -> Duration {
    use kube::runtime::finalizer::Error as F;
    match err {
        Error::Finalizer(e) if matches!(**e, F::CleanupFailed(Error::CleanupBlocked(_))) => Duration::from_secs(10),
        _ => Duration::from_secs(2),
    }
}

pub fn api(client: &Client, namespace: Option<&str>) -> Api<ChaosScenario> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn reconcile(obj: Arc<ChaosScenario>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_duration.start_timer();
    let key = reconcile::scenario_key(&obj);
    tracing::debug!(scenario = %key, "reconciling");
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<ChaosScenario> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(o) => reconcile::apply(o, ctx.clone()).await,
            Finalizer::Cleanup(o) => reconcile::cleanup(o, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let took = timer.stop_and_record();
    tracing::debug!(scenario = %key, took_ms = took * 1e3, ok = result.is_ok(), "reconciled");
    ctx.metrics.reconciles.with_label_values(&[if result.is_ok() { "ok" } else { "error" }]).inc();
    result
}

fn error_policy(obj: Arc<ChaosScenario>, err: &Error, _ctx: Arc<Context>) -> Action {
    let after = retry_after(err);
    tracing::warn!(scenario = %reconcile::scenario_key(&obj), "reconcile failed, retrying in {after:?}: {err}");
    Action::requeue(after)
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let samplers = Samplers::new(config.sample_interval).map_err(|e| {
        anyhow::anyhow!(
            "cannot build the HTTP client that scrapes spec.client.metricsUrl: {e:?} \
             (the system needs CA certificates, e.g. /etc/ssl/certs/ca-certificates.crt)"
        )
    })?;
    let api = api(&client, config.namespace.as_deref());
    let controller = Controller::new(api, watcher::Config::default()).graceful_shutdown_on(shutdown);
    let reporter = Reporter { controller: "chaoslab-operator".into(), instance: std::env::var("POD_NAME").ok() };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        samplers,
        store: controller.store(),
        admitted: Mutex::new(HashMap::new()),
        client,
        config,
        metrics,
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("controller: {e}");
            }
        })
        .await;
    Ok(())
}
