use std::{net::SocketAddr, process::Command, time::Duration};

use crate::{bins::toxiproxy_server_bin, ports, process::Managed};

/// A real toxiproxy-server with its admin API on a free loopback port.
pub struct ToxiproxyServer {
    pub process: Managed,
    pub port: u16,
}

impl ToxiproxyServer {
    pub fn start() -> Self {
        Self::start_on(ports::free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let mut cmd = Command::new(toxiproxy_server_bin());
        cmd.args(["-host", "127.0.0.1", "-port", &port.to_string()]).env("LOG_LEVEL", "warn");
        let process = Managed::spawn(&format!("toxiproxy-{port}"), cmd);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        assert!(
            ports::wait_for_port(addr, Duration::from_secs(10)),
            "toxiproxy-server did not listen on {addr}:\n{}",
            process.log_tail()
        );
        Self { process, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
