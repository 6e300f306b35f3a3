//! A typed async client of the Toxiproxy v2 HTTP API.
//!
//! Every call has a timeout and bounded retries (transport errors and 502/503/504, which Toxiproxy
//! returns when its admin API is stuck); errors carry Toxiproxy's own message. [`Client::converge`]
//! makes a proxy hold exactly a desired set of chaoslab toxics.

mod client;
mod converge;
mod error;
mod model;

pub use client::{Client, RetryPolicy, install_crypto_provider};
pub use converge::{ConvergeReport, Known, Target, converge_all};
pub use error::Error;
pub use model::{NewProxy, Proxy};
