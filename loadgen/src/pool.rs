//! A bounded connection pool per server.
//!
//! A semaphore of `max` permits bounds the connections checked out (active); a connection is only
//! created when a permit is held and no idle one is left, so active + idle ≤ max always. A
//! checked-out connection goes back to the idle list only through [`Checkout::release`], which
//! the client calls after a complete, well-formed reply. Any other end (timeout, I/O error,
//! garbage, the request future dropped) drops the socket and frees the permit: a connection hung
//! by a blackhole is never reused, and a blackholed server can hold at most `max` sockets. An
//! idle connection the server closed meanwhile is dropped when it would be handed out.

use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{conn::Conn, lock};

pub struct Pool {
    addr: String,
    max: usize,
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
}

pub struct Checkout<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: SemaphorePermit<'a>,
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
}

impl Pool {
    pub fn new(addr: &str, max: usize) -> Self {
        let max = max.max(1);
        Self { addr: addr.to_string(), max, permits: Semaphore::new(max), idle: Mutex::new(Vec::with_capacity(max)) }
    }

    /// An idle connection the server has not closed, or a new one; waits while `max` are checked
    /// out (bound the wait with a timeout around the whole request).
    pub async fn get(&self) -> Result<Checkout<'_>, GetError> {
        let permit = self.permits.acquire().await.expect("the pool's semaphore is never closed");
        // Closed idle connections are dropped on the way.
        let idle = std::iter::from_fn(|| lock(&self.idle).pop()).find(Conn::is_open);
        let conn = match idle {
            Some(c) => c,
            None => Conn::connect(&self.addr)
                .await
                .map_err(|source| GetError::Connect { addr: self.addr.clone(), source })?,
        };
        Ok(Checkout { pool: self, conn: Some(conn), _permit: permit })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections checked out now.
    pub fn active(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Connections waiting in the pool.
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }
}

impl Checkout<'_> {
    pub fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until released")
    }

    /// Returns a healthy connection to the pool.
    pub fn release(mut self) {
        if let Some(c) = self.conn.take().filter(|c| !c.has_unread()) {
            lock(&self.pool.idle).push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// A server that answers each PING with PONG, closing the connection after the first reply
    /// when `close_after_reply`; and how many connections it accepted.
    async fn ping_server(close_after_reply: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0; 64];
                    while s.read(&mut buf).await.unwrap_or(0) > 0 {
                        if s.write_all(b"+PONG\r\n").await.is_err() || close_after_reply {
                            break;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// Three PINGs through a pool of one, each after the connection sat idle for a while.
    async fn three_pings(pool: &Pool) {
        for i in 0..3 {
            let mut c = pool.get().await.unwrap();
            let reply = c.conn().call(&[b"PING"]).await;
            assert!(reply.is_ok(), "request {i}: {reply:?}");
            c.release();
            // Long enough for a server's FIN to arrive while the connection is idle.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn an_idle_connection_the_server_closed_is_not_handed_out_again() {
        let (addr, accepted) = ping_server(true).await;
        let pool = Pool::new(&addr, 1);
        three_pings(&pool).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "each request on a new connection");
    }

    #[tokio::test]
    async fn a_live_idle_connection_is_reused() {
        let (addr, accepted) = ping_server(false).await;
        let pool = Pool::new(&addr, 1);
        three_pings(&pool).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for all three");
        assert_eq!(pool.idle(), 1);
    }
}
