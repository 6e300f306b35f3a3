//! Status writes off a reconcile's path: one writer per scenario patches the statuses reconciles
//! decide, in order, and only the latest of those that queued up; none starts near a phase boundary
//! (`boundaries.rs`).
//!
//! Why: kube-rs runs one reconcile per scenario at a time, and the apiserver takes seconds per
//! status patch when hundreds of runs share a boundary (p50 2.5 s at 500 runs on two cores). A
//! reconcile that waited for its patch applied the run's next phase seconds late, or skipped it.
//! Now a reconcile hands its status over and returns; a status replaced by a newer one before it
//! could be written is dropped, since the newer one says everything it said.
//!
//! What a restarted operator must find on the resource is still waited for: a reconcile asks
//! [`Writers::stored`] before its first call to a proxy that may not be on record (the
//! write-ahead, see `reconcile.rs`), and looks again shortly if not. Until the watch shows what
//! was written, reconciles read the status from here ([`Writers::status`]), not from the cache.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chaoslab_core::api::{ChaosScenario, ChaosScenarioStatus};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::reflector::{ObjectRef, Store},
};
use tokio::sync::{Semaphore, watch};

use crate::{
    boundaries::Boundaries,
    metrics::{Call, Metrics},
};

pub const FIELD_MANAGER: &str = "chaoslab-operator";

/// How often an idle writer looks whether the cache shows what it wrote, and for how long at most.
const CATCH_UP_POLL: Duration = Duration::from_millis(250);
const LINGER: Duration = Duration::from_secs(10);
/// Retries of a failed patch: doubling from the first, at most the last.
const RETRY: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));
/// Status writes in flight at once, for all scenarios. kube's client speaks HTTP/1.1: every write in
/// flight is a connection (a TLS handshake for the apiserver, buffers here). Writes beyond these
/// wait, and a newer status replaces a waiting one, so a slow apiserver gets fewer writes.
const IN_FLIGHT: usize = 16;

/// A status to write, numbered in the order reconciles decided them.
#[derive(Clone, Default)]
struct Wanted {
    seq: u64,
    status: Arc<ChaosScenarioStatus>,
}

struct Entry {
    wanted: watch::Sender<Wanted>,
    /// The last status written (at first, what the cache showed when the writer started).
    written: watch::Receiver<Wanted>,
}

/// The writers of the scenarios whose status is being written, or not yet shown by the cache.
pub struct Writers {
    client: Client,
    store: Store<ChaosScenario>,
    metrics: Metrics,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    in_flight: Arc<Semaphore>,
    boundaries: Arc<Boundaries>,
}

/// Where a writer writes: the scenario's uid (its key here), namespace and name.
#[derive(Clone)]
struct Scenario {
    uid: String,
    ns: String,
    name: String,
}

impl Writers {
    pub fn new(client: Client, store: Store<ChaosScenario>, metrics: Metrics, boundaries: Arc<Boundaries>) -> Self {
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        Self { client, store, metrics, entries: Arc::default(), in_flight, boundaries }
    }

    /// The scenario's status as reconciles last decided it: what a writer holds, else the cache's.
    pub fn status(&self, obj: &ChaosScenario) -> ChaosScenarioStatus {
        let uid = obj.uid().unwrap_or_default();
        match self.entries.lock().expect("writers").get(&uid) {
            Some(e) => (*e.wanted.borrow().status).clone(),
            None => self.cached(obj),
        }
    }

    /// The status the cache holds now. Not `obj`'s: a reconcile's object is the cache's when it
    /// was dispatched, and a writer that left meanwhile (the cache showed its last write) left a
    /// newer one there. Read from `obj`, a run whose record was written looked unwritten, and its
    /// phase change waited for an unrelated status write (3.5 s late at 500 shared boundaries).
    fn cached(&self, obj: &ChaosScenario) -> ChaosScenarioStatus {
        let uid = obj.uid();
        let latest = self.store.get(&ObjectRef::from_obj(obj)).filter(|c| c.uid() == uid);
        latest.as_deref().unwrap_or(obj).status.clone().unwrap_or_default()
    }

    /// Hands `status` to the scenario's writer, which writes it unless a newer one comes first.
    pub fn submit(&self, obj: &ChaosScenario, status: ChaosScenarioStatus) {
        let mut entries = self.entries.lock().expect("writers");
        let uid = obj.uid().unwrap_or_default();
        let entry = entries.entry(uid).or_insert_with(|| self.spawn(obj));
        let written = entry.written.borrow().seq;
        entry.wanted.send_modify(|w| {
            if w.seq > written {
                self.metrics.status_writes.with_label_values(&["replaced"]).inc();
            }
            *w = Wanted { seq: w.seq + 1, status: Arc::new(status) };
        });
    }

    /// Whether the status on the resource satisfies `holds`: the last one the scenario's writer
    /// wrote, or the cache's when it has no writer (it wrote everything and the cache shows it).
    pub fn stored(&self, obj: &ChaosScenario, holds: impl Fn(&ChaosScenarioStatus) -> bool) -> bool {
        match self.entries.lock().expect("writers").get(&obj.uid().unwrap_or_default()) {
            Some(e) => holds(&e.written.borrow().status),
            None => holds(&self.cached(obj)),
        }
    }

    fn spawn(&self, obj: &ChaosScenario) -> Entry {
        let at = Scenario {
            uid: obj.uid().unwrap_or_default(),
            ns: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
        };
        let (wanted_tx, wanted) = watch::channel(Wanted::default());
        let on_resource = Wanted { seq: 0, status: Arc::new(self.cached(obj)) };
        let (written_tx, written) = watch::channel(on_resource);
        let writer = Writer {
            api: Api::namespaced(self.client.clone(), &at.ns),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            entries: self.entries.clone(),
            in_flight: self.in_flight.clone(),
            boundaries: self.boundaries.clone(),
            at,
        };
        tokio::spawn(writer.run(wanted, written_tx));
        Entry { wanted: wanted_tx, written }
    }
}

struct Writer {
    api: Api<ChaosScenario>,
    store: Store<ChaosScenario>,
    metrics: Metrics,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    in_flight: Arc<Semaphore>,
    boundaries: Arc<Boundaries>,
    at: Scenario,
}

enum Outcome {
    Written(Box<Option<ChaosScenarioStatus>>),
    Gone,
    Failed,
}

impl Writer {
    async fn run(self, mut wanted: watch::Receiver<Wanted>, written: watch::Sender<Wanted>) {
        let mut shown = None;
        let mut retry = RETRY.0;
        let mut idle = Duration::ZERO;
        loop {
            if wanted.borrow().seq > written.borrow().seq {
                idle = Duration::ZERO;
                let Ok(permit) = self.in_flight.acquire().await else { return self.leave() };
                self.boundaries.quiet().await;
                // The latest once a write may start: those decided while it waited are replaced.
                let next = wanted.borrow_and_update().clone();
                let outcome = self.patch(&next.status).await;
                drop(permit);
                match outcome {
                    Outcome::Written(stored) => {
                        shown = *stored;
                        retry = RETRY.0;
                        written.send_replace(next);
                    }
                    Outcome::Gone => return self.leave(),
                    Outcome::Failed => {
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(RETRY.1);
                    }
                }
                continue;
            }
            tokio::select! {
                changed = wanted.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(CATCH_UP_POLL) => {
                    idle += CATCH_UP_POLL;
                    let caught_up = idle >= LINGER || self.cache_shows(shown.as_ref());
                    if caught_up && self.leave_if_idle(&wanted, written.borrow().seq) {
                        return;
                    }
                }
            }
        }
    }

    async fn patch(&self, status: &ChaosScenarioStatus) -> Outcome {
        let patch = serde_json::json!({
            "apiVersion": "chaoslab.dev/v1alpha1",
            "kind": "ChaosScenario",
            "status": status,
        });
        let timer = self.metrics.time(Call::StatusPatch);
        let result = self
            .api
            .patch_status(&self.at.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await;
        drop(timer);
        let outcome = match result {
            Ok(stored) => Outcome::Written(Box::new(stored.status)),
            Err(kube::Error::Api(e)) if e.code == 404 => Outcome::Gone,
            Err(e) => {
                tracing::warn!(scenario = %format!("{}/{}", self.at.ns, self.at.name), "cannot write status, retrying: {e}");
                Outcome::Failed
            }
        };
        let label = match outcome {
            Outcome::Written(_) => "written",
            Outcome::Gone | Outcome::Failed => "failed",
        };
        self.metrics.status_writes.with_label_values(&[label]).inc();
        outcome
    }

    /// Whether the cache holds the scenario with the status the apiserver returned for the last write.
    fn cache_shows(&self, shown: Option<&ChaosScenarioStatus>) -> bool {
        let cached = self.store.get(&ObjectRef::new(&self.at.name).within(&self.at.ns));
        cached.is_some_and(|o| o.uid().as_deref() == Some(self.at.uid.as_str()) && o.status.as_ref() == shown)
    }

    /// Leaves unless a status came that is not written (checked under the lock `submit` takes, so
    /// none is lost).
    fn leave_if_idle(&self, wanted: &watch::Receiver<Wanted>, written: u64) -> bool {
        let mut entries = self.entries.lock().expect("writers");
        if wanted.borrow().seq > written {
            return false;
        }
        entries.remove(&self.at.uid);
        true
    }

    fn leave(&self) {
        self.entries.lock().expect("writers").remove(&self.at.uid);
    }
}

#[cfg(test)]
mod tests {
    use chaoslab_testenv::scenario_namespace;
    use futures::StreamExt;
    use kube::{
        api::{DeleteParams, PostParams},
        runtime::{WatchStreamExt, reflector, watcher},
    };
    use serde_json::json;

    use super::*;

    /// A scenario nobody reconciles, and writers whose cache is a real watch of its namespace.
    async fn setup() -> (Api<ChaosScenario>, ChaosScenario, Writers, Metrics) {
        let (client, ns) = scenario_namespace("writer").await;
        let api: Api<ChaosScenario> = Api::namespaced(client.clone(), &ns);
        let obj: ChaosScenario = serde_json::from_value(json!({
            "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario",
            "metadata": {"name": "s"},
            "spec": {"template": "server-0-packet-loss-30", "targets": {"endpoints": [{"name": "a", "url": "http://127.0.0.1:1"}]}},
        }))
        .unwrap();
        let obj = api.create(&PostParams::default(), &obj).await.unwrap();
        let (store, writer) = reflector::store();
        tokio::spawn(watcher(api.clone(), watcher::Config::default()).reflect(writer).for_each(|_| async {}));
        let metrics = Metrics::default();
        (api.clone(), obj, Writers::new(client, store, metrics.clone(), Arc::default()), metrics)
    }

    fn said(message: &str) -> ChaosScenarioStatus {
        ChaosScenarioStatus { message: Some(message.into()), ..Default::default() }
    }

    fn count(m: &Metrics, outcome: &str) -> u64 {
        m.status_writes.with_label_values(&[outcome]).get()
    }

    #[tokio::test]
    async fn statuses_decided_faster_than_written_are_read_back_at_once_and_only_the_last_is_written() {
        let (api, obj, writers, metrics) = setup().await;
        // No await in between: the writer cannot run before all twenty are decided.
        for i in 1..=20 {
            writers.submit(&obj, said(&i.to_string()));
            assert_eq!(writers.status(&obj).message.as_deref(), Some(i.to_string().as_str()), "read back at once");
        }
        let last = |s: &ChaosScenarioStatus| s.message.as_deref() == Some("20");
        assert!(!writers.stored(&obj, last), "decided, not written yet");
        for _ in 0..100 {
            if writers.stored(&obj, last) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let on_resource = api.get("s").await.unwrap().status.unwrap();
        assert_eq!(on_resource.message.as_deref(), Some("20"));
        assert_eq!((count(&metrics, "written"), count(&metrics, "replaced")), (1, 19));
        // Once the cache shows it, the writer leaves and reads come from the cache again.
        for _ in 0..40 {
            if writers.entries.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(writers.entries.lock().unwrap().is_empty(), "the writer left within 4 s (LINGER is {LINGER:?})");
        // `obj` is a reconcile's object from before the writes: the cache is newer, and it is read.
        assert_eq!(writers.status(&obj).message.as_deref(), Some("20"), "the cache is read, not the stale object");
        assert!(writers.stored(&obj, last), "what was written counts as written after the writer left");
        writers.submit(&obj, said("21"));
        let entries = writers.entries.lock().unwrap();
        let written = &entries[&obj.uid().unwrap()].written;
        assert_eq!(written.borrow().status.message.as_deref(), Some("20"), "a new writer starts from the cache");
    }

    #[tokio::test]
    async fn the_writer_of_a_deleted_scenario_leaves_without_writing() {
        let (api, obj, writers, metrics) = setup().await;
        api.delete("s", &DeleteParams::default()).await.unwrap();
        writers.submit(&obj, said("late"));
        for _ in 0..40 {
            if writers.entries.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(writers.entries.lock().unwrap().is_empty(), "the writer left within 2 s");
        assert!(!writers.stored(&obj, |s| s.message.as_deref() == Some("late")));
        assert_eq!((count(&metrics, "written"), count(&metrics, "failed")), (0, 1));
    }
}
