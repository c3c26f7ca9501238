//! Keep-alive connections to the upstream, with connection affinity: a client
//! connection borrows one upstream connection (from the idle list, or a new
//! one) the first time it forwards, keeps it for all its requests, and hands
//! it back to the idle list when the client goes away. So the request path
//! never touches a shared pool: no lock, no lookup, no cross-task handoff.

use super::UpstreamError;
use crate::body::UpstreamBody;
use crate::per_worker::PerWorker;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Sender = SendRequest<UpstreamBody>;

/// Idle upstream connections: one list per worker thread (a connection is
/// driven by a task on the worker that opened it, so it is only reused
/// there), shared by that worker's client connections.
pub struct UpstreamPool {
    /// `host:port` of the upstream.
    address: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Idle connections kept per worker (`upstream.pool_max_idle_per_host`).
    max_idle: usize,
    idle: PerWorker<Mutex<Vec<(Sender, Instant)>>>,
}

impl UpstreamPool {
    pub fn new(
        address: String,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        UpstreamPool {
            address,
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: PerWorker::new(|| Mutex::new(Vec::new())),
        }
    }

    /// An idle connection that is still open and fresh, or a new one.
    async fn checkout(&self) -> Result<Sender, UpstreamError> {
        loop {
            let candidate = self.idle.get().lock().expect("upstream pool lock").pop();
            match candidate {
                Some((sender, since))
                    if !sender.is_closed() && since.elapsed() < self.idle_timeout =>
                {
                    return Ok(sender)
                }
                Some(_) => continue,
                None => return self.connect().await,
            }
        }
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let unreachable = |cause: String| UpstreamError::Unreachable {
            cause: format!("{}: {cause}", self.address),
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.address),
        )
        .await
        .map_err(|_| {
            unreachable(format!(
                "no connection within {} ms",
                self.connect_timeout.as_millis()
            ))
        })?
        .map_err(|err| unreachable(err.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn checkin(&self, sender: Sender) {
        if !sender.is_ready() {
            return; // closed, or a response body was left unread: not reusable
        }
        let mut idle = self.idle.get().lock().expect("upstream pool lock");
        if idle.len() < self.max_idle {
            idle.push((sender, Instant::now()));
        }
    }
}

/// The upstream connection one client connection uses; returned to the
/// pool when the client connection ends.
pub struct UpstreamLease {
    pool: Arc<UpstreamPool>,
    sender: Mutex<Option<Sender>>,
}

impl UpstreamLease {
    pub fn new(pool: Arc<UpstreamPool>) -> Self {
        UpstreamLease {
            pool,
            sender: Mutex::new(None),
        }
    }

    /// Sends a request on this lease's connection (opening or replacing it
    /// as needed). A request that never left is retried once on a new
    /// connection; one that did is never sent twice.
    pub async fn send(
        &self,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut request = request;
        let mut held = self.sender.lock().expect("lease lock").take();
        for _ in 0..2 {
            let mut sender = match held.take() {
                Some(sender) => sender,
                None => self.pool.checkout().await?,
            };
            if sender.ready().await.is_err() {
                continue; // the connection died while idle; the request was not sent
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    *self.sender.lock().expect("lease lock") = Some(sender);
                    return Ok(response);
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(classify(err.error())),
                },
            }
        }
        Err(UpstreamError::Closed)
    }
}

impl Drop for UpstreamLease {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.get_mut().ok().and_then(Option::take) {
            self.pool.checkin(sender);
        }
    }
}

fn classify(err: &hyper::Error) -> UpstreamError {
    use std::error::Error;
    let mut source: Option<&dyn Error> = err.source();
    while let Some(inner) = source {
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            return UpstreamError::BodyTooLarge;
        }
        source = inner.source();
    }
    UpstreamError::Failed {
        cause: err.to_string(),
    }
}
