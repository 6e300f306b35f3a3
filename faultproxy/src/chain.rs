//! A proxy's chain of toxics as its connections see it: the registry publishes a new chain on every
//! change, the proxy hands it to each connection, and the links run it.

use std::sync::Arc;

use chaoslab_core::toxic::Toxic;

/// A toxic as the data path sees it: `id` is unique for the server's lifetime (a re-created toxic of the
/// same name is a new toxic), `rev` grows with every update.
#[derive(Debug)]
pub(crate) struct StoredToxic {
    pub id: u64,
    pub rev: u64,
    pub toxic: Toxic,
}

/// A proxy's toxics in the order they were added.
pub(crate) type Chain = Arc<Vec<Arc<StoredToxic>>>;
