//! Leader election on a coordination.k8s.io Lease, so two replicas never drive the same scenario.
//! The holder renews every `renew`; a lease not renewed for `duration` can be taken over.

use std::time::Duration;

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
    pub renew: Duration,
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

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
            renew: duration / 3,
        }
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            renew_time: Some(MicroTime(now)),
            acquire_time: acquired.or(Some(MicroTime(now))),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to acquire or renew. Ok(true) when this process holds the lease afterwards.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(now, 0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref();
        let ours = holder == Some(self.identity.as_str());
        if !may_take(holder, spec.renew_time.as_ref().map(|t| t.0), self.duration, &self.identity, now) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { spec.acquire_time.clone() } else { None };
        lease.spec = Some(self.spec(now, transitions, acquired));
        // resourceVersion makes this a compare-and-swap: a racing candidate gets 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(true) => return,
                Ok(false) => tracing::info!(lease = %self.name, "another replica leads; waiting"),
                Err(e) => tracing::warn!(lease = %self.name, "leader election: {e}"),
            }
            tokio::time::sleep(self.renew).await;
        }
    }

    /// Renews until a renewal fails for longer than the lease lasts; returns when leadership is lost.
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew).await;
            match self.try_hold().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(lease = %self.name, "renewing the lease: {e}");
                    if last_ok.elapsed() >= self.duration {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up (on graceful shutdown) so another replica takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(s)
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
}
