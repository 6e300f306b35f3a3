//! The live progress line: phase bar with time left, ops/s, error rate, each server's breaker.

use chaoslab_core::{api::Phase, client_metrics::BreakerState};

use crate::experiment::Point;

const BAR: usize = 20;

/// One line, e.g. `Testing      [█████░░░░░░░░░░░░░░░]  41s left  2710 ops/s  err  0.1%  server-0 open  …`.
pub fn line(phase: Phase, done: f64, left_secs: f64, point: Option<&Point>) -> String {
    let filled = ((done.clamp(0.0, 1.0)) * BAR as f64).round() as usize;
    let bar: String = "█".repeat(filled) + &"░".repeat(BAR - filled);
    let mut s = format!("{:<13} [{bar}] {:>4.0}s left", phase.as_str(), left_secs.max(0.0).ceil());
    if let Some(p) = point {
        let ops: f64 = p.servers.iter().map(|s| s.ops).sum();
        let errors: f64 = p.servers.iter().map(|s| s.errors).sum();
        let rate = if ops + errors > 0.0 { errors / (ops + errors) * 100.0 } else { 0.0 };
        s += &format!("  {ops:>7.0} ops/s  err {rate:>5.1}%");
        for sv in &p.servers {
            let state = match BreakerState::from_gauge(sv.breaker as f64) {
                Some(BreakerState::Closed) => "closed",
                Some(BreakerState::HalfOpen) => "half-open",
                _ => "OPEN",
            };
            s += &format!("  {} {state}", sv.name);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::ServerPoint;

    #[test]
    fn a_line_shows_phase_time_left_rates_and_breakers() {
        let sp = |name: &str, ops, errors, breaker| ServerPoint {
            name: name.into(),
            ops,
            errors,
            rejected: 0.0,
            breaker,
            active: 0.0,
            idle: 0.0,
        };
        let p = Point {
            t: 1.0,
            phase: Phase::Testing,
            servers: vec![sp("server-0", 0.0, 10.0, 2), sp("server-1", 990.0, 0.0, 0)],
        };
        let l = line(Phase::Testing, 0.5, 29.2, Some(&p));
        assert!(l.starts_with("Testing       [██████████░░░░░░░░░░]   30s left"), "{l}");
        assert!(l.contains("990 ops/s") && l.contains("err   1.0%"), "{l}");
        assert!(l.contains("server-0 OPEN") && l.contains("server-1 closed"), "{l}");
    }
}
