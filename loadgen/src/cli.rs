//! The command line: `chaoslab-loadgen --targets ...` runs the load, `chaoslab-loadgen serve`
//! runs the built-in RESP server. Invalid flags get a message naming the flag (exit code 2).

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{BreakerConfig, Config, Misbehaviour, RetryConfig, RoutingConfig, Target},
    load::LoadGenerator,
    report::progress_line,
    resp_server,
};

#[derive(Debug, Parser)]
#[command(
    name = "chaoslab-loadgen",
    version,
    about = "The client under test: RESP GET/SET load over three servers with per-server circuit breakers, pools and load-aware routing; Prometheus metrics."
)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the built-in RESP server (PING, ECHO, GET, SET, DEL, INCR; in memory).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6379")]
    pub listen: String,
    /// Worker threads.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_procs: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The servers, comma-separated.
    #[arg(long, value_name = "HOST:PORT,...", required = true, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Their names in metrics and reports, comma-separated [default: server-0, server-1, ...].
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub names: Vec<String>,
    /// Closed model: concurrent workers. Open model (--rate): most requests in flight, those
    /// waiting for a connection included. Sends due within one pacing step (250 µs) go out together
    /// and a busy machine bunches them more, so allow a few milliseconds' worth beyond the
    /// connections: on two cores, --rate 50000 sent 64-76 % of the rate with --concurrency 64 and
    /// 99.9 % with --concurrency 256 --pool-size 64.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub concurrency: u32,
    /// Open model: operations per second, latency measured from the scheduled send time. Without
    /// it: closed model.
    #[arg(long, value_name = "OPS", value_parser = positive_f64, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Stop after this long (e.g. 30s, 2m). Without it (and --requests): until SIGTERM/Ctrl-C.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many operations.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Worker threads of the runtime.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_procs: u16,
    /// Where to serve /metrics and /healthz; "off" for nowhere.
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:9090")]
    pub metrics_addr: String,
    /// Timeout of each attempt (connection wait, connect, send, reply).
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Fraction of GETs; the rest are SETs.
    #[arg(long, value_name = "F", default_value_t = 0.9, value_parser = ratio)]
    pub read_ratio: f64,
    /// Number of distinct keys (uniformly random).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Bytes per SET value.
    #[arg(long, value_name = "B", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=(64 << 20)))]
    pub value_size: u32,
    /// Most connections per server [default: --concurrency].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub pool_size: Option<u32>,
    /// Breaker: open when this percentage of calls in the window failed (timeouts included).
    #[arg(long, value_name = "PCT", default_value_t = 50.0, value_parser = percent, help_heading = "Circuit breaker")]
    pub failure_rate_threshold: f64,
    /// Breaker: open when this percentage of calls in the window was slow.
    #[arg(long, value_name = "PCT", default_value_t = 80.0, value_parser = percent, help_heading = "Circuit breaker")]
    pub slow_call_rate_threshold: f64,
    /// Breaker: a call taking at least this long is slow.
    #[arg(long, value_name = "D", default_value = "300ms", value_parser = parse_duration, help_heading = "Circuit breaker")]
    pub slow_call_duration: Duration,
    /// Breaker: no verdict before the window holds this many calls.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Circuit breaker")]
    pub minimum_calls: u32,
    /// Breaker: length of the time-based sliding window (whole seconds).
    #[arg(long, value_name = "D", default_value = "3s", value_parser = parse_duration, help_heading = "Circuit breaker")]
    pub sliding_window: Duration,
    /// Breaker: time in open before trial calls (half-open).
    #[arg(long, value_name = "D", default_value = "5s", value_parser = parse_duration, help_heading = "Circuit breaker")]
    pub wait_in_open: Duration,
    /// Breaker: trial calls in half-open; their failure and slow rates decide closed or open.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Circuit breaker")]
    pub half_open_calls: u32,
    /// Retries may add at most this fraction of the requests.
    #[arg(long, value_name = "F", default_value_t = 0.2, value_parser = non_negative_f64, help_heading = "Retries")]
    pub retry_budget_ratio: f64,
    /// Retries allowed per second whatever the traffic.
    #[arg(long, value_name = "N", default_value_t = 10.0, value_parser = non_negative_f64, help_heading = "Retries")]
    pub retry_min_per_sec: f64,
    /// Never retry.
    #[arg(long, help_heading = "Retries")]
    pub no_retry: bool,
    /// Routing: time constant of the latency EWMA (how fast an avoided server is tried again).
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration, help_heading = "Routing")]
    pub ewma_decay: Duration,
    /// Routing: a server whose latency is above this many times the best one's is left out of
    /// the draw while another is available (with --outlier-floor).
    #[arg(long, value_name = "F", default_value_t = 10.0, value_parser = positive_f64, help_heading = "Routing")]
    pub outlier_factor: f64,
    /// Routing: servers faster than this are never outliers.
    #[arg(long, value_name = "D", default_value = "20ms", value_parser = parse_duration, help_heading = "Routing")]
    pub outlier_floor: Duration,
    /// Progress line on stderr every D; 0 for none.
    #[arg(long, value_name = "D", default_value = "5s", value_parser = parse_duration)]
    pub progress_interval: Duration,
    /// Final summary format, on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Seed of the random generators (routing, keys), for repeatable runs.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Be wrong on purpose, to see what a failing verdict looks like (off by default).
    #[arg(long, value_enum, value_name = "MODE", help_heading = "Misbehaving on purpose")]
    pub misbehave: Option<Misbehaviour>,
}

impl RunArgs {
    /// The run's configuration; errors name the flag.
    pub fn to_config(&self) -> Result<Config, String> {
        let targets: Vec<&str> = self.targets.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect();
        let mut targets = Target::numbered(&targets);
        if !self.names.is_empty() {
            if self.names.len() != targets.len() {
                return Err(format!("invalid --names: {} names for {} targets", self.names.len(), targets.len()));
            }
            for (t, n) in targets.iter_mut().zip(&self.names) {
                t.name = n.trim().to_string();
            }
        }
        let config = Config {
            targets,
            concurrency: self.concurrency as usize,
            rate: self.rate,
            duration: self.duration,
            requests: self.requests,
            timeout: self.timeout,
            read_ratio: self.read_ratio,
            keys: self.keys,
            value_size: self.value_size as usize,
            pool_size: self.pool_size.map(|p| p as usize),
            breaker: BreakerConfig {
                failure_rate_threshold: self.failure_rate_threshold,
                slow_call_rate_threshold: self.slow_call_rate_threshold,
                slow_call_duration: self.slow_call_duration,
                minimum_calls: self.minimum_calls,
                sliding_window: self.sliding_window,
                wait_in_open: self.wait_in_open,
                permitted_calls_in_half_open: self.half_open_calls,
            },
            retry: RetryConfig {
                enabled: !self.no_retry,
                ratio: self.retry_budget_ratio,
                min_per_sec: self.retry_min_per_sec,
                ..RetryConfig::default()
            },
            routing: RoutingConfig {
                ewma_decay: self.ewma_decay,
                outlier_factor: self.outlier_factor,
                outlier_floor: self.outlier_floor,
                ..RoutingConfig::default()
            },
            seed: self.seed,
            misbehave: self.misbehave,
            ..Config::new(Vec::new())
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// The duration syntax of every chaoslab flag and field (`500ms`, `1m30s`, `1.5h`; `0` alone).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    chaoslab_contract::duration::parse(s.trim()).map_err(|e| e.to_string())
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number >= 0")),
    }
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number between 0 and 1")),
    }
}

fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 100.0 => Ok(v),
        _ => Err(format!("{s:?} is not a percentage in (0, 100]")),
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Some(Command::Serve(args)) => serve_main(args),
        None => run_main(cli.run),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("chaoslab-loadgen: {msg}");
    ExitCode::from(2)
}

fn runtime(threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads.into()).enable_all().build()
}

fn run_main(args: RunArgs) -> ExitCode {
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let metrics_addr = match args.metrics_addr.as_str() {
        "off" | "none" | "" => None,
        a => match a.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                return fail(format!(
                    "invalid --metrics-addr: {a:?} is not HOST:PORT with a numeric host (or \"off\")"
                ));
            }
        },
    };
    let rt = match runtime(args.max_procs) {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        let registry = Registry::new();
        let stop_metrics = CancellationToken::new();
        // Bind first: a busy port is reported before any load is sent.
        let listener = match metrics_addr {
            None => None,
            Some(addr) => match TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => return fail(format!("cannot listen on --metrics-addr {addr}: {e}")),
            },
        };
        let handle = match LoadGenerator::start(config, &registry) {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        if let Some(listener) = listener {
            let client = handle.client().clone();
            if let Ok(a) = listener.local_addr() {
                tracing::info!("metrics on http://{a}/metrics");
            }
            let endpoints = chaoslab_telemetry::Endpoints {
                registry: registry.clone(),
                before_scrape: Some(std::sync::Arc::new(move || client.tick())),
                ready: None,
            };
            tokio::spawn(chaoslab_telemetry::serve(listener, endpoints, stop_metrics.clone().cancelled_owned()));
        }
        let progress = handle.progress();
        let done = handle.cancellation();
        if !args.progress_interval.is_zero() {
            let every = args.progress_interval;
            tokio::spawn(async move {
                let mut prev = progress.snapshot();
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = done.cancelled() => break,
                    }
                    let cur = progress.snapshot();
                    eprintln!("{}", progress_line(&prev, &cur));
                    prev = cur;
                }
            });
        }
        let cancel = handle.cancellation();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: finishing requests in flight (Ctrl-C again to quit at once)");
            cancel.cancel();
            wait_for_signal().await;
            std::process::exit(130);
        });
        let summary = handle.wait().await;
        stop_metrics.cancel();
        match args.output {
            Output::Text => print!("{}", summary.to_text()),
            Output::Json => println!("{}", summary.to_json()),
        }
        for w in &summary.warnings {
            eprintln!("chaoslab-loadgen: warning: {w}");
        }
        ExitCode::SUCCESS
    })
}

fn serve_main(args: ServeArgs) -> ExitCode {
    let rt = match runtime(args.max_procs) {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        let listener = match TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => return fail(format!("cannot listen on --listen {}: {e}", args.listen)),
        };
        tracing::info!(
            "RESP server listening on {}",
            listener.local_addr().map_or(args.listen.clone(), |a| a.to_string())
        );
        match resp_server::serve(listener, wait_for_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chaoslab-loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5").unwrap_err().contains("not a duration"));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn defaults() {
        let cli = parse(&["--targets", "a:1,b:2,c:3"]).unwrap();
        let c = cli.run.to_config().unwrap();
        assert_eq!(c.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["server-0", "server-1", "server-2"]);
        assert_eq!(c.targets[1].addr, "b:2");
        assert_eq!((c.concurrency, c.timeout, c.rate, c.duration), (100, Duration::from_secs(1), None, None));
        assert_eq!(c.breaker, BreakerConfig::default());
        assert_eq!(c.retry, RetryConfig::default());
        assert_eq!(c.routing, RoutingConfig::default());
        assert_eq!(cli.run.max_procs, 4);
    }

    #[test]
    fn names_and_breaker_flags() {
        let cli = parse(&[
            "--targets",
            "a:1,b:2",
            "--names",
            "left,right",
            "--wait-in-open",
            "2s",
            "--no-retry",
            "--rate",
            "500",
        ])
        .unwrap();
        let c = cli.run.to_config().unwrap();
        assert_eq!(c.targets[1].name, "right");
        assert_eq!(c.breaker.wait_in_open, Duration::from_secs(2));
        assert!(!c.retry.enabled);
        assert_eq!(c.rate, Some(500.0));
    }

    #[test]
    fn invalid_flags_are_named() {
        for (args, flag) in [
            (vec!["--targets", "a:1", "--concurrency", "0"], "--concurrency"),
            (vec!["--targets", "a:1", "--timeout", "5"], "--timeout"),
            (vec!["--targets", "a:1", "--read-ratio", "2"], "--read-ratio"),
            (vec!["--targets", "a:1", "--rate", "-1"], "--rate"),
            (vec!["--targets", "a:1", "--output", "xml"], "--output"),
            (vec!["--targets", "a:1", "--failure-rate-threshold", "120"], "--failure-rate-threshold"),
            (vec!["--targets", "a:1", "--bogus"], "--bogus"),
            (vec!["--concurrency", "5"], "--targets"),
        ] {
            let err = parse(&args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        for (args, flag) in
            [(vec!["--targets", "nohost"], "--targets"), (vec!["--targets", "a:1,b:2", "--names", "x"], "--names")]
        {
            let err = parse(&args).unwrap().run.to_config().unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn serve_needs_no_targets() {
        let cli = parse(&["serve", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Serve(ServeArgs { ref listen, .. })) if listen == "127.0.0.1:0"));
    }
}
