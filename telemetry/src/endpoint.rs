//! The endpoint of chaoslab's processes (the client, the operator): `GET /metrics`
//! (Prometheus text format), `GET /healthz` and `GET /readyz`. A few lines of HTTP/1.1 are all a
//! scraper or a kubelet probe needs; each response closes its connection.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::accept::accept_loop;

/// Called before each scrape (e.g. to refresh gauges).
pub type BeforeScrape = Arc<dyn Fn() + Send + Sync>;

/// What the endpoint serves.
#[derive(Clone)]
pub struct Endpoints {
    pub registry: Registry,
    pub before_scrape: Option<BeforeScrape>,
    /// `/readyz` answers 200 while this is true (always, when None), else 503.
    pub ready: Option<Arc<AtomicBool>>,
}

impl Endpoints {
    pub fn new(registry: Registry) -> Self {
        Self { registry, before_scrape: None, ready: None }
    }
}

/// Serves `endpoints` on `listener` until `shutdown` completes; then closes every connection.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    accept_loop(listener, "metrics endpoint", shutdown, |sock| {
        let endpoints = endpoints.clone();
        async move {
            // A client that sends nothing does not hold its task forever.
            let _ = tokio::time::timeout(Duration::from_secs(10), respond(sock, &endpoints)).await;
        }
    })
    .await;
    Ok(())
}

async fn respond(mut sock: TcpStream, e: &Endpoints) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request_line = buf.split(|&c| c == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&c| c == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|&c| c == b'?').next().unwrap_or_default();
    let text = |status, body: &str| (status, "text/plain".to_string(), body.as_bytes().to_vec());
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => {
            if let Some(h) = &e.before_scrape {
                h();
            }
            let encoder = TextEncoder::new();
            let mut body = Vec::new();
            match encoder.encode(&e.registry.gather(), &mut body) {
                Ok(()) => ("200 OK", encoder.format_type().to_string(), body),
                Err(err) => text("500 Internal Server Error", &err.to_string()),
            }
        }
        (b"GET", b"/healthz") => text("200 OK", "ok\n"),
        (b"GET", b"/readyz") => match &e.ready {
            Some(r) if !r.load(Ordering::Relaxed) => text("503 Service Unavailable", "not ready\n"),
            _ => text("200 OK", "ok\n"),
        },
        (b"GET", _) => text("404 Not Found", "not found: try /metrics, /healthz or /readyz\n"),
        _ => text("405 Method Not Allowed", "GET only\n"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&body).await?;
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let registry = Registry::new();
        let c = prometheus::IntCounter::new("chaoslab_test_total", "a test counter").unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let hooked = Arc::new(AtomicBool::new(false));
        let h = hooked.clone();
        let endpoints = Endpoints {
            registry,
            before_scrape: Some(Arc::new(move || h.store(true, Ordering::Relaxed))),
            ready: Some(ready.clone()),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, endpoints, async {
            let _ = stopped.await;
        }));
        c.inc();
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK") && metrics.contains("chaoslab_test_total 1"), "{metrics}");
        assert!(hooked.load(Ordering::Relaxed), "the hook runs before a scrape");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed after shutdown");
    }
}
