//! What a run leaves behind: a table of checks on the terminal, and with `--report DIR`
//! `DIR/<scenario>.json` (the status the operator would write, plus the time series) and
//! `DIR/<scenario>.html` (a self-contained page with charts).

pub mod html;
pub mod table;

use std::path::Path;

use chaoslab_core::{
    api::{ChaosScenarioStatus, Timings},
    catalog::Category,
};
use serde::Serialize;

use crate::experiment::Point;

#[derive(Serialize)]
pub struct Report<'a> {
    pub scenario: &'a str,
    pub category: Category,
    pub description: &'a str,
    pub phases: PhaseLengths,
    pub status: &'a ChaosScenarioStatus,
    pub series: &'a [Point],
}

#[derive(Clone, Copy, Serialize)]
pub struct PhaseLengths {
    pub stabilization: f64,
    pub testing: f64,
    pub recovery: f64,
}

pub fn write(dir: &Path, report: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join(format!("{}.json", report.scenario)), json + "\n")?;
    std::fs::write(dir.join(format!("{}.html", report.scenario)), html::render(report))?;
    Ok(())
}

/// The measured times on one line: `detect 2.5 s · route around 3.0 s · recover — · Testing
/// errors 12 of 4000 (0.3%) · ±0.5 s` (— not reached, or not watched from its phase's start).
pub fn times(t: &Timings) -> String {
    let s = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1} s"));
    format!(
        "detect {} · route around {} · recover {} · Testing errors {} of {} ({:.1}%) · ±{:.1} s",
        s(t.detect_seconds),
        s(t.route_around_seconds),
        s(t.recover_seconds),
        t.testing_failures,
        t.testing_requests,
        t.testing_error_rate * 100.0,
        t.resolution_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_on_one_line_with_a_dash_for_what_was_not_reached() {
        let t = Timings {
            detect_seconds: Some(2.5),
            route_around_seconds: None,
            recover_seconds: Some(4.04),
            resolution_seconds: 0.5,
            testing_failures: 12,
            testing_requests: 4000,
            testing_error_rate: 0.003,
        };
        assert_eq!(
            times(&t),
            "detect 2.5 s · route around — · recover 4.0 s · Testing errors 12 of 4000 (0.3%) · ±0.5 s"
        );
    }
}
