//! Telemetry shared by chaoslab's processes: the `/metrics`, `/healthz`, `/readyz` endpoint, and the
//! scenario part of the metrics contract (exported by the operator and by `chaoslab run`). Also the
//! TCP accept loop that this endpoint and chaoslab's other servers share.

mod accept;
mod endpoint;
mod scenario_metrics;

pub use accept::accept_loop;
pub use endpoint::{BeforeScrape, Endpoints, serve};
pub use scenario_metrics::ScenarioMetrics;
