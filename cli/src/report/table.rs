//! The checks as a readable table.

use chaoslab_core::api::{ChaosScenarioStatus, Verdict};

pub fn render(scenario: &str, status: &ChaosScenarioStatus) -> String {
    let mut out = format!("\n{scenario}\n");
    for c in &status.checks {
        let mark = match c.passed {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "  ? ",
        };
        out += &format!("  [{mark}] {:<24} {}\n", c.name, c.description);
        out += &format!("         expected: {}\n         observed: {}\n", c.expected, c.observed);
    }
    let verdict = status.verdict.unwrap_or(Verdict::Inconclusive);
    let passed = status.checks.iter().filter(|c| c.passed == Some(true)).count();
    out += &format!("  verdict: {verdict:?} ({passed} of {} checks passed)\n", status.checks.len());
    if let Some(t) = &status.timings {
        out += &format!("  times: {}\n", super::times(t));
    }
    out
}
