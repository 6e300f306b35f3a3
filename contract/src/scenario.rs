//! The scenario part of the metrics contract, exported by the operator and by `chaoslab run`.

pub const SCENARIO_PHASE: &str = "chaoslab_scenario_phase";
pub const SCENARIO_TOXIC_ACTIVE: &str = "chaoslab_scenario_toxic_active";
/// `{scenario,measure}`: the client's time to detect, route around and recover, in seconds.
pub const SCENARIO_SECONDS: &str = "chaoslab_scenario_seconds";
/// `{scenario}`: failed requests among all during Testing, 0–1.
pub const SCENARIO_TESTING_ERROR_RATIO: &str = "chaoslab_scenario_testing_error_ratio";

/// The `measure` label values of [`SCENARIO_SECONDS`].
pub const MEASURES: [&str; 3] = ["detect", "route_around", "recover"];

/// The phases a scenario can be in, as `phase` label values, in the order of the API's `Phase`.
pub const PHASES: [&str; 8] =
    ["Pending", "Queued", "Stabilization", "Testing", "Recovery", "Completed", "Failed", "Aborted"];
