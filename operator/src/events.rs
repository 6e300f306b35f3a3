//! Events on scenarios (`kubectl describe chaos`), published in the background: nothing a reconcile
//! decides depends on one, and at a shared boundary hundreds of them queue at the apiserver behind
//! the status writes. At most [`IN_FLIGHT`] at a time.
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
    api::events::v1::{Event, EventSeries},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use tokio::sync::Semaphore;

use crate::metrics::{Call, Metrics, scenario_key};

/// Events being published at once. kube's client speaks HTTP/1.1, so each is a connection to the
/// apiserver; the status writes have their own budget.
pub const IN_FLIGHT: usize = 8;

/// How long a repeated reason counts into the same Event (kube's `Recorder` uses 6 minutes too).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// The operator's name on its Events (`reportingController`), and this replica's (`reportingInstance`).
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

pub struct Events {
    client: Client,
    reporter: Arc<Reporter>,
    metrics: Metrics,
    in_flight: Arc<Semaphore>,
    seen: Arc<Mutex<Seen>>,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter, metrics: Metrics) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        Self { client, reporter: Arc::new(reporter), metrics, in_flight: Arc::new(Semaphore::new(IN_FLIGHT)), seen }
    }

    /// Publishes an Event on `obj` without waiting for it.
    pub fn publish(&self, obj: &ChaosScenario, type_: EventType, reason: &str, note: String) {
        let key = (obj.uid().unwrap_or_default(), reason.to_string(), type_ == EventType::Warning);
        let (client, reporter, metrics) = (self.client.clone(), self.reporter.clone(), self.metrics.clone());
        let (in_flight, seen) = (self.in_flight.clone(), self.seen.clone());
        let (regarding, scenario) = (obj.object_ref(&()), scenario_key(obj));
        let ns = obj.namespace().unwrap_or_default();
        tokio::spawn(async move {
            let Ok(_permit) = in_flight.acquire().await else { return };
            let _timer = metrics.time(Call::Event);
            let api: Api<Event> = Api::namespaced(client, &ns);
            let repeat = seen.lock().expect("events seen").repeat(&key, Instant::now());
            let now = Timestamp::now();
            let sent = match repeat {
                Some((name, count)) => {
                    let series = EventSeries { count, last_observed_time: MicroTime(now) };
                    let patch = serde_json::json!({"series": series, "note": note});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| name)
                }
                None => {
                    let ev = new_event(&reporter, regarding, type_, &key.1, note, now);
                    api.create(&PostParams::default(), &ev).await.map(|e| e.name_any())
                }
            };
            let mut seen = seen.lock().expect("events seen");
            match sent {
                Ok(name) => seen.sent(key, name, Instant::now()),
                Err(e) => {
                    // The next one starts a new Event (this one may be gone: Events expire).
                    seen.by_key.remove(&key);
                    tracing::warn!(scenario = %scenario, "cannot publish event: {e}");
                }
            }
        });
    }
}

/// An Event as kube's `Recorder` writes one: named after the scenario and the time.
fn new_event(
    reporter: &Reporter,
    regarding: k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
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
        type_: Some(if type_ == EventType::Warning { "Warning" } else { "Normal" }.into()),
        ..Default::default()
    }
}

/// A scenario's uid, the reason, and whether it is a warning.
type Key = (String, String, bool);

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
    use super::*;

    fn key(reason: &str) -> Key {
        ("uid-1".into(), reason.into(), false)
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
