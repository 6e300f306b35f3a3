//! Putting one moment of a run on every proxy of its record (see `record.rs`): the current targets
//! converge to what the engine wants, former ones are released; the record afterwards says what
//! each proxy holds, or may hold where a call failed.

use chaoslab_core::{api::TargetStatus, faults::DesiredProxy, verification::Finding};
use chaoslab_toxiproxy::{Client as Toxiproxy, Known, Target, converge_all};

use crate::{context::Context, error::Problem, metrics::Call, record, targets};

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

fn toxiproxy(ctx: &Context, url: &str) -> Result<Toxiproxy, chaoslab_toxiproxy::Error> {
    Toxiproxy::sharing(url, ctx.config.toxiproxy_policy, ctx.toxiproxy_http.clone())
}

/// The record after one round of calls, what stood in the way, and what each check of a current
/// target found (for the verification).
pub struct Converged {
    pub record: Vec<TargetStatus>,
    pub problems: Vec<Problem>,
    pub findings: Vec<(String, Finding)>,
}

/// Makes every call at once. A call that fails on a proxy whose pod is gone counts as done: the
/// toxics went with the pod.
pub async fn converge_record(ctx: &Context, ns: &str, jobs: Vec<Job>) -> Converged {
    let clients: Vec<_> = jobs.iter().map(|j| toxiproxy(ctx, &j.entry.endpoint)).collect();
    let calls: Vec<Target> = jobs
        .iter()
        .zip(&clients)
        .filter_map(|(j, c)| {
            // An entry whose last call succeeded says what the proxy holds: a phase change need not
            // read it first (see `converge_from`); the next check does.
            let known = j.entry.error.is_none().then_some(Known { enabled: j.entry.enabled, held: &j.entry.toxics });
            Some(Target { client: c.as_ref().ok()?, proxy: &j.entry.proxy, desired: &j.desired, known })
        })
        .collect();
    let timer = ctx.metrics.time(Call::ToxiproxyConverge);
    let mut reports = converge_all(&calls).await.into_iter();
    drop(timer);
    let mut out = Converged { record: Vec::new(), problems: Vec::new(), findings: Vec::new() };
    for (job, client) in jobs.iter().zip(clients) {
        let result = client.and_then(|_| reports.next().expect("one report per call"));
        ctx.metrics.toxiproxy_converges.with_label_values(&[if result.is_ok() { "ok" } else { "error" }]).inc();
        let finding = match &result {
            Ok(r) if r.changed() => Finding::Applied,
            Ok(_) => Finding::Held,
            Err(_) => Finding::Unknown,
        };
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
            // A former entry whose URL no client can be made of was never called, so nothing of the
            // scenario's is there: status edited by hand. Kept, it would fail the run and hold the
            // scenario's deletion and its proxies forever.
            Err(chaoslab_toxiproxy::Error::BadUrl { .. }) if job.fate == Fate::Drop => {
                tracing::warn!(url = %job.entry.endpoint, "a record entry that is no Toxiproxy URL is dropped");
                record::converged(&job.entry, true, vec![])
            }
            Err(e) => {
                let problem = Problem::toxiproxy(&job.entry.name, &job.entry.endpoint, &e);
                ctx.metrics.errors.with_label_values(&[problem.kind.metric_label()]).inc();
                let entry = record::failed(&job.entry, &job.desired, problem.message.clone());
                out.problems.push(problem);
                entry
            }
        };
        if job.fate == Fate::Keep {
            out.findings.push((entry.name.clone(), finding));
        }
        if !(job.fate == Fate::Drop && entry.settled()) {
            out.record.push(entry);
        }
    }
    out
}
