//! Keep-alive connections to the upstream, with connection affinity: a client
//! connection borrows one upstream connection (from the idle list, or a new
//! one) the first time it forwards, keeps it for all its requests, and hands
//! it back to the idle list when the client goes away. So the request path
//! never touches a shared pool: no lock, no lookup, no cross-task handoff.
//!
//! A connection is not used again once it has been idle for
//! `upstream.pool_idle_timeout_ms`, counted from its last answer (also while
//! a client connection holds it), so the gateway lets go of it before an
//! upstream with a longer keep-alive timeout closes it under a request.
//!
//! When an attempt fails, [`UpstreamLease::send`] asks what its bytes say
//! ([`Fate`]) and may send the request again, always on a new connection:
//!
//! - nothing was written (the connection was closed, found closed just
//!   before writing, or broke before its first byte): sent again whatever
//!   the method, up to [`MAX_UNSENT_RETRIES`] times;
//! - written, and not one byte of an answer came back: sent again once if
//!   the method is idempotent (GET, HEAD, OPTIONS, PUT, DELETE); a POST or
//!   PATCH may have reached the upstream and is never sent twice (502);
//! - part of an answer came back: never sent again (502).

use super::connect::{Connector, Opened};
use super::headers::ConnectionHeaderValues;
use super::request::{SendBody, UpstreamRequest};
use super::transport::{Fate, Meter};
use super::UpstreamError;
use crate::per_worker::PerWorker;
use http::Response;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many times a request that provably never left is sent again, each
/// time on a new connection. Past this the upstream is closing connections
/// as fast as they open, and the answer is 502.
pub const MAX_UNSENT_RETRIES: u32 = 2;

/// One upstream connection.
struct Conn {
    sender: SendRequest<SendBody>,
    meter: Arc<Meter>,
    /// When its last answer arrived (or when it opened): the start of its
    /// idle time as the upstream's keep-alive timer would count it, or a
    /// little before.
    last_used: Instant,
    /// Whether it has carried a request (a reused connection is checked
    /// before it carries another).
    used: bool,
}

impl Conn {
    fn new(opened: Opened) -> Self {
        Conn {
            sender: opened.sender,
            meter: opened.meter,
            last_used: Instant::now(),
            used: false,
        }
    }

    /// Open, and not idle too long.
    fn reusable(&self, idle_timeout: Duration) -> bool {
        !self.sender.is_closed() && self.last_used.elapsed() < idle_timeout
    }
}

/// Idle upstream connections: one list per worker thread (a connection is
/// driven by a task on the worker that opened it, so it is only reused
/// there), shared by that worker's client connections.
pub struct UpstreamPool {
    connector: Connector,
    idle_timeout: Duration,
    /// Idle connections kept per worker (`upstream.pool_max_idle_per_host`).
    max_idle: usize,
    idle: PerWorker<Mutex<Vec<Conn>>>,
}

impl UpstreamPool {
    pub fn new(connector: Connector, idle_timeout: Duration, max_idle: usize) -> Self {
        UpstreamPool {
            connector,
            idle_timeout,
            max_idle,
            idle: PerWorker::new(|| Mutex::new(Vec::new())),
        }
    }

    /// The most recently used idle connection that is still reusable;
    /// older or closed ones are dropped on the way.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.get().lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.reusable(self.idle_timeout) {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Conn, UpstreamError> {
        self.connector.open().await.map(Conn::new)
    }

    fn checkin(&self, conn: Conn) {
        // Not ready: closed, or an answer's body was left unread.
        if !conn.sender.is_ready() || !conn.reusable(self.idle_timeout) {
            return;
        }
        let mut idle = self.idle.get().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

/// The upstream connection one client connection uses; returned to the
/// pool when the client connection ends. It also keeps the header values
/// the client connection sends with each request it forwards.
pub struct UpstreamLease {
    pool: Arc<UpstreamPool>,
    held: Mutex<Option<Conn>>,
    header_values: Mutex<ConnectionHeaderValues>,
}

impl UpstreamLease {
    pub fn new(pool: Arc<UpstreamPool>) -> Self {
        UpstreamLease {
            pool,
            held: Mutex::new(None),
            header_values: Mutex::new(ConnectionHeaderValues::default()),
        }
    }

    /// The client connection's header values (see
    /// [`ConnectionHeaderValues`]); one request at a time uses a lease, so
    /// the lock is never contended.
    pub fn header_values(&self) -> MutexGuard<'_, ConnectionHeaderValues> {
        self.header_values.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_held(&self) -> Option<Conn> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn keep(&self, conn: Conn) {
        let previous = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(conn);
        // Two requests at once on one lease: keep one, pool the other.
        if let Some(previous) = previous {
            self.pool.checkin(previous);
        }
    }

    /// Sends `request` on this lease's connection (opening or replacing it
    /// as needed), sending it again only as the module docs say.
    pub async fn send(
        &self,
        request: &UpstreamRequest,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let idle_timeout = self.pool.idle_timeout;
        let mut unsent_retries = 0;
        let mut replayed = false;
        let mut first = true;
        loop {
            let reusable = if first {
                self.take_held()
                    .filter(|conn| conn.reusable(idle_timeout))
                    .or_else(|| self.pool.checkout())
            } else {
                None // every retry goes out on a new connection
            };
            first = false;
            let mut conn = match reusable {
                Some(conn) => conn,
                None => self.pool.connect().await?,
            };
            let failure = match attempt(&mut conn, request).await {
                Ok(response) => {
                    conn.last_used = Instant::now();
                    conn.used = true;
                    self.keep(conn);
                    return Ok(response);
                }
                Err(failure) => failure,
            };
            match failure.fate {
                Fate::NotSent if unsent_retries < MAX_UNSENT_RETRIES => {
                    unsent_retries += 1;
                    tracing::debug!(cause = %failure.cause, "upstream connection closed before the request was sent; sending it on a new one");
                }
                Fate::NoAnswer if request.is_idempotent() && !replayed => {
                    replayed = true;
                    tracing::debug!(cause = %failure.cause, "upstream connection broke before any answer; sending the idempotent request again");
                }
                Fate::NotSent => return Err(UpstreamError::Closed),
                Fate::NoAnswer | Fate::PartlyAnswered => {
                    return Err(UpstreamError::Failed {
                        cause: failure.cause,
                    })
                }
            }
        }
    }
}

/// A failed attempt: what its bytes say, and hyper's error for the log.
struct Failure {
    fate: Fate,
    cause: String,
}

/// One attempt on `conn`; a reused connection is checked right before its
/// first byte is written (see [`super::transport`]).
async fn attempt(
    conn: &mut Conn,
    request: &UpstreamRequest,
) -> Result<Response<Incoming>, Failure> {
    let mark = conn.meter.mark();
    if let Err(err) = conn.sender.ready().await {
        return Err(Failure {
            fate: Fate::NotSent,
            cause: err.to_string(),
        });
    }
    if conn.used {
        conn.meter.probe_before_next_write();
    }
    conn.sender
        .send_request(request.to_hyper())
        .await
        .map_err(|err| Failure {
            fate: conn.meter.fate_since(mark),
            cause: describe(&err),
        })
}

/// hyper's error and its causes, on one line.
fn describe(err: &hyper::Error) -> String {
    use std::error::Error;
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

impl Drop for UpstreamLease {
    fn drop(&mut self) {
        if let Some(conn) = self.held.get_mut().ok().and_then(Option::take) {
            self.pool.checkin(conn);
        }
    }
}
