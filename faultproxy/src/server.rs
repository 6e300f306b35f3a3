//! Serving the admin API, and the in-process handle.

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use chaoslab_telemetry::accept_loop;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, ToSocketAddrs},
    sync::oneshot,
    task::JoinHandle,
};

use crate::{api, registry::Registry};

/// Serves the Toxiproxy HTTP API on `listener` until `shutdown` completes, then closes the admin
/// listener, its HTTP connections, every proxy listener and every proxied connection before returning.
/// Proxies live as long as this call: a new `serve` starts with none.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let registry = Arc::new(Registry::default());
    accept_loop(listener, "fault proxy admin API", shutdown, |stream| {
        let reg = registry.clone();
        async move {
            let svc = service_fn(move |req| api::handle(req, reg.clone()));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        }
    })
    .await;
    registry.shutdown().await;
    Ok(())
}

/// A fault proxy running in this process, its admin API on a loopback (or any) address.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let fp = chaoslab_faultproxy::FaultProxy::start("127.0.0.1:0").await?;
/// let client = chaoslab_toxiproxy::Client::new(&fp.url()).unwrap();
/// # let _ = client;
/// fp.shutdown().await?; // every listener and connection is closed now
/// # Ok(()) }
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl FaultProxy {
    /// Binds the admin API on `admin` (port 0 picks one) and serves it on a task of the current runtime.
    pub async fn start(admin: impl ToSocketAddrs) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(admin).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(FaultProxy { addr, stop: Some(stop), task: Some(task) })
    }

    /// The admin API's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API's URL, e.g. `http://127.0.0.1:8474`, for `chaoslab_toxiproxy::Client::new`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it; when this returns, the admin listener, every proxy listener and every connection are closed.
    pub async fn shutdown(mut self) -> io::Result<()> {
        drop(self.stop.take());
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for FaultProxy {
    /// Without `shutdown`, everything is still closed, just not waited for.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
