//! `faults-felt`: did the faults reach the client at all? A dead server shows failed or rejected
//! requests; a slow one gets slower replies or loses traffic; a lossy one either (TCP retransmits
//! what is lost: most replies come late, a few time out).

use super::{
    Count, Ctx, Harm, LATENCY_FACTOR, LATENCY_SLACK_MS, SHIFT, all_of, check, inconclusive, names, pct,
    server_or_default, successes,
};
use crate::api::{Check, PhaseObservation};

const NAME: &str = "faults-felt";
const DESC: &str =
    "Testing: the client notices the faulted servers (failed or rejected requests, slower replies or less traffic)";

pub(super) fn faults_felt(ctx: &Ctx) -> Check {
    let expected = expectation(ctx);
    let Some(t) = ctx.testing else { return inconclusive(NAME, DESC, expected, "no scrapes during Testing") };
    let sent = Count { part: 0, total: t.servers.iter().map(|s| s.successes + s.failures + s.rejected).sum() };
    if let Some(why) = sent.too_few("requests in Testing") {
        return inconclusive(NAME, DESC, expected, &why);
    }
    let judged: Vec<(Option<bool>, String)> = ctx
        .faulted
        .iter()
        .map(|(l, harm)| match harm {
            Harm::Slow => slowed(ctx.stab, t, l),
            Harm::Dead => failed(t, l),
            Harm::Lossy => lossy(ctx.stab, t, l),
        })
        .collect();
    let observed = judged.iter().map(|(_, o)| o.as_str()).collect::<Vec<_>>().join("; ");
    let observed = format!("{observed} ({} requests in {} scrapes)", sent.total, t.samples);
    check(NAME, DESC, expected, observed, all_of(judged.iter().map(|(r, _)| *r)))
}

fn expectation(ctx: &Ctx) -> String {
    let (dead, lossy, slow) =
        (ctx.with(|h| h == Harm::Dead), ctx.with(|h| h == Harm::Lossy), ctx.with(|h| h == Harm::Slow));
    let slower = format!(
        "reply slower late in Testing (mean latency ≥ {LATENCY_FACTOR} × and ≥ {LATENCY_SLACK_MS} ms above the \
         Stabilization mean) or lose traffic (share of successes ≤ {:.0}% of the Stabilization share)",
        SHIFT * 100.0
    );
    let mut parts = Vec::new();
    if !dead.is_empty() {
        parts.push(format!("{} show errors, timeouts or breaker rejections", names(&dead)));
    }
    if !lossy.is_empty() {
        parts.push(format!("{} show errors, timeouts or breaker rejections, or {slower}", names(&lossy)));
    }
    if !slow.is_empty() {
        parts.push(format!("{} {slower}", names(&slow)));
    }
    parts.join("; ")
}

/// A dead or lossy server is felt through failed or rejected requests.
fn failed(t: &PhaseObservation, label: &str) -> (Option<bool>, String) {
    let s = server_or_default(t, label);
    let felt = s.failures + s.rejected > 0;
    (Some(felt), format!("{label}: {} failed, {} rejected, {} succeeded", s.failures, s.rejected, s.successes))
}

/// A lossy server is felt through failed or rejected requests, or as a slow one: a loss is a late
/// reply (a retransmission), and a client that routes by load may leave it too few requests to
/// time out.
fn lossy(stab: Option<&PhaseObservation>, t: &PhaseObservation, label: &str) -> (Option<bool>, String) {
    let (failed, said) = failed(t, label);
    if failed == Some(true) {
        return (failed, said);
    }
    let (slowed, slow_said) = slowed(stab, t, label);
    let rest = slow_said.strip_prefix(&format!("{label}: ")).unwrap_or(&slow_said).to_string();
    (slowed, format!("{said}, {rest}"))
}

/// A slow server is felt when its replies got slower or its traffic fell; not felt only when both
/// were judged and neither happened.
fn slowed(stab: Option<&PhaseObservation>, t: &PhaseObservation, label: &str) -> (Option<bool>, String) {
    let (rose, fell) = (latency_rose(stab, t, label), share_fell(stab, t, label));
    let felt = match (&rose, &fell) {
        (Ok((true, _)), _) | (_, Ok((true, _))) => Some(true),
        (Ok(_), Ok(_)) => Some(false),
        _ => None,
    };
    let say = |r: Result<(bool, String), String>| r.map(|(_, s)| s).unwrap_or_else(|why| format!("not judged: {why}"));
    (felt, format!("{label}: latency {}, share {}", say(rose), say(fell)))
}

/// Whether the mean latency late in Testing rose past the limit, in words; Err says why it cannot
/// be judged. Late, because the phase's first scrape interval still holds pre-fault replies, which
/// would outweigh the few slow ones a resilient client lets through.
fn latency_rose(stab: Option<&PhaseObservation>, t: &PhaseObservation, label: &str) -> Result<(bool, String), String> {
    let (before, after) = (stab.map(|o| server_or_default(o, label)).unwrap_or_default(), server_or_default(t, label));
    let b = mean(before.timed, before.mean_latency_ms, "in Stabilization")?;
    let a = mean(after.late_timed, after.late_mean_latency_ms, "late in Testing")?;
    let limit = (b * LATENCY_FACTOR).max(b + LATENCY_SLACK_MS);
    Ok((a >= limit, format!("{b:.1} → {a:.1} ms over {} requests late (felt from {limit:.1} ms)", after.late_timed)))
}

fn mean(timed: i64, ms: Option<f64>, when: &str) -> Result<f64, String> {
    match (Count { part: 0, total: timed }.too_few(&format!("timed requests {when}")), ms) {
        (Some(why), _) => Err(why),
        (None, None) => Err(format!("no mean latency {when}")),
        (None, Some(ms)) => Ok(ms),
    }
}

/// Whether its share of successes late in Testing fell to SHIFT of its Stabilization share.
fn share_fell(stab: Option<&PhaseObservation>, t: &PhaseObservation, label: &str) -> Result<(bool, String), String> {
    let st = stab.ok_or("Stabilization not observed")?;
    let of = [label.to_string()];
    let (before, after) = (successes(st, &of, false), successes(t, &of, true));
    if let Some(why) =
        before.too_few("successes in Stabilization").or_else(|| after.too_few("successes late in Testing"))
    {
        return Err(why);
    }
    if before.part == 0 {
        return Err("no successes in Stabilization".into());
    }
    let fell = after.ratio() <= before.ratio() * SHIFT;
    Ok((fell, format!("{} → {} of {} successes late", pct(before.ratio()), pct(after.ratio()), after.total)))
}

#[cfg(test)]
mod tests {
    use super::super::{evaluate, fixtures::*};
    use crate::{
        api::{Phase, Verdict},
        catalog::{latency, loss},
    };

    fn felt(faults: &[crate::api::Fault], run: &[crate::api::PhaseObservation]) -> crate::api::Check {
        judge(faults, run, super::NAME)
    }

    #[test]
    fn a_dead_server_without_failures_or_rejections_is_not_felt() {
        let mut run = healthy_run();
        run[1].servers[0] = srv("server-0", 1000, 0, &["closed"], "closed");
        let c = felt(&[loss(0, 100.0), loss(1, 100.0)], &run);
        assert_eq!(c.passed, Some(false), "{c:#?}");
        assert!(c.observed.contains("server-0: 0 failed, 0 rejected, 1000 succeeded"), "{}", c.observed);
    }

    #[test]
    fn a_latency_fault_is_felt_when_the_share_falls() {
        let c = felt(&[latency(0, 500), latency(1, 500)], &slow_run());
        assert_eq!(c.passed, Some(true), "{c:#?}");
        // 10 timed requests are too few for a mean, the share says it.
        let not_judged = "server-0: latency not judged: only 10 timed requests late in Testing (fewer than 100)";
        assert!(c.observed.contains(not_judged), "{}", c.observed);
        assert!(c.observed.contains("share 33.3% → 0.7% of 1520 successes late"), "{}", c.observed);
    }

    #[test]
    fn a_latency_fault_is_felt_when_the_latency_rises_though_the_share_stays() {
        // A client that keeps sending its share: only the duration histogram shows the fault.
        let mut run = healthy_run();
        run[1] = even(Phase::Testing);
        run[1].servers[0].late_mean_latency_ms = Some(103.0);
        let c = felt(&[latency(0, 100)], &run);
        assert_eq!(c.passed, Some(true), "{c:#?}");
        assert!(
            c.observed.contains("latency 2.0 → 103.0 ms over 500 requests late (felt from 22.0 ms)"),
            "{}",
            c.observed
        );
    }

    #[test]
    fn a_latency_fault_that_neither_slows_nor_sheds_traffic_is_not_felt() {
        // What `|| harm == Slow` used to pass: the fault never reached the client.
        let mut run = healthy_run();
        run[1] = even(Phase::Testing);
        run[1].servers[0].late_mean_latency_ms = Some(15.0);
        let (checks, verdict) = evaluate(&[latency(0, 100)], &targets(), &run);
        let c = get(&checks, "faults-felt");
        assert_eq!(c.passed, Some(false), "{c:#?}");
        assert_eq!(verdict, Verdict::Failed);
    }

    #[test]
    fn a_lossy_server_is_felt_through_failures_or_as_a_slow_one() {
        // Failed requests are enough.
        let mut run = healthy_run();
        run[1].servers[0] = srv("server-0", 1000, 3, &["closed"], "closed");
        assert_eq!(felt(&[loss(0, 30.0)], &run).passed, Some(true));
        // None failed: late replies, or the traffic moved away, say it.
        let c = felt(&[loss(0, 30.0), loss(1, 30.0)], &slow_run());
        assert_eq!(c.passed, Some(true), "{c:#?}");
        assert!(c.observed.contains("server-0: 0 failed, 0 rejected"), "{}", c.observed);
        assert!(c.observed.contains("share 33.3% → 0.7% of 1520 successes late"), "{}", c.observed);
        let mut run = healthy_run();
        run[1] = even(Phase::Testing);
        run[1].servers[0].failures = 0;
        run[1].servers[0].late_mean_latency_ms = Some(103.0);
        assert_eq!(felt(&[loss(0, 30.0)], &run).passed, Some(true));
        // Neither: the fault never reached the client.
        run[1].servers[0].late_mean_latency_ms = Some(15.0);
        let c = felt(&[loss(0, 30.0)], &run);
        assert_eq!(c.passed, Some(false), "{c:#?}");
        assert!(
            c.expected.contains("server-0 show errors, timeouts or breaker rejections, or reply slower"),
            "{}",
            c.expected
        );
    }

    #[test]
    fn faults_felt_is_inconclusive_without_testing_or_with_too_few_requests() {
        let mut run = healthy_run();
        run.remove(1);
        assert_eq!(felt(&[loss(0, 100.0)], &run).passed, None);
        let mut run = healthy_run();
        run[1].servers = vec![srv("server-0", 0, 10, &["open"], "open"), srv("server-2", 80, 0, &["closed"], "closed")];
        let c = felt(&[loss(0, 100.0)], &run);
        assert_eq!(c.passed, None, "{c:#?}");
        assert_eq!(c.observed, "not judged: only 90 requests in Testing (fewer than 100)");
    }

    #[test]
    fn a_latency_fault_is_inconclusive_when_neither_signal_can_be_judged() {
        // The slow server had no traffic to lose and too few requests for a mean.
        let mut run = slow_run();
        run[0].servers[0] = srv("server-0", 0, 0, &["closed"], "closed");
        let c = felt(&[latency(0, 500)], &run);
        assert_eq!(c.passed, None, "{c:#?}");
        assert!(c.observed.contains("share not judged: no successes in Stabilization"), "{}", c.observed);
    }
}
