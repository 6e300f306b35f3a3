//! What every reconcile shares: the operator's settings, clients, caches and metrics.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use chaoslab_core::{api::ChaosScenario, verification::RunVerifier};
use chaoslab_toxiproxy::RetryPolicy;
use kube::{Client, runtime::reflector::Store};
use tokio::sync::Mutex;

use crate::{
    boundaries::Boundaries, events::Events, leader::Leadership, metadata_patches::MetadataPatches, metrics::Metrics,
    sampler::Samplers, status_writer::Writers, stop::Stops, targets::KnownKeys,
};

#[derive(Clone, Debug)]
pub struct Config {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    pub sample_interval: Duration,
    /// How often a Queued scenario looks again.
    pub queue_poll: Duration,
    pub toxiproxy_policy: RetryPolicy,
    /// Whether this process still leads: ask `holds_for` before writing to a Toxiproxy.
    pub leadership: Leadership,
    /// How long a finished scenario's metric series stay (see `series_retention.rs`).
    pub finished_series_kept: Duration,
}

pub struct Context {
    pub client: Client,
    pub config: Config,
    /// One HTTP client for every Toxiproxy (see `chaoslab_toxiproxy::Client::http`).
    pub toxiproxy_http: reqwest::Client,
    /// Events on scenarios, published in the background.
    pub events: Events,
    pub metrics: Metrics,
    pub samplers: Samplers,
    pub store: Store<ChaosScenario>,
    /// The finalizer and the finished mark, written in the background.
    pub metadata: MetadataPatches,
    /// Every status write, and the statuses reconciles decided that the cache does not show yet.
    pub writers: Writers,
    /// The proxies of the runs this process admitted, by uid, whose status the cache may not show
    /// yet (queue decisions).
    pub admitted: Mutex<HashMap<String, BTreeSet<String>>>,
    /// The proxies each scenario claims, for admission (see `targets::KnownKeys`).
    pub known_keys: KnownKeys,
    /// How well each running scenario's targets held each phase's state, by uid.
    pub verifiers: std::sync::Mutex<HashMap<String, RunVerifier>>,
    /// The next phase boundary of each running scenario: writes hold back around them.
    pub boundaries: Arc<Boundaries>,
    /// Namespaces under an emergency stop.
    pub stops: Arc<Stops>,
}
