//! [`UpstreamLease`]: the upstream side of one client connection. It sends
//! each of the client connection's requests on the connection waiting in
//! its [`Home`] (opening or replacing it as needed), and turns the answer's
//! head into a response whose body streams from that connection.
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
//! - part of an answer came back: never sent again (502);
//! - a body forwarded as it arrived (an upload) was taken by the attempt
//!   that failed: never sent again (502), whatever the method.

use super::body::UpstreamBody;
use super::client::Connection;
use super::headers::ConnectionHeaderValues;
use super::pool::{Home, UpstreamPool};
use super::request::UpstreamRequest;
use super::response::AnswerHead;
use super::transport::Fate;
use super::UpstreamError;
use http::Response;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many times a request that provably never left is sent again, each
/// time on a new connection. Past this the upstream is closing connections
/// as fast as they open, and the answer is 502.
pub const MAX_UNSENT_RETRIES: u32 = 2;

/// The upstream connection one client connection uses; returned to the
/// pool when the client connection ends (and its last answer's body has
/// been read). It also keeps the header values the client connection sends
/// with each request it forwards.
pub struct UpstreamLease {
    home: Arc<Home>,
    header_values: Mutex<ConnectionHeaderValues>,
}

impl UpstreamLease {
    pub fn new(pool: Arc<UpstreamPool>) -> Self {
        UpstreamLease {
            home: Arc::new(Home::new(pool)),
            header_values: Mutex::new(ConnectionHeaderValues::default()),
        }
    }

    /// The client connection's header values (see
    /// [`ConnectionHeaderValues`]); one request at a time uses a lease, so
    /// the lock is never contended.
    pub fn header_values(&self) -> MutexGuard<'_, ConnectionHeaderValues> {
        self.header_values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `request` (sending it again only as the module docs say) and
    /// reads its answer's head, all within `timeout`; the answer's body may
    /// then pause for up to `timeout` between two reads.
    pub async fn send(
        &self,
        request: &UpstreamRequest,
        timeout: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let pool = self.home.pool();
        let mut unsent_retries = 0;
        let mut replayed = false;
        let mut first = true;
        loop {
            let reusable = if first {
                self.home.take().or_else(|| pool.checkout())
            } else {
                None // every retry goes out on a new connection
            };
            first = false;
            let mut conn = match reusable {
                Some(conn) => conn,
                None => tokio::time::timeout_at(deadline, pool.connect())
                    .await
                    .map_err(|_| UpstreamError::Timeout { timeout })??,
            };
            let failure = match conn.exchange(request, deadline, timeout).await {
                Ok(head) => return Ok(self.answer(conn, head, timeout)),
                Err(failure) if failure.timed_out => {
                    return Err(UpstreamError::Timeout { timeout })
                }
                Err(failure) => failure,
            };
            match failure.fate {
                // A body that was forwarded as it arrived is gone.
                _ if request.spent() => {
                    return Err(UpstreamError::Failed {
                        cause: failure.cause,
                    })
                }
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

    /// The response for an answer's head; its body is read from `conn`,
    /// which comes home once the body has ended.
    fn answer(
        &self,
        mut conn: Connection,
        head: AnswerHead,
        body_idle: Duration,
    ) -> Response<UpstreamBody> {
        conn.last_used = Instant::now();
        let AnswerHead {
            status,
            version,
            headers,
            framing,
            ..
        } = head;
        let body = UpstreamBody::new(conn, framing, self.home.clone(), body_idle);
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        response
    }
}
