//! Where the requests go: onto the healthy servers while others are dead, away from slow or lossy
//! ones, and back over every server in Recovery. Shares are judged over at least
//! [`MIN_REQUESTS`](super::MIN_REQUESTS) requests.

use super::{CONCENTRATION, Ctx, SHIFT, SPREAD, check, inconclusive, pct, sent, successes};
use crate::api::Check;

pub(super) fn traffic_concentrates(ctx: &Ctx) -> Check {
    const NAME: &str = "traffic-concentrates";
    const DESC: &str = "Testing: the client sends its requests to the healthy servers";
    let expected =
        format!("late in Testing, {} get ≥ {} of the requests sent", ctx.healthy.join(", "), pct(CONCENTRATION));
    let Some(t) = ctx.testing else { return inconclusive(NAME, DESC, expected, "no scrapes during Testing") };
    // Requests sent, not successes: a dead server has no successes, so a share of successes would
    // pass whatever the client does.
    let c = sent(t, &ctx.healthy, true);
    if let Some(why) = c.too_few("requests sent late in Testing") {
        return inconclusive(NAME, DESC, expected, &why);
    }
    let observed = format!("{} of {} requests sent late in Testing", pct(c.ratio()), c.total);
    check(NAME, DESC, expected, observed, Some(c.ratio() >= CONCENTRATION))
}

pub(super) fn traffic_shifts_away(ctx: &Ctx, degraded: &[&String]) -> Check {
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
    let (before, after) = (successes(st, &list, false), successes(t, &list, true));
    let too_few = before.too_few("successes in Stabilization").or_else(|| after.too_few("successes late in Testing"));
    if let Some(why) = too_few {
        return inconclusive(NAME, DESC, expected, &why);
    }
    // Nothing to lose: "0 ≤ 0 × SHIFT" would pass without any traffic having shifted.
    if before.part == 0 {
        return inconclusive(
            NAME,
            DESC,
            expected,
            &format!("{} had no successful requests in Stabilization", list.join(", ")),
        );
    }
    let observed = format!(
        "{} of {} successes in Stabilization, {} of {} late in Testing",
        pct(before.ratio()),
        before.total,
        pct(after.ratio()),
        after.total
    );
    check(NAME, DESC, expected, observed, Some(after.ratio() <= before.ratio() * SHIFT))
}

pub(super) fn traffic_spreads_back(ctx: &Ctx) -> Check {
    const NAME: &str = "traffic-spreads-back";
    const DESC: &str = "Recovery: successful traffic spreads back over all servers";
    let Some(r) = ctx.recovery else {
        return inconclusive(NAME, DESC, "every server carries traffic again".into(), "no scrapes during Recovery");
    };
    let floor = SPREAD / r.servers.len().max(1) as f64;
    let expected = format!("late in Recovery, every server carries ≥ {} of successful requests", pct(floor));
    let all = successes(r, &[], true);
    if let Some(why) = all.too_few("successful requests late in Recovery") {
        return inconclusive(NAME, DESC, expected, &why);
    }
    let shares: Vec<(&str, f64)> = r
        .servers
        .iter()
        .map(|s| (s.name.as_str(), successes(r, std::slice::from_ref(&s.name), true).ratio()))
        .collect();
    let words = shares.iter().map(|(n, s)| format!("{n} {}", pct(*s))).collect::<Vec<_>>().join(", ");
    let observed = format!("{words} of {} successes", all.total);
    check(NAME, DESC, expected, observed, Some(shares.iter().all(|(_, s)| *s >= floor)))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::catalog::latency;

    #[test]
    fn requests_still_sent_to_dead_servers_do_not_concentrate() {
        // All successes are on the healthy server, as they must be: the failures show the flaw.
        let mut run = healthy_run();
        run[1].servers[0].late_failures = 800;
        let c = judge(&two_dead(), &run, "traffic-concentrates");
        assert_eq!(c.passed, Some(false), "{c:#?}");
        assert_eq!(c.observed, "65.2% of 2300 requests sent late in Testing");
    }

    #[test]
    fn traffic_concentrates_is_inconclusive_with_too_few_requests() {
        let mut run = healthy_run();
        run[1].servers[2].late_successes = 60;
        let c = judge(&two_dead(), &run, "traffic-concentrates");
        assert_eq!(c.passed, None, "{c:#?}");
        assert_eq!(c.observed, "not judged: only 60 requests sent late in Testing (fewer than 100)");
    }

    #[test]
    fn latency_needs_traffic_to_shift_away() {
        let faults = [latency(0, 500), latency(1, 500)];
        let c = judge(&faults, &slow_run(), "traffic-shifts-away");
        assert_eq!(c.passed, Some(true), "{c:#?}");
        assert_eq!(c.observed, "66.7% of 3000 successes in Stabilization, 1.3% of 1520 late in Testing");
        // No shift: fails.
        let mut run = slow_run();
        for s in &mut run[1].servers[..2] {
            s.late_successes = 1500;
        }
        assert_eq!(judge(&faults, &run, "traffic-shifts-away").passed, Some(false));
    }

    #[test]
    fn no_stabilization_traffic_on_the_slow_servers_is_inconclusive() {
        // 0 % before and 0 % after: "after ≤ before × SHIFT" would pass without anything shifting.
        let mut run = slow_run();
        for s in &mut run[0].servers[..2] {
            s.successes = 0;
        }
        let c = judge(&[latency(0, 500), latency(1, 500)], &run, "traffic-shifts-away");
        assert_eq!(c.passed, None, "{c:#?}");
        assert_eq!(c.observed, "not judged: server-0, server-1 had no successful requests in Stabilization");
    }

    #[test]
    fn traffic_shifts_away_is_inconclusive_with_too_few_successes() {
        let mut run = slow_run();
        run[1].servers[2].late_successes = 50;
        let c = judge(&[latency(0, 500), latency(1, 500)], &run, "traffic-shifts-away");
        assert_eq!(c.observed, "not judged: only 70 successes late in Testing (fewer than 100)");
    }

    #[test]
    fn traffic_that_does_not_spread_back_fails() {
        let mut run = healthy_run();
        run[2].servers[0].late_successes = 50;
        let c = judge(&two_dead(), &run, "traffic-spreads-back");
        assert_eq!(c.passed, Some(false), "{c:#?}");
        assert_eq!(c.observed, "server-0 4.8%, server-1 47.6%, server-2 47.6% of 1050 successes");
    }

    #[test]
    fn traffic_spreads_back_is_inconclusive_with_too_few_successes() {
        let mut run = healthy_run();
        for s in &mut run[2].servers {
            s.late_successes = 30;
        }
        let c = judge(&two_dead(), &run, "traffic-spreads-back");
        assert_eq!(c.passed, None);
        assert_eq!(c.observed, "not judged: only 90 successful requests late in Recovery (fewer than 100)");
    }
}
