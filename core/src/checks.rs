//! The expected behaviour of a resilient client (README "Checks and the verdict"; how to add a check:
//! docs/architecture.md), made checkable: faults and per-phase observations in, checks and a verdict out. Pure.
//!
//! A target with 100 % packet loss or `down` is *dead*: its breaker must open during Testing while
//! healthy breakers stay closed, the requests must go to the healthy servers and the
//! error rate fall back near the Stabilization baseline before Testing ends; in Recovery the dead
//! breakers go open → half-open → closed, traffic spreads back and the error rate returns to
//! baseline. A *slow* (latency) or *lossy* (partial loss) target must lose traffic to the others.
//!
//! A check that compares rates or shares judges them only over enough requests ([`MIN_REQUESTS`]),
//! says how many in `observed`, and is Inconclusive, never Passed, below that.

mod breakers;
mod errors;
mod expected;
mod felt;
#[cfg(test)]
mod fixtures;
mod traffic;

use std::collections::BTreeSet;

pub use expected::expected;

use crate::api::{Check, Fault, Phase, PhaseObservation, ServerObservation, Verdict};

/// Late Testing: the healthy servers must carry at least this share of successes when others are dead.
pub const CONCENTRATION: f64 = 0.95;
/// A slow or lossy server's share must fall to at most this fraction of its Stabilization share
/// (with two of three servers slow, p2c must still pick a slow one when it draws both of them).
pub const SHIFT: f64 = 0.75;
/// Late Recovery: each server must carry at least this fraction of an even share.
pub const SPREAD: f64 = 0.5;
/// "Near baseline": at most baseline + this many percentage points (as a ratio)…
pub const ERROR_SLACK: f64 = 0.02;
/// …or twice the baseline, whichever is larger.
pub const ERROR_FACTOR: f64 = 2.0;
/// A slow server's latency is felt to rise when its mean in Testing reaches this multiple of its
/// Stabilization mean…
pub const LATENCY_FACTOR: f64 = 2.0;
/// …and at least this many milliseconds above it: the jitter between healthy servers on a busy
/// machine is a few ms, the catalog's smallest latency fault is +100 ms.
pub const LATENCY_SLACK_MS: f64 = 20.0;
/// Fewest requests a rate, share or mean is judged over: below 100, one request moves a rate by
/// more than a point, half of [`ERROR_SLACK`].
pub const MIN_REQUESTS: i64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Harm {
    Dead,
    Lossy,
    Slow,
}

/// How a fault hurts its target, for choosing the checks.
pub fn harm(fault: &Fault) -> Option<Harm> {
    let loss = fault.packet_loss.as_ref().map(|l| l.percent).unwrap_or(0.0);
    if fault.down == Some(true) || loss >= 100.0 {
        Some(Harm::Dead)
    } else if loss > 0.0 {
        Some(Harm::Lossy)
    } else if fault.latency.as_ref().is_some_and(|l| l.delay_ms > 0)
        || fault.toxics.as_ref().is_some_and(|t| !t.is_empty())
    {
        Some(Harm::Slow)
    } else {
        None
    }
}

/// Which metrics `server` label belongs to target `i`: the target's own name if the client uses it,
/// else the i-th label in sorted order (the client lists its servers in target order).
pub fn server_label(i: usize, target_names: &[String], labels: &[String]) -> Option<String> {
    if let Some(n) = target_names.get(i).filter(|n| labels.contains(n)) {
        return Some(n.clone());
    }
    let mut sorted = labels.to_vec();
    sorted.sort();
    sorted.get(i).cloned()
}

/// The metrics label and harm of each faulted target, among the client's `labels`.
pub fn faulted(faults: &[Fault], target_names: &[String], labels: &[String]) -> Vec<(String, Harm)> {
    faults.iter().filter_map(|f| Some((server_label(f.target as usize, target_names, labels)?, harm(f)?))).collect()
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn find(obs: &[PhaseObservation], phase: Phase) -> Option<&PhaseObservation> {
    obs.iter().find(|o| o.phase == phase && o.samples > 0 && !o.servers.is_empty())
}

struct Ctx<'a> {
    /// (metrics label, harm) per target.
    faulted: Vec<(String, Harm)>,
    healthy: Vec<String>,
    stab: Option<&'a PhaseObservation>,
    testing: Option<&'a PhaseObservation>,
    recovery: Option<&'a PhaseObservation>,
}

impl Ctx<'_> {
    fn with(&self, harm: impl Fn(Harm) -> bool) -> Vec<&String> {
        self.faulted.iter().filter(|(_, h)| harm(*h)).map(|(l, _)| l).collect()
    }
}

fn server<'a>(o: &'a PhaseObservation, name: &str) -> Option<&'a ServerObservation> {
    o.servers.iter().find(|s| s.name == name)
}

/// One server's observation, or an empty one when the client never named it in that phase.
fn server_or_default(o: &PhaseObservation, name: &str) -> ServerObservation {
    server(o, name).cloned().unwrap_or_default()
}

/// A part of a count of requests: successes of some servers among all successes, failures among
/// all requests…
#[derive(Clone, Copy, Debug, PartialEq)]
struct Count {
    part: i64,
    total: i64,
}

impl Count {
    fn ratio(self) -> f64 {
        self.part as f64 / self.total.max(1) as f64
    }

    /// Why the ratio cannot be judged (too few requests), or None.
    fn too_few(self, what: &str) -> Option<String> {
        (self.total < MIN_REQUESTS).then(|| format!("only {} {what} (fewer than {MIN_REQUESTS})", self.total))
    }
}

/// Successes of the servers `of` among all successes in `o`, over the phase or its late part.
fn successes(o: &PhaseObservation, of: &[String], late: bool) -> Count {
    tally(o, of, |s| if late { s.late_successes } else { s.successes })
}

/// Requests sent to the servers `of` (successes and failures: a rejected request is never sent)
/// among all sent in `o`, over the phase or its late part.
fn sent(o: &PhaseObservation, of: &[String], late: bool) -> Count {
    tally(o, of, |s| if late { s.late_successes + s.late_failures } else { s.successes + s.failures })
}

fn tally(o: &PhaseObservation, of: &[String], count: impl Fn(&ServerObservation) -> i64) -> Count {
    let part = o.servers.iter().filter(|s| of.contains(&s.name)).map(&count).sum();
    Count { part, total: o.servers.iter().map(&count).sum() }
}

/// Failures among the requests that got an answer or timed out, over the phase or its late part.
fn failures(o: &PhaseObservation, late: bool) -> Count {
    let pick =
        |s: &ServerObservation| if late { (s.late_failures, s.late_successes) } else { (s.failures, s.successes) };
    let (bad, ok) = o.servers.iter().map(pick).fold((0, 0), |(b, k), (x, y)| (b + x, k + y));
    Count { part: bad, total: bad + ok }
}

fn check(name: &str, description: &str, expected: String, observed: String, passed: Option<bool>) -> Check {
    Check { name: name.into(), description: description.into(), expected, observed, passed }
}

fn inconclusive(name: &str, description: &str, expected: String, why: &str) -> Check {
    check(name, description, expected, format!("not judged: {why}"), None)
}

/// Failed if any part failed, else Inconclusive if any was not judged, else Passed.
fn all_of(results: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    let results: Vec<Option<bool>> = results.into_iter().collect();
    if results.contains(&Some(false)) {
        Some(false)
    } else if results.contains(&None) {
        None
    } else {
        Some(true)
    }
}

fn names(list: &[&String]) -> String {
    list.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// The checks for a run, and its verdict: Passed only if every check passed; Failed if any failed;
/// otherwise Inconclusive.
pub fn evaluate(faults: &[Fault], target_names: &[String], observations: &[PhaseObservation]) -> (Vec<Check>, Verdict) {
    let ctx = context(faults, target_names, observations);
    let dead = ctx.with(|h| h == Harm::Dead);
    let degraded = ctx.with(|h| h != Harm::Dead);
    let breakers = left_out(observations).is_none();
    let mut checks = vec![felt::faults_felt(&ctx)];
    if !dead.is_empty() && breakers {
        checks.push(breakers::dead_breakers_open(&ctx, &dead));
    }
    // With no healthy server there is nothing that must stay closed or take the traffic.
    if !ctx.healthy.is_empty() && breakers {
        checks.push(breakers::healthy_breakers_closed(&ctx));
    }
    if !dead.is_empty() && !ctx.healthy.is_empty() {
        checks.push(traffic::traffic_concentrates(&ctx));
    }
    if !degraded.is_empty() {
        checks.push(traffic::traffic_shifts_away(&ctx, &degraded));
    }
    checks.push(errors::error_rate_near_baseline(&ctx, Phase::Testing));
    if !dead.is_empty() && breakers {
        checks.push(breakers::dead_breakers_heal(&ctx, &dead));
    }
    if breakers {
        checks.push(breakers::breakers_closed_at_end(&ctx));
    }
    checks.push(traffic::traffic_spreads_back(&ctx));
    checks.push(errors::error_rate_near_baseline(&ctx, Phase::Recovery));
    let verdict = match all_of(checks.iter().map(|c| c.passed)) {
        Some(true) => Verdict::Passed,
        Some(false) => Verdict::Failed,
        None => Verdict::Inconclusive,
    };
    (checks, verdict)
}

/// Why checks were left out: a client whose metrics (through its mapping) never carried a breaker
/// state has its breaker checks left out rather than failed or passed.
pub fn left_out(observations: &[PhaseObservation]) -> Option<String> {
    let servers = || observations.iter().flat_map(|o| &o.servers);
    let no_breaker = servers().all(|s| s.breaker_states.is_empty() && s.final_breaker_state.is_none());
    (servers().next().is_some() && no_breaker).then(|| {
        "breaker checks left out: the client's metrics carry no breaker state (see spec.client's preset or mapping)"
            .to_string()
    })
}

fn context<'a>(faults: &[Fault], target_names: &[String], observations: &'a [PhaseObservation]) -> Ctx<'a> {
    let labels: Vec<String> = observations
        .iter()
        .flat_map(|o| o.servers.iter().map(|s| s.name.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let n = target_names.len().max(labels.len());
    let faulted = faulted(faults, target_names, &labels);
    let healthy: Vec<String> = (0..n)
        .filter_map(|i| server_label(i, target_names, &labels))
        .filter(|l| !faulted.iter().any(|(f, _)| f == l))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ctx {
        faulted,
        healthy,
        stab: find(observations, Phase::Stabilization),
        testing: find(observations, Phase::Testing),
        recovery: find(observations, Phase::Recovery),
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};
    use crate::catalog::{latency, loss};

    #[test]
    fn a_resilient_client_passes_multi_failure_packet_loss() {
        let (checks, verdict) = evaluate(&[loss(0, 100.0), loss(1, 100.0)], &targets(), &healthy_run());
        assert_eq!(verdict, Verdict::Passed, "{checks:#?}");
        assert!(get(&checks, "traffic-concentrates").observed.contains("100.0%"));
        assert!(checks.iter().all(|c| !c.expected.is_empty() && !c.observed.is_empty()));
    }

    #[test]
    fn a_resilient_client_passes_multi_failure_latency() {
        let (checks, verdict) = evaluate(&[latency(0, 500), latency(1, 500)], &targets(), &slow_run());
        assert_eq!(verdict, Verdict::Passed, "{checks:#?}");
        assert!(checks.iter().all(|c| c.name != "faulted-breakers-open"));
    }

    #[test]
    fn a_lost_phase_is_inconclusive_never_passed() {
        let mut run = healthy_run();
        run.remove(1);
        let (checks, verdict) = evaluate(&[loss(0, 100.0), loss(1, 100.0)], &targets(), &run);
        assert_eq!(verdict, Verdict::Inconclusive);
        assert_eq!(get(&checks, "faulted-breakers-open").passed, None);
        assert!(get(&checks, "faulted-breakers-open").observed.starts_with("not judged"));
    }

    #[test]
    fn one_failed_check_fails_the_verdict_even_beside_an_inconclusive_one() {
        assert_eq!(all_of([Some(true), None, Some(false)]), Some(false));
        assert_eq!(all_of([Some(true), None]), None);
        assert_eq!(all_of([Some(true), Some(true)]), Some(true));
    }

    #[test]
    fn counts_below_the_minimum_are_too_few() {
        assert_eq!(Count { part: 0, total: 99 }.too_few("requests"), Some("only 99 requests (fewer than 100)".into()));
        assert_eq!(Count { part: 0, total: 100 }.too_few("requests"), None);
    }

    #[test]
    fn labels_map_to_targets_by_name_or_order() {
        let labels = vec!["a".to_string(), "b".into(), "c".into()];
        assert_eq!(server_label(1, &["x".into(), "b".into()], &labels), Some("b".into()));
        assert_eq!(server_label(2, &["p-0".into(), "p-1".into(), "p-2".into()], &labels), Some("c".into()));
        assert_eq!(server_label(3, &[], &labels), None);
    }
}
