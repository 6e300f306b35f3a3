//! One reconcile of one ChaosScenario: resolve targets → ask the engine → converge toxics →
//! fold in observations → write status → requeue at the next deadline. Never sleeps; everything it
//! needs to continue after a crash is on the resource.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chaoslab_core::{
    api::{ChaosScenario, ChaosScenarioStatus, Phase, PhaseObservation, TargetStatus, TargetVerification},
    ending::{self, Seen, Stop},
    engine::{self, Plan},
    faults::{ProxyKind, owner_tag},
    observation::AbortRule,
    verification::{Finding, RunVerifier, next_check, worth_a_write},
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Resource, ResourceExt,
    runtime::{controller::Action, events::EventType},
};

use crate::{
    context::Context,
    converge::{converge_record, jobs, release_all},
    error::{Error, Kind, Problem},
    metadata_patches::{self, Change},
    metrics::{Call, SLOW_SECONDS, scenario_key},
    queue, record,
    sampler::{Judging, Sampler},
    status,
    stop::STOP,
    targets::{self, Target},
};

/// Kubernetes times have whole seconds: a run starts at the next whole second (or now, if `now` is
/// one), so every reconcile computes the same plan and the sampler, started now, watches
/// Stabilization from its real start.
fn start_of_run(now: Timestamp) -> Timestamp {
    let whole = Timestamp::from_second(now.as_second()).unwrap_or(now);
    if whole == now { now } else { whole.checked_add(SignedDuration::from_secs(1)).unwrap_or(now) }
}

/// Whole seconds, rounded down: for times that only record what happened.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Whether this process may start a Toxiproxy call now: it leads for at least one call's timeout
/// more (always, without leader election). A stale leader must not act, see `leader.rs`.
fn may_act(ctx: &Context) -> bool {
    ctx.config.leadership.holds_for(ctx.config.toxiproxy_policy.timeout)
}

/// How soon a reconcile that could not act because the lease is running out looks again (by then
/// the lease is renewed, or the process has exited).
const NOT_LEADING_RETRY: Duration = Duration::from_secs(1);

async fn resolve_targets(ctx: &Context, obj: &ChaosScenario) -> Result<Vec<Target>, Problem> {
    let _timer = ctx.metrics.time(Call::ResolveTargets);
    targets::resolve(&ctx.client, obj).await
}

/// Publishes an Event in the background (see `events.rs`).
fn event(ctx: &Context, obj: &ChaosScenario, type_: EventType, reason: &'static str, note: String) {
    ctx.events.publish(obj, type_, reason, note);
}

/// Hands `status` to the scenario's writer if it differs (see `status_writer.rs`), with an Event
/// and metrics when the phase changed.
fn commit(ctx: &Context, obj: &ChaosScenario, old: &ChaosScenarioStatus, new: ChaosScenarioStatus) {
    if *old == new {
        return;
    }
    let key = scenario_key(obj);
    if let Some(phase) = new.phase {
        ctx.metrics.scenario.set_phase(&key, phase.as_str());
        if old.phase != new.phase {
            let kind = if phase == Phase::Failed { EventType::Warning } else { EventType::Normal };
            let note = new.message.clone().unwrap_or_default();
            tracing::info!(scenario = %key, phase = phase.as_str(), "{note}");
            event(ctx, obj, kind, phase.as_str(), note);
        }
    }
    for t in &new.targets {
        ctx.metrics.scenario.set_toxics(&key, &t.name, &t.toxics);
    }
    ctx.writers.submit(obj, new);
}

/// How soon a finished scenario whose faults could not all be removed tries again: every 10 s at
/// first, then less often the longer its Toxiproxy stays away (a quarter of the time since the
/// run ended, at most every 5 min).
fn leftover_retry(ended: Option<Timestamp>, now: Timestamp) -> Duration {
    let since = ended.map(|e| now.duration_since(e).unsigned_abs()).unwrap_or_default();
    (since / 4).clamp(Duration::from_secs(10), Duration::from_secs(300))
}

/// What a run that has ended waits for: once its faults are proven removed, its final status to be
/// written (then it is marked finished, see [`settle`]); else the next try at removing them. Its own
/// status write does not wake it (see `controller.rs`).
fn after_end(settled: bool, ended: Option<Timestamp>, now: Timestamp) -> Action {
    if settled { Action::requeue(FINISH_POLL) } else { Action::requeue(leftover_retry(ended, now)) }
}

/// How soon a run that ended clean looks whether its final status is written.
const FINISH_POLL: Duration = Duration::from_secs(1);

fn messages(problems: &[Problem]) -> String {
    problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ")
}

/// Ends the run as Failed because of `problem`, releasing every proxy of `record` (whose first
/// `current` entries are the current targets). What cannot be released stays in the record, and the
/// run keeps trying ([`settle`]).
async fn fail(
    ctx: &Context,
    obj: &ChaosScenario,
    old: &ChaosScenarioStatus,
    record: &[TargetStatus],
    current: usize,
    problem: Problem,
) -> Result<Action, Error> {
    let uid = obj.uid().unwrap_or_default();
    ctx.metrics.errors.with_label_values(&[problem.kind.metric_label()]).inc();
    let owner = owner_tag(&uid);
    let done = converge_record(ctx, &ns(obj), release_all(record, current, &owner)).await;
    forget(ctx, &uid);
    let message = if done.problems.is_empty() {
        problem.message
    } else {
        format!(
            "{}; this scenario's faults could not be removed yet, retrying: {}",
            problem.message,
            messages(&done.problems)
        )
    };
    let record = done.record;
    let now = Timestamp::now();
    let generation = obj.meta().generation.unwrap_or_default();
    let new = ChaosScenarioStatus {
        phase: Some(Phase::Failed),
        observed_generation: Some(generation),
        completed_at: Some(Time(whole_seconds(now))),
        conditions: status::conditions(&old.conditions, Phase::Failed, None, &message, generation, now),
        message: Some(message),
        targets: record,
        ..old.clone()
    };
    let settled = record::settled(&new.targets);
    commit(ctx, obj, old, new);
    Ok(after_end(settled, Some(now), now))
}

/// A finished run: retries releasing the proxies that may still hold its faults, until none does;
/// then, once that is written, marks it finished (`finished.rs`) and never looks at it again.
async fn settle(ctx: &Context, obj: &ChaosScenario, old: &ChaosScenarioStatus) -> Result<Action, Error> {
    let uid = obj.uid().unwrap_or_default();
    forget(ctx, &uid);
    if record::settled(&old.targets) {
        let over = |s: &ChaosScenarioStatus| s.phase.is_some_and(Phase::is_terminal) && record::settled(&s.targets);
        if !ctx.writers.stored(obj, over) {
            return Ok(Action::requeue(FINISH_POLL));
        }
        ctx.metadata.submit(obj, Change::MarkFinished);
        return Ok(Action::requeue(metadata_patches::RETRY));
    }
    let owner = owner_tag(&uid);
    let done = converge_record(ctx, &ns(obj), release_all(&old.targets, old.targets.len(), &owner)).await;
    let (record, errors) = (done.record, done.problems);
    let settled = record::settled(&record);
    if settled {
        event(ctx, obj, EventType::Normal, "FaultsRemoved", "the faults left on the targets are removed".into());
    } else {
        tracing::warn!(scenario = %scenario_key(obj), "faults left on the targets: {}", messages(&errors));
    }
    commit(ctx, obj, old, ChaosScenarioStatus { targets: record, ..old.clone() });
    let ended = old.completed_at.as_ref().map(|t| t.0);
    Ok(after_end(settled, ended, Timestamp::now()))
}

fn ns(obj: &ChaosScenario) -> String {
    obj.namespace().unwrap_or_default()
}

fn merge_observations(mut have: Vec<PhaseObservation>, new: Vec<PhaseObservation>) -> Vec<PhaseObservation> {
    for o in new {
        if !have.iter().any(|h| h.phase == o.phase) {
            have.push(o);
        }
    }
    have
}

/// The claims of the other scenarios that share a proxy with `me` (no other can block it), from the
/// cache and from the runs this process admitted that the cache may not show yet. It looks at every
/// scenario under the admission lock, so it copies nothing of the others.
async fn claims(ctx: &Context, me: &queue::Claim, admitted: &HashMap<String, BTreeSet<String>>) -> Vec<queue::Claim> {
    let mut out = Vec::new();
    for o in ctx.store.state() {
        let uid = o.metadata.uid.as_deref().unwrap_or_default();
        if uid == me.uid {
            continue;
        }
        let just_admitted = admitted.get(uid);
        let state = queue::state(o.status.as_ref(), o.metadata.deletion_timestamp.is_some(), just_admitted.is_some());
        if state == queue::State::Done {
            continue;
        }
        let known = ctx.known_keys.of(&o).await;
        let shares = |keys: &BTreeSet<String>| keys.iter().any(|k| me.proxies.contains(k));
        if !shares(&known) && !just_admitted.is_some_and(shares) {
            continue;
        }
        out.push(queue::Claim {
            key: scenario_key(&*o),
            uid: uid.to_string(),
            created: o.metadata.creation_timestamp.as_ref().map(|t| t.0),
            state,
            proxies: known.iter().chain(just_admitted.into_iter().flatten()).cloned().collect(),
        });
    }
    out
}

/// Admits a scenario that has not started: returns whether it is admitted; if not, writes Queued
/// (with the record, so that later scenarios see what it waits for).
async fn admit(
    ctx: &Context,
    obj: &ChaosScenario,
    old: &ChaosScenarioStatus,
    targets: &[Target],
    record: Vec<TargetStatus>,
    now: Timestamp,
) -> bool {
    let mut admitted = ctx.admitted.lock().await;
    let uid = obj.uid().unwrap_or_default();
    if admitted.contains_key(&uid) {
        // Admitted, waiting for its record to be written (see `write_ahead`).
        return true;
    }
    let me = queue::Claim {
        key: scenario_key(obj),
        uid,
        created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
        state: queue::State::Waits,
        proxies: targets::keys(&ns(obj), &obj.spec.targets, &record, targets).await,
    };
    let others = claims(ctx, &me, &admitted).await;
    if let Some((b, shared)) = queue::blocker(&me, &others) {
        let generation = obj.meta().generation.unwrap_or_default();
        let message = format!("waiting for {}: both drive the proxy {shared}", b.key);
        let new = ChaosScenarioStatus {
            phase: Some(Phase::Queued),
            observed_generation: Some(generation),
            targets: record,
            conditions: status::conditions(&old.conditions, Phase::Queued, None, "", generation, now),
            message: Some(message),
            ..old.clone()
        };
        commit(ctx, obj, old, new);
        return false;
    }
    // The cache shows an admission within seconds: only what it does not show yet is kept.
    let cached = ctx.store.state();
    let not_started: HashSet<&str> = cached
        .iter()
        .filter(|s| s.status.as_ref().is_none_or(|st| st.started_at.is_none()))
        .filter_map(|s| s.metadata.uid.as_deref())
        .collect();
    admitted.retain(|uid, _| not_started.contains(uid.as_str()));
    admitted.insert(me.uid, me.proxies);
    true
}

/// The run's plan from its start, with Testing cut short where spec.abort fired (recorded in
/// status, or just now by the sampler); the abort time when it did.
fn plan_of(
    ctx: &Context,
    obj: &ChaosScenario,
    old: &ChaosScenarioStatus,
    start: Timestamp,
) -> (Plan, Option<Timestamp>) {
    let sampler_abort = ctx.samplers.get(&obj.uid().unwrap_or_default()).and_then(|s| s.abort_at());
    let aborted_at = old.aborted_at.as_ref().map(|t| t.0).or(sampler_abort.map(whole_seconds));
    let plan = Plan::new(start, &obj.spec.phases).abort_at(aborted_at);
    let aborted_at = plan.aborted_at.filter(|a| plan.starts(Phase::Recovery) == Some(*a));
    (plan, aborted_at)
}

/// The sampler of a scenario with `spec.client`, started or told about edits; none without.
fn sampler_of(
    ctx: &Context,
    obj: &ChaosScenario,
    plan: Plan,
    judging: Judging,
    now: Timestamp,
) -> Option<Arc<Sampler>> {
    let uid = obj.uid().unwrap_or_default();
    match &obj.spec.client {
        Some(c) => {
            let abort = obj.spec.abort.as_ref().map(AbortRule::from);
            let ns = obj.namespace().unwrap_or_else(|| "default".into());
            Some(ctx.samplers.ensure(&uid, (&ns, c), plan, abort, judging, now))
        }
        None => {
            ctx.samplers.stop(&uid);
            None
        }
    }
}

/// How late a phase change is applied, against its planned boundary: a metric, and a debug line
/// per scenario (target `chaoslab_operator::lateness`). `began` is when the reconcile began (before
/// the boundary when it was woken ahead, see `WAKE_AHEAD`): the debug line splits the lateness into
/// the wait for a reconcile and the reconcile's own work, and a reconcile that began
/// [`SLOW_SECONDS`] late is logged at warn.
fn observe_lateness(
    ctx: &Context,
    obj: &ChaosScenario,
    old: Option<Phase>,
    plan: &Plan,
    phase: Phase,
    began: Timestamp,
) {
    // From Queued or no status too: a run admitted within WAKE_AHEAD of its start enters
    // Stabilization in the reconcile that admitted it.
    if old != Some(phase)
        && let Some(boundary) = plan.starts(phase)
    {
        let late = Timestamp::now().duration_since(boundary).as_secs_f64().max(0.0);
        let began_ms = began.duration_since(boundary).as_secs_f64() * 1e3;
        if began_ms >= SLOW_SECONDS * 1e3 {
            // Not a slow call (those warn themselves): the reconcile came late. The controller's
            // debug lines ("reconciled", with the action each returned) show which requeue it was.
            tracing::warn!(scenario = %scenario_key(obj), phase = phase.as_str(), began_ms, "phase change began late");
        }
        ctx.metrics.phase_transition_lateness.with_label_values(&[phase.as_str()]).observe(late);
        tracing::debug!(target: "chaoslab_operator::lateness", scenario = %scenario_key(obj), phase = phase.as_str(),
            late_ms = late * 1e3, began_ms, "phase change applied");
    }
}

/// Write-ahead: a proxy is on record (written, not only decided) before the first call that could put
/// a toxic on it. Returns the status as decided, and whether its record is on the resource yet; if
/// not, the caller looks again in [`RECORD_POLL`] rather than wait for the apiserver.
fn write_ahead(
    ctx: &Context,
    obj: &ChaosScenario,
    old: ChaosScenarioStatus,
    record: &[TargetStatus],
) -> (ChaosScenarioStatus, bool) {
    let old = if record::has_new_entries(&old.targets, record) {
        let grown = ChaosScenarioStatus { targets: record.to_vec(), ..old };
        ctx.writers.submit(obj, grown.clone());
        grown
    } else {
        old
    };
    let stored = ctx.writers.stored(obj, |s| !record::has_new_entries(&s.targets, record));
    (old, stored)
}

tokio::task_local! {
    /// How long the reconcile in this scope slept for a phase boundary: the controller leaves it
    /// out of the reconcile's duration, which measures the work.
    pub static WAITED: std::cell::Cell<Duration>;
}

/// How soon a run whose record is not written yet looks again.
const RECORD_POLL: Duration = Duration::from_millis(100);

/// The status message while a run goes on.
fn progress(phase: Phase, start: Timestamp, current: &[TargetStatus], sampler: Option<&Sampler>) -> String {
    let mut message = match phase {
        Phase::Pending => format!("admitted: Stabilization starts at {start}"),
        Phase::Stabilization => "Stabilization: targets reset, no faults".to_string(),
        Phase::Testing => {
            let faulted: Vec<&str> =
                current.iter().filter(|t| !t.toxics.is_empty() || !t.enabled).map(|t| t.name.as_str()).collect();
            format!("Testing: faults on {}", faulted.join(", "))
        }
        _ => "Recovery: faults removed, observing healing".to_string(),
    };
    if let Some(sampler) = sampler {
        message += &replicas_note(sampler);
        if let Some(e) = sampler.last_error() {
            message += &format!(" (cannot read client metrics: {e})");
        }
    }
    message
}

/// Which replicas of the client are read, when there are several or some went away.
fn replicas_note(sampler: &Sampler) -> String {
    let (current, gone) = sampler.replicas();
    let mut note = String::new();
    if current.len() > 1 {
        note += &format!("; client: {} replicas ({})", current.len(), current.join(", "));
    }
    if !gone.is_empty() {
        note += &format!("; replicas gone: {}", gone.join(", "));
    }
    note
}

/// When to look again: see [`next_check`]; once the run is over, only on a change.
fn next_look(ctx: &Context, phase: Phase, deadline: Option<Timestamp>, now: Timestamp) -> Action {
    match deadline {
        Some(d) => Action::requeue(next_check(phase, d, now, ctx.config.sample_interval)),
        None => Action::await_change(),
    }
}

/// How far ahead of this replica's clock a run's start may be (the replica that admitted it may
/// run ahead): later, `status.startedAt` was not written by an operator, and the run would wait
/// for it in Pending.
const FUTURE_START: Duration = Duration::from_secs(300);

/// How long target pods may be missing before the run gives up: before admission from the
/// scenario's creation, after it from the run's planned end (a run never waits forever).
pub const TARGETS_GRACE: Duration = Duration::from_secs(60);

fn gave_up_waiting(obj: &ChaosScenario, old: &ChaosScenarioStatus, now: Timestamp) -> bool {
    let from = match &old.started_at {
        Some(start) => Plan::new(start.0, &obj.spec.phases).end(),
        None => obj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
    };
    now.duration_since(from).unsigned_abs() > TARGETS_GRACE && now > from
}

/// A transient problem before the run could act: the status says what and why, the phase stays.
async fn wait(ctx: &Context, obj: &ChaosScenario, old: &ChaosScenarioStatus, p: Problem) -> Result<Action, Error> {
    ctx.metrics.errors.with_label_values(&[p.kind.metric_label()]).inc();
    let message = format!("waiting: {}", p.message);
    if old.message.as_deref() != Some(message.as_str()) {
        event(ctx, obj, EventType::Warning, p.kind.reason(), p.message.clone());
    }
    let phase = old.phase.unwrap_or(Phase::Pending);
    let generation = obj.meta().generation.unwrap_or_default();
    let new = ChaosScenarioStatus {
        phase: Some(phase),
        observed_generation: Some(generation),
        conditions: status::conditions(&old.conditions, phase, None, &message, generation, Timestamp::now()),
        message: Some(message),
        ..old.clone()
    };
    commit(ctx, obj, old, new);
    Ok(Action::requeue(Duration::from_secs(2)))
}

/// Folds this round's checks of the current targets into the run's verification; returns what to
/// write to status: the new figures when they are worth a write (`worth_a_write`), else what status
/// already says.
fn verify(
    ctx: &Context,
    obj: &ChaosScenario,
    old: &[TargetVerification],
    plan: Plan,
    findings: &[(String, Finding)],
    now: Timestamp,
) -> Vec<TargetVerification> {
    let mut verifiers = ctx.verifiers.lock().expect("verifiers");
    let v = verifiers.entry(obj.uid().unwrap_or_default()).or_insert_with(|| RunVerifier::resume(plan, old));
    v.set_plan(plan);
    for (target, finding) in findings {
        v.record(target, now, *finding);
    }
    let new = v.report(now);
    if worth_a_write(old, &new, &plan, now) { new } else { old.to_vec() }
}

/// The run's in-memory state (sampler, verification) goes: it ended or was deleted.
fn forget(ctx: &Context, uid: &str) {
    ctx.samplers.stop(uid);
    ctx.boundaries.expect(uid, None);
    ctx.known_keys.forget(uid);
    ctx.verifiers.lock().expect("verifiers").remove(uid);
}

/// The status message while a run goes on, naming what stands in its way.
fn progress_with(
    phase: Phase,
    start: Timestamp,
    current: &[TargetStatus],
    sampler: Option<&Sampler>,
    problems: &[Problem],
) -> String {
    let message = progress(phase, start, current, sampler);
    if problems.is_empty() { message } else { format!("{message}; {}", messages(problems)) }
}

/// One step of a run that has not ended: resolve its targets, admit it, put the engine's moment on
/// every proxy of its record (verifying that they still hold it), fold in the client's observations,
/// and write the status (with the verdict once Recovery is over). Permanent problems end the run as
/// Failed; transient ones keep it in its phase and are retried.
pub async fn apply(obj: Arc<ChaosScenario>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !may_act(&ctx) {
        return Ok(Action::requeue(NOT_LEADING_RETRY));
    }
    let now = Timestamp::now();
    let old = ctx.writers.status(&obj);
    if old.phase.is_some_and(Phase::is_terminal) {
        return settle(&ctx, &obj, &old).await;
    }
    if let Some(reason) = ctx.stops.reason(&ctx.client, &ns(&obj)).await {
        return halt(&ctx, &obj, &old, &reason).await;
    }
    let spec = &obj.spec;
    let targets = match resolve_targets(&ctx, &obj).await {
        Ok(t) => t,
        Err(p) if p.kind.is_permanent() || gave_up_waiting(&obj, &old, now) => {
            return fail(&ctx, &obj, &old, &old.targets, 0, p).await;
        }
        Err(p) => return wait(&ctx, &obj, &old, p).await,
    };
    let record = record::grow(&old.targets, &targets);
    let invalid = |e: chaoslab_core::engine::EngineError| Problem::new(Kind::SpecInvalid, e.to_string());
    let faults = match engine::resolve_faults(spec, targets.len()) {
        Ok(f) => f.to_vec(),
        Err(e) => return fail(&ctx, &obj, &old, &record, targets.len(), invalid(e)).await,
    };
    let (old, start, now) = match old.started_at.as_ref().map(|t| t.0) {
        Some(t) => (old, t, now),
        None => {
            if !admit(&ctx, &obj, &old, &targets, record.clone(), now).await {
                return Ok(Action::requeue(ctx.config.queue_poll));
            }
            // The record is written before the run starts, not when its first fault comes: then
            // no phase change waits for a write, however slow the apiserver (see status_writer.rs).
            let (old, stored) = write_ahead(&ctx, &obj, old, &record);
            if !stored {
                return Ok(Action::requeue(RECORD_POLL));
            }
            let now = Timestamp::now();
            (old, start_of_run(now), now)
        }
    };
    if start > now + SignedDuration::try_from(FUTURE_START).unwrap_or(SignedDuration::MAX) {
        let p = format!("status.startedAt {start} is in the future: a run starts at its admission (edited by hand?)");
        return fail(&ctx, &obj, &old, &record, targets.len(), Problem::new(Kind::SpecInvalid, p)).await;
    }
    let (plan, aborted_at) = plan_of(&ctx, &obj, &old, start);
    let began = now;
    let now = match plan.boundary_within_wake(now) {
        Some((boundary, left)) => {
            tokio::time::sleep(left).await;
            let _ = WAITED.try_with(|w| w.set(w.get() + left));
            if !may_act(&ctx) {
                return Ok(Action::requeue(NOT_LEADING_RETRY));
            }
            Timestamp::now().max(boundary)
        }
        None => now,
    };
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let sampler = sampler_of(&ctx, &obj, plan, Judging { faults: &faults, target_names: &names }, now);
    let owner = owner_tag(&obj.uid().unwrap_or_default());
    // The chart's sidecars are toxiproxy-servers: partial loss is made of Toxiproxy's toxics.
    let proxies = vec![ProxyKind::Toxiproxy; targets.len()];
    let moment = match engine::moment(spec, &owner, &proxies, &plan, now) {
        Ok(m) => m,
        Err(e) => return fail(&ctx, &obj, &old, &record, targets.len(), invalid(e)).await,
    };
    let faulting = moment.targets.iter().any(|d| !d.toxics.is_empty() || d.enabled == Some(false));
    let (old, stored) = if faulting { write_ahead(&ctx, &obj, old, &record) } else { (old, true) };
    if !stored {
        // A new target (a replaced pod) mid-run: its faults come once it is on record.
        return Ok(Action::requeue(RECORD_POLL));
    }
    let done = converge_record(&ctx, &ns(&obj), jobs(&record, &moment.targets, &owner)).await;
    observe_lateness(&ctx, &obj, old.phase, &plan, moment.phase, began);
    if let Some(p) = done.problems.iter().find(|p| p.kind.is_permanent()) {
        return fail(&ctx, &obj, &old, &done.record, targets.len(), p.clone()).await;
    }
    announce(&ctx, &obj, &old.targets, &done.record, &done.problems);
    let verification = verify(&ctx, &obj, &old.verification, plan, &done.findings, now);
    let record = done.record;

    let observations = match &sampler {
        Some(s) => {
            s.close_until(now);
            merge_observations(old.observations.clone(), s.finished())
        }
        None => old.observations.clone(),
    };
    let over = moment.phase == Phase::Completed;
    // Written once, at the end: while the run goes they change at every sample.
    let timings = if over { sampler.as_ref().map(|s| s.timings()) } else { None }.or(old.timings.clone());
    let (phase, verdict, checks, message) = if over {
        forget(&ctx, &obj.uid().unwrap_or_default());
        let stop = match (aborted_at, spec.abort.as_ref()) {
            (Some(at), Some(rule)) => Stop::Aborted { at, rule },
            _ => Stop::Completed,
        };
        let seen = Seen { observations: &observations, verification: &verification, timings: timings.as_ref() };
        let e = ending::end(&faults, &names, spec.expect.as_ref(), seen, spec.client.is_some(), stop);
        if let Some(t) = &timings {
            ctx.metrics.scenario.set_times(&scenario_key(&*obj), t.measures(), t.testing_error_rate);
        }
        (e.phase, Some(e.verdict), e.checks, e.message)
    } else {
        let current = &record[..targets.len()];
        (moment.phase, None, vec![], progress_with(moment.phase, start, current, sampler.as_deref(), &done.problems))
    };
    let generation = obj.meta().generation.unwrap_or_default();
    let trouble = done.problems.first();
    let new = ChaosScenarioStatus {
        phase: Some(phase),
        observed_generation: Some(generation),
        started_at: Some(Time(start)),
        completed_at: over.then(|| Time(plan.end())),
        aborted_at: aborted_at.map(Time),
        timeline: plan.timeline(now),
        targets: record,
        verdict,
        checks,
        conditions: status::conditions_with(&old.conditions, phase, verdict, &message, trouble, generation, now),
        message: Some(message),
        observations,
        verification,
        timings,
    };
    let settled = record::settled(&new.targets);
    commit(&ctx, &obj, &old, new);
    if phase.is_terminal() {
        return Ok(after_end(settled, Some(plan.end()), Timestamp::now()));
    }
    ctx.boundaries.expect(&obj.uid().unwrap_or_default(), moment.next_deadline);
    // From now, not from the reconcile's start: kube-rs counts the requeue from when the reconcile
    // returns, so a slow status patch would otherwise make the next boundary late by as much.
    Ok(next_look(&ctx, phase, moment.next_deadline, Timestamp::now()))
}

/// The emergency stop on the scenario's namespace: a run that was admitted lets go of every proxy on
/// record and ends Aborted; one that was not waits Queued until the stop is lifted.
async fn halt(ctx: &Context, obj: &ChaosScenario, old: &ChaosScenarioStatus, reason: &str) -> Result<Action, Error> {
    let (uid, namespace, now) = (obj.uid().unwrap_or_default(), ns(obj), Timestamp::now());
    let generation = obj.meta().generation.unwrap_or_default();
    if old.started_at.is_none() {
        let message = format!(
            "emergency stop on namespace {namespace} ({reason}): waits until it is lifted \
             (kubectl annotate namespace {namespace} {STOP}-)"
        );
        let new = ChaosScenarioStatus {
            phase: Some(Phase::Queued),
            observed_generation: Some(generation),
            conditions: status::conditions(&old.conditions, Phase::Queued, None, "", generation, now),
            message: Some(message),
            ..old.clone()
        };
        commit(ctx, obj, old, new);
        return Ok(Action::requeue(ctx.config.queue_poll));
    }
    let owner = owner_tag(&uid);
    let done = converge_record(ctx, &namespace, release_all(&old.targets, old.targets.len(), &owner)).await;
    let sampler = ctx.samplers.get(&uid);
    let observations = match &sampler {
        Some(s) => {
            s.close_until(now);
            merge_observations(old.observations.clone(), s.finished())
        }
        None => old.observations.clone(),
    };
    let timings = sampler.map(|s| s.timings()).or(old.timings.clone());
    forget(ctx, &uid);
    let names: Vec<String> = old.targets.iter().map(|t| t.name.clone()).collect();
    let faults = engine::resolve_faults(&obj.spec, names.len()).map(<[_]>::to_vec).unwrap_or_default();
    let seen = Seen { observations: &observations, verification: &old.verification, timings: timings.as_ref() };
    let (expect, judged) = (obj.spec.expect.as_ref(), obj.spec.client.is_some());
    let e = ending::end(&faults, &names, expect, seen, judged, Stop::Halted { reason });
    let mut message = e.message;
    if !done.problems.is_empty() {
        message += &format!("; faults not removed yet, retrying: {}", messages(&done.problems));
    }
    let new = ChaosScenarioStatus {
        phase: Some(e.phase),
        observed_generation: Some(generation),
        completed_at: Some(Time(whole_seconds(now))),
        timeline: old
            .timeline
            .iter()
            .cloned()
            .map(|mut r| {
                r.end.get_or_insert(Time(whole_seconds(now)));
                r
            })
            .collect(),
        targets: done.record,
        verdict: Some(e.verdict),
        checks: e.checks,
        conditions: status::conditions(&old.conditions, e.phase, Some(e.verdict), &message, generation, now),
        message: Some(message),
        observations,
        timings,
        ..old.clone()
    };
    let settled = record::settled(&new.targets);
    commit(ctx, obj, old, new);
    Ok(after_end(settled, Some(now), now))
}

/// An Event for each target a call newly failed to reach (not on every retry).
fn announce(ctx: &Context, obj: &ChaosScenario, before: &[TargetStatus], after: &[TargetStatus], problems: &[Problem]) {
    for (entry, p) in after.iter().filter(|e| e.error.is_some()).zip(problems) {
        let was_failing =
            before.iter().any(|b| b.endpoint == entry.endpoint && b.proxy == entry.proxy && b.error.is_some());
        if !was_failing {
            event(ctx, obj, EventType::Warning, p.kind.reason(), p.message.clone());
        }
    }
}

/// Set on a scenario to let it be deleted although its faults could not be removed (a Toxiproxy
/// gone for good): the user takes them over.
pub const ABANDON_FAULTS: &str = "chaoslab.dev/abandon-faults";

/// The scenario is being deleted: release every proxy that may hold its toxics. The finalizer stays
/// until they are proven removed, or the user sets [`ABANDON_FAULTS`].
pub async fn cleanup(obj: Arc<ChaosScenario>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !may_act(&ctx) {
        return Err(Error::NotLeading);
    }
    let old = ctx.writers.status(&obj);
    let uid = obj.uid().unwrap_or_default();
    forget(&ctx, &uid);
    // The current targets too: a crash may have come before their first record.
    let targets = resolve_targets(&ctx, &obj).await.unwrap_or_default();
    let record = record::grow(&old.targets, &targets);
    let owner = owner_tag(&uid);
    let done = converge_record(&ctx, &ns(&obj), release_all(&record, record.len(), &owner)).await;
    let (record, errors) = (done.record, done.problems);
    let key = scenario_key(&*obj);
    if !errors.is_empty() {
        let abandon = obj.annotations().get(ABANDON_FAULTS).is_some_and(|v| v == "true");
        let what = messages(&errors);
        if !abandon {
            let msg = format!(
                "cannot remove this scenario's faults: {what}. The scenario stays until they are removed; \
                 to give them up: kubectl annotate chaos {} {ABANDON_FAULTS}=true",
                obj.name_any()
            );
            event(&ctx, &obj, EventType::Warning, "CleanupBlocked", msg.clone());
            commit(&ctx, &obj, &old, ChaosScenarioStatus { targets: record, ..old.clone() });
            return Err(Error::CleanupBlocked(msg));
        }
        tracing::warn!(scenario = %key, "deleted with faults abandoned ({ABANDON_FAULTS}): {what}");
        event(&ctx, &obj, EventType::Warning, "FaultsAbandoned", what);
    }
    ctx.metrics.scenario.forget(&key);
    tracing::info!(scenario = %key, "deleted: toxics removed");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use chaoslab_testenv::at_ms;

    use super::*;

    #[test]
    fn a_run_starts_at_the_next_whole_second_never_before_its_admission() {
        assert_eq!(start_of_run(at_ms(99_400)), at_ms(100_000));
        assert_eq!(start_of_run(at_ms(100_000)), at_ms(100_000));
        assert_eq!(start_of_run(at_ms(100_001)), at_ms(101_000));
    }

    #[test]
    fn leftovers_are_retried_less_often_the_longer_a_target_stays_away() {
        let ended = Some(at_ms(0));
        assert_eq!(leftover_retry(ended, at_ms(5_000)), Duration::from_secs(10));
        assert_eq!(leftover_retry(ended, at_ms(200_000)), Duration::from_secs(50));
        assert_eq!(leftover_retry(ended, at_ms(86_400_000)), Duration::from_secs(300));
        assert_eq!(leftover_retry(None, at_ms(5_000)), Duration::from_secs(10));
    }
}
