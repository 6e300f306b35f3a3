//! Leader election on a coordination.k8s.io Lease, so two replicas never drive the same scenario.
//!
//! A candidate takes a lease its holder has not renewed for the lease's duration ([`may_take`]). The
//! holder renews every `renew`. Every acquire or renew call has a deadline ([`Elector::call_timeout`],
//! shorter than `renew`, and for the holder never past its tenure): kube's client has no read timeout,
//! and a call hanging on an unreachable apiserver must not keep a lost leader acting.
//!
//! The holder counts its lease valid until `sent + duration − margin` ([`valid_until`]), `sent` being
//! the local instant read together with the renewTime it writes, before the request goes out. No other
//! replica takes the lease before `renewTime + duration`, so the holder's tenure ends `margin` earlier.
//! When it ends without a successful renewal, or a renewal finds another holder, leadership is lost and
//! the process exits at once, non-zero ([`step_down`]), as client-go's and controller-runtime's
//! leader election do: a graceful shutdown can hang on the unreachable apiserver while reconciles go
//! on writing to Toxiproxies. A [`watchdog`] thread enforces the tenure even if the async runtime is
//! stuck. The rest of the operator asks [`Leadership::holds_for`] before acting.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, Client, api::PostParams};

#[derive(Clone, Debug)]
pub struct Elector {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    /// How often the holder renews, and a candidate tries.
    pub renew: Duration,
    /// The longest one acquire or renew call (a GET and a PUT) may take.
    pub call_timeout: Duration,
    /// The pause after a failed renewal before the next try.
    pub retry: Duration,
}

/// Whether `identity` may take a lease held by `holder`, last renewed at `renewed`. Pure.
pub fn may_take(
    holder: Option<&str>,
    renewed: Option<Timestamp>,
    duration: Duration,
    identity: &str,
    now: Timestamp,
) -> bool {
    match (holder, renewed) {
        (None, _) | (Some(""), _) => true,
        (Some(h), _) if h == identity => true,
        (Some(_), None) => true,
        (Some(_), Some(r)) => r + SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX) < now,
    }
}

/// What the holder keeps between the end of its tenure and the earliest moment another replica may
/// take the lease, for scheduling, request latency and clock rates: max(2 s, duration/5), at most half
/// the lease. Pure.
pub fn margin(duration: Duration) -> Duration {
    (duration / 5).max(Duration::from_secs(2)).min(duration / 2)
}

/// Until when a lease acquired or renewed by a call whose renewTime was read at the local instant
/// `sent` may be acted on. Pure.
pub fn valid_until(sent: Instant, duration: Duration) -> Instant {
    sent + duration - margin(duration)
}

/// Whether a tenure ending at `valid_until` (None: not leading) lasts at least `d` after `now`. Pure.
pub fn holds(valid_until: Option<Instant>, now: Instant, d: Duration) -> bool {
    valid_until.is_some_and(|v| now.checked_add(d).is_some_and(|t| t <= v))
}

/// The deadline of a renewal starting at `now` by a holder whose tenure ends at `valid_until`:
/// `call_timeout`, cut to what is left of the tenure. None: the tenure is over, leadership is lost. Pure.
pub fn renewal_deadline(now: Instant, valid_until: Option<Instant>, call_timeout: Duration) -> Option<Duration> {
    let left = valid_until?.checked_duration_since(now).filter(|d| !d.is_zero())?;
    Some(call_timeout.min(left))
}

/// Whether this process may act as the leader, and for how long. Cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct Leadership(Option<Arc<Mutex<Option<Instant>>>>);

impl Leadership {
    /// Without leader election: this process always acts.
    pub fn unelected() -> Self {
        Self(None)
    }

    fn elected(valid_until: Instant) -> Self {
        Self(Some(Arc::new(Mutex::new(Some(valid_until)))))
    }

    /// Whether this process holds the lease for at least `d` more (always, without leader election).
    /// Code about to act, e.g. to write to a Toxiproxy, asks with the time that write may take.
    pub fn holds_for(&self, d: Duration) -> bool {
        self.holds_for_at(Instant::now(), d)
    }

    /// [`Self::holds_for`] at `now`.
    pub fn holds_for_at(&self, now: Instant, d: Duration) -> bool {
        match &self.0 {
            None => true,
            Some(_) => holds(self.valid_until(), now, d),
        }
    }

    /// When the tenure ends: None without leader election, or once released.
    pub fn valid_until(&self) -> Option<Instant> {
        self.0.as_ref().and_then(|t| *t.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn set(&self, valid_until: Option<Instant>) {
        if let Some(t) = &self.0 {
            *t.lock().unwrap_or_else(|e| e.into_inner()) = valid_until;
        }
    }
}

/// Leadership is lost: log why and exit at once, non-zero, so that nothing of this process acts any
/// more (client-go's leader election ends the process the same way).
pub fn step_down(why: &str) -> ! {
    tracing::error!("lost leadership: {why}; exiting so that only the leader drives scenarios");
    std::process::exit(1)
}

/// Exits the process when `leadership`'s tenure ends, on a thread of its own so that it does even if
/// the async runtime is stuck. Ends quietly when the lease is released.
pub fn watchdog(leadership: Leadership) {
    std::thread::Builder::new()
        .name("lease-watchdog".into())
        .spawn(move || {
            while let Some(until) = leadership.valid_until() {
                match until.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => std::thread::sleep(left),
                    _ => step_down("the lease was not renewed before the end of its tenure (watchdog)"),
                }
            }
        })
        .expect("start the lease watchdog thread");
}

/// The rhythm for a lease of `duration`: (renew, call_timeout, retry) = a third of the lease, three
/// quarters of that, a quarter of that. Pure.
pub fn rhythm(duration: Duration) -> (Duration, Duration, Duration) {
    let renew = duration / 3;
    (renew, renew * 3 / 4, renew / 4)
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        let (renew, call_timeout, retry) = rhythm(duration);
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
            renew,
            call_timeout,
            retry,
        }
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        // Whole seconds, rounded up: others must not count it shorter than this process does.
        let seconds = self.duration.as_secs() + u64::from(self.duration.subsec_nanos() > 0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds.clamp(1, i32::MAX as u64) as i32),
            renew_time: Some(MicroTime(now)),
            acquire_time: acquired.or(Some(MicroTime(now))),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to acquire or renew, unbounded: use [`Self::attempt`]. Some(sent) when this process
    /// holds the lease afterwards, `sent` being the local instant read with the renewTime written.
    async fn try_hold(&self) -> Result<Option<Instant>, kube::Error> {
        // Read together, before any request: the tenure counts from no later than the renewTime others see.
        let (now, sent) = (Timestamp::now(), Instant::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(now, 0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Some(sent)),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref();
        let ours = holder == Some(self.identity.as_str());
        // The holder's own duration: a replica configured with a shorter one must not take it early.
        let duration = spec
            .lease_duration_seconds
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(self.duration);
        if !may_take(holder, spec.renew_time.as_ref().map(|t| t.0), duration, &self.identity, now) {
            return Ok(None);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { spec.acquire_time.clone() } else { None };
        lease.spec = Some(self.spec(now, transitions, acquired));
        // resourceVersion makes this a compare-and-swap: a racing candidate gets 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Some(sent)),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Self::try_hold`] bounded by `deadline`: no answer in time is a failure.
    async fn attempt(&self, deadline: Duration) -> Result<Option<Instant>, String> {
        match tokio::time::timeout(deadline, self.try_hold()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {deadline:?}")),
        }
    }

    /// Waits until this process holds the lease; the handle says until when it may act.
    pub async fn acquire(&self) -> Leadership {
        loop {
            match self.attempt(self.call_timeout).await {
                Ok(Some(sent)) if holds(Some(valid_until(sent, self.duration)), Instant::now(), Duration::ZERO) => {
                    return Leadership::elected(valid_until(sent, self.duration));
                }
                Ok(Some(_)) => tracing::warn!(lease = %self.name, "acquired the lease too late to act on it"),
                Ok(None) => tracing::info!(lease = %self.name, "another replica leads; waiting"),
                Err(e) => tracing::warn!(lease = %self.name, "leader election: {e}"),
            }
            tokio::time::sleep(self.renew).await;
        }
    }

    /// Renews the lease every `renew` while `leadership`'s tenure lasts, each call bounded so that it
    /// ends with the tenure at the latest. Returns why leadership was lost: a renewal found another
    /// holder, or the tenure ended without a successful renewal. The caller must stop acting at once.
    pub async fn hold(&self, leadership: &Leadership) -> String {
        let mut next = Instant::now() + self.renew;
        loop {
            let Some(until) = leadership.valid_until() else { return "the lease was released".into() };
            // Never sleep past the tenure: wake at its end to step down on time.
            tokio::time::sleep_until(next.min(until).into()).await;
            let Some(deadline) = renewal_deadline(Instant::now(), Some(until), self.call_timeout) else {
                return format!(
                    "the lease was not renewed before the end of its tenure ({:?} before it could expire)",
                    margin(self.duration)
                );
            };
            match self.attempt(deadline).await {
                Ok(Some(sent)) => {
                    leadership.set(Some(valid_until(sent, self.duration)));
                    next = sent + self.renew;
                }
                Ok(None) => return "another replica holds the lease".into(),
                Err(e) => {
                    tracing::warn!(lease = %self.name, "renewing the lease: {e}");
                    next = Instant::now() + self.retry;
                }
            }
        }
    }

    /// Gives the lease up (on graceful shutdown) so another replica takes over at once. This process
    /// stops counting itself the leader first; the call is bounded like the others.
    pub async fn release(&self, leadership: &Leadership) {
        leadership.set(None);
        let give_up = async {
            if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
                && let Some(spec) = lease.spec.as_mut()
                && spec.holder_identity.as_deref() == Some(self.identity.as_str())
            {
                spec.holder_identity = None;
                spec.renew_time = None;
                let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
            }
        };
        if tokio::time::timeout(self.call_timeout, give_up).await.is_err() {
            tracing::warn!(lease = %self.name, "releasing the lease: no answer; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use chaoslab_testenv::at;

    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_lease_is_taken_only_when_free_ours_or_expired() {
        let d = Duration::from_secs(15);
        assert!(may_take(None, None, d, "me", at(0)));
        assert!(may_take(Some("me"), Some(at(100)), d, "me", at(101)));
        assert!(!may_take(Some("other"), Some(at(100)), d, "me", at(114)));
        assert!(!may_take(Some("other"), Some(at(100)), d, "me", at(115)));
        assert!(may_take(Some("other"), Some(at(100)), d, "me", at(116)));
    }

    #[test]
    fn the_margin_is_two_seconds_or_a_fifth_and_at_most_half_the_lease() {
        assert_eq!(margin(secs(15.0)), secs(3.0));
        assert_eq!(margin(secs(60.0)), secs(12.0));
        assert_eq!(margin(secs(6.0)), secs(2.0));
        assert_eq!(margin(secs(3.0)), secs(1.5));
    }

    #[test]
    fn the_tenure_counts_from_before_the_request_and_ends_a_margin_before_the_lease_can_expire() {
        let sent = Instant::now();
        assert_eq!(valid_until(sent, secs(15.0)), sent + secs(12.0));
        assert_eq!(valid_until(sent, secs(6.0)), sent + secs(4.0));
        // From the renewal request on: a renewal that answers late does not lengthen the tenure.
        assert!(holds(Some(valid_until(sent, secs(15.0))), sent + secs(11.9), Duration::ZERO));
        assert!(!holds(Some(valid_until(sent, secs(15.0))), sent + secs(12.0), secs(0.001)));
        assert!(!holds(Some(valid_until(sent, secs(15.0))), sent + secs(30.0), Duration::ZERO));
    }

    #[test]
    fn a_leader_stops_before_another_replica_may_take_its_lease() {
        // The renewTime written is read with `sent`; another replica compares it with its clock.
        for d in [3.0, 4.0, 6.0, 15.0, 137.0] {
            let d = secs(d);
            let (renewed, sent) = (at(1_000), Instant::now());
            let end = valid_until(sent, d);
            let wall_at_end = renewed + SignedDuration::try_from(end - sent).unwrap();
            assert!(!may_take(Some("leader"), Some(renewed), d, "other", wall_at_end), "{d:?}");
            // The earliest instant another replica may take it is at least `margin` later.
            let earliest = wall_at_end + SignedDuration::try_from(margin(d)).unwrap();
            assert!(!may_take(Some("leader"), Some(renewed), d, "other", earliest), "{d:?}");
            assert!(margin(d) >= secs(1.5));
        }
    }

    #[test]
    fn leadership_is_lost_when_the_tenure_passes_without_renewal() {
        // Renewed at `sent` with a 6 s lease: leading until 4 s later, not a moment longer.
        let sent = Instant::now();
        let end = valid_until(sent, secs(6.0));
        let l = Leadership::elected(end);
        assert!(l.holds_for_at(sent + secs(1.0), secs(3.0)));
        assert!(!l.holds_for_at(sent + secs(1.0), secs(3.5)), "not for longer than the tenure");
        assert!(l.holds_for_at(sent + secs(3.9), Duration::ZERO));
        assert!(!l.holds_for_at(sent + secs(4.0), secs(0.001)));
        assert!(!l.holds_for_at(sent + secs(52.0), Duration::ZERO), "the issue's 52 s: long lost");
        // A successful renewal extends it.
        l.set(Some(valid_until(sent + secs(2.0), secs(6.0))));
        assert!(l.holds_for_at(sent + secs(5.0), secs(0.9)));
        // Released: not leading any more.
        l.set(None);
        assert!(!l.holds_for_at(sent, Duration::ZERO));
    }

    #[test]
    fn without_leader_election_this_process_always_acts() {
        let l = Leadership::unelected();
        assert!(l.holds_for(Duration::from_secs(3600)));
        assert_eq!(l.valid_until(), None);
    }

    #[test]
    fn every_renewal_has_a_deadline_that_ends_with_the_tenure_at_the_latest() {
        let t0 = Instant::now();
        let end = t0 + secs(4.0);
        let call = secs(1.5);
        assert_eq!(renewal_deadline(t0, Some(end), call), Some(call));
        assert_eq!(renewal_deadline(t0 + secs(3.0), Some(end), call), Some(secs(1.0)));
        assert_eq!(renewal_deadline(t0 + secs(4.0), Some(end), call), None, "tenure over: lost");
        assert_eq!(renewal_deadline(t0 + secs(52.0), Some(end), call), None);
        assert_eq!(renewal_deadline(t0, None, call), None, "released: nothing to renew");
    }

    #[test]
    fn renewals_start_within_the_tenure_and_their_deadlines_are_shorter_than_the_renew_interval() {
        for d in [1.0, 3.0, 4.0, 6.0, 15.0, 60.0] {
            let d = secs(d);
            let (renew, call_timeout, retry) = rhythm(d);
            let tenure = d - margin(d);
            assert!(call_timeout < renew && retry < renew, "{d:?}");
            assert!(renew < tenure, "{d:?}: the next renewal starts before the tenure ends");
            if d >= secs(6.0) {
                // Sent `renew` after the last one and answered within its deadline: inside the tenure.
                assert!(renew + call_timeout < tenure, "{d:?}");
            }
        }
    }
}
