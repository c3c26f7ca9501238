//! The listener: binds (optionally with `SO_REUSEPORT`, then one socket per
//! worker: [`bind_workers`]), accepts connections within
//! `limits.max_connections`, evens them out over the workers ([`Balance`]),
//! and serves each in the
//! protocol it speaks ([`Protocols`]): over TLS when `tls` is set (the
//! handshake within `limits.header_read_timeout_ms`), then HTTP/2 when ALPN
//! chose `h2` ([`super::http2`]) and HTTP/1.1 otherwise
//! ([`connection::serve_client`]); without TLS, HTTP/1.1, or HTTP/2 with
//! prior knowledge when `http2_cleartext` is on ([`super::sniff`]). Every
//! request carries its [`ClientConnection`]. Then it drains gracefully.
//!
//! The drain, in order, so that no request is lost:
//! 1. [`Phase::StopAccepting`]: each listener accepts what is already in its
//!    accept queue, then closes (a new process bound with `SO_REUSEPORT`
//!    gets every connection from then on; with one socket per worker, each
//!    worker empties its own queue, since Linux resets what is left in the
//!    queue of a closed one), and serves what other workers handed it;
//! 2. [`Phase::Closing`], once every listener of the process is closed:
//!    HTTP/1.1 connections answer their request in flight with
//!    `Connection: close` and idle ones are closed between requests;
//!    HTTP/2 connections get `GOAWAY` and finish the streams in flight
//!    (clients reconnect, and reach a listener that is open);
//! 3. the connections still open when the grace period ends are closed.

use super::connection::{self, Phase};
use super::sniff::{self, Sniffed};
use super::{http2, tls};
use crate::config::Config;
use crate::context::{ClientConnection, Protocol};
use crate::gateway::Gateway;
use crate::observe::metrics::Metrics;
use crate::tls::server::ALPN_H2;
use crate::tls::{CertificateError, ServerTls};
use prometheus_client::metrics::gauge::Gauge;
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

/// The listening sockets of `workers` workers on `addr` (see
/// [`super::workers`] for who accepts from which): with `reuse_port` on
/// Linux, one `SO_REUSEPORT` socket per worker, all bound before any
/// serves, so that the kernel spreads new connections over the workers by a
/// hash of their addresses and wakes only the one that gets each; otherwise
/// one socket, which every worker shares. `SO_REUSEPORT` is never set
/// without `reuse_port`: any process of the same user could then bind the
/// port as well and get a share of the clients.
pub fn bind_workers(
    addr: SocketAddr,
    reuse_port: bool,
    workers: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = bind(addr, reuse_port)?;
    // The port the kernel chose when `addr` asked for port 0.
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    if reuse_port && cfg!(target_os = "linux") {
        for _ in 1..workers {
            sockets.push(bind(bound, true)?);
        }
    }
    Ok(sockets)
}

/// What a listener speaks, set up once: TLS (with the certificate that
/// reloads) or not, HTTP/2 or not.
pub struct Protocols {
    tls: Option<Arc<ServerTls>>,
    /// Set when HTTP/2 is served (over TLS by ALPN, or with prior knowledge).
    http2: Option<http2::Settings>,
    cleartext_http2: bool,
}

impl Protocols {
    /// The protocols `config` asks for, with `tls` as the listener's TLS
    /// (loaded from `config.tls` by the caller, which also reloads it);
    /// plain HTTP when `tls` is `None`.
    pub fn new(config: &Config, tls: Option<Arc<ServerTls>>) -> Protocols {
        let cleartext_http2 = tls.is_none() && config.http2_cleartext;
        let http2 = (cleartext_http2 || (tls.is_some() && config.http2))
            .then(|| http2::Settings::new(&config.limits));
        Protocols {
            tls,
            http2,
            cleartext_http2,
        }
    }

    /// The protocols `config` asks for, reading its certificate when `tls`
    /// is set.
    pub fn load(config: &Config) -> Result<Protocols, CertificateError> {
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(ServerTls::load(
                &files.cert_file,
                &files.key_file,
                config.http2,
            )?)),
            None => None,
        };
        Ok(Protocols::new(config, tls))
    }

    /// The listener's TLS, when it has one.
    pub fn tls(&self) -> Option<&Arc<ServerTls>> {
        self.tls.as_ref()
    }
}

/// Serves `gateway` on `listener` until `shutdown` completes, then drains
/// (see the module docs), closing what is left after `grace`. Runs on the
/// current runtime; the binary serves on [`super::workers`] instead.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    protocols: Arc<Protocols>,
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
    let share = Share::alone(&gateway.metrics);
    tokio::join!(
        serve_with_slots(listener, gateway, protocols, connection_slots, share, drain),
        coordinate
    );
}

/// A connection that one worker accepted and handed to another (see
/// [`Balance`]), with its slot and its count on the receiver's gauge.
pub struct Handed {
    stream: std::net::TcpStream,
    client_addr: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
    held: Held,
}

/// One open connection counted on its worker's
/// `tokengate_worker_connections` gauge, until dropped.
struct Held(Gauge);

impl Held {
    fn new(gauge: &Gauge) -> Held {
        gauge.inc();
        Held(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A worker keeps the connection it accepted unless another worker has at
/// least this many connections fewer.
const HAND_OFF_MARGIN: i64 = 2;

/// How the workers of a process share client connections, least
/// connections first, the way HAProxy's multi-queue accept does: each
/// worker counts its open connections (the `tokengate_worker_connections`
/// gauges), and a worker that accepts a connection while another has
/// [`HAND_OFF_MARGIN`] fewer hands it to that one (its inbox; one
/// cross-thread wake-up, once per connection, never per request).
///
/// Needed even with one socket per worker: whichever worker wakes first on
/// a shared socket takes a whole burst (one worker took all 32 connections
/// of `wrk -c32` in half the runs of issue 15), and a hash spread is only
/// even on average. When the workers are evenly loaded nothing is handed
/// off and a connection stays on the worker that accepted it.
pub struct Balance {
    loads: Vec<Gauge>,
    inboxes: Vec<mpsc::UnboundedSender<Handed>>,
}

impl Balance {
    /// The shares of `workers` workers, one each, counted on `metrics`.
    pub fn shares(metrics: &Metrics, workers: usize) -> Vec<Share> {
        let loads = (0..workers)
            .map(|worker| metrics.worker_connections(worker))
            .collect();
        let (inboxes, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let balance = Arc::new(Balance { loads, inboxes });
        receivers
            .into_iter()
            .enumerate()
            .map(|(index, inbox)| Share {
                index,
                balance: balance.clone(),
                inbox,
            })
            .collect()
    }

    /// The worker that should get a connection `worker` accepted, when it
    /// is not `worker` itself.
    fn elsewhere(&self, worker: usize) -> Option<usize> {
        let mine = self.loads.get(worker)?.get();
        let (least, load) = self
            .loads
            .iter()
            .enumerate()
            .map(|(index, gauge)| (index, gauge.get()))
            .min_by_key(|&(_, load)| load)?;
        (least != worker && load + HAND_OFF_MARGIN <= mine).then_some(least)
    }
}

/// One worker's part in the [`Balance`]: which worker it is and the
/// connections handed to it.
pub struct Share {
    index: usize,
    balance: Arc<Balance>,
    inbox: mpsc::UnboundedReceiver<Handed>,
}

impl Share {
    /// Which worker this is.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The share of the only worker (counted as worker 0).
    pub fn alone(metrics: &Metrics) -> Share {
        let mut shares = Balance::shares(metrics, 1);
        shares.remove(0)
    }
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
/// process (at the limit, each listener holds at most one more connection,
/// accepted and unserved until a slot frees; the rest wait in the kernel's
/// accept queue) and the connections shared with the other workers
/// (`share`), until the drain's phase leaves [`Phase::Serving`]; then
/// drains its accept queue and the connections handed to it, closes, drops
/// `drain.open`, waits for its connections, and after `drain.grace` closes
/// those still open.
pub async fn serve_with_slots(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    protocols: Arc<Protocols>,
    connection_slots: Arc<Semaphore>,
    share: Share,
    drain: Drain,
) {
    let Drain { phase, open, grace } = drain;
    let Share {
        index,
        balance,
        mut inbox,
    } = share;
    let spawner = Spawner {
        limits: connection::limits(&gateway.config.limits),
        gateway,
        protocols,
        phase: phase.clone(),
        index,
        balance,
    };
    let mut connections = JoinSet::new();
    let mut stop_watch = phase.clone();
    let stop = async move {
        let _ = stop_watch.wait_for(|phase| *phase != Phase::Serving).await;
    };
    tokio::pin!(stop);
    // A connection accepted while every slot was taken: it waits here,
    // unserved, for a slot. Taking a slot only once a connection is there
    // (rather than holding one while waiting for a connection) matters with
    // one socket per worker: a worker whose socket stays quiet would keep a
    // slot that a connection queued at another worker needs.
    let mut waiting: Option<(tokio::net::TcpStream, SocketAddr)> = None;
    loop {
        // Forget the connections that ended.
        while connections.try_join_next().is_some() {}
        tokio::select! {
            biased;
            () = &mut stop => break,
            // Handed connections come with their own slot.
            Some(handed) = inbox.recv() => spawner.adopt(&mut connections, handed),
            acquired = connection_slots.clone().acquire_owned(), if waiting.is_some() => {
                if let Some((stream, client_addr)) = waiting.take() {
                    spawner.place(&mut connections, stream, client_addr, acquired.ok());
                }
            }
            accepted = listener.accept(), if waiting.is_none() => match accepted {
                Ok((stream, client_addr)) => match connection_slots.clone().try_acquire_owned() {
                    Ok(permit) => spawner.place(&mut connections, stream, client_addr, Some(permit)),
                    Err(_) => waiting = Some((stream, client_addr)),
                },
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    // Served like the queued ones, past the limit if need be.
    if let Some((stream, client_addr)) = waiting.take() {
        let permit = connection_slots.clone().try_acquire_owned().ok();
        spawner.spawn(&mut connections, stream, client_addr, permit);
    }

    let deadline = Instant::now() + grace;
    let queued = accept_queued(listener, &connection_slots, &spawner, &mut connections);
    // What the other workers handed over before they stopped: once every
    // listener is closed (`Phase::Closing`), none hands over any more.
    let adopt_handed = |connections: &mut JoinSet<()>, inbox: &mut mpsc::UnboundedReceiver<_>| {
        while let Ok(handed) = inbox.try_recv() {
            spawner.adopt(connections, handed);
        }
    };
    adopt_handed(&mut connections, &mut inbox);
    drop(open);
    tracing::debug!(queued, "listener closed");
    let mut closing = phase.clone();
    let _ =
        tokio::time::timeout_at(deadline, closing.wait_for(|phase| *phase == Phase::Closing)).await;
    adopt_handed(&mut connections, &mut inbox);
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
    protocols: Arc<Protocols>,
    limits: crate::http1::Limits,
    phase: watch::Receiver<Phase>,
    /// Which worker this is, in `balance`.
    index: usize,
    balance: Arc<Balance>,
}

impl Spawner {
    /// Serves a connection this worker accepted, here or, when another
    /// worker has fewer connections, there (see [`Balance`]).
    fn place(
        &self,
        connections: &mut JoinSet<()>,
        stream: tokio::net::TcpStream,
        client_addr: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let Some(target) = self.balance.elsewhere(self.index) else {
            return self.spawn(connections, stream, client_addr, permit);
        };
        // Off this worker's event loop, to be registered on the target's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(error = %err, %client_addr, "cannot hand a connection over");
                return;
            }
        };
        let handed = Handed {
            stream,
            client_addr,
            permit,
            held: Held::new(&self.balance.loads[target]),
        };
        if let Err(mpsc::error::SendError(handed)) = self.balance.inboxes[target].send(handed) {
            // That worker is gone: serve it here.
            let Handed {
                stream,
                client_addr,
                permit,
                held,
            } = handed;
            drop(held);
            if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
                self.spawn(connections, stream, client_addr, permit);
            }
        }
    }

    /// Serves a connection another worker handed to this one.
    fn adopt(&self, connections: &mut JoinSet<()>, handed: Handed) {
        let Handed {
            stream,
            client_addr,
            permit,
            held,
        } = handed;
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => self.start(connections, stream, client_addr, permit, held),
            Err(err) => {
                tracing::debug!(error = %err, %client_addr, "cannot take a handed connection")
            }
        }
    }

    /// Serves a connection on this worker.
    fn spawn(
        &self,
        connections: &mut JoinSet<()>,
        stream: tokio::net::TcpStream,
        client_addr: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let held = Held::new(&self.balance.loads[self.index]);
        self.start(connections, stream, client_addr, permit, held);
    }

    fn start(
        &self,
        connections: &mut JoinSet<()>,
        stream: tokio::net::TcpStream,
        client_addr: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        held: Held,
    ) {
        let _ = stream.set_nodelay(true);
        let client = Client {
            gateway: self.gateway.clone(),
            protocols: self.protocols.clone(),
            limits: self.limits.clone(),
            phase: self.phase.clone(),
            addr: client_addr,
        };
        connections.spawn(async move {
            // Dropped also when the task is cancelled at the end of the grace period.
            let _counted = (held, permit);
            client.serve(stream).await;
        });
    }
}

/// One accepted connection and what serving it needs.
struct Client {
    gateway: Arc<Gateway>,
    protocols: Arc<Protocols>,
    limits: crate::http1::Limits,
    phase: watch::Receiver<Phase>,
    addr: SocketAddr,
}

impl Client {
    /// Serves the connection in the protocol it speaks (see the module docs).
    async fn serve(self, stream: tokio::net::TcpStream) {
        if self.protocols.tls.is_none() && !self.protocols.cleartext_http2 {
            // Plain HTTP/1.1: its task holds nothing of TLS or HTTP/2.
            return self.http1(stream, ClientConnection::default()).await;
        }
        Box::pin(self.serve_negotiated(stream)).await;
    }

    /// Serves a connection over TLS (HTTP/1.1 or HTTP/2 by ALPN), or one
    /// that may be h2c with prior knowledge.
    async fn serve_negotiated(&self, stream: tokio::net::TcpStream) {
        if let Some(server_tls) = &self.protocols.tls {
            let within = self.limits.header_read_timeout;
            let stream = match tls::handshake(server_tls, stream, within).await {
                Ok(stream) => stream,
                Err(err) => {
                    match err {
                        tls::HandshakeError::Timeout(_) => {
                            self.gateway.metrics.timeout("tls_handshake")
                        }
                        tls::HandshakeError::Failed(_) => {
                            self.gateway.metrics.http_error("tls_handshake")
                        }
                    }
                    tracing::debug!(error = %err, client_addr = %self.addr, "TLS handshake failed");
                    return;
                }
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
            return match (&self.protocols.http2, h2) {
                (Some(settings), true) => {
                    let client = ClientConnection {
                        tls: true,
                        protocol: Protocol::Http2,
                    };
                    self.http2(stream, client, settings).await
                }
                _ => {
                    let client = ClientConnection {
                        tls: true,
                        protocol: Protocol::Http1,
                    };
                    self.http1(stream, client).await
                }
            };
        }
        match &self.protocols.http2 {
            Some(settings) if self.protocols.cleartext_http2 => {
                let deadline = tokio::time::Instant::now() + self.limits.header_read_timeout;
                match sniff::sniff(stream, deadline).await {
                    Sniffed::Http2(stream) => {
                        let client = ClientConnection {
                            tls: false,
                            protocol: Protocol::Http2Cleartext,
                        };
                        self.http2(stream, client, settings).await
                    }
                    Sniffed::Http1(stream) => self.http1(stream, ClientConnection::default()).await,
                    Sniffed::Idle => self
                        .gateway
                        .metrics
                        .timeout(crate::http1::TimeoutKind::Header.as_str()),
                    Sniffed::Closed => {}
                }
            }
            _ => self.http1(stream, ClientConnection::default()).await,
        }
    }

    async fn http1<S>(&self, io: S, client: ClientConnection)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        // One upstream connection per client connection, returned to the
        // idle list when the client connection ends.
        let upstream = self.gateway.forwarder.lease();
        connection::serve_client(
            io,
            client,
            self.addr,
            &self.gateway,
            &upstream,
            self.limits.clone(),
            self.phase.clone(),
        )
        .await;
    }

    async fn http2<S>(&self, io: S, client: ClientConnection, settings: &http2::Settings)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        http2::serve(
            io,
            client,
            self.addr,
            self.gateway.clone(),
            settings,
            self.phase.clone(),
        )
        .await;
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

/// Binds `addr` and serves in a background task, in the protocols the
/// gateway's config asks for (its certificate read now when `tls` is set);
/// returns the bound address (useful with port 0) and a handle that stops
/// the server.
pub async fn spawn(gateway: Arc<Gateway>, addr: SocketAddr) -> std::io::Result<ServerHandle> {
    let protocols = Protocols::load(&gateway.config).map_err(std::io::Error::other)?;
    spawn_with(gateway, addr, Arc::new(protocols)).await
}

/// Like [`spawn`], with the protocols given.
pub async fn spawn_with(
    gateway: Arc<Gateway>,
    addr: SocketAddr,
    protocols: Arc<Protocols>,
) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let grace = gateway.config.shutdown.grace_period;
    let tls = protocols.tls().cloned();
    let task = tokio::spawn(serve(
        listener,
        gateway,
        protocols,
        async move {
            let _ = stopped.await;
        },
        grace,
    ));
    Ok(ServerHandle {
        addr: local,
        tls,
        stop: Some(stop),
        task,
    })
}

/// A server running in the background.
pub struct ServerHandle {
    pub addr: SocketAddr,
    /// The listener's TLS, when it has one (to reload its certificate).
    pub tls: Option<Arc<ServerTls>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_a_worker_with_two_fewer_and_otherwise_stays() {
        let metrics = Metrics::new();
        let shares = Balance::shares(&metrics, 3);
        let balance = &shares[0].balance;
        let set = |loads: [i64; 3]| {
            for (gauge, load) in balance.loads.iter().zip(loads) {
                gauge.set(load);
            }
        };
        set([0, 0, 0]);
        assert_eq!(balance.elsewhere(0), None);
        set([1, 0, 0]);
        assert_eq!(balance.elsewhere(0), None, "one more stays");
        set([2, 1, 0]);
        assert_eq!(balance.elsewhere(0), Some(2), "to the least loaded");
        assert_eq!(balance.elsewhere(1), None);
        assert_eq!(balance.elsewhere(2), None);
        set([5, 5, 3]);
        assert_eq!(balance.elsewhere(1), Some(2));
        assert_eq!(balance.elsewhere(7), None, "no such worker");
        let alone = Share::alone(&metrics);
        alone.balance.loads[0].set(100);
        assert_eq!(alone.balance.elsewhere(0), None);
    }

    #[test]
    fn held_connections_are_counted_until_dropped() {
        let metrics = Metrics::new();
        let gauge = metrics.worker_connections(3);
        let first = Held::new(&gauge);
        let second = Held::new(&gauge);
        assert_eq!(metrics.worker_connections(3).get(), 2);
        drop(first);
        assert_eq!(gauge.get(), 1);
        drop(second);
        assert_eq!(gauge.get(), 0);
    }
}
