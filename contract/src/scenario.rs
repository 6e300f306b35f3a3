//! The scenario part of the metrics contract, exported by the operator and by `chaoslab run`.

pub const SCENARIO_PHASE: &str = "chaoslab_scenario_phase";
pub const SCENARIO_TOXIC_ACTIVE: &str = "chaoslab_scenario_toxic_active";

/// The phases a scenario can be in, as `phase` label values, in the order of the API's `Phase`.
pub const PHASES: [&str; 8] =
    ["Pending", "Queued", "Stabilization", "Testing", "Recovery", "Completed", "Failed", "Aborted"];
