//! Telemetry shared by chaoslab's processes: the `/metrics`, `/healthz`, `/readyz` endpoint, the
//! scenario part of the metrics contract (exported by the operator and by `chaoslab run`) and the
//! bounded read of a client's `/metrics`. Also the TCP accept loop that this endpoint and
//! chaoslab's other servers share.

mod accept;
mod endpoint;
mod fetch;
mod scenario_metrics;

pub use accept::accept_loop;
pub use endpoint::{BeforeScrape, Endpoints, serve};
pub use fetch::{FetchError, METRICS_LIMIT, fetch_metrics};
pub use scenario_metrics::ScenarioMetrics;
