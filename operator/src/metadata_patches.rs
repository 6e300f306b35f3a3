//! The two metadata changes the operator makes to a scenario, off the reconcile's path: its
//! finalizer at creation, and the finished mark at the end (see `finished.rs`).
//!
//! Why: each is an apiserver round trip, 140 ms at the median with 500 runs going, and a reconcile
//! that waited for it held that scenario's reconcile for as long: those two were most of the
//! reconciles over 100 ms. Now a reconcile hands the change over and returns; the change lands in
//! the background, and the watch brings the scenario back (or, once marked, takes it out of the
//! cache). Both patches carry the resource version seen, so a stale one is refused (409) and the
//! next reconcile decides again.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use chaoslab_core::api::ChaosScenario;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use tokio::sync::Semaphore;

use crate::{
    boundaries::Boundaries,
    error::Kind,
    finished::FINISHED,
    metrics::{Call, Metrics, scenario_key},
};

/// The operator's finalizer: a scenario being deleted keeps it until its faults are removed.
pub const FINALIZER: &str = "chaoslab.dev/cleanup";

/// How soon a scenario whose finalizer or finished mark was handed over looks again, in case the
/// patch was refused (when it lands, the watch brings the scenario back at once, or takes it away).
pub const RETRY: Duration = Duration::from_secs(2);

/// Metadata patches in flight at once, for the whole operator (each is a connection to the
/// apiserver, as an Event or a status write is).
pub const IN_FLIGHT: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The operator's finalizer, which cleanup needs, before the run does anything.
    AddFinalizer,
    /// The run needs nothing more (see `finished.rs`).
    MarkFinished,
}

/// The changes being made, one at a time per scenario.
pub struct MetadataPatches {
    client: Client,
    metrics: Metrics,
    in_flight: Arc<Semaphore>,
    boundaries: Arc<Boundaries>,
    /// The uids with a change in flight: a reconcile that comes again meanwhile does not send it twice.
    pending: Arc<Mutex<HashSet<String>>>,
}

impl MetadataPatches {
    pub fn new(client: Client, metrics: Metrics, boundaries: Arc<Boundaries>) -> Self {
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        Self { client, metrics, in_flight, boundaries, pending: Arc::default() }
    }

    /// Makes `change` to `obj` in the background, unless a change to it is in flight already.
    pub fn submit(&self, obj: &ChaosScenario, change: Change) {
        let uid = obj.uid().unwrap_or_default();
        if !self.pending.lock().expect("pending").insert(uid.clone()) {
            return;
        }
        let api: Api<ChaosScenario> = Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        let (obj, metrics, in_flight, pending) =
            (obj.clone(), self.metrics.clone(), self.in_flight.clone(), self.pending.clone());
        let boundaries = self.boundaries.clone();
        tokio::spawn(async move {
            if let Ok(_permit) = in_flight.acquire().await {
                boundaries.quiet().await;
                let timer = metrics.time(Call::MetadataPatch);
                let result = match change {
                    Change::AddFinalizer => add_finalizer(&api, &obj).await,
                    Change::MarkFinished => mark_finished(&api, &obj).await,
                };
                drop(timer);
                if let Err(e) = result {
                    // A conflict is the normal answer to a stale change: the scenario's next
                    // reconcile sees the new version and decides again.
                    tracing::debug!(scenario = %scenario_key(&obj), ?change, "metadata patch refused: {e}");
                    metrics.errors.with_label_values(&[Kind::KubeApi.metric_label()]).inc();
                }
            }
            pending.lock().expect("pending").remove(&uid);
        });
    }
}

/// Adds the operator's finalizer to `obj`, at the resource version seen (a merge patch replaces the
/// whole list, so a finalizer added meanwhile by someone else is kept by the 409).
async fn add_finalizer(api: &Api<ChaosScenario>, obj: &ChaosScenario) -> Result<(), kube::Error> {
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": obj.resource_version(),
        "finalizers": finalizers,
    }});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Labels `obj` finished and removes the operator's finalizer, in one patch made at the resource
/// version seen, so that no one else's finalizer is lost.
async fn mark_finished(api: &Api<ChaosScenario>, obj: &ChaosScenario) -> Result<(), kube::Error> {
    let others: Vec<&String> = obj.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": obj.resource_version(),
        "labels": {FINISHED: "true"},
        "finalizers": others,
    }});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}
