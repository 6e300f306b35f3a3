//! Waiting for something a real peer does, bounded.

use std::time::{Duration, Instant};

/// Polls `check` every 200 ms until it returns Ok, or panics once `timeout` has passed with `what`
/// and the last Err it gave (what was seen instead). Returns the value and how long it took.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return (v, start.elapsed()),
            Err(last) if start.elapsed() > timeout => panic!("{what}: not within {timeout:?}; last seen: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
