//! Finished scenarios leave the operator's cache. A run that ended with every fault proven removed,
//! its final status written, needs nothing more from the operator: it is labelled
//! [`FINISHED`] and loses its finalizer, and the controller watches only unlabelled scenarios.
//!
//! Why: a cluster keeps its finished scenarios (they carry the verdict and the evidence), and the
//! operator held every one of them in memory, about 29 KiB each: 5,000 of them took 145 MiB and
//! were gone through at every admission. Deleting a finished scenario has nothing to clean up, so
//! it needs no finalizer; a metadata-only watch of the finished ones still drops their metric
//! series when they are deleted.

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

/// Until the stream ends: drops the metric series of finished scenarios that are deleted.
pub async fn forget_deleted(api: Api<PartialObjectMeta<ChaosScenario>>, metrics: Metrics) {
    let finished = watcher::Config::default().labels(&format!("{FINISHED}=true")).page_size(LIST_PAGE);
    watcher(api, finished)
        .default_backoff()
        .for_each(|event| {
            match event {
                Ok(watcher::Event::Delete(meta)) => metrics.scenario.forget(&scenario_key(&meta)),
                // The (re)list of every finished scenario is over.
                Ok(watcher::Event::InitDone) => memory::release_free_heap(),
                _ => {}
            }
            std::future::ready(())
        })
        .await;
}
