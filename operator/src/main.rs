//! `chaoslab-operator`: one binary with the CRD as a build output (`crd`); the controller (`run`)
//! is tracked in issue 5.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chaoslab-operator", version, about = "The chaoslab Kubernetes operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the ChaosScenario CustomResourceDefinition (same as `chaoslab crd`).
    Crd,
}

fn main() {
    match Cli::parse().command {
        Command::Crd => print!("{}", chaoslab_core::api::crd_yaml()),
    }
}
