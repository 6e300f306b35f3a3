//! Reading a client's `/metrics` without trusting it: a body larger than a limit is refused as soon as
//! it is known to be (from its Content-Length, or once that many bytes came), so a hostile or broken
//! endpoint costs at most `limit` bytes of memory. The time bound is the HTTP client's own timeout,
//! which reqwest applies to the whole exchange, body included.

/// What chaoslab reads of one scrape at most: a real client's metrics are kilobytes.
pub const METRICS_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub enum FetchError {
    /// No answer (refused, timed out, reset), or the body broke off.
    Request(reqwest::Error),
    /// An answer other than 2xx.
    Status(reqwest::StatusCode),
    /// The body is larger than `limit` bytes.
    TooLarge { limit: usize },
    /// The body is not UTF-8 text.
    NotText,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // With its causes: reqwest's own words ("error sending request") do not say "timed out".
            FetchError::Request(e) => {
                write!(f, "{e}")?;
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    write!(f, ": {c}")?;
                    cause = c.source();
                }
                Ok(())
            }
            FetchError::Status(s) => write!(f, "HTTP {s}"),
            FetchError::TooLarge { limit } => write!(f, "the body is larger than the limit of {}", size(*limit)),
            FetchError::NotText => f.write_str("the body is not UTF-8 text"),
        }
    }
}

impl std::error::Error for FetchError {}

/// `16 MiB`, or bytes below one MiB.
fn size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) { format!("{} MiB", bytes / MIB) } else { format!("{bytes} bytes") }
}

/// GETs `url` with `http` and returns the body, reading no more than `limit` bytes of it.
pub async fn fetch_metrics(http: &reqwest::Client, url: &str, limit: usize) -> Result<String, FetchError> {
    let mut resp = http.get(url).send().await.map_err(FetchError::Request)?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(FetchError::TooLarge { limit });
    }
    // Chunks are kept as they came until the whole is known: then one allocation of the exact size,
    // never a buffer grown by doubling (which, freed, stays in the allocator's arenas).
    let (mut chunks, mut len) = (Vec::new(), 0);
    while let Some(chunk) = resp.chunk().await.map_err(FetchError::Request)? {
        len += chunk.len();
        if len > limit {
            return Err(FetchError::TooLarge { limit });
        }
        chunks.push(chunk);
    }
    let mut body = Vec::with_capacity(len);
    chunks.iter().for_each(|c| body.extend_from_slice(c));
    String::from_utf8(body).map_err(|_| FetchError::NotText)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// An endpoint answering every request with `head` and then `body_len` bytes of `#` (a comment).
    async fn endpoint(head: &'static str, body_len: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = conn.read(&mut [0u8; 1024]).await;
                    let _ = conn.write_all(head.as_bytes()).await;
                    let chunk = vec![b'#'; 64 * 1024];
                    let mut left = body_len;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if conn.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        url
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_naming_the_limit() {
        // No Content-Length: the body is read until the limit, then given up.
        let url = endpoint("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 100 * 1024 * 1024).await;
        let t0 = Instant::now();
        let err = fetch_metrics(&client(), &url, METRICS_LIMIT).await.unwrap_err();
        assert_eq!(err.to_string(), "the body is larger than the limit of 16 MiB");
        println!("a 100 MB body without Content-Length refused after {:?}", t0.elapsed());
        // A Content-Length over the limit: refused before reading the body.
        let url = endpoint("HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n", 0).await;
        assert!(matches!(fetch_metrics(&client(), &url, METRICS_LIMIT).await, Err(FetchError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let url = endpoint("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 100).await;
        assert_eq!(fetch_metrics(&client(), &url, 100).await.unwrap().len(), 100);
        assert!(matches!(fetch_metrics(&client(), &url, 99).await, Err(FetchError::TooLarge { limit: 99 })));
        let url = endpoint("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", 0).await;
        assert_eq!(fetch_metrics(&client(), &url, 100).await.unwrap_err().to_string(), "HTTP 503 Service Unavailable");
    }
}
