//! A Toxiproxy-compatible fault proxy: the Toxiproxy v2 HTTP API (v2.12.0's routes, status codes and
//! error bodies) and its TCP toxics (latency with jitter, timeout, bandwidth, slow_close, reset_peer,
//! limit_data, slicer; toxicity drawn per connection and direction; `enabled: false`), so chaoslab can run
//! its lab with nothing installed. Drive it with `chaoslab_toxiproxy::Client` like a real one. It also has
//! chaoslab's own `packet_loss` toxic (what TCP makes of lost packets), which Toxiproxy does not.
//!
//! - [`serve`] runs it on a listener until a shutdown future completes (`chaoslab proxy --listen`);
//! - [`FaultProxy`] runs it in-process and shuts it down with every listener and connection closed.
//!
//! Deliberate differences from Toxiproxy are listed in the crate's README.

mod api;
mod chain;
mod error;
mod gojson;
mod link;
mod model;
mod proxy;
mod registry;
mod server;
mod toxics;

pub use error::ApiError;
pub use server::{FaultProxy, serve};

/// What `GET /version` reports: the Toxiproxy release whose API this implements, with build metadata
/// naming this implementation (semver ignores it in comparisons).
pub const VERSION: &str = "2.12.0+chaoslab-faultproxy";

#[cfg(test)]
mod tests {
    use chaoslab_core::faults::ProxyKind;

    #[test]
    fn chaoslab_knows_the_fault_proxy_by_its_version() {
        assert_eq!(ProxyKind::from_version(super::VERSION), ProxyKind::Faultproxy);
    }
}
