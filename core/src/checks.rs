//! The expected behaviour of a resilient client (README "Checks and the verdict"; how to add a check:
//! docs/architecture.md), made checkable: faults and per-phase observations in, checks and a verdict out. Pure.
//!
//! A target with 100 % packet loss or `down` is *dead*: its breaker must open during Testing while
//! healthy breakers stay closed, successful traffic must concentrate on the healthy servers and the
//! error rate fall back near the Stabilization baseline before Testing ends; in Recovery the dead
//! breakers go open → half-open → closed, traffic spreads back and the error rate returns to
//! baseline. A *slow* (latency) or *lossy* (partial loss) target must lose traffic to the others.

use std::collections::BTreeSet;

use crate::{
    api::{Check, Fault, Phase, PhaseObservation, ServerObservation, Verdict},
    client_metrics::BreakerState,
};

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

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn rate(failures: i64, successes: i64) -> Option<f64> {
    let total = failures + successes;
    (total > 0).then(|| failures as f64 / total as f64)
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

fn server<'a>(o: &'a PhaseObservation, name: &str) -> Option<&'a ServerObservation> {
    o.servers.iter().find(|s| s.name == name)
}

fn check(name: &str, description: &str, expected: String, observed: String, passed: Option<bool>) -> Check {
    Check { name: name.into(), description: description.into(), expected, observed, passed }
}

fn inconclusive(name: &str, description: &str, expected: String, why: &str) -> Check {
    check(name, description, expected, format!("not judged: {why}"), None)
}

/// The checks for a run, and its verdict: Passed only if every check passed; Failed if any failed;
/// otherwise Inconclusive.
pub fn evaluate(faults: &[Fault], target_names: &[String], observations: &[PhaseObservation]) -> (Vec<Check>, Verdict) {
    let labels: Vec<String> = observations
        .iter()
        .flat_map(|o| o.servers.iter().map(|s| s.name.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let n = target_names.len().max(labels.len());
    let mut faulted = Vec::new();
    let mut faulted_labels = BTreeSet::new();
    for f in faults {
        if let (Some(h), Some(l)) = (harm(f), server_label(f.target as usize, target_names, &labels)) {
            faulted_labels.insert(l.clone());
            faulted.push((l, h));
        }
    }
    let healthy: Vec<String> = (0..n)
        .filter_map(|i| server_label(i, target_names, &labels))
        .filter(|l| !faulted_labels.contains(l))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ctx = Ctx {
        faulted,
        healthy,
        stab: find(observations, Phase::Stabilization),
        testing: find(observations, Phase::Testing),
        recovery: find(observations, Phase::Recovery),
    };
    let mut checks = Vec::new();
    let dead: Vec<&String> = ctx.faulted.iter().filter(|(_, h)| *h == Harm::Dead).map(|(l, _)| l).collect();
    let degraded: Vec<&String> = ctx.faulted.iter().filter(|(_, h)| *h != Harm::Dead).map(|(l, _)| l).collect();
    checks.push(faults_felt(&ctx));
    if !dead.is_empty() {
        checks.push(dead_breakers_open(&ctx, &dead));
    }
    checks.push(healthy_breakers_closed(&ctx));
    if !dead.is_empty() {
        checks.push(traffic_concentrates(&ctx));
    }
    if !degraded.is_empty() {
        checks.push(traffic_shifts_away(&ctx, &degraded));
    }
    checks.push(error_rate_near_baseline(&ctx, Phase::Testing));
    if !dead.is_empty() {
        checks.push(dead_breakers_heal(&ctx, &dead));
    }
    checks.push(breakers_closed_at_end(&ctx));
    checks.push(traffic_spreads_back(&ctx));
    checks.push(error_rate_near_baseline(&ctx, Phase::Recovery));
    let verdict = if checks.iter().any(|c| c.passed == Some(false)) {
        Verdict::Failed
    } else if checks.iter().any(|c| c.passed.is_none()) {
        Verdict::Inconclusive
    } else {
        Verdict::Passed
    };
    (checks, verdict)
}

fn names(list: &[&String]) -> String {
    list.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn faults_felt(ctx: &Ctx) -> Check {
    const NAME: &str = "faults-felt";
    const DESC: &str = "Testing: the client notices the faulted servers (failed, rejected or fewer requests)";
    let list: Vec<&String> = ctx.faulted.iter().map(|(l, _)| l).collect();
    let expected = format!("{} show errors, timeouts or breaker rejections", names(&list));
    let Some(t) = ctx.testing else { return inconclusive(NAME, DESC, expected, "no scrapes during Testing") };
    let mut observed = Vec::new();
    let mut all = true;
    for (l, harm) in &ctx.faulted {
        let s = server(t, l).cloned().unwrap_or_default();
        // A slow server need not fail: losing traffic (checked separately) is how it is noticed.
        let felt = s.failures + s.rejected > 0 || *harm == Harm::Slow;
        all &= felt;
        observed.push(format!("{l}: {} failed, {} rejected, {} succeeded", s.failures, s.rejected, s.successes));
    }
    check(NAME, DESC, expected, observed.join("; "), Some(all))
}

fn dead_breakers_open(ctx: &Ctx, dead: &[&String]) -> Check {
    const NAME: &str = "faulted-breakers-open";
    const DESC: &str = "Testing: the breaker of every unreachable server opens";
    let expected = format!("breakers of {} reach open", names(dead));
    let Some(t) = ctx.testing else { return inconclusive(NAME, DESC, expected, "no scrapes during Testing") };
    let mut observed = Vec::new();
    let mut all = true;
    for l in dead {
        let s = server(t, l).cloned().unwrap_or_default();
        let opened = s.opened > 0 || s.breaker_states.iter().any(|x| x == BreakerState::Open.label());
        all &= opened;
        observed.push(format!(
            "{l}: {} (states seen: {})",
            if opened { "opened" } else { "never opened" },
            s.breaker_states.join(", ")
        ));
    }
    check(NAME, DESC, expected, observed.join("; "), Some(all))
}

fn healthy_breakers_closed(ctx: &Ctx) -> Check {
    const NAME: &str = "healthy-breakers-closed";
    const DESC: &str = "Testing: the breakers of the healthy servers stay closed";
    let expected = format!("breakers of {} stay closed", ctx.healthy.join(", "));
    let Some(t) = ctx.testing else { return inconclusive(NAME, DESC, expected, "no scrapes during Testing") };
    if ctx.healthy.is_empty() {
        return check(NAME, DESC, "no healthy server in this scenario".into(), "nothing to check".into(), Some(true));
    }
    let mut observed = Vec::new();
    let mut all = true;
    for l in &ctx.healthy {
        let s = server(t, l).cloned().unwrap_or_default();
        let closed = s.opened == 0 && s.breaker_states.iter().all(|x| x == BreakerState::Closed.label());
        all &= closed;
        observed.push(format!(
            "{l}: {}",
            if closed { "closed throughout".to_string() } else { format!("opened {} time(s)", s.opened.max(1)) }
        ));
    }
    check(NAME, DESC, expected, observed.join("; "), Some(all))
}

fn share(o: &PhaseObservation, of: &[String], late: bool) -> Option<f64> {
    let ok = |s: &ServerObservation| if late { s.late_successes } else { s.successes };
    let total: i64 = o.servers.iter().map(ok).sum();
    let part: i64 = o.servers.iter().filter(|s| of.contains(&s.name)).map(ok).sum();
    (total > 0).then(|| part as f64 / total as f64)
}

fn traffic_concentrates(ctx: &Ctx) -> Check {
    const NAME: &str = "traffic-concentrates";
    const DESC: &str = "Testing: successful traffic concentrates on the healthy servers";
    let expected =
        format!("late in Testing, {} carry ≥ {} of successful requests", ctx.healthy.join(", "), pct(CONCENTRATION));
    let Some(t) = ctx.testing else { return inconclusive(NAME, DESC, expected, "no scrapes during Testing") };
    match share(t, &ctx.healthy, true) {
        None => inconclusive(NAME, DESC, expected, "no successful requests late in Testing"),
        Some(s) => check(NAME, DESC, expected, format!("{} of successes", pct(s)), Some(s >= CONCENTRATION)),
    }
}

fn traffic_shifts_away(ctx: &Ctx, degraded: &[&String]) -> Check {
    const NAME: &str = "traffic-shifts-away";
    const DESC: &str = "Testing: slow or lossy servers lose traffic to the others";
    let list: Vec<String> = degraded.iter().map(|s| s.to_string()).collect();
    let expected = format!(
        "late in Testing, the share of {} falls to ≤ {:.0}% of its Stabilization share",
        list.join(", "),
        SHIFT * 100.0
    );
    let (Some(st), Some(t)) = (ctx.stab, ctx.testing) else {
        return inconclusive(NAME, DESC, expected, "Stabilization or Testing was not observed");
    };
    match (share(st, &list, false), share(t, &list, true)) {
        // Nothing to lose: "0 ≤ 0 × SHIFT" would pass without any traffic having shifted.
        (Some(0.0), _) => inconclusive(
            NAME,
            DESC,
            expected,
            &format!("{} had no successful requests in Stabilization", list.join(", ")),
        ),
        (Some(before), Some(after)) => check(
            NAME,
            DESC,
            expected,
            format!("{} in Stabilization, {} late in Testing", pct(before), pct(after)),
            Some(after <= before * SHIFT),
        ),
        _ => inconclusive(NAME, DESC, expected, "no successful requests to compare"),
    }
}

fn baseline(ctx: &Ctx) -> Option<f64> {
    let st = ctx.stab?;
    rate(st.servers.iter().map(|s| s.failures).sum(), st.servers.iter().map(|s| s.successes).sum())
}

fn error_rate_near_baseline(ctx: &Ctx, phase: Phase) -> Check {
    let (name, desc) = match phase {
        Phase::Testing => (
            "error-rate-recovers",
            "Testing: after the first failures the error rate falls back near the Stabilization baseline",
        ),
        _ => ("error-rate-baseline", "Recovery: the error rate returns to the Stabilization baseline"),
    };
    let obs = if phase == Phase::Testing { ctx.testing } else { ctx.recovery };
    let Some(base) = baseline(ctx) else {
        return inconclusive(
            name,
            desc,
            "late error rate near the baseline".into(),
            "no requests observed in Stabilization",
        );
    };
    let limit = (base * ERROR_FACTOR).max(base + ERROR_SLACK);
    let expected = format!("late in {}, error rate ≤ {} (baseline {})", phase.as_str(), pct(limit), pct(base));
    let Some(o) = obs else { return inconclusive(name, desc, expected, "phase not observed") };
    match rate(o.servers.iter().map(|s| s.late_failures).sum(), o.servers.iter().map(|s| s.late_successes).sum()) {
        None => inconclusive(name, desc, expected, "no requests late in the phase"),
        Some(r) => check(name, desc, expected, format!("error rate {}", pct(r)), Some(r <= limit)),
    }
}

fn dead_breakers_heal(ctx: &Ctx, dead: &[&String]) -> Check {
    const NAME: &str = "faulted-breakers-heal";
    const DESC: &str = "Recovery: the breakers of the faulted servers go open → half-open → closed";
    let expected = format!("breakers of {} pass through half_open and end closed", names(dead));
    let Some(r) = ctx.recovery else { return inconclusive(NAME, DESC, expected, "no scrapes during Recovery") };
    let mut observed = Vec::new();
    let mut all = true;
    for l in dead {
        let s = server(r, l).cloned().unwrap_or_default();
        let healed =
            s.half_opened > 0 && s.closed > 0 && s.final_breaker_state.as_deref() == Some(BreakerState::Closed.label());
        all &= healed;
        observed.push(format!(
            "{l}: {} to half_open, {} to closed, ends {}",
            s.half_opened,
            s.closed,
            s.final_breaker_state.as_deref().unwrap_or("unknown")
        ));
    }
    check(NAME, DESC, expected, observed.join("; "), Some(all))
}

fn breakers_closed_at_end(ctx: &Ctx) -> Check {
    const NAME: &str = "breakers-closed-at-end";
    const DESC: &str = "Recovery: every breaker is closed when the run ends";
    let expected = "all breakers closed".to_string();
    let Some(r) = ctx.recovery else { return inconclusive(NAME, DESC, expected, "no scrapes during Recovery") };
    let not_closed: Vec<String> = r
        .servers
        .iter()
        .filter(|s| s.final_breaker_state.as_deref() != Some(BreakerState::Closed.label()))
        .map(|s| format!("{} is {}", s.name, s.final_breaker_state.as_deref().unwrap_or("unknown")))
        .collect();
    let observed = if not_closed.is_empty() { "all closed".to_string() } else { not_closed.join("; ") };
    check(NAME, DESC, expected, observed, Some(not_closed.is_empty()))
}

fn traffic_spreads_back(ctx: &Ctx) -> Check {
    const NAME: &str = "traffic-spreads-back";
    const DESC: &str = "Recovery: successful traffic spreads back over all servers";
    let Some(r) = ctx.recovery else {
        return inconclusive(NAME, DESC, "every server carries traffic again".into(), "no scrapes during Recovery");
    };
    let n = r.servers.len().max(1);
    let floor = SPREAD / n as f64;
    let expected = format!("late in Recovery, every server carries ≥ {} of successful requests", pct(floor));
    let total: i64 = r.servers.iter().map(|s| s.late_successes).sum();
    if total == 0 {
        return inconclusive(NAME, DESC, expected, "no successful requests late in Recovery");
    }
    let shares: Vec<(String, f64)> =
        r.servers.iter().map(|s| (s.name.clone(), s.late_successes as f64 / total as f64)).collect();
    let observed = shares.iter().map(|(n, s)| format!("{n} {}", pct(*s))).collect::<Vec<_>>().join(", ");
    check(NAME, DESC, expected, observed, Some(shares.iter().all(|(_, s)| *s >= floor)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{latency, loss};

    fn srv(name: &str, ok: i64, fail: i64, states: &[&str], end: &str) -> ServerObservation {
        ServerObservation {
            name: name.into(),
            successes: ok,
            failures: fail,
            late_successes: ok / 2,
            late_failures: 0,
            breaker_states: states.iter().map(|s| s.to_string()).collect(),
            final_breaker_state: Some(end.into()),
            ..Default::default()
        }
    }

    fn names() -> Vec<String> {
        vec!["server-0".into(), "server-1".into(), "server-2".into()]
    }

    fn healthy_run() -> Vec<PhaseObservation> {
        let even = |p| PhaseObservation {
            phase: p,
            samples: 10,
            servers: (0..3).map(|i| srv(&format!("server-{i}"), 1000, 1, &["closed"], "closed")).collect(),
        };
        let mut testing = PhaseObservation {
            phase: Phase::Testing,
            samples: 10,
            servers: vec![
                ServerObservation { opened: 1, rejected: 500, ..srv("server-0", 20, 30, &["closed", "open"], "open") },
                ServerObservation { opened: 1, rejected: 500, ..srv("server-1", 20, 30, &["closed", "open"], "open") },
                srv("server-2", 3000, 0, &["closed"], "closed"),
            ],
        };
        testing.servers[0].late_successes = 0;
        testing.servers[1].late_successes = 0;
        let mut recovery = even(Phase::Recovery);
        for s in &mut recovery.servers[..2] {
            s.half_opened = 1;
            s.closed = 1;
            s.breaker_states = vec!["closed".into(), "half_open".into(), "open".into()];
        }
        vec![even(Phase::Stabilization), testing, recovery]
    }

    fn get<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}"))
    }

    #[test]
    fn a_resilient_client_passes_multi_failure_packet_loss() {
        let (checks, verdict) = evaluate(&[loss(0, 100.0), loss(1, 100.0)], &names(), &healthy_run());
        assert_eq!(verdict, Verdict::Passed, "{checks:#?}");
        assert!(get(&checks, "traffic-concentrates").observed.contains("100.0%"));
        assert!(checks.iter().all(|c| !c.expected.is_empty() && !c.observed.is_empty()));
    }

    #[test]
    fn a_healthy_breaker_that_opens_fails_the_run() {
        let mut run = healthy_run();
        run[1].servers[2].opened = 1;
        let (checks, verdict) = evaluate(&[loss(0, 100.0), loss(1, 100.0)], &names(), &run);
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(get(&checks, "healthy-breakers-closed").passed, Some(false));
    }

    #[test]
    fn a_breaker_that_never_opens_or_never_heals_fails() {
        let mut run = healthy_run();
        run[1].servers[0].opened = 0;
        run[1].servers[0].breaker_states = vec!["closed".into()];
        run[2].servers[1].final_breaker_state = Some("open".into());
        let (checks, _) = evaluate(&[loss(0, 100.0), loss(1, 100.0)], &names(), &run);
        assert_eq!(get(&checks, "faulted-breakers-open").passed, Some(false));
        assert!(get(&checks, "faulted-breakers-open").observed.contains("server-0: never opened"));
        assert_eq!(get(&checks, "faulted-breakers-heal").passed, Some(false));
        assert_eq!(get(&checks, "breakers-closed-at-end").passed, Some(false));
    }

    #[test]
    fn a_high_late_error_rate_fails() {
        let mut run = healthy_run();
        run[1].servers[2].late_failures = 400;
        let (checks, _) = evaluate(&[loss(0, 100.0), loss(1, 100.0)], &names(), &run);
        assert_eq!(get(&checks, "error-rate-recovers").passed, Some(false));
    }

    #[test]
    fn a_lost_phase_is_inconclusive_never_passed() {
        let mut run = healthy_run();
        run.remove(1);
        let (checks, verdict) = evaluate(&[loss(0, 100.0), loss(1, 100.0)], &names(), &run);
        assert_eq!(verdict, Verdict::Inconclusive);
        assert_eq!(get(&checks, "faulted-breakers-open").passed, None);
        assert!(get(&checks, "faulted-breakers-open").observed.starts_with("not judged"));
    }

    #[test]
    fn latency_needs_traffic_to_shift_away() {
        let mut run = healthy_run();
        // Slow servers keep 2 × 10 of 1010 late successes: well under half their former third.
        for s in &mut run[1].servers[..2] {
            *s = srv(&s.name, 20, 0, &["closed"], "closed");
        }
        run[2].servers.iter_mut().for_each(|s| {
            s.half_opened = 0;
            s.closed = 0;
        });
        let (checks, verdict) = evaluate(&[latency(0, 500), latency(1, 500)], &names(), &run);
        assert_eq!(verdict, Verdict::Passed, "{checks:#?}");
        assert!(checks.iter().all(|c| c.name != "faulted-breakers-open"));
        // No shift: fails.
        for s in &mut run[1].servers[..2] {
            s.late_successes = 1500;
        }
        let (checks, _) = evaluate(&[latency(0, 500), latency(1, 500)], &names(), &run);
        assert_eq!(get(&checks, "traffic-shifts-away").passed, Some(false));
    }

    #[test]
    fn no_stabilization_traffic_on_the_slow_servers_is_inconclusive() {
        // 0 % before and 0 % after: "after ≤ before × SHIFT" would pass without anything shifting.
        let mut run = healthy_run();
        for s in &mut run[0].servers[..2] {
            s.successes = 0;
        }
        let (checks, _) = evaluate(&[latency(0, 500), latency(1, 500)], &names(), &run);
        let c = get(&checks, "traffic-shifts-away");
        assert_eq!(c.passed, None, "{c:#?}");
        assert_eq!(c.observed, "not judged: server-0, server-1 had no successful requests in Stabilization");
    }

    #[test]
    fn labels_map_to_targets_by_name_or_order() {
        let labels = vec!["a".to_string(), "b".into(), "c".into()];
        assert_eq!(server_label(1, &["x".into(), "b".into()], &labels), Some("b".into()));
        assert_eq!(server_label(2, &["p-0".into(), "p-1".into(), "p-2".into()], &labels), Some("c".into()));
        assert_eq!(server_label(3, &[], &labels), None);
    }
}
