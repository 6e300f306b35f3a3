//! Events on scenarios (`kubectl describe chaos`), published in the background: nothing a reconcile
//! decides depends on one, and at a shared boundary hundreds of them queue at the apiserver behind
//! the status writes. At most [`IN_FLIGHT`] at a time, none starting near a phase boundary
//! (`boundaries.rs`); the others wait in a queue of at most [`QUEUED`], each as the few fields it
//! needs. Beyond that an Event is dropped and counted, as client-go's recorder does: Events are a
//! courtesy, the status holds the run.
//!
//! Why a queue and not a task per Event waiting for its turn: with 500 runs a round's 3,000 Events
//! outran the apiserver (about 110 a second), and each waiting task held 1.4 KiB; three rounds in a
//! row left 7,000 of them, 10 MiB, most of the operator's peak memory.
//!
//! The same reason on the same scenario within [`SERIES_WINDOW`] bumps the first Event's series
//! count instead of creating another, as kube's `Recorder` does. Unlike it, this remembers only the
//! Event's name and count, not the whole Event: the `Recorder` kept every Event it published for
//! 6 minutes and went through all of them at each publish; at 3,000 Events per 500 runs that was
//! 12 MiB more peak memory per round of runs, held for 6 minutes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chaoslab_core::api::ChaosScenario;
use jiff::Timestamp;
use k8s_openapi::{
    api::{
        core::v1::ObjectReference,
        events::v1::{Event, EventSeries},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use tokio::sync::{Semaphore, mpsc};

use crate::{
    boundaries::Boundaries,
    metrics::{Call, Metrics},
};

/// Events being published at once. kube's client speaks HTTP/1.1, so each is a connection to the
/// apiserver; the status writes have their own budget.
pub const IN_FLIGHT: usize = 8;

/// Events waiting for their turn, at most: about 300 bytes each. A run makes 5 or 6.
pub const QUEUED: usize = 4096;

/// How long a repeated reason counts into the same Event (kube's `Recorder` uses 6 minutes too).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// The operator's name on its Events (`reportingController`), and this replica's (`reportingInstance`).
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

pub struct Events {
    queue: mpsc::Sender<Pending>,
    metrics: Metrics,
}

/// An Event waiting for its turn.
struct Pending {
    scenario: Scenario,
    warning: bool,
    reason: &'static str,
    note: String,
    /// When it happened, its `eventTime`, however long it waits.
    at: Timestamp,
}

/// What an Event names of its scenario.
struct Scenario {
    namespace: String,
    name: String,
    uid: String,
}

impl Events {
    /// Starts the publisher (on the current tokio runtime); it ends when this is dropped.
    pub fn new(client: Client, reporter: Reporter, metrics: Metrics, boundaries: Arc<Boundaries>) -> Self {
        let (queue, pending) = mpsc::channel(QUEUED);
        tokio::spawn(publisher(pending, client, Arc::new(reporter), metrics.clone(), boundaries));
        Self { queue, metrics }
    }

    /// Queues an Event on `obj` without waiting for it; drops it if the queue is full.
    pub fn publish(&self, obj: &ChaosScenario, type_: EventType, reason: &'static str, note: String) {
        let scenario = Scenario {
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            uid: obj.uid().unwrap_or_default(),
        };
        let pending = Pending { scenario, warning: type_ == EventType::Warning, reason, note, at: Timestamp::now() };
        if let Err(e) = self.queue.try_send(pending) {
            let dropped = self.metrics.events.with_label_values(&["dropped"]);
            dropped.inc();
            // The first, then one line per thousand: at this point the apiserver is far behind.
            if dropped.get() % 1000 == 1 {
                let p = e.into_inner();
                tracing::warn!(
                    scenario = %p.scenario.key(),
                    dropped = dropped.get(),
                    "event {} dropped: {QUEUED} are waiting for the apiserver",
                    p.reason
                );
            }
        }
    }
}

/// Publishes the queued Events, [`IN_FLIGHT`] at a time, until the queue's sender is dropped.
async fn publisher(
    mut queue: mpsc::Receiver<Pending>,
    client: Client,
    reporter: Arc<Reporter>,
    metrics: Metrics,
    boundaries: Arc<Boundaries>,
) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let seen = Arc::new(Mutex::new(Seen::default()));
    while let Some(p) = queue.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        boundaries.quiet().await;
        let (client, reporter, metrics, seen) = (client.clone(), reporter.clone(), metrics.clone(), seen.clone());
        tokio::spawn(async move {
            let _permit = permit;
            send(p, &client, &reporter, &metrics, &seen).await;
        });
    }
}

async fn send(p: Pending, client: &Client, reporter: &Reporter, metrics: &Metrics, seen: &Mutex<Seen>) {
    let _timer = metrics.time(Call::Event);
    let key = (p.scenario.uid.clone(), p.reason, p.warning);
    let api: Api<Event> = Api::namespaced(client.clone(), &p.scenario.namespace);
    let repeat = seen.lock().expect("events seen").repeat(&key, Instant::now());
    let scenario = p.scenario.key();
    let sent = match repeat {
        Some((name, count)) => {
            let series = EventSeries { count, last_observed_time: MicroTime(p.at) };
            let patch = serde_json::json!({"series": series, "note": p.note});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| name)
        }
        None => {
            let ev = new_event(reporter, p.scenario.into_ref(), p.warning, p.reason, p.note, p.at);
            api.create(&PostParams::default(), &ev).await.map(|e| e.name_any())
        }
    };
    let outcome = if sent.is_ok() { "published" } else { "failed" };
    metrics.events.with_label_values(&[outcome]).inc();
    let mut seen = seen.lock().expect("events seen");
    match sent {
        Ok(name) => seen.sent(key, name, Instant::now()),
        Err(e) => {
            // The next one starts a new Event (this one may be gone: Events expire).
            seen.by_key.remove(&key);
            tracing::warn!(scenario = %scenario, "cannot publish event: {e}");
        }
    }
}

impl Scenario {
    /// `namespace/name`, as the metrics and the logs name it.
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The reference an Event's `regarding` holds, as `Resource::object_ref` makes it.
    fn into_ref(self) -> ObjectReference {
        ObjectReference {
            api_version: Some(ChaosScenario::api_version(&()).into_owned()),
            kind: Some(ChaosScenario::kind(&()).into_owned()),
            name: Some(self.name),
            namespace: Some(self.namespace),
            uid: Some(self.uid),
            ..Default::default()
        }
    }
}

/// An Event as kube's `Recorder` writes one: named after the scenario and the time.
fn new_event(
    reporter: &Reporter,
    regarding: ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
    now: Timestamp,
) -> Event {
    let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(&reporter.controller), now.as_nanosecond());
    Event {
        metadata: ObjectMeta { name: Some(name), namespace: regarding.namespace.clone(), ..Default::default() },
        action: Some("Reconcile".into()),
        reason: Some(reason.into()),
        note: Some(note),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        ..Default::default()
    }
}

/// A scenario's uid, the reason, and whether it is a warning.
type Key = (String, &'static str, bool);

/// The Events published within the window: each one's name and count, by key.
#[derive(Default)]
struct Seen {
    by_key: HashMap<Key, Published>,
    /// When the old entries were last dropped: at most once a minute, not at every publish.
    swept: Option<Instant>,
}

struct Published {
    name: String,
    count: i32,
    last: Instant,
}

impl Seen {
    /// If an Event with `key` was published within the window, its name and its next count.
    fn repeat(&mut self, key: &Key, now: Instant) -> Option<(String, i32)> {
        if self.swept.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
            self.by_key.retain(|_, p| now.duration_since(p.last) < SERIES_WINDOW);
            self.swept = Some(now);
        }
        let p = self.by_key.get(key).filter(|p| now.duration_since(p.last) < SERIES_WINDOW)?;
        Some((p.name.clone(), p.count + 1))
    }

    /// The Event `name` was published (created, or its series bumped) for `key`. A new name is a
    /// new Event (the old one's window had passed, not yet swept): its count starts again.
    fn sent(&mut self, key: Key, name: String, now: Instant) {
        match self.by_key.get_mut(&key) {
            Some(p) if p.name == name => {
                p.count += 1;
                p.last = now;
            }
            _ => {
                self.by_key.insert(key, Published { name, count: 1, last: now });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// No publisher: every Event waits, as when the apiserver is far behind.
    #[test]
    fn beyond_the_queue_an_event_is_dropped_and_counted() {
        let metrics = Metrics::default();
        let (queue, _waiting) = mpsc::channel(QUEUED);
        let events = Events { queue, metrics: metrics.clone() };
        let obj: ChaosScenario = serde_json::from_value(json!({
            "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ChaosScenario",
            "metadata": {"name": "s", "namespace": "ns", "uid": "u"},
            "spec": {"template": "server-0-packet-loss-30", "targets": {"endpoints": [{"name": "a", "url": "http://127.0.0.1:1"}]}},
        }))
        .unwrap();
        for _ in 0..QUEUED + 2 {
            events.publish(&obj, EventType::Normal, "Testing", "note".into());
        }
        assert_eq!(metrics.events.with_label_values(&["dropped"]).get(), 2);
        assert_eq!(events.queue.capacity(), 0, "the queue holds the first {QUEUED}");
    }

    fn key(reason: &'static str) -> Key {
        ("uid-1".into(), reason, false)
    }

    #[test]
    fn a_reason_repeated_within_the_window_counts_into_the_first_event() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        assert_eq!(seen.repeat(&key("Testing"), t0), None, "first: a new Event");
        seen.sent(key("Testing"), "s.1".into(), t0);
        assert_eq!(seen.repeat(&key("Testing"), t0 + Duration::from_secs(10)), Some(("s.1".into(), 2)));
        seen.sent(key("Testing"), "s.1".into(), t0 + Duration::from_secs(10));
        assert_eq!(seen.repeat(&key("Testing"), t0 + Duration::from_secs(20)), Some(("s.1".into(), 3)));
        assert_eq!(seen.repeat(&key("Recovery"), t0), None, "another reason: its own Event");
    }

    #[test]
    fn after_the_window_a_reason_starts_a_new_event_and_old_entries_are_dropped() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        seen.repeat(&key("Testing"), t0);
        seen.sent(key("Testing"), "s.1".into(), t0);
        let later = t0 + SERIES_WINDOW + Duration::from_secs(61);
        assert_eq!(seen.repeat(&key("Testing"), later), None);
        assert!(seen.by_key.is_empty(), "dropped at the sweep");
    }

    #[test]
    fn a_new_event_after_the_window_counts_from_one_even_before_the_sweep() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        seen.repeat(&key("Testing"), t0);
        seen.sent(key("Testing"), "s.1".into(), t0);
        seen.sent(key("Testing"), "s.1".into(), t0);
        // Past the window, within a minute of the last sweep: the entry is stale, not yet dropped.
        let t1 = t0 + SERIES_WINDOW;
        seen.swept = Some(t1);
        assert_eq!(seen.repeat(&key("Testing"), t1), None);
        seen.sent(key("Testing"), "s.2".into(), t1);
        assert_eq!(seen.repeat(&key("Testing"), t1), Some(("s.2".into(), 2)), "the new Event, from 1");
    }
}
