//! `packetLoss: {percent: p}` blackholes p % of connections, through a real toxiproxy-server
//! v2.12.0 and through the embedded fault proxy, each fronting a real redis-server. The case runs
//! as two tests, `<case>::real` and `<case>::faultproxy`, as in faultproxy/tests/conformance.rs.

use std::{net::SocketAddr, time::Duration};

use chaoslab_core::{catalog::loss, faults::desired_for};
use chaoslab_faultproxy::FaultProxy;
use chaoslab_testenv::{ToxiproxyServer, proxied_redis};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
    time::timeout,
};

/// Enough for a share within a few points (one standard deviation is 2.3 points at 30 %).
const CONNECTIONS: usize = 400;
/// A loopback redis answers in well under a millisecond; a blackholed connection never does.
const WAIT: Duration = Duration::from_millis(300);

mod thirty_percent_loss_blackholes_thirty_percent_of_connections {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real() {
        let toxiproxy = ToxiproxyServer::start();
        assert_thirty_percent_blackholed(&toxiproxy.url()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faultproxy() {
        let fp = FaultProxy::start("127.0.0.1:0").await.expect("fault proxy starts");
        assert_thirty_percent_blackholed(&fp.url()).await;
    }
}

/// Puts redis behind a proxy on the Toxiproxy API at `url`, applies 30 % packet loss as chaoslab
/// maps it, and measures the share of fresh connections that get no reply.
async fn assert_thirty_percent_blackholed(url: &str) {
    let lab = proxied_redis(url, "127.0.0.1:0".parse().unwrap()).await;
    lab.client.converge("backend", &desired_for(&loss(0, 30.0), "owner")).await.unwrap();
    let lost = unanswered(lab.listen).await;
    let share = lost as f64 / CONNECTIONS as f64;
    assert!(
        (share - 0.3).abs() <= 0.075,
        "packetLoss 30 %: {lost} of {CONNECTIONS} connections blackholed ({:.1} %)",
        100.0 * share
    );
}

/// Opens `CONNECTIONS` fresh connections at once and sends PING on each: how many got no reply
/// within `WAIT`.
async fn unanswered(addr: SocketAddr) -> usize {
    let mut pings = JoinSet::new();
    for _ in 0..CONNECTIONS {
        pings.spawn(async move {
            let mut conn = TcpStream::connect(addr).await.expect("the proxy accepts");
            conn.write_all(b"PING\r\n").await.expect("PING sent");
            let mut reply = [0u8; 7];
            match timeout(WAIT, conn.read_exact(&mut reply)).await {
                Err(_) => true,
                Ok(read) => {
                    read.expect("a reply, or none at all");
                    assert_eq!(&reply, b"+PONG\r\n");
                    false
                }
            }
        });
    }
    pings.join_all().await.into_iter().filter(|&lost| lost).count()
}
