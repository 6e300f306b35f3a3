//! Proxies as the Toxiproxy API reads and writes them (toxics live in `chaoslab_core::toxic`).

use chaoslab_core::toxic::Toxic;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proxy {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    #[serde(default)]
    pub toxics: Vec<Toxic>,
}

/// A proxy to create. `listen` may be `host:0` to let the server pick a port (the reply shows it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewProxy {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}
