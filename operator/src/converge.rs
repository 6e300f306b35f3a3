//! Putting one moment of a run on every proxy of its record (see `record.rs`): the current targets
//! converge to what the engine wants, former ones are released; the record afterwards says what
//! each proxy holds, or may hold where a call failed.

use chaoslab_core::{api::TargetStatus, faults::DesiredProxy};
use chaoslab_toxiproxy::{Client as Toxiproxy, Target, converge_all};

use crate::{context::Context, record, targets};

/// What happens to a record entry once its proxy is proven clean.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// A current target: it stays in the record.
    Keep,
    /// A former target: it leaves the record.
    Drop,
}

/// One call to make: converge the proxy of `entry` to `desired`.
pub struct Job {
    entry: TargetStatus,
    desired: DesiredProxy,
    fate: Fate,
}

/// The jobs for a record whose first `desired.len()` entries are the current targets: those converge
/// to `desired`, the former ones are released and leave the record once clean.
pub fn jobs(record: &[TargetStatus], desired: &[DesiredProxy], owner: &str) -> Vec<Job> {
    record
        .iter()
        .enumerate()
        .map(|(i, entry)| match desired.get(i) {
            Some(d) => Job { entry: entry.clone(), desired: d.clone(), fate: Fate::Keep },
            None => Job { entry: entry.clone(), desired: DesiredProxy::release(owner), fate: Fate::Drop },
        })
        .collect()
}

/// Releases every entry of `record`, keeping its first `current` (the current targets) once clean.
pub fn release_all(record: &[TargetStatus], current: usize, owner: &str) -> Vec<Job> {
    jobs(record, &vec![DesiredProxy::release(owner); current], owner)
}

fn toxiproxy(ctx: &Context, url: &str) -> Result<Toxiproxy, String> {
    Toxiproxy::with_policy(url, ctx.config.toxiproxy_policy).map_err(|e| e.to_string())
}

/// Makes every call at once; returns the record afterwards and what failed, by target and URL.
/// A call that fails on a proxy whose pod is gone counts as done: the toxics went with the pod.
pub async fn converge_record(ctx: &Context, ns: &str, jobs: Vec<Job>) -> (Vec<TargetStatus>, Vec<String>) {
    let clients: Vec<Result<Toxiproxy, String>> = jobs.iter().map(|j| toxiproxy(ctx, &j.entry.endpoint)).collect();
    let calls: Vec<Target> = jobs
        .iter()
        .zip(&clients)
        .filter_map(|(j, c)| Some(Target { client: c.as_ref().ok()?, proxy: &j.entry.proxy, desired: &j.desired }))
        .collect();
    let mut reports = converge_all(&calls).await.into_iter();
    let mut record = Vec::new();
    let mut errors = Vec::new();
    for (job, client) in jobs.iter().zip(clients) {
        let result = client.and_then(|_| reports.next().expect("one report per call").map_err(|e| e.to_string()));
        ctx.metrics.toxiproxy_converges.with_label_values(&[if result.is_ok() { "ok" } else { "error" }]).inc();
        let entry = match result {
            Ok(report) => {
                if !report.others.is_empty() {
                    tracing::warn!(proxy = %job.entry.proxy, url = %job.entry.endpoint, others = ?report.others,
                        "other scenarios' toxics on this proxy (left in place)");
                }
                record::converged(&job.entry, report.enabled, report.held)
            }
            Err(_) if targets::pod_gone(&ctx.client, ns, &job.entry).await => {
                record::converged(&job.entry, true, vec![])
            }
            Err(why) => {
                errors.push(format!("target {} ({}): {why}", job.entry.name, job.entry.endpoint));
                record::failed(&job.entry, &job.desired, why)
            }
        };
        if !(job.fate == Fate::Drop && entry.settled()) {
            record.push(entry);
        }
    }
    (record, errors)
}
