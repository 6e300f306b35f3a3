//! A self-contained HTML page: inline SVG charts (no scripts, no network) of ops/s per server,
//! error rate, breaker states and pool connections, with the phases shaded.

use std::fmt::Write;

use chaoslab_core::{api::Verdict, client_metrics::BreakerState};

use super::Report;
use crate::experiment::{Point, ServerPoint};

const W: f64 = 880.0;
const H: f64 = 180.0;
const PAD_L: f64 = 56.0;
const PAD_B: f64 = 22.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"];
/// Stabilization blue, Testing orange, Recovery green (as on the Grafana dashboard).
const PHASE_FILL: [(&str, &str); 3] = [("Stabilization", "#dbe9ff"), ("Testing", "#ffe3c2"), ("Recovery", "#d7f0d4")];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Series<'a> {
    name: &'a str,
    values: Vec<(f64, f64)>,
}

/// One chart: phases shaded, one polyline per series, y from 0 to the max (or `y_max`).
fn chart(title: &str, unit: &str, report: &Report, series: &[Series], y_max: Option<f64>, step: bool) -> String {
    let p = report.phases;
    let total = (p.stabilization + p.testing + p.recovery).max(1e-9);
    let max =
        y_max.unwrap_or_else(|| series.iter().flat_map(|s| s.values.iter().map(|v| v.1)).fold(0.0, f64::max)).max(1e-9);
    let x = |t: f64| PAD_L + (t / total).clamp(0.0, 1.0) * (W - PAD_L - 8.0);
    let y = |v: f64| 8.0 + (1.0 - (v / max).clamp(0.0, 1.0)) * (H - PAD_B - 8.0);
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    let mut start = 0.0;
    for ((name, fill), len) in PHASE_FILL.iter().zip([p.stabilization, p.testing, p.recovery]) {
        let _ = write!(
            svg,
            r#"<rect class="phase" x="{:.1}" y="8" width="{:.1}" height="{:.1}" fill="{fill}"><title>{name}</title></rect><text x="{:.1}" y="20" class="label">{name}</text>"#,
            x(start),
            x(start + len) - x(start),
            H - PAD_B - 8.0,
            x(start) + 4.0
        );
        start += len;
    }
    for frac in [0.0, 0.5, 1.0] {
        let v = max * frac;
        let _ = write!(
            svg,
            r##"<line x1="{PAD_L}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#bbb" stroke-width="0.5"/><text x="{:.1}" y="{:.1}" class="axis" text-anchor="end">{}</text>"##,
            W - 8.0,
            y(v),
            y(v),
            PAD_L - 4.0,
            y(v) + 4.0,
            fmt_value(v, unit)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="end">{total:.0} s</text>"#,
        W - 8.0,
        H - 6.0
    );
    for (i, s) in series.iter().enumerate() {
        let mut pts = String::new();
        let mut prev: Option<(f64, f64)> = None;
        for &(t, v) in &s.values {
            if step && let Some((_, pv)) = prev {
                let _ = write!(pts, "{:.1},{:.1} ", x(t), y(pv));
            }
            let _ = write!(pts, "{:.1},{:.1} ", x(t), y(v));
            prev = Some((t, v));
        }
        let color = COLORS[i % COLORS.len()];
        let _ = write!(
            svg,
            r#"<polyline class="series" fill="none" stroke="{color}" stroke-width="1.6" points="{}"><title>{}</title></polyline>"#,
            pts.trim_end(),
            esc(s.name)
        );
    }
    svg += "</svg><div class=\"legend\">";
    for (i, s) in series.iter().enumerate() {
        let _ = write!(svg, r#"<span><i style="background:{}"></i>{}</span>"#, COLORS[i % COLORS.len()], esc(s.name));
    }
    svg + "</div></figure>\n"
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "%" => format!("{:.0}%", v * 100.0),
        "state" => BreakerState::from_gauge(v).map(BreakerState::label).unwrap_or_default().to_string(),
        _ if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
        _ => format!("{v:.0}"),
    }
}

fn per_server<'a>(points: &'a [Point], f: impl Fn(&ServerPoint) -> f64) -> Vec<Series<'a>> {
    let names: Vec<&str> =
        points.first().map(|p| p.servers.iter().map(|s| s.name.as_str()).collect()).unwrap_or_default();
    names
        .iter()
        .map(|n| Series {
            name: n,
            values: points
                .iter()
                .filter_map(|p| p.servers.iter().find(|s| s.name == *n).map(|s| (p.t, f(s))))
                .collect(),
        })
        .collect()
}

pub fn render(r: &Report) -> String {
    let pts = r.series;
    let error_rate = Series {
        name: "error rate",
        values: pts
            .iter()
            .map(|p| {
                let ok: f64 = p.servers.iter().map(|s| s.ops).sum();
                let bad: f64 = p.servers.iter().map(|s| s.errors).sum();
                (p.t, if ok + bad > 0.0 { bad / (ok + bad) } else { 0.0 })
            })
            .collect(),
    };
    let verdict = r.status.verdict.unwrap_or(Verdict::Inconclusive);
    let mut rows = String::new();
    for c in &r.status.checks {
        let (class, mark) = match c.passed {
            Some(true) => ("pass", "PASS"),
            Some(false) => ("fail", "FAIL"),
            None => ("unknown", "?"),
        };
        let _ = writeln!(
            rows,
            "<tr class=\"{class}\"><td>{mark}</td><td><b>{}</b><br><small>{}</small></td><td>{}</td><td>{}</td></tr>",
            esc(&c.name),
            esc(&c.description),
            esc(&c.expected),
            esc(&c.observed)
        );
    }
    let mut charts = String::new();
    charts += &chart("Successful requests per second, by server", "ops", r, &per_server(pts, |s| s.ops), None, false);
    charts += &chart("Error rate (errors and timeouts over all requests)", "%", r, &[error_rate], Some(1.0), false);
    charts +=
        &chart("Circuit breaker state, by server", "state", r, &per_server(pts, |s| s.breaker as f64), Some(2.0), true);
    charts += &chart("Active pool connections, by server", "conns", r, &per_server(pts, |s| s.active), None, false);
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>chaoslab: {name}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 960px; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} .verdict {{ font-weight: bold; padding: 2px 8px; border-radius: 4px; }}
.Passed {{ background: #d7f0d4; }} .Failed {{ background: #ffd6d6; }} .Inconclusive {{ background: #eee; }}
figure {{ margin: 18px 0; }} figcaption {{ font-weight: 600; margin-bottom: 4px; }}
.label {{ font-size: 11px; fill: #555; }} .axis {{ font-size: 10px; fill: #666; }}
.legend span {{ margin-right: 14px; font-size: 12px; }} .legend i {{ display: inline-block; width: 12px; height: 3px; margin: 0 4px 3px 0; }}
table {{ border-collapse: collapse; width: 100%; }} td {{ border-top: 1px solid #ddd; padding: 6px; vertical-align: top; }}
tr.pass td:first-child {{ color: #2a7d2a; }} tr.fail td:first-child {{ color: #c00; }}
</style></head><body>
<h1>{name}</h1>
<p>{description} — <span class="verdict {verdict:?}">{verdict:?}</span></p>
<p>{times}</p>
{charts}
<h2>Checks</h2>
<table><tr><th></th><th>check</th><th>expected</th><th>observed</th></tr>
{rows}</table>
</body></html>
"#,
        name = esc(r.scenario),
        description = esc(r.description),
        times = r.status.timings.as_ref().map(|t| esc(&super::times(t))).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PhaseLengths;
    use chaoslab_core::{
        api::{ChaosScenarioStatus, Check, Phase},
        catalog::Category,
    };

    #[test]
    fn the_page_has_four_charts_with_phases_and_escaped_text() {
        let sp = |n: &str, ops| ServerPoint {
            name: n.into(),
            ops,
            errors: 1.0,
            rejected: 0.0,
            breaker: 2,
            active: 3.0,
            idle: 1.0,
        };
        let series: Vec<Point> = (0..10)
            .map(|i| Point {
                t: i as f64,
                phase: Phase::Testing,
                servers: vec![sp("server-0", 10.0), sp("server-1", 20.0)],
            })
            .collect();
        let status = ChaosScenarioStatus {
            verdict: Some(Verdict::Failed),
            checks: vec![Check {
                name: "x".into(),
                description: "<d>".into(),
                expected: "e".into(),
                observed: "o".into(),
                passed: Some(false),
            }],
            ..Default::default()
        };
        let r = Report {
            scenario: "s",
            category: Category::SingleServerLatency,
            description: "a & b",
            phases: PhaseLengths { stabilization: 3.0, testing: 4.0, recovery: 3.0 },
            status: &status,
            series: &series,
        };
        let html = render(&r);
        assert_eq!(html.matches("<svg class=\"chart\"").count(), 4);
        assert_eq!(html.matches("class=\"phase\"").count(), 12);
        assert!(html.contains("a &amp; b") && html.contains("&lt;d&gt;"));
        assert!(!html.contains("<script") && !html.contains("http"), "self-contained");
        assert!(html.contains("class=\"verdict Failed\""));
    }
}
