//! The lab on one machine: three backends, a fault proxy in front of each, and the client under
//! test: the built-in one in-process, or a client of the user's own judged through its metrics
//! (one URL per replica, or a Prometheus). Everything it starts it also stops; proxies it created on real toxiproxy-servers are
//! deleted again.

use std::{net::SocketAddr, process::Stdio, sync::Mutex, time::Duration};

use anyhow::{Context as _, bail};
use chaoslab_core::{
    client_metrics::{self, Reader, Scrape},
    faults::ProxyKind,
};
use chaoslab_faultproxy::FaultProxy;
use chaoslab_loadgen::{Config, LoadGenerator, RunHandle, Target};
use chaoslab_reading::Source;
use chaoslab_telemetry::ScenarioMetrics;
use chaoslab_toxiproxy::{Client as Toxiproxy, NewProxy};
use clap::ValueEnum;
use jiff::Timestamp;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::{net::TcpListener, process::Child, sync::oneshot};

pub const SERVERS: usize = 3;

/// The servers' names, in target order: server-0, server-1, server-2.
pub fn server_names() -> Vec<String> {
    (0..SERVERS).map(|i| format!("server-{i}")).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// chaoslab's built-in in-memory RESP server (nothing to install).
    Builtin,
    /// Real `redis-server` processes (must be on PATH).
    RedisServer,
}

/// In words, for messages: "3 built-in backends".
impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Builtin => "built-in",
            BackendKind::RedisServer => "redis-server",
        })
    }
}

pub struct LabOptions {
    pub backend: BackendKind,
    /// Real toxiproxy-servers to use instead of the embedded fault proxies (one per server).
    pub toxiproxy: Option<Vec<String>>,
    /// Where the proxies listen (one per server); free loopback ports by default.
    pub listen: Option<Vec<SocketAddr>>,
    pub client: ClientOptions,
}

pub enum ClientOptions {
    /// chaoslab-loadgen in-process with this many workers.
    BuiltIn { concurrency: u32 },
    /// A client of the user's own, pointed at the proxies, read from `source` through `reader`
    /// (its mapping and server labels).
    External { source: Source, reader: Box<Reader> },
}

/// The client under test, as the experiment reads it.
pub enum Client {
    BuiltIn(Box<RunHandle>),
    /// The reader keeps the replicas' counters between readings (restarts, departures).
    External {
        source: Source,
        reader: Box<Mutex<Reader>>,
        http: reqwest::Client,
    },
}

/// One server as the experiment sees it.
pub struct LabServer {
    pub name: String,
    pub toxiproxy: Toxiproxy,
    pub proxy: String,
    /// The proxy's address: what the client connects to.
    pub listen: String,
    /// What serves it: the fault proxy has chaoslab's own packet_loss toxic.
    pub kind: ProxyKind,
}

enum Backend {
    Builtin { stop: oneshot::Sender<()>, task: tokio::task::JoinHandle<std::io::Result<()>> },
    Redis(Child),
}

enum Proxies {
    Embedded(Vec<FaultProxy>),
    /// Real toxiproxy-servers: the proxies we created there, to delete at the end.
    External,
}

pub struct Lab {
    pub servers: Vec<LabServer>,
    /// The client's metrics and the scenario metrics, as the operator exports them.
    pub registry: Registry,
    pub scenario_metrics: ScenarioMetrics,
    pub client: Client,
    backends: Vec<Backend>,
    proxies: Proxies,
}

async fn start_backend(kind: BackendKind) -> anyhow::Result<(Backend, SocketAddr)> {
    match kind {
        BackendKind::Builtin => {
            let listener = TcpListener::bind("127.0.0.1:0").await.context("binding a built-in backend")?;
            let addr = listener.local_addr()?;
            let (stop, rx) = oneshot::channel::<()>();
            let task = tokio::spawn(chaoslab_loadgen::resp_server::serve(listener, async {
                let _ = rx.await;
            }));
            Ok((Backend::Builtin { stop, task }, addr))
        }
        BackendKind::RedisServer => {
            let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
            let child = tokio::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--loglevel", "warning"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting redis-server (is it installed? or use --backend builtin)")?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return Ok((Backend::Redis(child), addr));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            bail!("redis-server did not listen on {addr} within 5s")
        }
    }
}

impl Lab {
    pub async fn start(opts: &LabOptions) -> anyhow::Result<Lab> {
        let mut backends = Vec::new();
        let mut upstreams = Vec::new();
        for _ in 0..SERVERS {
            let (b, addr) = start_backend(opts.backend).await?;
            backends.push(b);
            upstreams.push(addr);
        }
        let (proxies, admins) = match &opts.toxiproxy {
            None => {
                let mut fps = Vec::new();
                for _ in 0..SERVERS {
                    fps.push(FaultProxy::start("127.0.0.1:0").await.context("starting the embedded fault proxy")?);
                }
                let urls = fps.iter().map(FaultProxy::url).collect();
                (Proxies::Embedded(fps), urls)
            }
            Some(urls) => (Proxies::External, urls.clone()),
        };
        let mut servers = Vec::new();
        for (i, ((url, upstream), name)) in admins.iter().zip(&upstreams).zip(server_names()).enumerate() {
            let toxiproxy = Toxiproxy::new(url).with_context(|| format!("--toxiproxy {url}"))?;
            let version = toxiproxy.version().await.with_context(|| format!("cannot reach the Toxiproxy at {url}"))?;
            let proxy = format!("chaoslab-{name}");
            // A proxy left by an interrupted earlier run has our name: replace it.
            if toxiproxy.proxy(&proxy).await.is_ok() {
                toxiproxy.delete_proxy(&proxy).await?;
            }
            let listen = opts.listen.as_ref().map_or("127.0.0.1:0".to_string(), |l| l[i].to_string());
            let created = toxiproxy
                .create_proxy(&NewProxy {
                    name: proxy.clone(),
                    listen: listen.clone(),
                    upstream: upstream.to_string(),
                    enabled: Some(true),
                })
                .await
                .with_context(|| format!("creating proxy {proxy} listening on {listen} on {url}"))?;
            let kind = ProxyKind::from_version(&version);
            servers.push(LabServer { name, toxiproxy, proxy, listen: created.listen, kind });
        }
        let registry = Registry::new();
        let scenario_metrics = ScenarioMetrics::register(&registry)?;
        let client = match &opts.client {
            ClientOptions::BuiltIn { concurrency } => {
                let names: Vec<&str> = servers.iter().map(|s| s.listen.as_str()).collect();
                let mut config = Config::new(Target::numbered(&names));
                config.concurrency = *concurrency as usize;
                let load =
                    LoadGenerator::start(config, &registry).map_err(|e| anyhow::anyhow!("starting the client: {e}"))?;
                Client::BuiltIn(Box::new(load))
            }
            ClientOptions::External { source, reader } => {
                chaoslab_toxiproxy::install_crypto_provider();
                let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
                Client::External { source: source.clone(), reader: Box::new(Mutex::new((**reader).clone())), http }
            }
        };
        Ok(Lab { servers, registry, scenario_metrics, client, backends, proxies })
    }

    /// The client's metrics now, read as the operator reads them: from the built-in client's
    /// registry, or from the external client's replicas (each bounded by the 2 s timeout and
    /// METRICS_LIMIT bytes) combined into one client; and when they were taken, if not just now.
    pub async fn client_metrics(&self) -> anyhow::Result<(Scrape, Option<Timestamp>)> {
        match &self.client {
            Client::BuiltIn(load) => {
                load.client().tick();
                let mut buf = Vec::new();
                TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
                Ok((client_metrics::parse(&String::from_utf8_lossy(&buf))?, None))
            }
            Client::External { source, reader, http } => {
                let parser = reader.lock().expect("reader").clone();
                let reading = source.read(http, &parser).await;
                if let Some(e) = reading.failed() {
                    bail!(e);
                }
                Ok((reader.lock().expect("reader").combine(&reading.replicas), reading.at))
            }
        }
    }

    /// Waits until the external client's metrics answer with the contract's series for at least one
    /// server (the built-in client's are there from the start).
    pub async fn wait_for_client(&self, timeout: Duration) -> anyhow::Result<()> {
        let t0 = std::time::Instant::now();
        loop {
            let last = match self.client_metrics().await {
                Ok((s, _)) if !s.is_empty() => return Ok(()),
                Ok(_) => "no series of the client's mapping yet".to_string(),
                Err(e) => format!("{e:#}"),
            };
            if t0.elapsed() >= timeout {
                bail!("the client's metrics did not answer within {timeout:?} (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every proxy enabled and without toxics (of any run, chaoslab's or not): the lab made them.
    pub async fn reset(&self) -> anyhow::Result<()> {
        for s in &self.servers {
            s.toxiproxy.clear_proxy(&s.proxy).await?;
        }
        Ok(())
    }

    /// Stops the client, removes what the lab created and stops what it started.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        if let Client::BuiltIn(load) = self.client {
            load.stop();
            let _ = load.wait().await;
        }
        let mut first_error = None;
        match self.proxies {
            Proxies::External => {
                for s in &self.servers {
                    if let Err(e) = s.toxiproxy.delete_proxy(&s.proxy).await {
                        first_error.get_or_insert(anyhow::Error::from(e));
                    }
                }
            }
            Proxies::Embedded(fps) => {
                for fp in fps {
                    if let Err(e) = fp.shutdown().await {
                        first_error.get_or_insert(e.into());
                    }
                }
            }
        }
        for b in self.backends {
            match b {
                Backend::Builtin { stop, task } => {
                    let _ = stop.send(());
                    let _ = task.await;
                }
                Backend::Redis(mut child) => {
                    let _ = child.kill().await;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
