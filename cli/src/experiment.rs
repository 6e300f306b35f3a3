//! One scenario on the local lab, driven by the shared engine, recorder and checks: the same
//! phases, toxics and verdict as the operator, with a local clock.

use std::time::Duration;

use chaoslab_core::{
    api::{ChaosScenarioSpec, ChaosScenarioStatus, Endpoint, Phase, Phases, TargetStatus, Targets, TemplateName},
    catalog::Scenario,
    client_metrics::{BreakerState, Scrape},
    ending::{self, Seen, Stop},
    engine::{self, Moment, Plan},
    faults::{DesiredProxy, owner_tag},
    observation::RunRecorder,
    verification::{Finding, RunVerifier},
};
use chaoslab_toxiproxy::{Target, converge_all};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use crate::lab::Lab;

/// One sample of the time series in the report.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Seconds since the run started.
    pub t: f64,
    pub phase: Phase,
    pub servers: Vec<ServerPoint>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerPoint {
    pub name: String,
    /// Successful requests per second since the previous point.
    pub ops: f64,
    /// Errors and timeouts per second.
    pub errors: f64,
    pub rejected: f64,
    /// The contract's breaker gauge: 0 closed, 1 half-open, 2 open.
    pub breaker: i64,
    pub active: f64,
    pub idle: f64,
}

pub struct Experiment<'a> {
    lab: &'a Lab,
    pub scenario: &'static Scenario,
    spec: ChaosScenarioSpec,
    owner: String,
    plan: Plan,
    recorder: RunRecorder,
    pub series: Vec<Point>,
    last: Option<(Timestamp, Scrape)>,
    phase: Phase,
    held: Vec<TargetStatus>,
    verifier: RunVerifier,
    interval: Duration,
    missed_scrapes: u32,
}

impl<'a> Experiment<'a> {
    pub fn new(lab: &'a Lab, scenario: &'static Scenario, phases: Phases, interval: Duration) -> Self {
        let now = Timestamp::now();
        let spec = ChaosScenarioSpec {
            template: Some(TemplateName(scenario.name.to_string())),
            faults: None,
            targets: Targets {
                selector: None,
                admin_port: chaoslab_core::api::DEFAULT_ADMIN_PORT,
                proxy: chaoslab_core::api::DEFAULT_PROXY.into(),
                endpoints: Some(
                    lab.servers
                        .iter()
                        .map(|s| Endpoint {
                            name: s.name.clone(),
                            url: s.toxiproxy.url().into(),
                            proxy: Some(s.proxy.clone()),
                        })
                        .collect(),
                ),
            },
            phases,
            client: None,
            abort: None,
            expect: None,
        };
        let plan = Plan::new(now, &spec.phases);
        let mut recorder = RunRecorder::new(plan, None);
        let names: Vec<String> = lab.servers.iter().map(|s| s.name.clone()).collect();
        recorder.set_targets(&scenario.faults, &names);
        Self {
            lab,
            scenario,
            owner: owner_tag(&format!("{:x}{:x}", now.as_nanosecond(), std::process::id())),
            recorder,
            plan,
            spec,
            series: Vec::new(),
            last: None,
            phase: Phase::Pending,
            held: Vec::new(),
            verifier: RunVerifier::new(plan),
            interval,
            missed_scrapes: 0,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// One step at `now`: converge (and so verify) the proxies, record a sample. Returns the moment;
    /// the run is over once its phase is Completed.
    pub async fn step(&mut self) -> anyhow::Result<Moment> {
        // Woken ahead of a boundary (see `next_check`): the new phase goes on at the boundary.
        let now = match self.plan.boundary_within_wake(Timestamp::now()) {
            Some((boundary, left)) => {
                tokio::time::sleep(left).await;
                Timestamp::now().max(boundary)
            }
            None => Timestamp::now(),
        };
        let proxies: Vec<_> = self.lab.servers.iter().map(|s| s.kind).collect();
        let moment = engine::moment(&self.spec, &self.owner, &proxies, &self.plan, now)?;
        self.converge(&moment.targets, now).await?;
        if moment.phase != self.phase {
            self.phase = moment.phase;
            self.lab.scenario_metrics.set_phase(self.scenario.name, moment.phase.as_str());
        }
        // A client of the user's own may miss a scrape (restarting, busy): the run goes on without
        // that sample; its checks then judge what was seen.
        match self.lab.client_metrics().await {
            // Values from a Prometheus are as old as its scrape: recorded when taken, once each.
            Ok((scrape, taken)) => {
                let at = taken.unwrap_or(now);
                if self.last.as_ref().is_none_or(|(last, _)| at > *last) {
                    self.record(at, scrape);
                }
            }
            Err(e) => {
                self.missed_scrapes += 1;
                if self.missed_scrapes == 1 {
                    eprintln!("\nchaoslab: missed a sample of the client's metrics: {e:#}");
                }
            }
        }
        Ok(moment)
    }

    /// Puts one moment of the run on the lab's proxies (all at once, as the operator does).
    async fn converge(&mut self, desired: &[DesiredProxy], now: Timestamp) -> anyhow::Result<()> {
        let servers = &self.lab.servers;
        let calls: Vec<Target> = servers
            .iter()
            .zip(desired)
            .map(|(s, desired)| Target { client: &s.toxiproxy, proxy: &s.proxy, desired, known: None })
            .collect();
        let mut held = Vec::new();
        for (s, report) in servers.iter().zip(converge_all(&calls).await) {
            let report = report?;
            let finding = if report.changed() { Finding::Applied } else { Finding::Held };
            self.verifier.record(&s.name, now, finding);
            self.lab.scenario_metrics.set_toxics(self.scenario.name, &s.name, &report.held);
            held.push(TargetStatus {
                name: s.name.clone(),
                endpoint: s.toxiproxy.url().into(),
                proxy: s.proxy.clone(),
                pod_uid: None,
                enabled: report.enabled,
                toxics: report.held,
                error: None,
            });
        }
        self.held = held;
        Ok(())
    }

    fn record(&mut self, now: Timestamp, scrape: Scrape) {
        if let Some((then, prev)) = &self.last {
            let dt = now.duration_since(*then).as_secs_f64().max(1e-3);
            let rate = |a: f64, b: f64| ((a - b).max(0.0)) / dt;
            let servers = scrape
                .iter()
                .map(|(name, m)| {
                    let p = prev.get(name).cloned().unwrap_or_default();
                    ServerPoint {
                        name: name.clone(),
                        ops: rate(m.success, p.success),
                        errors: rate(m.error + m.timeout, p.error + p.timeout),
                        rejected: rate(m.rejected, p.rejected),
                        breaker: m.breaker.unwrap_or(BreakerState::Closed).gauge(),
                        active: m.pool_active,
                        idle: m.pool_idle,
                    }
                })
                .collect();
            let t = now.duration_since(self.plan.start).as_secs_f64();
            self.series.push(Point { t, phase: self.plan.phase_at(now), servers });
        }
        self.recorder.record(now, scrape.clone());
        self.last = Some((now, scrape));
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The latest point of the series (for progress).
    pub fn latest(&self) -> Option<&Point> {
        self.series.last()
    }

    /// What the operator would write to status. `interrupted` runs end Aborted, Inconclusive.
    pub fn status(&mut self, interrupted: bool) -> ChaosScenarioStatus {
        let now = Timestamp::now();
        self.recorder.close_until(now);
        let observations = self.recorder.finished().to_vec();
        let names: Vec<String> = self.lab.servers.iter().map(|s| s.name.clone()).collect();
        let stop = if interrupted { Stop::Interrupted { during: self.phase } } else { Stop::Completed };
        let verification = self.verifier.report(now);
        let timings = self.recorder.timings();
        let seen = Seen { observations: &observations, verification: &verification, timings: Some(&timings) };
        let end = ending::end(&self.scenario.faults, &names, None, seen, true, stop);
        self.lab.scenario_metrics.set_times(self.scenario.name, timings.measures(), timings.testing_error_rate);
        ChaosScenarioStatus {
            phase: Some(end.phase),
            observed_generation: None,
            started_at: Some(Time(self.plan.start)),
            completed_at: Some(Time(now)),
            aborted_at: None,
            timeline: self.plan.timeline(now),
            targets: self.held.clone(),
            verdict: Some(end.verdict),
            checks: end.checks,
            conditions: vec![],
            message: Some(end.message),
            observations,
            verification,
            timings: Some(timings),
        }
    }
}
