//! The listener: binds (optionally with `SO_REUSEPORT`), accepts
//! connections within `limits.max_connections`, serves each with
//! [`connection::serve`], and drains gracefully.
//!
//! The drain, in order, so that no request is lost:
//! 1. [`Phase::StopAccepting`]: each listener accepts what is already in its
//!    accept queue, then closes (a new process bound with `SO_REUSEPORT`
//!    gets every connection from then on);
//! 2. [`Phase::Closing`], once every listener of the process is closed:
//!    connections answer their request in flight with `Connection: close`
//!    and idle ones are closed between requests (clients reconnect, and
//!    reach a listener that is open);
//! 3. the connections still open when the grace period ends are closed.

use super::connection::{self, Phase};
use crate::gateway::Gateway;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Binds `addr` for listening (`SO_REUSEADDR`, and `SO_REUSEPORT` when
/// `reuse_port`, so that another process can bind it too: a new gateway can
/// start while the old one drains). Non-blocking, ready for tokio.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        #[cfg(not(unix))]
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "listen_reuse_port needs SO_REUSEPORT (Linux, BSD, macOS)",
        ));
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Serves `gateway` on `listener` until `shutdown` completes, then drains
/// (see the module docs), closing what is left after `grace`. Runs on the
/// current runtime; the binary serves on [`super::workers`] instead.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let connection_slots = Arc::new(Semaphore::new(gateway.config.limits.max_connections));
    let (phase, watched) = watch::channel(Phase::Serving);
    let (open, mut closed) = mpsc::channel::<()>(1);
    let coordinate = async move {
        shutdown.await;
        let _ = phase.send(Phase::StopAccepting);
        // `None` once the listener is closed.
        let _ = closed.recv().await;
        let _ = phase.send(Phase::Closing);
        phase
    };
    let drain = Drain {
        phase: watched,
        open,
        grace,
    };
    tokio::join!(
        serve_with_slots(listener, gateway, connection_slots, drain),
        coordinate
    );
}

/// What a listener needs to drain with the others of its process.
pub struct Drain {
    /// Where the process is; the listener serves until it leaves
    /// [`Phase::Serving`].
    pub phase: watch::Receiver<Phase>,
    /// Dropped once the listener is closed, so that whoever coordinates the
    /// drain knows (its receiver answers `None` once every one is dropped).
    pub open: mpsc::Sender<()>,
    /// How long connections may take to finish once accepting stopped.
    pub grace: Duration,
}

/// Serves `gateway` on `listener`, with the bound on open connections
/// (`limits.max_connections`) shared with the other listeners of the
/// process, until the drain's phase leaves [`Phase::Serving`]; then drains
/// its accept queue, closes, drops `drain.open`, waits for its connections,
/// and after `drain.grace` closes those still open.
pub async fn serve_with_slots(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    connection_slots: Arc<Semaphore>,
    drain: Drain,
) {
    let Drain { phase, open, grace } = drain;
    let spawner = Spawner {
        limits: connection::limits(&gateway.config.limits),
        gateway,
        phase: phase.clone(),
    };
    let mut connections = JoinSet::new();
    let mut stop_watch = phase.clone();
    let stop = async move {
        let _ = stop_watch.wait_for(|phase| *phase != Phase::Serving).await;
    };
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut stop => break,
            permit = connection_slots.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let (stream, client_addr) = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        spawner.spawn(&mut connections, stream, client_addr, Some(permit));
        // Forget the connections that ended.
        while connections.try_join_next().is_some() {}
    }

    let deadline = Instant::now() + grace;
    let queued = accept_queued(listener, &connection_slots, &spawner, &mut connections);
    drop(open);
    tracing::debug!(queued, "listener closed");
    let mut closing = phase.clone();
    let _ =
        tokio::time::timeout_at(deadline, closing.wait_for(|phase| *phase == Phase::Closing)).await;
    let drained = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => {
            tracing::warn!(
                open = connections.len(),
                "grace period over; closing the remaining connections"
            );
            connections.shutdown().await;
        }
    }
}

/// Starts the task of each accepted connection.
struct Spawner {
    gateway: Arc<Gateway>,
    limits: crate::http1::Limits,
    phase: watch::Receiver<Phase>,
}

impl Spawner {
    fn spawn(
        &self,
        connections: &mut JoinSet<()>,
        stream: tokio::net::TcpStream,
        client_addr: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let _ = stream.set_nodelay(true);
        let gateway = self.gateway.clone();
        let limits = self.limits.clone();
        let phase = self.phase.clone();
        connections.spawn(async move {
            // One upstream connection per client connection, returned to the
            // idle list when the client connection ends.
            let upstream = gateway.forwarder.lease();
            connection::serve(stream, client_addr, &gateway, &upstream, limits, phase).await;
            drop(permit);
        });
    }
}

/// Accepts every connection already in the listener's accept queue (each
/// is served; past `limits.max_connections` if need be, once), then closes
/// the listener. How many were accepted.
fn accept_queued(
    listener: TcpListener,
    connection_slots: &Arc<Semaphore>,
    spawner: &Spawner,
    connections: &mut JoinSet<()>,
) -> usize {
    // The socket itself, asked directly: tokio's readiness may not have
    // seen the last arrivals yet.
    let Ok(listener) = listener.into_std() else {
        return 0;
    };
    let mut accepted = 0;
    loop {
        match listener.accept() {
            Ok((stream, client_addr)) => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(stream));
                if let Ok(stream) = stream {
                    let permit = connection_slots.clone().try_acquire_owned().ok();
                    spawner.spawn(connections, stream, client_addr, permit);
                    accepted += 1;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            // A connection reset while queued, or a signal: try the next one.
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted
                ) => {}
            Err(err) => {
                tracing::warn!(error = %err, "accept failed while draining the accept queue");
                break;
            }
        }
    }
    accepted
}

/// Binds the configured address and serves in a background task; returns the
/// bound address (useful with port 0) and a handle that stops the server.
pub async fn spawn(gateway: Arc<Gateway>, addr: SocketAddr) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let grace = gateway.config.shutdown.grace_period;
    let task = tokio::spawn(serve(
        listener,
        gateway,
        async move {
            let _ = stopped.await;
        },
        grace,
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
