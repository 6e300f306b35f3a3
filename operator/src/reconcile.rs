//! One reconcile of one ChaosScenario: resolve targets → ask the engine → converge toxics →
//! fold in observations → write status → requeue at the next deadline. Never sleeps; everything it
//! needs to continue after a crash is on the resource.

use std::{sync::Arc, time::Duration};

use chaoslab_core::{
    api::{ChaosScenario, ChaosScenarioStatus, Check, Phase, PhaseObservation, TargetStatus, Verdict},
    checks,
    engine::{self, Plan},
    faults::{DesiredProxy, owner_tag},
};
use chaoslab_toxiproxy::{Client as Toxiproxy, Foreign};
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};

use crate::{
    controller::{Context, Error},
    queue, status,
    targets::{self, Target},
};

pub const FIELD_MANAGER: &str = "chaoslab-operator";

/// `namespace/name`, the `scenario` label of the metrics.
pub fn scenario_key(s: &ChaosScenario) -> String {
    format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any())
}

/// Kubernetes times have whole seconds: the run's anchors too, so every reconcile computes the same plan.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn toxiproxy(ctx: &Context, t: &Target) -> Result<Toxiproxy, String> {
    Toxiproxy::with_policy(&t.url, ctx.config.toxiproxy_policy).map_err(|e| format!("target {}: {e}", t.name))
}

/// Converges every target to `desired` (same order); the error names the first target that failed.
async fn converge_all(
    ctx: &Context,
    targets: &[Target],
    desired: &[DesiredProxy],
    foreign: Foreign,
) -> Result<Vec<TargetStatus>, String> {
    let calls = targets.iter().zip(desired).map(|(t, d)| async move {
        let client = toxiproxy(ctx, t)?;
        let result = client.converge(&t.proxy, d, foreign).await;
        ctx.metrics.toxiproxy_calls.with_label_values(&[if result.is_ok() { "ok" } else { "error" }]).inc();
        let report = result.map_err(|e| format!("target {} ({}): {e}", t.name, t.url))?;
        Ok::<_, String>(TargetStatus {
            name: t.name.clone(),
            endpoint: t.url.clone(),
            proxy: t.proxy.clone(),
            enabled: d.enabled,
            toxics: report.held,
        })
    });
    join_all(calls).await.into_iter().collect()
}

async fn write_status(ctx: &Context, obj: &ChaosScenario, status: &ChaosScenarioStatus) -> Result<(), Error> {
    let api: Api<ChaosScenario> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "chaoslab.dev/v1alpha1",
        "kind": "ChaosScenario",
        "status": status,
    });
    api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Kube)?;
    Ok(())
}

async fn event(ctx: &Context, obj: &ChaosScenario, type_: EventType, reason: &str, note: String) {
    let ev = kube::runtime::events::Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(scenario = %scenario_key(obj), "cannot publish event: {e}");
    }
}

/// Writes `status` if it differs, with an Event and metrics when the phase changed.
async fn commit(
    ctx: &Context,
    obj: &ChaosScenario,
    old: &ChaosScenarioStatus,
    new: ChaosScenarioStatus,
) -> Result<(), Error> {
    if *old == new {
        return Ok(());
    }
    write_status(ctx, obj, &new).await?;
    let key = scenario_key(obj);
    if let Some(phase) = new.phase {
        ctx.metrics.scenario.set_phase(&key, phase.as_str());
        if old.phase != new.phase {
            let kind = if phase == Phase::Failed { EventType::Warning } else { EventType::Normal };
            let note = new.message.clone().unwrap_or_default();
            tracing::info!(scenario = %key, phase = phase.as_str(), "{note}");
            event(ctx, obj, kind, phase.as_str(), note).await;
        }
    }
    for (i, t) in new.targets.iter().enumerate() {
        let previous = old.targets.get(i).map(|o| o.toxics.as_slice()).unwrap_or_default();
        ctx.metrics.scenario.set_toxics(&key, &t.name, &t.toxics, previous);
    }
    Ok(())
}

/// Ends the run as Failed with `message`, removing this scenario's toxics where it can.
async fn fail(
    ctx: &Context,
    obj: &ChaosScenario,
    old: &ChaosScenarioStatus,
    targets: &[Target],
    message: String,
) -> Result<Action, Error> {
    let clean = vec![DesiredProxy::clean(); targets.len()];
    let cleaned = converge_all(ctx, targets, &clean, Foreign::Keep).await.unwrap_or_default();
    ctx.samplers.stop(&obj.uid().unwrap_or_default());
    let now = Timestamp::now();
    let generation = obj.meta().generation.unwrap_or_default();
    let new = ChaosScenarioStatus {
        phase: Some(Phase::Failed),
        observed_generation: Some(generation),
        completed_at: Some(Time(whole_seconds(now))),
        targets: cleaned,
        conditions: status::conditions(&old.conditions, Phase::Failed, None, &message, generation, now),
        message: Some(message),
        ..old.clone()
    };
    commit(ctx, obj, old, new).await?;
    Ok(Action::await_change())
}

fn merge_observations(mut have: Vec<PhaseObservation>, new: Vec<PhaseObservation>) -> Vec<PhaseObservation> {
    for o in new {
        if !have.iter().any(|h| h.phase == o.phase) {
            have.push(o);
        }
    }
    have
}

fn summary(checks: &[Check], verdict: Verdict) -> String {
    let passed = checks.iter().filter(|c| c.passed == Some(true)).count();
    let failed: Vec<&str> = checks.iter().filter(|c| c.passed == Some(false)).map(|c| c.name.as_str()).collect();
    let open = checks.iter().filter(|c| c.passed.is_none()).count();
    let mut s = format!("verdict {verdict:?}: {passed} of {} checks passed", checks.len());
    if !failed.is_empty() {
        s += &format!("; failed: {}", failed.join(", "));
    }
    if open > 0 {
        s += &format!("; {open} could not be judged");
    }
    s
}

pub async fn apply(obj: Arc<ChaosScenario>, ctx: Arc<Context>) -> Result<Action, Error> {
    let old = obj.status.clone().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    if old.phase.is_some_and(Phase::is_terminal) {
        ctx.samplers.stop(&uid);
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let generation = obj.meta().generation.unwrap_or_default();
    let spec = &obj.spec;

    let targets = match targets::resolve(&ctx.client, &obj).await {
        Ok(t) => t,
        Err(msg) => return fail(&ctx, &obj, &old, &[], msg).await,
    };
    let faults = match engine::resolve_faults(spec, targets.len()) {
        Ok(f) => f.to_vec(),
        Err(e) => return fail(&ctx, &obj, &old, &[], e.to_string()).await,
    };

    let started_at = match old.started_at.as_ref().map(|t| t.0) {
        Some(t) => t,
        None => {
            let mut started = ctx.started.lock().await;
            let all: Vec<ChaosScenario> = ctx.store.state().iter().map(|s| (**s).clone()).collect();
            // The resolved targets count too, not only the spec.
            let mut me = (*obj).clone();
            me.status.get_or_insert_with(Default::default).targets = targets
                .iter()
                .map(|t| TargetStatus {
                    name: t.name.clone(),
                    endpoint: t.url.clone(),
                    proxy: t.proxy.clone(),
                    enabled: true,
                    toxics: vec![],
                })
                .collect();
            if let Some(b) = queue::blocker(&me, &all, &started) {
                let message = format!("waiting for {}: it uses the same target(s)", scenario_key(b));
                let new = ChaosScenarioStatus {
                    phase: Some(Phase::Queued),
                    observed_generation: Some(generation),
                    targets: me.status.map(|s| s.targets).unwrap_or_default(),
                    message: Some(message),
                    conditions: status::conditions(&old.conditions, Phase::Queued, None, "", generation, now),
                    ..old.clone()
                };
                commit(&ctx, &obj, &old, new).await?;
                return Ok(Action::requeue(ctx.config.queue_poll));
            }
            started.push(uid.clone());
            // Keep the list short: the cache catches up within seconds.
            let excess = started.len().saturating_sub(256);
            started.drain(..excess);
            whole_seconds(now)
        }
    };

    let sampler_abort = ctx.samplers.get(&uid).and_then(|s| s.abort_at());
    let aborted_at = old.aborted_at.as_ref().map(|t| t.0).or(sampler_abort.map(whole_seconds));
    let plan = Plan::new(started_at, &spec.phases).abort_at(aborted_at);
    let aborted_at = plan.aborted_at.filter(|a| plan.starts(Phase::Recovery) == Some(*a));
    let sampler = spec
        .client
        .as_ref()
        .map(|c| ctx.samplers.ensure(&uid, &c.metrics_url, plan, spec.abort.as_ref().map(|a| a.rule())));

    let moment = match engine::moment(spec, &owner_tag(&uid), targets.len(), &plan, now) {
        Ok(m) => m,
        Err(e) => return fail(&ctx, &obj, &old, &targets, e.to_string()).await,
    };
    if old.phase.is_some_and(|p| Phase::TIMED.contains(&p) && p != moment.phase)
        && let Some(boundary) = plan.starts(moment.phase)
    {
        let late = now.duration_since(boundary).as_secs_f64().max(0.0);
        ctx.metrics.transition_lateness.with_label_values(&[moment.phase.as_str()]).observe(late);
    }
    let foreign = if engine::resets_targets(moment.phase) { Foreign::Remove } else { Foreign::Keep };
    let held = match converge_all(&ctx, &targets, &moment.targets, foreign).await {
        Ok(h) => h,
        Err(msg) => return fail(&ctx, &obj, &old, &targets, msg).await,
    };

    let observations = match &sampler {
        Some(s) => {
            s.close_until(now);
            merge_observations(old.observations.clone(), s.finished())
        }
        None => old.observations.clone(),
    };
    let done = moment.phase == Phase::Completed;
    let (phase, verdict, checks, message) = if done {
        ctx.samplers.stop(&uid);
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        let (mut checks, mut verdict) = if spec.client.is_some() {
            checks::evaluate(&faults, &names, &observations)
        } else {
            (vec![], Verdict::Inconclusive)
        };
        if let (Some(at), Some(rule)) = (aborted_at, spec.abort.as_ref()) {
            checks.push(Check {
                name: "not-aborted".into(),
                description: "Testing runs to its end without hitting spec.abort".into(),
                expected: format!("error rate below {:.0}% throughout Testing", rule.error_rate * 100.0),
                observed: format!("error rate ≥ {:.0}% for {} at {}", rule.error_rate * 100.0, rule.duration, at),
                passed: Some(false),
            });
            verdict = Verdict::Failed;
        }
        let phase = if aborted_at.is_some() { Phase::Aborted } else { Phase::Completed };
        let message = if spec.client.is_none() {
            "no spec.client.metricsUrl: nothing to judge".to_string()
        } else {
            summary(&checks, verdict)
        };
        (phase, Some(verdict), checks, message)
    } else {
        let mut message = match moment.phase {
            Phase::Stabilization => "Stabilization: targets reset, no faults".to_string(),
            Phase::Testing => {
                let faulted: Vec<&str> =
                    held.iter().filter(|t| !t.toxics.is_empty() || !t.enabled).map(|t| t.name.as_str()).collect();
                format!("Testing: faults on {}", faulted.join(", "))
            }
            _ => "Recovery: faults removed, observing healing".to_string(),
        };
        if let Some(e) = sampler.as_ref().and_then(|s| s.last_error()) {
            message += &format!(" (cannot read client metrics: {e})");
        }
        (moment.phase, None, vec![], message)
    };

    let new = ChaosScenarioStatus {
        phase: Some(phase),
        observed_generation: Some(generation),
        started_at: Some(Time(started_at)),
        completed_at: done.then(|| Time(plan.end())),
        aborted_at: aborted_at.map(Time),
        timeline: plan.timeline(now),
        targets: held,
        verdict,
        checks,
        conditions: status::conditions(&old.conditions, phase, verdict, &message, generation, now),
        message: Some(message),
        observations,
    };
    commit(&ctx, &obj, &old, new).await?;

    Ok(match moment.next_deadline {
        None => Action::await_change(),
        Some(deadline) => {
            // Land just after the boundary, so the engine sees the new phase.
            let wait = Duration::try_from(deadline.duration_since(now)).unwrap_or_default() + Duration::from_millis(20);
            let wait = if spec.abort.is_some() && phase == Phase::Testing {
                wait.min(ctx.config.sample_interval)
            } else {
                wait
            };
            Action::requeue(wait)
        }
    })
}

/// The scenario is being deleted: remove its toxics from every target it touched.
pub async fn cleanup(obj: Arc<ChaosScenario>, ctx: Arc<Context>) -> Result<Action, Error> {
    let old = obj.status.clone().unwrap_or_default();
    ctx.samplers.stop(&obj.uid().unwrap_or_default());
    let targets: Vec<Target> = if old.targets.is_empty() {
        targets::resolve(&ctx.client, &obj).await.unwrap_or_default()
    } else {
        old.targets
            .iter()
            .map(|t| Target { name: t.name.clone(), url: t.endpoint.clone(), proxy: t.proxy.clone() })
            .collect()
    };
    let clean = vec![DesiredProxy::clean(); targets.len()];
    if let Err(msg) = converge_all(&ctx, &targets, &clean, Foreign::Keep).await {
        // An unreachable Toxiproxy must not keep the scenario from being deleted forever.
        tracing::warn!(scenario = %scenario_key(&obj), "cleanup: {msg}");
        event(&ctx, &obj, EventType::Warning, "CleanupFailed", msg).await;
    }
    let held: Vec<(String, String)> =
        old.targets.iter().flat_map(|t| t.toxics.iter().map(|x| (t.name.clone(), x.clone()))).collect();
    ctx.metrics.scenario.forget(&scenario_key(&obj), &held);
    tracing::info!(scenario = %scenario_key(&obj), "deleted: toxics removed");
    Ok(Action::await_change())
}
