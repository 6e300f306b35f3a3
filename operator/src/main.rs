//! `chaoslab-operator`: drives ChaosScenarios through their phases (`run`), or prints the CRD (`crd`).

mod boundaries;
mod client_source;
mod context;
mod controller;
mod converge;
mod error;
mod events;
mod finished;
mod leader;
mod memory;
mod metadata_patches;
mod metrics;
mod queue;
mod reconcile;
mod record;
mod sampler;
mod series_retention;
mod status;
mod status_writer;
mod stop;
mod sweep;
mod targets;

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use chaoslab_toxiproxy::RetryPolicy;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chaoslab-operator", version, about = "The chaoslab Kubernetes operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch ChaosScenarios and run them.
    Run(RunArgs),
    /// Print the ChaosScenario CustomResourceDefinition (same as `chaoslab crd`).
    Crd,
}

#[derive(Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CHAOSLAB_NAMESPACE")]
    namespace: Option<String>,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    max_procs: u16,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// How often the client's metrics are scraped while a scenario runs (e.g. 1s, 500ms): the
    /// resolution of status.timings.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    sample_interval: Duration,
    /// Timeout of each Toxiproxy admin call (each call is tried 3 times).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    toxiproxy_timeout: Duration,
    /// Elect a leader on a Lease, so several replicas can run safely.
    #[arg(long, default_value_t = false)]
    leader_election: bool,
    /// Namespace of the Lease (default: the watched namespace, or `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "chaoslab-operator")]
    lease_name: String,
    /// How long a Lease lasts without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How long a finished scenario's metric series stay after it is labelled finished (then the
    /// status holds the result, Prometheus the history).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    finished_series_kept: Duration,
}

/// How long the controller may take to stop after SIGTERM (the pod's grace period is 30 s by default).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<chaoslab_core::duration::PhaseDuration>().map(|d| d.0).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", chaoslab_core::api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into()),
                )
                // Colours only on a terminal: `kubectl logs` showed the escape codes.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .init();
            memory::share_one_arena();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.max_procs.into())
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Waits until the apiserver answers (a bounded call, retried): what `/readyz` reports.
async fn reach_apiserver(client: &kube::Client) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
            Ok(Ok(v)) => {
                tracing::info!(version = %v.git_version, "the apiserver answers");
                return;
            }
            Ok(Err(e)) => tracing::warn!("reaching the apiserver: {e}"),
            Err(_) => tracing::warn!("reaching the apiserver: no answer within 5s"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Serves /metrics, /healthz and /readyz; /readyz is 200 once the returned flag is set.
async fn serve_endpoints(addr: SocketAddr, metrics: &metrics::Metrics) -> anyhow::Result<Arc<AtomicBool>> {
    let ready = Arc::new(AtomicBool::new(false));
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))?;
    let endpoints = chaoslab_telemetry::Endpoints {
        registry: metrics.registry.clone(),
        before_scrape: None,
        ready: Some(ready.clone()),
    };
    tokio::spawn(chaoslab_telemetry::serve(listener, endpoints, std::future::pending()));
    Ok(ready)
}

/// Becomes true on SIGTERM or Ctrl-C.
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Waits for the Lease; None if a stop came first. While this process leads, a task renews the
/// lease; once lost, it exits at once (a graceful shutdown can hang on an unreachable apiserver
/// while reconciles go on), and the watchdog thread does it even if this runtime is stuck.
async fn lead(
    e: &leader::Elector,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<(leader::Leadership, tokio::task::JoinHandle<()>)> {
    tracing::info!(lease = %e.name, identity = %e.identity, "waiting for leadership");
    let leadership = tokio::select! {
        l = e.acquire() => l,
        _ = stopped(stop) => return None,
    };
    tracing::info!(lease = %e.name, "leading");
    leader::watchdog(leadership.clone());
    let holding = tokio::spawn({
        let (e, l) = (e.clone(), leadership.clone());
        async move { leader::step_down(&e.hold(&l).await) }
    });
    Some((leadership, holding))
}

/// Runs the controller until a stop. A stop asked before the controller's cache is filled would
/// never end its graceful shutdown (kube-runtime holds it until the store is ready, and the watch
/// that fills it stops with the signal): then it is not started, and the graceful shutdown is
/// bounded anyway, so that a stopping leader (a rolling update's old pod) releases the Lease before
/// it is killed.
async fn run_controller(
    client: kube::Client,
    config: context::Config,
    metrics: &metrics::Metrics,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if *stop.borrow() {
        return Ok(());
    }
    tracing::info!(namespace = config.namespace.as_deref().unwrap_or("(all)"), "watching ChaosScenarios");
    let graceful = stopped(stop.clone());
    tokio::select! {
        r = controller::run(client, config, metrics.clone(), graceful) => r,
        _ = async move {
            stopped(stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("the controller did not stop within {SHUTDOWN_GRACE:?} of the signal; stopping it");
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| anyhow::anyhow!("connecting to Kubernetes: {e}"))?;
    let metrics = metrics::Metrics::default();
    let ready = serve_endpoints(args.metrics_addr, &metrics).await?;
    let stop = stop_on_signal();

    // Ready means healthy (the apiserver answers), not leading: a standby replica is Ready too, as in
    // controller-runtime, so a rolling update can start the new pod while the old one still leads.
    // Who leads is the chaoslab_operator_leader metric.
    tokio::select! {
        _ = reach_apiserver(&client) => {}
        _ = stopped(stop.clone()) => return Ok(()),
    }
    ready.store(true, std::sync::atomic::Ordering::Relaxed);

    let elector = args.leader_election.then(|| {
        let ns = args.lease_namespace.clone().or(args.namespace.clone()).unwrap_or_else(|| "default".into());
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
        leader::Elector::new(client.clone(), &ns, &args.lease_name, &identity, args.lease_duration)
    });
    let (leadership, holding) = match &elector {
        None => (leader::Leadership::unelected(), None),
        Some(e) => match lead(e, stop.clone()).await {
            Some((leadership, holding)) => (leadership, Some(holding)),
            None => return Ok(()),
        },
    };
    metrics.leader.set(1);

    let policy = RetryPolicy { timeout: args.toxiproxy_timeout, ..RetryPolicy::default() };
    match sweep::sweep(&controller::api(&client, args.namespace.as_deref()), policy).await {
        Ok(n) => tracing::info!(removed = n, "start-up sweep of leftover toxics done"),
        Err(e) => tracing::warn!("start-up sweep: {e}"),
    }
    memory::release_free_heap();
    let config = context::Config {
        namespace: args.namespace,
        sample_interval: args.sample_interval,
        queue_poll: Duration::from_secs(2),
        toxiproxy_policy: policy,
        leadership: leadership.clone(),
        finished_series_kept: args.finished_series_kept,
    };
    let result = run_controller(client, config, &metrics, stop).await;
    if let (Some(e), Some(holding)) = (&elector, holding) {
        // Stop renewing first, so that the released lease is not taken again by this process.
        holding.abort();
        e.release(&leadership).await;
    }
    metrics.leader.set(0);
    result
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "chaoslab".into())
}
