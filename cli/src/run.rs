//! `chaoslab run <scenario|all>`: the whole lab on one machine.

use std::{collections::BTreeMap, io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use chaoslab_core::{
    api::{ChaosScenarioStatus, MetricsMapping, Phase, Phases, Timings, Verdict},
    catalog::{self, Scenario},
    client_metrics::Reader,
    duration::PhaseDuration,
    verification::next_check,
};
use chaoslab_reading::Source;
use clap::Args;
use jiff::Timestamp;

use crate::{
    experiment::Experiment,
    lab::{self, BackendKind, Client, ClientOptions, Lab, LabOptions},
    progress,
    report::{self, PhaseLengths, Report},
};

/// Exit status of a run interrupted by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

#[derive(Args)]
pub struct RunArgs {
    /// A scenario name (`chaoslab list`), or `all` for every catalog scenario one after another.
    scenario: String,
    /// Length of the Stabilization phase (no faults).
    #[arg(long, default_value = "30s")]
    stabilization: PhaseDuration,
    /// Length of the Testing phase (faults on).
    #[arg(long, default_value = "60s")]
    testing: PhaseDuration,
    /// Length of the Recovery phase (faults removed).
    #[arg(long, default_value = "60s")]
    recovery: PhaseDuration,
    /// Concurrent workers of the built-in client under test (closed model).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Judge a client of your own instead of the built-in one: the URL of its metrics, or one URL
    /// per replica (their counts are added up). Point the client at the three proxy addresses
    /// chaoslab prints (fix them with --listen); Stabilization starts once its metrics answer
    /// (chaoslab waits up to --client-wait).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', num_args = 1, conflicts_with = "concurrency")]
    client_metrics: Option<Vec<String>>,
    /// How long to wait for your client's metrics to answer with its series before giving up.
    #[arg(long, value_name = "D", default_value = "2m")]
    client_wait: PhaseDuration,
    /// Judge a client of your own through a Prometheus that scrapes it (its base URL), instead of
    /// --client-metrics; each `instance` is one replica.
    #[arg(long, value_name = "URL", conflicts_with_all = ["concurrency", "client_metrics"])]
    client_prometheus: Option<String>,
    /// PromQL label matchers that pick your client's series in --client-prometheus, e.g. 'job="shop"'.
    #[arg(long, value_name = "MATCHERS", requires = "client_prometheus")]
    client_selector: Option<String>,
    /// What your client's metrics are: chaoslab (the metrics contract) or resilience4j (its
    /// Micrometer names, the breaker's `name` being the server).
    #[arg(long, value_name = "PRESET", default_value = "chaoslab", value_parser = ["chaoslab", "resilience4j"])]
    client_preset: String,
    /// A YAML file with your own mapping of metric names (spec.client.custom), instead of --client-preset.
    #[arg(long, value_name = "FILE", conflicts_with = "client_preset")]
    client_mapping: Option<PathBuf>,
    /// Which of your client's server labels is which server, e.g.
    /// server-0=redis-a:6379,server-1=redis-b:6379,server-2=redis-c:6379. Default: the label equal
    /// to the server's name, else the labels in sorted order.
    #[arg(long, value_name = "SERVER=LABEL,...", value_delimiter = ',', num_args = 1, value_parser = server_label)]
    server_labels: Option<Vec<(String, String)>>,
    /// Where the three proxies listen (server-0, server-1, server-2), for a client of your own.
    /// Default: free loopback ports, printed at start.
    #[arg(long, value_name = "HOST:PORT,HOST:PORT,HOST:PORT", value_delimiter = ',', num_args = 1)]
    listen: Option<Vec<SocketAddr>>,
    /// Write DIR/<scenario>.json and DIR/<scenario>.html.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Use these three real toxiproxy-servers (admin URLs) instead of the embedded fault proxies.
    #[arg(long, value_name = "URL,URL,URL", value_delimiter = ',', num_args = 1)]
    toxiproxy: Option<Vec<String>>,
    /// The backends behind the proxies.
    #[arg(long, value_enum, default_value_t = BackendKind::Builtin)]
    backend: BackendKind,
    /// Serve the client's and the scenarios' metrics (the metrics contract) on HOST:PORT while the lab
    /// runs, for Prometheus and the Grafana dashboard, e.g. 127.0.0.1:9090. With --client-metrics,
    /// only the scenarios' (your client exports its own).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddr>,
}

fn scenarios(name: &str) -> Result<Vec<&'static Scenario>, String> {
    if name == "all" {
        return Ok(catalog::scenarios().iter().collect());
    }
    catalog::find(name).map(|s| vec![s]).ok_or_else(|| {
        let close: Vec<&str> =
            catalog::scenarios().iter().map(|s| s.name).filter(|n| n.contains(name) || name.contains(n)).collect();
        let hint = if close.is_empty() { String::new() } else { format!(" (did you mean {}?)", close.join(", ")) };
        format!(
            "unknown scenario {name:?}{hint}: `chaoslab list` shows the {} names, or use `all`",
            catalog::scenarios().len()
        )
    })
}

/// Sampling interval: a fifth of the shortest phase, between 100 ms and 500 ms (the times to
/// detect, route around and recover are measured to within it).
fn interval(p: &Phases) -> Duration {
    let shortest = p.stabilization.0.min(p.testing.0).min(p.recovery.0);
    (shortest / 5).clamp(Duration::from_millis(100), Duration::from_millis(500))
}

pub fn run(args: RunArgs) -> ExitCode {
    let chosen = match scenarios(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chaoslab run: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(urls) = &args.toxiproxy
        && urls.len() != 3
    {
        eprintln!("chaoslab run: --toxiproxy takes 3 admin URLs (one per server), got {}", urls.len());
        return ExitCode::from(2);
    }
    if let Some(addrs) = &args.listen
        && addrs.len() != 3
    {
        eprintln!("chaoslab run: --listen takes 3 addresses (server-0, server-1, server-2), got {}", addrs.len());
        return ExitCode::from(2);
    }
    for (flag, url) in args
        .client_metrics
        .iter()
        .flatten()
        .map(|u| ("--client-metrics", u))
        .chain(args.client_prometheus.iter().map(|u| ("--client-prometheus", u)))
    {
        if !reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            eprintln!("chaoslab run: {flag} {url:?} is not an http(s) URL, e.g. http://127.0.0.1:9090/metrics");
            return ExitCode::from(2);
        }
    }
    let client = match client_options(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaoslab run: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let r = runtime.block_on(run_all(&args, client, &chosen));
    // Everything the lab started is stopped by now; don't wait on stray blocking threads.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chaoslab run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--server-labels` item: `server-0=redis-a:6379`.
fn server_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((server, label)) if !server.is_empty() && !label.is_empty() => Ok((server.into(), label.into())),
        _ => Err(format!("{s:?} is not SERVER=LABEL, e.g. server-0=redis-a:6379")),
    }
}

/// The client under test the flags ask for: the built-in one, or the user's, read through its
/// metrics URLs or a Prometheus with a preset or a mapping file.
fn client_options(args: &RunArgs) -> Result<ClientOptions, String> {
    let source = match (&args.client_metrics, &args.client_prometheus) {
        (Some(urls), _) => Source::Urls(urls.clone()),
        (None, Some(url)) => Source::Prometheus { url: url.clone(), selector: args.client_selector.clone() },
        (None, None) => return Ok(ClientOptions::BuiltIn { concurrency: args.concurrency }),
    };
    let mapping = match &args.client_mapping {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("--client-mapping {}: {e}", path.display()))?;
            let mapping = serde_yaml::from_str::<MetricsMapping>(&text).map_err(|e| {
                format!(
                    "--client-mapping {}: {e} (the fields are spec.client.custom's: README \"Test your own client\")",
                    path.display()
                )
            })?;
            if let Some(p) = mapping.problems().first() {
                return Err(format!("--client-mapping {}: {p}", path.display()));
            }
            mapping
        }
        None if args.client_preset == "resilience4j" => MetricsMapping::resilience4j(),
        None => MetricsMapping::chaoslab(),
    };
    let labels: Option<BTreeMap<String, String>> = args.server_labels.as_ref().map(|l| l.iter().cloned().collect());
    if let Some(unknown) = labels.iter().flatten().map(|(s, _)| s).find(|s| !lab::server_names().contains(s)) {
        return Err(format!(
            "--server-labels: no server {unknown:?}; the servers are {}",
            lab::server_names().join(", ")
        ));
    }
    Ok(ClientOptions::External { source, reader: Box::new(Reader::new(mapping, labels.as_ref())) })
}

async fn run_all(args: &RunArgs, client: ClientOptions, chosen: &[&'static Scenario]) -> anyhow::Result<ExitCode> {
    let described = match &client {
        ClientOptions::External { source, .. } => format!("your client, metrics at {source}"),
        ClientOptions::BuiltIn { concurrency } => format!("the built-in client with {concurrency} workers"),
    };
    let external = matches!(client, ClientOptions::External { .. });
    let opts =
        LabOptions { backend: args.backend, toxiproxy: args.toxiproxy.clone(), listen: args.listen.clone(), client };
    eprintln!(
        "chaoslab: starting the lab (3 {} backends, {} fault proxies, {})...",
        args.backend,
        if args.toxiproxy.is_some() { "real Toxiproxy" } else { "embedded" },
        described
    );
    let lab = Lab::start(&opts).await?;
    let ran = run_on(&lab, args, external, chosen).await;
    // The one way out, whatever happened: nothing is left behind.
    let reset = lab.reset().await.context("removing the toxics");
    let stopped = lab.shutdown().await.context("stopping the lab");
    let (verdicts, interrupted) = ran?;
    reset?;
    stopped?;
    if chosen.len() > 1 {
        eprintln!("\nsummary:");
        for (name, v, times) in &verdicts {
            let times = times.as_ref().map(report::times).unwrap_or_default();
            eprintln!("  {v:<12?} {name:<36} {times}");
        }
    }
    Ok(if interrupted {
        eprintln!("chaoslab: interrupted; toxics removed and the lab stopped");
        ExitCode::from(INTERRUPTED)
    } else if verdicts.len() == chosen.len() && verdicts.iter().all(|(_, v, _)| *v == Verdict::Passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Each scenario run: its name, verdict and measured times.
type Outcome = (&'static str, Verdict, Option<Timings>);

/// Runs the chosen scenarios one after another on a started lab: the outcomes, and whether the user
/// interrupted. The lab's metrics endpoint (if asked for) serves until this returns.
async fn run_on(
    lab: &Lab,
    args: &RunArgs,
    external: bool,
    chosen: &[&'static Scenario],
) -> anyhow::Result<(Vec<Outcome>, bool)> {
    if external || args.listen.is_some() {
        eprintln!("chaoslab: the servers, through their fault proxies:");
        for s in &lab.servers {
            eprintln!("  {}  {}", s.name, s.listen);
        }
    }
    if let Client::External { source, .. } = &lab.client {
        let wait = args.client_wait;
        eprintln!("chaoslab: waiting for your client's metrics at {source} (up to {wait}; Ctrl-C to stop)...");
        tokio::select! {
            r = lab.wait_for_client(wait.0) => r?,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted while waiting for the client"),
        }
    }
    let _metrics = match args.metrics_addr {
        Some(addr) => Some(serve_metrics(lab, addr).await?),
        None => None,
    };
    let phases = Phases { stabilization: args.stabilization, testing: args.testing, recovery: args.recovery };
    let mut verdicts = Vec::new();
    for (i, scenario) in chosen.iter().enumerate() {
        if chosen.len() > 1 {
            eprintln!("\n[{}/{}] {} — {}", i + 1, chosen.len(), scenario.name, scenario.description);
        } else {
            eprintln!("{} — {}", scenario.name, scenario.description);
        }
        let (status, stopped) = run_one(lab, scenario, phases.clone(), args.report.as_deref())
            .await
            .with_context(|| format!("running {}", scenario.name))?;
        verdicts.push((scenario.name, status.verdict.unwrap_or(Verdict::Inconclusive), status.timings));
        if stopped {
            return Ok((verdicts, true));
        }
    }
    Ok((verdicts, false))
}

/// Serves the lab's metrics (the client's and the scenario's) on `addr` until the returned sender
/// is dropped.
async fn serve_metrics(lab: &Lab, addr: SocketAddr) -> anyhow::Result<tokio::sync::oneshot::Sender<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--metrics-addr {addr}"))?;
    let before_scrape: Option<std::sync::Arc<dyn Fn() + Send + Sync>> = match &lab.client {
        Client::BuiltIn(load) => {
            let client = load.client().clone();
            Some(std::sync::Arc::new(move || client.tick()))
        }
        Client::External { .. } => None,
    };
    let endpoints = chaoslab_telemetry::Endpoints { registry: lab.registry.clone(), before_scrape, ready: None };
    eprintln!("chaoslab: metrics on http://{addr}/metrics");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(chaoslab_telemetry::serve(listener, endpoints, async {
        let _ = stopped.await;
    }));
    Ok(stop)
}

/// Runs one scenario; Ok((verdict, interrupted)).
async fn run_one(
    lab: &Lab,
    scenario: &'static Scenario,
    phases: Phases,
    report_dir: Option<&std::path::Path>,
) -> anyhow::Result<(ChaosScenarioStatus, bool)> {
    let lengths = PhaseLengths {
        stabilization: phases.stabilization.0.as_secs_f64(),
        testing: phases.testing.0.as_secs_f64(),
        recovery: phases.recovery.0.as_secs_f64(),
    };
    let every = interval(&phases);
    let mut exp = Experiment::new(lab, scenario, phases, every);
    let tty = std::io::stderr().is_terminal();
    let mut last_line = Timestamp::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        let moment = exp.step().await?;
        if moment.phase == Phase::Completed {
            break;
        }
        let now = Timestamp::now();
        let (start, end) = exp.plan().bounds(moment.phase).unwrap_or((exp.plan().start, exp.plan().end()));
        let done = now.duration_since(start).as_secs_f64() / end.duration_since(start).as_secs_f64().max(1e-9);
        let line = progress::line(moment.phase, done, end.duration_since(now).as_secs_f64(), exp.latest());
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else if now.duration_since(last_line).as_secs_f64() >= 5.0 {
            eprintln!("{line}");
            last_line = now;
        }
        let wait = moment.next_deadline.map_or(exp.interval(), |d| next_check(moment.phase, d, now, exp.interval()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut ctrl_c => { interrupted = true; break; }
        }
    }
    if tty {
        eprintln!();
    }
    let status = exp.status(interrupted);
    print!("{}", report::table::render(scenario.name, &status));
    if let Some(dir) = report_dir {
        let r = Report {
            scenario: scenario.name,
            category: scenario.category,
            description: &scenario.description,
            phases: lengths,
            status: &status,
            series: &exp.series,
        };
        report::write(dir, &r).with_context(|| format!("writing the report to {}", dir.display()))?;
        eprintln!("report: {}", dir.join(format!("{}.html", scenario.name)).display());
    }
    Ok((status, interrupted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scenarios_suggest_close_names() {
        let e = scenarios("multi-failure").unwrap_err();
        assert!(e.contains("multi-failure-2-servers-packet-loss"), "{e}");
        assert_eq!(scenarios("all").unwrap().len(), catalog::scenarios().len());
    }

    #[test]
    fn the_sampling_interval_follows_the_shortest_phase() {
        let p = |s: &str| s.parse::<PhaseDuration>().unwrap();
        assert_eq!(
            interval(&Phases { stabilization: p("2s"), testing: p("3s"), recovery: p("2s") }),
            Duration::from_millis(400)
        );
        assert_eq!(interval(&Phases::default()), Duration::from_millis(500));
    }
}
