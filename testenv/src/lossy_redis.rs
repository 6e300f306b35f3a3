//! The packet-loss reference: a real redis-server in a network namespace behind a veth pair, the
//! kernel dropping a share of its packets (see `netns`).

use std::{net::SocketAddr, time::Duration};

use crate::{
    bins::redis_server_bin,
    netns::{Loss, Netns},
    ports,
    process::Managed,
    redis,
};

/// Declared before the namespace, so redis stops before its namespace goes.
pub struct LossyRedis {
    pub redis: Managed,
    pub netns: Netns,
    /// Where redis answers, through the veth link.
    pub addr: SocketAddr,
}

impl LossyRedis {
    /// redis-server in a new namespace, no loss yet. Panics without root: tests check
    /// `netns_unavailable()` first and skip.
    pub fn start() -> LossyRedis {
        let netns = Netns::create();
        let addr = SocketAddr::from((netns.ip, 6379));
        let mut cmd = netns.command(redis_server_bin());
        redis::in_memory(&mut cmd, &netns.ip.to_string(), addr.port());
        let redis = Managed::spawn(&format!("redis-{}", netns.name), cmd);
        assert!(
            ports::wait_for_port(addr, Duration::from_secs(10)),
            "redis-server did not listen on {addr} in {}:\n{}",
            netns.name,
            redis.log_tail()
        );
        LossyRedis { redis, netns, addr }
    }

    /// Drops these shares of redis's packets from now on (`inbound`: to redis).
    pub fn set_loss(&self, loss: Loss) {
        self.netns.set_loss(loss);
    }
}
