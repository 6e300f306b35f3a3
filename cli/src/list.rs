//! `chaoslab list`: the catalog, grouped by category (as the original lab's `scenariod -list`).

use std::io::Write;

use chaoslab_core::catalog::{self, Category, Scenario};
use clap::{Args, ValueEnum};

#[derive(Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: &ListArgs) -> anyhow::Result<()> {
    let out = match args.output {
        Format::Text => text(catalog::scenarios()),
        Format::Json => serde_json::to_string_pretty(catalog::scenarios())? + "\n",
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

fn text(scenarios: &[Scenario]) -> String {
    let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for category in Category::ALL {
        out += &format!("{}:\n", category.title());
        for s in scenarios.iter().filter(|s| s.category == category) {
            out += &format!("  {:width$}  {}\n", s.name, s.description);
        }
        out += "\n";
    }
    out +=
        &format!("{} scenarios. Run one with `chaoslab run NAME`, or all with `chaoslab run all`.\n", scenarios.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_groups_every_scenario_under_its_category() {
        let out = text(catalog::scenarios());
        let multi = out.find("Multiple Simultaneous Failures:").unwrap();
        let latency = out.find("Single-Server Latency:").unwrap();
        assert!(out.find("multi-failure-2-servers-packet-loss").unwrap() > multi);
        assert!(out.find("server-1-latency-500ms").unwrap() > latency);
        assert!(out.find("server-1-latency-500ms").unwrap() < multi);
        for s in catalog::scenarios() {
            assert!(out.contains(&s.description), "{}", s.name);
        }
    }
}
