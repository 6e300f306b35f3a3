//! Why a reconcile did not finish.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The lease runs out before a Toxiproxy call could end: nothing was done.
    #[error("not acting: this replica's lease runs out")]
    NotLeading,
    /// A deleted scenario's faults could not all be removed: its finalizer stays.
    #[error("{0}")]
    CleanupBlocked(String),
}
