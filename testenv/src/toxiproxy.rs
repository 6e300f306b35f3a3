use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Command,
    time::Duration,
};

use crate::{bins::toxiproxy_server_bin, ports, process::Managed};

/// A real toxiproxy-server with its admin API on a loopback address.
pub struct ToxiproxyServer {
    pub process: Managed,
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl ToxiproxyServer {
    /// On 127.0.0.1 and a free port.
    pub fn start() -> Self {
        Self::start_at(Ipv4Addr::LOCALHOST, ports::free_port())
    }

    /// On another loopback address (127.x.y.z), e.g. as the "pod IP" of a test Pod.
    pub fn start_at(ip: Ipv4Addr, port: u16) -> Self {
        Self::spawn(ip, port, &[])
    }

    /// Like [`start_at`](Self::start_at), with the proxies of a `-config` file (a JSON array of
    /// `{name, listen, upstream}`) there before the admin API answers, as a sidecar restarts.
    pub fn start_at_with_config(ip: Ipv4Addr, port: u16, config: &std::path::Path) -> Self {
        Self::spawn(ip, port, &["-config", config.to_str().expect("a UTF-8 path")])
    }

    fn spawn(ip: Ipv4Addr, port: u16, extra: &[&str]) -> Self {
        assert!(ip.is_loopback(), "tests listen on loopback only, not {ip}");
        let mut cmd = Command::new(toxiproxy_server_bin());
        cmd.args(["-host", &ip.to_string(), "-port", &port.to_string()]).args(extra).env("LOG_LEVEL", "warn");
        let process = Managed::spawn(&format!("toxiproxy-{ip}-{port}"), cmd);
        let addr: SocketAddr = (ip, port).into();
        assert!(
            ports::wait_for_port(addr, Duration::from_secs(10)),
            "toxiproxy-server did not listen on {addr}:\n{}",
            process.log_tail()
        );
        Self { process, ip, port }
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }
}
