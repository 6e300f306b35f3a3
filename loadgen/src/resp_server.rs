//! A built-in RESP server (PING, ECHO, GET, SET, DEL, INCR, in memory), so the lab runs with
//! nothing installed. It also answers what redis-benchmark and redis-cli send on connect
//! (CONFIG GET, COMMAND) with empty replies, and accepts inline commands (`PING` typed in telnet).
//! Replies to pipelined commands are written together. A client sending something that is not
//! RESP gets `-ERR Protocol error` and is disconnected, as with Redis.

use std::{
    collections::HashMap,
    future::Future,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex},
};

use bytes::{Buf, BytesMut};
use chaoslab_telemetry::accept_loop;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    lock,
    resp::{self, Frame},
};

const SHARDS: usize = 16;

/// The keyspace, sharded so connections on different threads rarely contend.
pub struct Store {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
}

impl Default for Store {
    fn default() -> Self {
        Self { hasher: RandomState::new(), shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl Store {
    fn shard(&self, key: &[u8]) -> &Mutex<HashMap<Vec<u8>, Vec<u8>>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Executes one command; None means the client asked to close (QUIT).
    pub fn execute(&self, args: &[Vec<u8>]) -> Option<Frame> {
        let name = args[0].to_ascii_uppercase();
        let arity = |n: usize, exact: bool| if exact { args.len() == n } else { args.len() >= n };
        let wrong = || {
            Frame::Error(
                format!(
                    "ERR wrong number of arguments for '{}' command",
                    String::from_utf8_lossy(&args[0]).to_lowercase()
                )
                .into_bytes(),
            )
        };
        let reply = match name.as_slice() {
            b"PING" => match args.len() {
                1 => Frame::simple("PONG"),
                2 => Frame::Bulk(args[1].clone()),
                _ => wrong(),
            },
            b"ECHO" if arity(2, true) => Frame::Bulk(args[1].clone()),
            b"GET" if arity(2, true) => match lock(self.shard(&args[1])).get(&args[1]) {
                Some(v) => Frame::Bulk(v.clone()),
                None => Frame::Null,
            },
            b"SET" if arity(3, true) => {
                lock(self.shard(&args[1])).insert(args[1].clone(), args[2].clone());
                Frame::simple("OK")
            }
            b"SET" if arity(3, false) => Frame::error("ERR syntax error"),
            b"DEL" if arity(2, false) => {
                Frame::Integer(args[1..].iter().filter(|k| lock(self.shard(k)).remove(*k).is_some()).count() as i64)
            }
            b"INCR" if arity(2, true) => {
                let mut shard = lock(self.shard(&args[1]));
                let current =
                    shard.get(&args[1]).map(|v| std::str::from_utf8(v).ok().and_then(|s| s.parse::<i64>().ok()));
                match current {
                    Some(None) => Frame::error("ERR value is not an integer or out of range"),
                    Some(Some(n)) => match n.checked_add(1) {
                        Some(m) => {
                            shard.insert(args[1].clone(), m.to_string().into_bytes());
                            Frame::Integer(m)
                        }
                        None => Frame::error("ERR increment or decrement would overflow"),
                    },
                    None => {
                        shard.insert(args[1].clone(), b"1".to_vec());
                        Frame::Integer(1)
                    }
                }
            }
            // What redis-benchmark and redis-cli ask on connect.
            b"CONFIG" | b"COMMAND" => Frame::Array(vec![]),
            b"QUIT" => return None,
            b"ECHO" | b"GET" | b"SET" | b"DEL" | b"INCR" => wrong(),
            _ => Frame::Error(
                format!(
                    "ERR unknown command '{}'",
                    String::from_utf8_lossy(&args[0]).chars().take(64).collect::<String>()
                )
                .into_bytes(),
            ),
        };
        Some(reply)
    }
}

/// Serves RESP on `listener` until `shutdown` completes; then closes every connection.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    serve_store(listener, Arc::new(Store::default()), shutdown).await
}

/// Like [`serve`], on a given store (e.g. shared by several listeners).
pub async fn serve_store(
    listener: TcpListener,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    accept_loop(listener, "resp server", shutdown, |sock| {
        let store = store.clone();
        async move {
            if let Err(e) = handle(sock, &store).await {
                tracing::debug!("resp server connection: {e}");
            }
        }
    })
    .await;
    Ok(())
}

async fn handle(mut sock: TcpStream, store: &Store) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        loop {
            match resp::parse_command(&rbuf) {
                Ok(Some((args, used))) => {
                    rbuf.advance(used);
                    if args.is_empty() {
                        continue;
                    }
                    match store.execute(&args) {
                        Some(reply) => resp::encode(&mut out, &reply),
                        None => {
                            resp::encode(&mut out, &Frame::simple("OK"));
                            sock.write_all(&out).await?;
                            return Ok(());
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    resp::encode(&mut out, &Frame::Error(format!("ERR Protocol error: {e}").into_bytes()));
                    sock.write_all(&out).await?;
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            sock.write_all(&out).await?;
            out.clear();
        }
        rbuf.reserve(4096);
        if sock.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(store: &Store, args: &[&str]) -> Frame {
        store.execute(&args.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>()).expect("a reply")
    }

    #[test]
    fn commands() {
        let s = Store::default();
        assert_eq!(cmd(&s, &["ping"]), Frame::simple("PONG"));
        assert_eq!(cmd(&s, &["PING", "hi"]), Frame::Bulk(b"hi".to_vec()));
        assert_eq!(cmd(&s, &["GET", "k"]), Frame::Null);
        assert_eq!(cmd(&s, &["SET", "k", "v"]), Frame::simple("OK"));
        assert_eq!(cmd(&s, &["get", "k"]), Frame::Bulk(b"v".to_vec()));
        assert_eq!(cmd(&s, &["INCR", "n"]), Frame::Integer(1));
        assert_eq!(cmd(&s, &["INCR", "n"]), Frame::Integer(2));
        assert_eq!(cmd(&s, &["INCR", "k"]), Frame::error("ERR value is not an integer or out of range"));
        assert_eq!(cmd(&s, &["SET", "big", &i64::MAX.to_string()]), Frame::simple("OK"));
        assert!(matches!(cmd(&s, &["INCR", "big"]), Frame::Error(_)));
        assert_eq!(cmd(&s, &["DEL", "k", "n", "absent"]), Frame::Integer(2));
        assert_eq!(cmd(&s, &["ECHO", "x"]), Frame::Bulk(b"x".to_vec()));
        assert_eq!(cmd(&s, &["CONFIG", "GET", "save"]), Frame::Array(vec![]));
        assert_eq!(store_quit(&s), None);
    }

    fn store_quit(s: &Store) -> Option<Frame> {
        s.execute(&[b"QUIT".to_vec()])
    }

    #[test]
    fn errors() {
        let s = Store::default();
        assert_eq!(cmd(&s, &["GET"]), Frame::error("ERR wrong number of arguments for 'get' command"));
        assert_eq!(cmd(&s, &["SET", "k", "v", "EX", "1"]), Frame::error("ERR syntax error"));
        assert_eq!(cmd(&s, &["FLY"]), Frame::error("ERR unknown command 'FLY'"));
    }
}
