//! The breaker checks: dead servers' breakers open in Testing and heal in Recovery, healthy ones
//! stay closed, all are closed at the end. Judged from states and transitions, which every scrape
//! carries whatever the load, so they need no minimum of requests.

use super::{Ctx, all_of, check, inconclusive, names, server_or_default};
use crate::{
    api::{Check, PhaseObservation},
    client_metrics::BreakerState,
};

/// `observed` of a per-server check: the servers' words and how many scrapes they come from.
fn judged(o: &PhaseObservation, parts: Vec<(bool, String)>) -> (String, Option<bool>) {
    let words = parts.iter().map(|(_, w)| w.as_str()).collect::<Vec<_>>().join("; ");
    (format!("{words} ({} scrapes)", o.samples), all_of(parts.iter().map(|(ok, _)| Some(*ok))))
}

pub(super) fn dead_breakers_open(ctx: &Ctx, dead: &[&String]) -> Check {
    const NAME: &str = "faulted-breakers-open";
    const DESC: &str = "Testing: the breaker of every unreachable server opens";
    let expected = format!("breakers of {} reach open", names(dead));
    let Some(t) = ctx.testing else { return inconclusive(NAME, DESC, expected, "no scrapes during Testing") };
    let parts = dead
        .iter()
        .map(|l| {
            let s = server_or_default(t, l);
            let opened = s.opened > 0 || s.breaker_states.iter().any(|x| x == BreakerState::Open.label());
            let what = if opened { "opened" } else { "never opened" };
            (opened, format!("{l}: {what} (states seen: {})", s.breaker_states.join(", ")))
        })
        .collect();
    let (observed, passed) = judged(t, parts);
    check(NAME, DESC, expected, observed, passed)
}

pub(super) fn healthy_breakers_closed(ctx: &Ctx) -> Check {
    const NAME: &str = "healthy-breakers-closed";
    const DESC: &str = "Testing: the breakers of the healthy servers stay closed";
    let expected = format!("breakers of {} stay closed", ctx.healthy.join(", "));
    let Some(t) = ctx.testing else { return inconclusive(NAME, DESC, expected, "no scrapes during Testing") };
    let parts = ctx
        .healthy
        .iter()
        .map(|l| {
            let s = server_or_default(t, l);
            let closed = s.opened == 0 && s.breaker_states.iter().all(|x| x == BreakerState::Closed.label());
            let what =
                if closed { "closed throughout".to_string() } else { format!("opened {} time(s)", s.opened.max(1)) };
            (closed, format!("{l}: {what}"))
        })
        .collect();
    let (observed, passed) = judged(t, parts);
    check(NAME, DESC, expected, observed, passed)
}

pub(super) fn dead_breakers_heal(ctx: &Ctx, dead: &[&String]) -> Check {
    const NAME: &str = "faulted-breakers-heal";
    const DESC: &str = "Recovery: the breakers of the faulted servers go open → half-open → closed";
    let expected = format!("breakers of {} pass through half_open and end closed", names(dead));
    let Some(r) = ctx.recovery else { return inconclusive(NAME, DESC, expected, "no scrapes during Recovery") };
    let parts = dead
        .iter()
        .map(|l| {
            let s = server_or_default(r, l);
            let end = s.final_breaker_state.as_deref();
            // Half-open when Recovery starts (a trial begun late in Testing) counts too.
            let half_open = s.half_opened > 0 || s.breaker_states.iter().any(|x| x == BreakerState::HalfOpen.label());
            let healed = half_open && s.closed > 0 && end == Some(BreakerState::Closed.label());
            let words = format!(
                "{l}: {} to half_open, {} to closed, ends {} (states seen: {})",
                s.half_opened,
                s.closed,
                end.unwrap_or("unknown"),
                s.breaker_states.join(", ")
            );
            (healed, words)
        })
        .collect();
    let (observed, passed) = judged(r, parts);
    check(NAME, DESC, expected, observed, passed)
}

pub(super) fn breakers_closed_at_end(ctx: &Ctx) -> Check {
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

#[cfg(test)]
mod tests {
    use super::super::{evaluate, fixtures::*};
    use crate::{
        api::{Check, PhaseObservation, Verdict},
        catalog::latency,
    };

    fn with_two_dead(run: &[PhaseObservation]) -> (Vec<Check>, Verdict) {
        evaluate(&two_dead(), &targets(), run)
    }

    #[test]
    fn a_dead_breaker_that_never_opens_fails() {
        let mut run = healthy_run();
        run[1].servers[0].opened = 0;
        run[1].servers[0].breaker_states = vec!["closed".into()];
        let (checks, verdict) = with_two_dead(&run);
        let c = get(&checks, "faulted-breakers-open");
        assert_eq!(c.passed, Some(false));
        assert!(c.observed.contains("server-0: never opened"), "{}", c.observed);
        assert!(c.observed.ends_with("(10 scrapes)"), "{}", c.observed);
        assert_eq!(verdict, Verdict::Failed);
    }

    #[test]
    fn a_healthy_breaker_that_opens_fails_the_run() {
        let mut run = healthy_run();
        run[1].servers[2].opened = 1;
        let (checks, verdict) = with_two_dead(&run);
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(get(&checks, "healthy-breakers-closed").passed, Some(false));
    }

    #[test]
    fn healthy_breakers_closed_is_left_out_when_no_server_is_healthy() {
        // It used to pass with "nothing to check": a check that cannot fail.
        let faults = [latency(0, 500), latency(1, 500), latency(2, 500)];
        let (checks, _) = evaluate(&faults, &targets(), &slow_run());
        assert!(checks.iter().all(|c| c.name != "healthy-breakers-closed" && c.name != "traffic-concentrates"));
    }

    #[test]
    fn a_breaker_that_never_heals_fails() {
        let mut run = healthy_run();
        run[2].servers[1] = srv("server-1", 0, 0, &["open"], "open");
        let (checks, _) = with_two_dead(&run);
        let c = get(&checks, "faulted-breakers-heal");
        assert_eq!(c.passed, Some(false));
        let never = "server-1: 0 to half_open, 0 to closed, ends open (states seen: open)";
        assert!(c.observed.contains(never), "{}", c.observed);
    }

    #[test]
    fn a_breaker_half_open_when_recovery_starts_heals_in_it() {
        let mut run = healthy_run();
        run[2].servers[1].half_opened = 0;
        run[2].servers[1].breaker_states = vec!["closed".into(), "half_open".into()];
        let (checks, _) = with_two_dead(&run);
        assert_eq!(get(&checks, "faulted-breakers-heal").passed, Some(true));
    }

    #[test]
    fn a_breaker_left_open_at_the_end_fails() {
        let mut run = healthy_run();
        run[2].servers[1].final_breaker_state = Some("open".into());
        let (checks, _) = with_two_dead(&run);
        assert_eq!(get(&checks, "breakers-closed-at-end").passed, Some(false));
        assert_eq!(get(&checks, "breakers-closed-at-end").observed, "server-1 is open");
        assert_eq!(get(&checks, "faulted-breakers-heal").passed, Some(false));
    }

    #[test]
    fn testing_breaker_checks_are_inconclusive_without_testing() {
        let mut run = healthy_run();
        run.remove(1);
        let (checks, _) = with_two_dead(&run);
        for name in ["faulted-breakers-open", "healthy-breakers-closed"] {
            let c = get(&checks, name);
            assert_eq!((c.passed, c.observed.as_str()), (None, "not judged: no scrapes during Testing"), "{name}");
        }
    }

    #[test]
    fn recovery_breaker_checks_are_inconclusive_without_recovery() {
        let mut run = healthy_run();
        run[2].samples = 0;
        let (checks, _) = with_two_dead(&run);
        for name in ["faulted-breakers-heal", "breakers-closed-at-end"] {
            let c = get(&checks, name);
            assert_eq!((c.passed, c.observed.as_str()), (None, "not judged: no scrapes during Recovery"), "{name}");
        }
    }

    #[test]
    fn a_client_without_breaker_state_has_its_breaker_checks_left_out_and_said_so() {
        let mut run = healthy_run();
        for s in run.iter_mut().flat_map(|o| &mut o.servers) {
            (s.breaker_states, s.final_breaker_state) = (vec![], None);
            (s.opened, s.half_opened, s.closed) = (0, 0, 0);
        }
        let (checks, verdict) = with_two_dead(&run);
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert!(!names.iter().any(|n| n.contains("breaker")), "{names:?}");
        assert_eq!(verdict, Verdict::Passed, "the traffic and error checks still judge the run");
        assert!(crate::checks::left_out(&run).is_some_and(|why| why.contains("no breaker state")));
        assert_eq!(crate::checks::left_out(&healthy_run()), None);
    }
}
