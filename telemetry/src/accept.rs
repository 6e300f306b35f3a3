//! The accept loop of chaoslab's TCP servers (this crate's endpoint, the client's RESP server, the
//! fault proxy's admin API and proxies): a task per connection, and all of them closed on shutdown.

use std::{future::Future, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

/// The pause after a failed accept (out of file descriptors and the like), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Accepts connections on `listener` and runs `handle` on each in a task until `shutdown` completes;
/// then closes the listener, aborts the connections' tasks (dropping their sockets closes them) and
/// returns once they are gone. `what` names the server in the warning about a failed accept.
pub async fn accept_loop<H, F>(listener: TcpListener, what: &str, shutdown: impl Future<Output = ()>, mut handle: H)
where
    H: FnMut(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    conns.spawn(handle(stream));
                }
                Err(e) => {
                    tracing::warn!("{what}: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reaps finished connections, so the set holds only live ones.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn shutdown_closes_the_listener_and_every_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (accepted, mut handled) = tokio::sync::mpsc::unbounded_channel::<()>();
        // A handler that never finishes on its own: it holds its connection open.
        let server = tokio::spawn(accept_loop(
            listener,
            "test",
            async {
                let _ = stopped.await;
            },
            move |stream| {
                let accepted = accepted.clone();
                async move {
                    let _held = stream;
                    let _ = accepted.send(());
                    std::future::pending::<()>().await
                }
            },
        ));
        let mut client = TcpStream::connect(addr).await.unwrap();
        handled.recv().await.unwrap();
        stop.send(()).unwrap();
        server.await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "the connection is closed");
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    }
}
