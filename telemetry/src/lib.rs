//! Telemetry shared by chaoslab's processes: the `/metrics`, `/healthz`, `/readyz` endpoint, and the
//! scenario part of the metrics contract (exported by the operator and by `chaoslab run`).

mod endpoint;
mod scenario_metrics;

pub use endpoint::{BeforeScrape, Endpoints, serve};
pub use scenario_metrics::ScenarioMetrics;
