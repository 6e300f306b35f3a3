//! A proxy's listener: accepts clients and serves each connection as a task, until the proxy stops.

use std::{
    io,
    net::{Ipv6Addr, SocketAddr},
    sync::Arc,
};

use chaoslab_telemetry::accept_loop;
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{oneshot, watch},
    task::JoinHandle,
};

use crate::{chain::Chain, link};

/// A listening proxy. `stop` closes the listener and every connection; dropping it does the same
/// without waiting.
pub(crate) struct Runner {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Runner {
    /// Listens on `listen` (`host:0` picks a port) and serves clients towards `upstream`. Returns the address
    /// it listens on, as the API shows it. The error is Go's text, e.g.
    /// `listen tcp 127.0.0.1:8080: bind: address already in use`.
    pub(crate) async fn start(
        listen: &str,
        upstream: &str,
        chain: watch::Receiver<Chain>,
    ) -> Result<(Runner, String), String> {
        let addr = resolve(listen).await.map_err(|e| format!("listen tcp: {e}"))?;
        let listener = bind(addr).map_err(|e| format!("listen tcp {addr}: bind: {}", os_error(&e)))?;
        let bound = listener.local_addr().map_err(|e| format!("listen tcp {addr}: {}", os_error(&e)))?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, Arc::from(upstream), chain, stop_rx));
        Ok((Runner { stop: Some(stop_tx), task: Some(task) }, bound.to_string()))
    }

    /// Closes the listener and every connection, and returns once they are closed.
    pub(crate) async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Go sets SO_REUSEADDR on listeners: a proxy can listen again on a port with connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves each client as a link to `upstream` until `stop`; then every connection is closed.
async fn serve(listener: TcpListener, upstream: Arc<str>, chain: watch::Receiver<Chain>, stop: oneshot::Receiver<()>) {
    let stopped = async {
        let _ = stop.await;
    };
    accept_loop(listener, "fault proxy", stopped, |client| link::serve(client, upstream.clone(), chain.clone())).await;
}

/// Resolves a listen address as Go's `net.Listen` does: an empty host is every interface (IPv6 and
/// IPv4), a name resolves to its first address (IPv4 first). The error is Go's text after `listen tcp: `.
pub(crate) async fn resolve(listen: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = listen.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err(format!("address {listen}: missing port in address"));
    };
    let port: u16 = port.parse().map_err(|_| format!("lookup tcp/{port}: unknown port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Ok((Ipv6Addr::UNSPECIFIED, port).into());
    }
    let no_host = || format!("lookup {host}: no such host");
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await.map_err(|_| no_host())?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(no_host)
}

/// An OS error in Go's words (`address already in use`), not Rust's (`Address in use (os error 98)`).
fn os_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".into(),
        io::ErrorKind::AddrNotAvailable => "cannot assign requested address".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s);
            s.to_lowercase()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listen_addresses_resolve_like_go() {
        assert_eq!(resolve("127.0.0.1:0").await.unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(resolve("localhost:5").await.unwrap().to_string(), "127.0.0.1:5");
        assert_eq!(resolve(":5").await.unwrap().to_string(), "[::]:5");
        assert_eq!(resolve("127.0.0.1").await.unwrap_err(), "address 127.0.0.1: missing port in address");
        assert!(resolve("256.0.0.1:0").await.unwrap_err().contains("no such host"));
    }

    #[tokio::test]
    async fn a_taken_port_is_reported_in_gos_words() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let (_, rx) = watch::channel(Chain::default());
        let err = Runner::start(&addr, "127.0.0.1:1", rx).await.err().unwrap();
        assert_eq!(err, format!("listen tcp {addr}: bind: address already in use"));
    }

    #[tokio::test]
    async fn stop_closes_the_listener() {
        let (_, rx) = watch::channel(Chain::default());
        let (runner, bound) = Runner::start("127.0.0.1:0", "127.0.0.1:1", rx).await.unwrap();
        assert!(tokio::net::TcpStream::connect(&bound).await.is_ok());
        runner.stop().await;
        let err = tokio::net::TcpStream::connect(&bound).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
