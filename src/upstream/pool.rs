//! Keep-alive connections to the upstream: each worker's idle list
//! ([`UpstreamPool`]), and a client connection's [`Home`], the place its
//! upstream connection goes back to between requests.
//!
//! A client connection borrows one upstream connection (from the idle list,
//! or a new one) the first time it forwards, keeps it in its home for all
//! its requests, and hands it back to the idle list when the client goes
//! away. So the request path never touches a shared pool: no lock anyone
//! else takes, no lookup, no cross-task handoff.
//!
//! An upstream connection comes home only once an answer has been read to
//! its end and left nothing behind (see [`Connection::reusable`]); one
//! whose answer was cut short is closed.
//!
//! A connection is not used again once it has been idle for
//! `upstream.pool_idle_timeout_ms`, counted from its last answer (also while
//! a client connection holds it), so the gateway lets go of it before an
//! upstream with a longer keep-alive timeout closes it under a request.

use super::client::Connection;
use super::connect::Connector;
use super::UpstreamError;
use crate::per_worker::PerWorker;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Idle upstream connections: one list per worker thread (a connection's
/// socket belongs to the worker that opened it, so it is only reused
/// there), shared by that worker's client connections.
pub struct UpstreamPool {
    connector: Connector,
    pub(super) idle_timeout: Duration,
    /// Idle connections kept per worker (`upstream.pool_max_idle_per_host`).
    max_idle: usize,
    idle: PerWorker<Mutex<Vec<Connection>>>,
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
    pub(super) fn checkout(&self) -> Option<Connection> {
        let mut idle = self.idle.get().lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.reusable(self.idle_timeout) {
                return Some(conn);
            }
        }
        None
    }

    pub(super) async fn connect(&self) -> Result<Connection, UpstreamError> {
        self.connector.open().await
    }

    fn checkin(&self, conn: Connection) {
        if !conn.reusable(self.idle_timeout) {
            return;
        }
        let mut idle = self.idle.get().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

/// Where one client connection's upstream connection waits between its
/// requests. Shared by the client connection's lease and by an answer's
/// body while it streams (the body brings the connection home when it
/// ends); when both are gone, the connection goes to the idle list.
pub struct Home {
    pool: Arc<UpstreamPool>,
    held: Mutex<Option<Connection>>,
}

impl Home {
    pub fn new(pool: Arc<UpstreamPool>) -> Self {
        Home {
            pool,
            held: Mutex::new(None),
        }
    }

    pub(super) fn pool(&self) -> &UpstreamPool {
        &self.pool
    }

    /// The connection waiting here, if it can carry another request.
    pub(super) fn take(&self) -> Option<Connection> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|conn| conn.reusable(self.pool.idle_timeout))
    }

    /// A connection whose answer has ended comes back; one that cannot
    /// carry another request is closed.
    pub(super) fn bring_back(&self, conn: Connection) {
        if !conn.reusable(self.pool.idle_timeout) {
            return;
        }
        let previous = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(conn);
        // Two requests at once on one home: keep one, pool the other.
        if let Some(previous) = previous {
            self.pool.checkin(previous);
        }
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Some(conn) = self.held.get_mut().ok().and_then(Option::take) {
            self.pool.checkin(conn);
        }
    }
}
