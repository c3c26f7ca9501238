//! The listener: accepts connections (bounded), serves HTTP/1.1 with keep-alive
//! and header limits, and shuts down gracefully, letting in-flight requests finish.

use crate::gateway::Gateway;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Serves `gateway` on `listener` until `shutdown` completes, then waits (up
/// to `drain`) for open connections to finish their requests. Runs on the
/// current runtime; the binary serves on [`super::workers`] instead.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let connection_slots = Arc::new(Semaphore::new(gateway.config.limits.max_connections));
    serve_with_slots(listener, gateway, connection_slots, shutdown, drain).await;
}

/// [`serve`], with the bound on open connections (`limits.max_connections`)
/// shared with other listeners of the same process.
pub async fn serve_with_slots(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    connection_slots: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let limits = gateway.config.limits.clone();
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true)
        .writev(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connection_slots.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, client_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        // One upstream connection per client connection, returned to the
        // idle list when the client connection ends.
        let upstream = Arc::new(gateway.forwarder.lease());
        let service = service_fn(move |request| {
            let gateway = gateway.clone();
            let upstream = upstream.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    gateway.handle(request, client_addr, &upstream).await,
                )
            }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %client_addr, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

/// Binds the configured address and serves in a background task; returns the
/// bound address (useful with port 0) and a handle that stops the server.
pub async fn spawn(gateway: Arc<Gateway>, addr: SocketAddr) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        gateway,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    Ok(ServerHandle {
        addr: local,
        stop: Some(stop),
        task,
    })
}

/// A server running in the background.
pub struct ServerHandle {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// Stops accepting, drains, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
