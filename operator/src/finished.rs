//! Finished scenarios leave the operator's cache. A run that ended with every fault proven removed,
//! its final status written, needs nothing more from the operator: it is labelled
//! [`FINISHED`] and loses its finalizer, and the controller watches only unlabelled scenarios.
//!
//! Why: a cluster keeps its finished scenarios (they carry the verdict and the evidence), and the
//! operator held every one of them in memory, about 29 KiB each: 5,000 of them took 145 MiB and
//! were gone through at every admission. Deleting a finished scenario has nothing to clean up, so
//! it needs no finalizer; a metadata-only watch of the finished ones drops their metric series a
//! while later (`series_retention.rs`), or when they are deleted.

use std::{
    pin::pin,
    time::{Duration, Instant},
};

use chaoslab_core::api::ChaosScenario;
use futures::StreamExt;
use kube::{
    Api,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};

use crate::{
    memory,
    metrics::{Metrics, scenario_key},
    series_retention::Retention,
};

/// Set (to `true`) on a scenario that ended and needs nothing more (see the module doc). Remove it
/// and the operator looks at the scenario again (and labels it again).
pub const FINISHED: &str = "chaoslab.dev/finished";

/// Scenarios per list call wherever scenarios are listed (the start-up sweep, the controller's
/// watch, the watch below): a cluster may keep thousands, and the allocator seldom gives back what
/// one big page took. With 5,000 finished, pages of 500 (kube's default) left the idle operator at
/// 31.3 MiB, pages of 50 at 17.8 MiB (13.9 MiB with none). A page of 500 whole scenarios parses to
/// about 4 MiB at once.
pub const LIST_PAGE: u32 = 50;

/// What the controller watches: every scenario not labelled finished. An operator that starts
/// after another stopped finds the runs that ended before they were labelled among them.
pub fn unfinished() -> watcher::Config {
    watcher::Config::default().labels(&format!("{FINISHED}!=true")).page_size(LIST_PAGE)
}

/// Until the watch ends: drops the metric series of finished scenarios `keep` after they are seen
/// finished (see `series_retention.rs`), and at once when they are deleted.
pub async fn finished_series(api: Api<PartialObjectMeta<ChaosScenario>>, metrics: Metrics, keep: Duration) {
    let finished = watcher::Config::default().labels(&format!("{FINISHED}=true")).page_size(LIST_PAGE);
    let mut events = pin!(watcher(api, finished).default_backoff());
    let mut retention = Retention::new(keep);
    loop {
        let next = retention.next();
        tokio::select! {
            event = events.next() => match event {
                None => return,
                // Also at a (re)list: a scenario may have been labelled while the watch was down.
                Some(Ok(watcher::Event::Apply(meta) | watcher::Event::InitApply(meta))) => {
                    let key = scenario_key(&meta);
                    if metrics.scenario.exports(&key) {
                        retention.finished(&key, Instant::now());
                    }
                }
                Some(Ok(watcher::Event::Delete(meta))) => {
                    let key = scenario_key(&meta);
                    retention.gone(&key);
                    metrics.scenario.forget(&key);
                }
                // The (re)list of every finished scenario is over.
                Some(Ok(watcher::Event::InitDone)) => memory::release_free_heap(),
                _ => {}
            },
            () = sleep_until(next) => {
                for key in retention.take_due(Instant::now()) {
                    metrics.scenario.forget(&key);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
