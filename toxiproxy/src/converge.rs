//! Converging a proxy to a desired state: exactly the desired chaoslab toxics, and enabled or not.

use chaoslab_core::{
    faults::{DesiredProxy, owner_of},
    toxic::Toxic,
};

use crate::{client::Client, error::Error};

/// What to do with toxics chaoslab did not create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Foreign {
    /// Leave them alone.
    Keep,
    /// Remove them too (the lab's reset before Stabilization and Recovery).
    Remove,
}

/// What a converge changed, by toxic name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvergeReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Set when the proxy's enabled flag was changed (to the desired value).
    pub toggled: bool,
    /// The chaoslab toxics the proxy holds afterwards.
    pub held: Vec<String>,
}

impl ConvergeReport {
    pub fn changed(&self) -> bool {
        self.toggled || !(self.created.is_empty() && self.updated.is_empty() && self.removed.is_empty())
    }
}

impl Client {
    /// Makes `proxy` hold exactly `desired.toxics` among chaoslab toxics (by name) and sets its enabled
    /// flag. Idempotent. Toxics are added before the proxy is enabled, so no connection sees a window
    /// without them.
    pub async fn converge(
        &self,
        proxy: &str,
        desired: &DesiredProxy,
        foreign: Foreign,
    ) -> Result<ConvergeReport, Error> {
        let current = self.proxy(proxy).await?;
        let mut report = ConvergeReport::default();
        let wanted = |t: &Toxic| desired.toxics.iter().any(|d| d.same_identity(t));

        for t in &current.toxics {
            let ours = owner_of(&t.name).is_some();
            if (ours && !wanted(t)) || (!ours && foreign == Foreign::Remove) {
                self.delete_toxic_if_present(proxy, &t.name).await?;
                report.removed.push(t.name.clone());
            }
        }
        for d in &desired.toxics {
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
        }
        if current.enabled != desired.enabled {
            self.set_enabled(proxy, desired.enabled).await?;
            report.toggled = true;
        }
        report.held = desired.toxics.iter().map(|t| t.name.clone()).collect();
        Ok(report)
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
