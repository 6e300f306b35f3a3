//! A bounded connection pool per server.
//!
//! A semaphore of `max` permits bounds the connections checked out (active); a connection is only
//! created when a permit is held and no idle one is left, so active + idle ≤ max always. A
//! checked-out connection goes back to the idle list only through [`Checkout::release`], which
//! the client calls after a complete, well-formed reply. Any other end (timeout, I/O error,
//! garbage, the request future dropped) drops the socket and frees the permit: a connection hung
//! by a blackhole is never reused, and a blackholed server can hold at most `max` sockets.

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

    /// An idle connection or a new one; waits while `max` are checked out (bound the wait with a
    /// timeout around the whole request).
    pub async fn get(&self) -> Result<Checkout<'_>, GetError> {
        let permit = self.permits.acquire().await.expect("the pool's semaphore is never closed");
        let idle = lock(&self.idle).pop();
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
