use std::{net::SocketAddr, process::Command, time::Duration};

use crate::{bins::redis_server_bin, ports, process::Managed};

/// redis-server's arguments for a test: listening on `bind:port`, in memory only, in the foreground.
pub(crate) fn in_memory(cmd: &mut Command, bind: &str, port: u16) {
    cmd.args(["--port", &port.to_string(), "--bind", bind, "--save", "", "--appendonly", "no"]);
    cmd.args(["--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"]);
}

/// A real redis-server on a free loopback port, in memory only.
pub struct RedisServer {
    pub process: Managed,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = ports::free_port();
        let mut cmd = Command::new(redis_server_bin());
        in_memory(&mut cmd, "127.0.0.1", port);
        let process = Managed::spawn(&format!("redis-{port}"), cmd);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        assert!(
            ports::wait_for_port(addr, Duration::from_secs(10)),
            "redis-server did not listen on {addr}:\n{}",
            process.log_tail()
        );
        Self { process, port }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
