//! What a run leaves behind: a table of checks on the terminal, and with `--report DIR`
//! `DIR/<scenario>.json` (the status the operator would write, plus the time series) and
//! `DIR/<scenario>.html` (a self-contained page with charts).

pub mod html;
pub mod table;

use std::path::Path;

use chaoslab_core::{api::ChaosScenarioStatus, catalog::Category};
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
