//! Converging a proxy to what one owner wants of it: exactly the owner's desired toxics, and
//! enabled or not. Toxics of other chaoslab owners are never touched, so a run can only ever undo
//! its own faults.

use chaoslab_core::{
    faults::{DesiredProxy, Foreign, is_down_marker, owner_of},
    toxic::Toxic,
};
use futures::future::join_all;

use crate::{client::Client, error::Error};

/// What a converge changed, by toxic name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvergeReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Set when the proxy's enabled flag was changed.
    pub toggled: bool,
    /// The proxy's enabled flag afterwards.
    pub enabled: bool,
    /// The owner's toxics the proxy holds afterwards.
    pub held: Vec<String>,
    /// Toxics of other chaoslab owners found on the proxy (left in place).
    pub others: Vec<String>,
}

impl ConvergeReport {
    pub fn changed(&self) -> bool {
        self.toggled || !(self.created.is_empty() && self.updated.is_empty() && self.removed.is_empty())
    }
}

/// What a caller last saw a proxy hold of one owner's, from a call that succeeded: its enabled flag
/// and the names of the owner's toxics on it.
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    pub enabled: bool,
    pub held: &'a [String],
}

/// One proxy to converge: its Toxiproxy, its name there, what it must look like, and what the caller
/// knows it holds (see [`Client::converge_from`]).
pub struct Target<'a> {
    pub client: &'a Client,
    pub proxy: &'a str,
    pub desired: &'a DesiredProxy,
    pub known: Option<Known<'a>>,
}

/// Converges every target at once (a slow Toxiproxy delays no other); results in target order.
/// The one way both the operator and the local runner put a moment of a run on its targets.
pub async fn converge_all(targets: &[Target<'_>]) -> Vec<Result<ConvergeReport, Error>> {
    join_all(targets.iter().map(|t| t.client.converge_from(t.proxy, t.desired, t.known))).await
}

/// One call of a converge.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// Create the toxic; one already there under its name (a lost reply) is made to match.
    Create(Toxic),
    Update(Toxic),
    /// Same name, other type or stream: those are immutable, so delete and create it.
    Replace(Toxic),
    Remove(String),
    SetEnabled(bool),
}

/// What a proxy holds now, as far as a plan needs it.
struct Now<'a> {
    enabled: bool,
    names: Vec<&'a str>,
    /// Those of them whose attributes are known.
    toxics: &'a [Toxic],
}

/// The calls that make a proxy holding `now` hold `desired`, and the report they add up to. The order
/// keeps every crash safe: new toxics (a `down` marker among them) are in place before the proxy is
/// disabled, and the proxy is enabled before any toxic (the marker among them) is removed, so a run
/// interrupted at any call leaves a state its owner can undo. Pure.
fn plan(now: &Now, desired: &DesiredProxy) -> (Vec<Step>, ConvergeReport) {
    // `None` in `desired` means "enable it again only if this owner disabled it".
    let enabled =
        desired.enabled.unwrap_or_else(|| now.enabled || now.names.iter().any(|n| is_down_marker(n, &desired.owner)));
    let mut report = ConvergeReport { enabled, ..ConvergeReport::default() };
    let mut steps = Vec::new();
    for d in &desired.toxics {
        match now.toxics.iter().find(|t| t.name == d.name) {
            Some(t) if t.same_effect(d) => {}
            Some(t) => {
                steps.push(if t.same_identity(d) { Step::Update(d.clone()) } else { Step::Replace(d.clone()) });
                report.updated.push(d.name.clone());
            }
            None => {
                steps.push(Step::Create(d.clone()));
                report.created.push(d.name.clone());
            }
        }
    }
    if enabled && !now.enabled {
        steps.push(Step::SetEnabled(true));
        report.toggled = true;
    }
    let wanted = |name: &str| desired.toxics.iter().any(|d| d.name == name);
    for name in &now.names {
        let remove = match owner_of(name) {
            Some(o) if o == desired.owner => !wanted(name),
            Some(_) => {
                report.others.push(name.to_string());
                false
            }
            None => desired.foreign == Foreign::Remove,
        };
        if remove {
            steps.push(Step::Remove(name.to_string()));
            report.removed.push(name.to_string());
        }
    }
    if !enabled && now.enabled {
        steps.push(Step::SetEnabled(false));
        report.toggled = true;
    }
    report.held = desired.toxics.iter().map(|t| t.name.clone()).collect();
    (steps, report)
}

/// The plan from what the caller knows, when it can stand without reading the proxy: it changes
/// something, and only adds toxics the proxy did not hold (creating is safe on any state: a toxic
/// already there is adopted) and removes ones it did (removing a missing one is a no-op). A plan that
/// changes nothing is a check, and a check reads the proxy; one that keeps a toxic needs its
/// attributes, and one that removes unknown toxics needs their names.
fn plan_from_known(known: Known, desired: &DesiredProxy) -> Option<(Vec<Step>, ConvergeReport)> {
    let now = Now { enabled: known.enabled, names: known.held.iter().map(String::as_str).collect(), toxics: &[] };
    let keeps = desired.toxics.iter().any(|d| known.held.contains(&d.name));
    let (steps, report) = plan(&now, desired);
    (desired.foreign == Foreign::Keep && !keeps && !steps.is_empty()).then_some((steps, report))
}

impl Client {
    /// Makes `proxy` hold exactly `desired.toxics` among its owner's toxics and sets its enabled flag.
    /// Idempotent: reads the proxy, then makes the calls its state needs (see [`plan`]).
    pub async fn converge(&self, proxy: &str, desired: &DesiredProxy) -> Result<ConvergeReport, Error> {
        let current = self.proxy(proxy).await?;
        let names = current.toxics.iter().map(|t| t.name.as_str()).collect();
        let (steps, report) = plan(&Now { enabled: current.enabled, names, toxics: &current.toxics }, desired);
        self.run(proxy, steps).await?;
        Ok(report)
    }

    /// [`Client::converge`], without reading the proxy first where what the caller `known` it held
    /// is enough (a phase change: the new faults come, the old ones go), which halves the calls when
    /// every run changes at once. A later converge that reads the proxy checks the result.
    pub async fn converge_from(
        &self,
        proxy: &str,
        desired: &DesiredProxy,
        known: Option<Known<'_>>,
    ) -> Result<ConvergeReport, Error> {
        match known.and_then(|k| plan_from_known(k, desired)) {
            Some((steps, report)) => self.run(proxy, steps).await.map(|()| report),
            None => self.converge(proxy, desired).await,
        }
    }

    async fn run(&self, proxy: &str, steps: Vec<Step>) -> Result<(), Error> {
        for step in steps {
            match step {
                Step::Create(t) => self.create_toxic_or_adopt(proxy, &t).await?,
                Step::Update(t) => self.update_toxic(proxy, &t).await.map(drop)?,
                Step::Replace(t) => {
                    self.delete_toxic_if_present(proxy, &t.name).await?;
                    self.create_toxic(proxy, &t).await.map(drop)?;
                }
                Step::Remove(name) => self.delete_toxic_if_present(proxy, &name).await?,
                Step::SetEnabled(on) => self.set_enabled(proxy, on).await.map(drop)?,
            }
        }
        Ok(())
    }

    /// Enables `proxy` and removes every toxic on it, of any owner, chaoslab's or not: for a proxy
    /// the caller owns outright, like those the local lab creates for itself.
    pub async fn clear_proxy(&self, proxy: &str) -> Result<(), Error> {
        let current = self.proxy(proxy).await?;
        if !current.enabled {
            self.set_enabled(proxy, true).await?;
        }
        for t in &current.toxics {
            self.delete_toxic_if_present(proxy, &t.name).await?;
        }
        Ok(())
    }

    async fn delete_toxic_if_present(&self, proxy: &str, name: &str) -> Result<(), Error> {
        match self.delete_toxic(proxy, name).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// A create retried after a lost reply finds its own toxic already there (409): make it match.
    async fn create_toxic_or_adopt(&self, proxy: &str, toxic: &Toxic) -> Result<(), Error> {
        match self.create_toxic(proxy, toxic).await {
            Err(e) if e.is_conflict() => {
                let existing = self.toxic(proxy, &toxic.name).await?;
                if existing.same_effect(toxic) {
                    Ok(())
                } else if existing.same_identity(toxic) {
                    self.update_toxic(proxy, toxic).await.map(drop)
                } else {
                    self.delete_toxic_if_present(proxy, &toxic.name).await?;
                    self.create_toxic(proxy, toxic).await.map(drop)
                }
            }
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaoslab_core::{
        catalog::{down, latency, loss},
        faults::{ProxyKind, desired_for, down_marker},
        toxic::ToxicType,
    };

    const OWNER: &str = "abc123";

    fn names(d: &DesiredProxy) -> Vec<String> {
        d.toxics.iter().map(|t| t.name.clone()).collect()
    }

    fn known(enabled: bool, held: &[String]) -> Known<'_> {
        Known { enabled, held }
    }

    #[test]
    fn a_phase_change_is_planned_from_what_is_known_without_reading_the_proxy() {
        let testing = desired_for(&loss(0, 30.0), OWNER, ProxyKind::Toxiproxy);
        let (steps, report) = plan_from_known(known(true, &[]), &testing).expect("only creates");
        assert_eq!(steps, testing.toxics.iter().cloned().map(Step::Create).collect::<Vec<_>>());
        assert_eq!((report.created, report.held.clone()), (names(&testing), names(&testing)));
        assert!(report.enabled && !report.toggled);

        let held = names(&testing);
        let (steps, report) = plan_from_known(known(true, &held), &DesiredProxy::clean(OWNER)).expect("only removes");
        assert_eq!(steps, held.iter().cloned().map(Step::Remove).collect::<Vec<_>>());
        assert_eq!(report.removed, held);
        assert!(report.held.is_empty());
    }

    #[test]
    fn a_down_is_planned_in_the_crash_safe_order_both_ways() {
        let testing = desired_for(&down(0), OWNER, ProxyKind::Toxiproxy);
        let (steps, _) = plan_from_known(known(true, &[]), &testing).expect("a create and a disable");
        assert_eq!(steps.last(), Some(&Step::SetEnabled(false)), "the marker is in place first: {steps:?}");
        let marker = vec![down_marker(OWNER).name];
        let (steps, report) =
            plan_from_known(known(false, &marker), &DesiredProxy::release(OWNER)).expect("enable, remove");
        assert_eq!(steps, [Step::SetEnabled(true), Step::Remove(marker[0].clone())], "enabled before the marker goes");
        assert!(report.enabled && report.toggled);
    }

    #[test]
    fn what_the_known_state_cannot_vouch_for_reads_the_proxy() {
        let testing = desired_for(&loss(0, 30.0), OWNER, ProxyKind::Toxiproxy);
        let held = names(&testing);
        assert!(plan_from_known(known(true, &held), &testing).is_none(), "nothing to change: a check reads");
        assert!(plan_from_known(known(true, &[]), &DesiredProxy::clean(OWNER)).is_none(), "a check reads");
        let slower = desired_for(&latency(0, 900), OWNER, ProxyKind::Toxiproxy);
        let with_latency = names(&desired_for(&latency(0, 100), OWNER, ProxyKind::Toxiproxy));
        assert!(
            plan_from_known(known(true, &with_latency), &slower).is_none(),
            "a kept toxic's attributes are unknown"
        );
        assert!(
            plan_from_known(known(true, &held), &DesiredProxy::reset(OWNER)).is_none(),
            "foreign toxics are unknown"
        );
    }

    #[test]
    fn a_read_proxy_keeps_other_owners_toxics_and_replaces_a_changed_one_in_place() {
        let mine = desired_for(&latency(0, 100), OWNER, ProxyKind::Toxiproxy);
        let theirs = desired_for(&latency(0, 100), "other99", ProxyKind::Toxiproxy);
        // Same name, other type: hand-edited. It is replaced, and the new one stays.
        let mut other_type = mine.toxics[0].clone();
        other_type.kind = ToxicType::Bandwidth;
        let current = [other_type, theirs.toxics[0].clone()];
        let names = current.iter().map(|t| t.name.as_str()).collect();
        let (steps, report) = plan(&Now { enabled: true, names, toxics: &current }, &mine);
        assert_eq!(steps, [Step::Replace(mine.toxics[0].clone())], "replaced, not removed afterwards");
        assert_eq!(report.others, [theirs.toxics[0].name.clone()]);
    }
}
