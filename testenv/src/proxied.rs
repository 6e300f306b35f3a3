//! The fixture of every test that drives faults: a real redis-server behind a proxy named `backend`
//! on a Toxiproxy API (a real toxiproxy-server, or chaoslab's embedded fault proxy).

use std::net::SocketAddr;

use chaoslab_toxiproxy::{Client, NewProxy};

use crate::redis::RedisServer;

pub struct ProxiedRedis {
    pub redis: RedisServer,
    /// A client of the Toxiproxy API the proxy was made on.
    pub client: Client,
    /// Where the proxy listens: what a client under test connects to.
    pub listen: SocketAddr,
}

/// Starts redis-server and puts it behind a new, enabled proxy `backend` listening on `listen`
/// (port 0: a free one) on the Toxiproxy API at `toxiproxy_url`.
pub async fn proxied_redis(toxiproxy_url: &str, listen: SocketAddr) -> ProxiedRedis {
    let redis = RedisServer::start();
    let client = Client::new(toxiproxy_url).expect("a Toxiproxy URL");
    let new = NewProxy { name: "backend".into(), listen: listen.to_string(), upstream: redis.addr(), enabled: None };
    let proxy = client.create_proxy(&new).await.expect("create the backend proxy");
    assert!(proxy.enabled, "{proxy:?}");
    let listen = proxy.listen.parse().expect("the proxy's listen address");
    ProxiedRedis { redis, client, listen }
}
