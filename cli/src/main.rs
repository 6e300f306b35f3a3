//! The `chaoslab` command.

mod experiment;
mod lab;
mod list;
mod progress;
mod proxy;
mod report;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chaoslab", version, about = "Resilience experiments for clients of replicated services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in scenarios, grouped by category.
    List(list::ListArgs),
    /// Run a scenario (or `all`) on this machine: backends, fault proxies and the client, no cluster.
    Run(Box<run::RunArgs>),
    /// Serve the embedded Toxiproxy-compatible fault proxy.
    Proxy(proxy::ProxyArgs),
    /// Print the ChaosScenario CustomResourceDefinition (the content of crds/chaosscenarios.yaml).
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => return run::run(*args),
        Command::Proxy(args) => return proxy::run(args),
        Command::List(args) => list::run(&args),
        Command::Crd => {
            print!("{}", chaoslab_core::api::crd_yaml());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaoslab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
