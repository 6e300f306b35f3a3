//! chaoslab's pure core, shared by the operator and the local runner: the `ChaosScenario` API,
//! the scenario catalog, the fault → toxic mapping and the phase engine. No I/O, no clocks.

pub mod api;
pub mod catalog;
pub mod checks;
pub mod client_metrics;
pub mod duration;
pub mod ending;
pub mod engine;
pub mod faults;
pub mod observation;
pub mod timing;
pub mod toxic;
pub mod verification;
