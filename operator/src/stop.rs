//! The emergency stop: a namespace annotated `chaoslab.dev/stop` (any value: the reason) has every
//! fault chaoslab's scenarios hold there removed at once, its running scenarios end Aborted, and new
//! ones wait Queued until the annotation is removed. The controller watches namespaces, so a stop
//! reaches every scenario of the namespace within a reconcile.

use std::{collections::HashMap, sync::Mutex};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client, ResourceExt, api::ListParams};

pub const STOP: &str = "chaoslab.dev/stop";

/// The stop reason of each namespace seen, None where there is no stop.
#[derive(Default)]
pub struct Stops(Mutex<HashMap<String, Option<String>>>);

/// The stop a namespace carries (its reason; "stopped" if empty).
fn reason_of(ns: &Namespace) -> Option<String> {
    let stopped = ns.metadata.deletion_timestamp.is_none() && ns.annotations().contains_key(STOP);
    stopped.then(|| ns.annotations().get(STOP).filter(|r| !r.is_empty()).cloned().unwrap_or("stopped".into()))
}

impl Stops {
    /// Notes what the namespace watch saw.
    pub fn observe(&self, ns: &Namespace) {
        self.0.lock().expect("stops").insert(ns.name_any(), reason_of(ns));
    }

    /// The stop on `ns`, if any; a namespace the watch has not shown yet is read once.
    pub async fn reason(&self, client: &Client, ns: &str) -> Option<String> {
        if let Some(known) = self.0.lock().expect("stops").get(ns) {
            return known.clone();
        }
        // A list by name, not a get: the operator's role lists and watches namespaces, nothing more.
        let by_name = ListParams::default().fields(&format!("metadata.name={ns}"));
        match Api::<Namespace>::all(client.clone()).list(&by_name).await {
            Ok(list) => list.items.first().and_then(|n| {
                self.observe(n);
                reason_of(n)
            }),
            // Unreadable: not stopped, until the watch says otherwise.
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ns(annotations: serde_json::Value) -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": "n", "annotations": annotations}})).unwrap()
    }

    #[test]
    fn the_annotation_is_the_stop_and_its_value_the_reason() {
        let stops = Stops::default();
        stops.observe(&ns(json!({STOP: "a bad deploy"})));
        assert_eq!(stops.0.lock().unwrap()["n"].as_deref(), Some("a bad deploy"));
        stops.observe(&ns(json!({STOP: ""})));
        assert_eq!(stops.0.lock().unwrap()["n"].as_deref(), Some("stopped"));
        stops.observe(&ns(json!({"other": "x"})));
        assert_eq!(stops.0.lock().unwrap()["n"], None, "lifted");
    }
}
