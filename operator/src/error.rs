//! Why a reconcile did not finish, and what stands in a scenario's way: typed, so that a reconcile
//! knows whether to end the run (permanent) or keep it in its phase and try again (transient).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The lease runs out before a Toxiproxy call could end: nothing was done.
    #[error("not acting: this replica's lease runs out")]
    NotLeading,
    /// A deleted scenario's faults could not all be removed: its finalizer stays.
    #[error("{0}")]
    CleanupBlocked(String),
}

impl Error {
    /// The `kind` label of `chaoslab_operator_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Finalizer(e) => match &**e {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                _ => "finalizer",
            },
            Error::NotLeading => "not_leading",
            Error::CleanupBlocked(_) => "cleanup_blocked",
        }
    }
}

/// What kind of trouble a scenario is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Toxiproxy that does not answer (refused, timed out, 5xx): transient.
    ToxiproxyUnreachable,
    /// A Toxiproxy that refuses a well-formed request (4xx, e.g. no such proxy) or does not speak
    /// Toxiproxy's API: permanent.
    ToxiproxyRejected,
    /// Target pods missing, or without an IP yet: transient (see `reconcile::TARGETS_GRACE`).
    TargetsMissing,
    /// Listing the target pods failed: transient.
    KubeApi,
    /// The spec cannot run: a fault names a target that does not exist, a bad selector: permanent.
    SpecInvalid,
}

impl Kind {
    pub fn is_permanent(self) -> bool {
        matches!(self, Kind::ToxiproxyRejected | Kind::SpecInvalid)
    }

    /// Reason of conditions and Events.
    pub fn reason(self) -> &'static str {
        match self {
            Kind::ToxiproxyUnreachable => "ToxiproxyUnreachable",
            Kind::ToxiproxyRejected => "ToxiproxyRejected",
            Kind::TargetsMissing => "TargetsMissing",
            Kind::KubeApi => "KubernetesApiUnavailable",
            Kind::SpecInvalid => "SpecInvalid",
        }
    }

    /// The `kind` label of `chaoslab_operator_errors_total`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Kind::ToxiproxyUnreachable => "toxiproxy_unreachable",
            Kind::ToxiproxyRejected => "toxiproxy_rejected",
            Kind::TargetsMissing => "targets_missing",
            Kind::KubeApi => "kube_api",
            Kind::SpecInvalid => "spec_invalid",
        }
    }
}

/// One thing in a scenario's way, with a message naming the target, the URL and the fix.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub kind: Kind,
    pub message: String,
}

impl Problem {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// A failed call to the Toxiproxy of `target` at `url`.
    pub fn toxiproxy(target: &str, url: &str, e: &chaoslab_toxiproxy::Error) -> Self {
        if e.is_transient() {
            Self::new(Kind::ToxiproxyUnreachable, format!("target {target} ({url}): {e}; retrying"))
        } else {
            let fix = if e.is_not_found() {
                "; create that proxy in the target's Toxiproxy, or name the right one in spec.targets.proxy"
            } else {
                "; is this the Toxiproxy admin port (spec.targets.adminPort or the endpoint's URL)?"
            };
            Self::new(Kind::ToxiproxyRejected, format!("target {target} ({url}): {e}{fix}"))
        }
    }
}
