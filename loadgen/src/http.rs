//! The metrics endpoint: `GET /metrics` (Prometheus text format) and `GET /healthz`. A few lines of
//! HTTP/1.1 are all a scraper needs; each response closes its connection.

use std::{sync::Arc, time::Duration};

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// Called before each scrape (e.g. to refresh gauges).
pub type BeforeScrape = Arc<dyn Fn() + Send + Sync>;

/// Serves `registry` on `listener` until `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Registry,
    before_scrape: Option<BeforeScrape>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (sock, _) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (registry, hook) = (registry.clone(), before_scrape.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), respond(sock, &registry, hook.as_deref())).await;
        });
    }
}

async fn respond(
    mut sock: TcpStream,
    registry: &Registry,
    hook: Option<&(dyn Fn() + Send + Sync)>,
) -> std::io::Result<()> {
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
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => {
            if let Some(h) = hook {
                h();
            }
            let encoder = TextEncoder::new();
            let mut body = Vec::new();
            match encoder.encode(&registry.gather(), &mut body) {
                Ok(()) => ("200 OK", encoder.format_type().to_string(), body),
                Err(e) => ("500 Internal Server Error", "text/plain".into(), e.to_string().into_bytes()),
            }
        }
        (b"GET", b"/healthz") => ("200 OK", "text/plain".into(), b"ok\n".to_vec()),
        (b"GET", _) => ("404 Not Found", "text/plain".into(), b"not found: try /metrics or /healthz\n".to_vec()),
        _ => ("405 Method Not Allowed", "text/plain".into(), b"GET only\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&body).await?;
    sock.shutdown().await
}
