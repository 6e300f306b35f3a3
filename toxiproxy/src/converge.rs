//! Converging a proxy to what one owner wants of it: exactly the owner's desired toxics, and
//! enabled or not. Toxics of other chaoslab owners are never touched, so a run can only ever undo
//! its own faults.

use chaoslab_core::{
    faults::{DesiredProxy, Foreign, is_down_marker, owner_of},
    toxic::Toxic,
};
use futures::future::join_all;

use crate::{client::Client, error::Error, model::Proxy};

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

/// The enabled flag `desired` asks for, given what the proxy holds now: `None` in `desired` means
/// "enable it again only if this owner disabled it".
fn wanted_enabled(current: &Proxy, desired: &DesiredProxy) -> bool {
    desired
        .enabled
        .unwrap_or_else(|| current.enabled || current.toxics.iter().any(|t| is_down_marker(&t.name, &desired.owner)))
}

/// One proxy to converge: its Toxiproxy, its name there, and what it must look like.
pub struct Target<'a> {
    pub client: &'a Client,
    pub proxy: &'a str,
    pub desired: &'a DesiredProxy,
}

/// Converges every target at once (a slow Toxiproxy delays no other); results in target order.
/// The one way both the operator and the local runner put a moment of a run on its targets.
pub async fn converge_all(targets: &[Target<'_>]) -> Vec<Result<ConvergeReport, Error>> {
    join_all(targets.iter().map(|t| t.client.converge(t.proxy, t.desired))).await
}

impl Client {
    /// Makes `proxy` hold exactly `desired.toxics` among its owner's toxics and sets its enabled flag.
    /// Idempotent. The order keeps every crash safe: new toxics (a `down` marker among them) are
    /// in place before the proxy is disabled, and the proxy is enabled before any toxic (the marker
    /// among them) is removed, so a run interrupted at any call leaves a state its owner can undo.
    pub async fn converge(&self, proxy: &str, desired: &DesiredProxy) -> Result<ConvergeReport, Error> {
        let current = self.proxy(proxy).await?;
        let enabled = wanted_enabled(&current, desired);
        let mut report = ConvergeReport { enabled, ..ConvergeReport::default() };
        for d in &desired.toxics {
            self.put_toxic(proxy, &current, d, &mut report).await?;
        }
        if enabled && !current.enabled {
            self.set_enabled(proxy, true).await?;
            report.toggled = true;
        }
        let wanted = |t: &Toxic| desired.toxics.iter().any(|d| d.same_identity(t));
        for t in &current.toxics {
            let remove = match owner_of(&t.name) {
                Some(o) if o == desired.owner => !wanted(t),
                Some(_) => {
                    report.others.push(t.name.clone());
                    false
                }
                None => desired.foreign == Foreign::Remove,
            };
            if remove {
                self.delete_toxic_if_present(proxy, &t.name).await?;
                report.removed.push(t.name.clone());
            }
        }
        if !enabled && current.enabled {
            self.set_enabled(proxy, false).await?;
            report.toggled = true;
        }
        report.held = desired.toxics.iter().map(|t| t.name.clone()).collect();
        Ok(report)
    }

    /// Makes one desired toxic present with its effect, recording what was done.
    async fn put_toxic(
        &self,
        proxy: &str,
        current: &Proxy,
        d: &Toxic,
        report: &mut ConvergeReport,
    ) -> Result<(), Error> {
        match current.toxics.iter().find(|t| t.name == d.name) {
            Some(t) if t.same_effect(d) => {}
            Some(t) if t.same_identity(d) => {
                self.update_toxic(proxy, d).await?;
                report.updated.push(d.name.clone());
            }
            Some(_) => {
                // Same name, other type or stream: those are immutable, so replace it.
                self.delete_toxic_if_present(proxy, &d.name).await?;
                self.create_toxic(proxy, d).await?;
                report.updated.push(d.name.clone());
            }
            None => {
                self.create_toxic_or_adopt(proxy, d).await?;
                report.created.push(d.name.clone());
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
