//! One client connection, start to end: wait for a request (the keep-alive
//! idle timeout between requests), read its head and its whole body within
//! the limits ([`crate::http1`]), hand it to [`Gateway::handle`], write the
//! answer, and go on with the next one (pipelined requests are answered in
//! order). The gateway judges whole bodies: a body is read completely before
//! anything else sees the request — except an upload to the object storage
//! with a `Content-Length`, opaque bytes no rule reads, which goes upstream
//! while it arrives once its head is judged and its URL checked (within
//! `upstream.object_storage.max_upload_bytes`, each read within the body's
//! between-bytes timeout, the whole within the URL's `upload_grant_ttl`).
//!
//! Every request the server refuses itself (400, 408, 413, 417, 431, 505)
//! gets a JSON:API error document, is written to the access log and counted
//! (`tokengate_http_errors_total`, `tokengate_timeouts_total`), and closes
//! the connection.
//!
//! Draining ([`Phase::Closing`]): a request in flight is answered with
//! `Connection: close`; an idle connection is closed only between requests,
//! once it has been quiet for [`DRAIN_IDLE_QUIET`] (a client that sends
//! continuously gets its next answer with `Connection: close` instead of a
//! close under its feet).

use crate::body::{ChannelBody, ServerBody, StreamedLength};
use crate::canonical::canonicalize;
use crate::config;
use crate::context::{Arrived, ClientConnection};
use crate::gateway::Gateway;
use crate::http1::response::Answering;
use crate::http1::{
    self, Arrival, Framing, HttpError, ReadError, StreamError, Transport, WriteError,
};
use crate::observe;
use crate::proxy::admit::PreAuthenticated;
use crate::proxy::object_storage;
use crate::rejection::error_response;
use crate::upstream::headers::ClientProto;
use crate::upstream::UpstreamLease;
use http::{header, HeaderValue, Method, Request, Version};
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the server is in its life; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// The listeners drain their accept queues and close.
    StopAccepting,
    /// Every listener is closed: connections answer with
    /// `Connection: close` and idle ones are closed.
    Closing,
}

/// While draining, an idle connection is closed once it has had no request
/// for this long: a client about to send its next request gets it answered.
pub const DRAIN_IDLE_QUIET: Duration = Duration::from_secs(1);

/// After a response that closes the connection, what the client still
/// sends is read and dropped for up to this long, so that closing with
/// unread bytes (a reset) does not destroy the response before it is read.
const LINGER: Duration = Duration::from_secs(1);

/// The connection limits of a config.
pub fn limits(limits: &config::Limits) -> http1::Limits {
    http1::Limits {
        max_head_bytes: limits.max_header_bytes,
        max_header_count: limits.max_header_count,
        max_body_bytes: limits.max_body_bytes,
        header_read_timeout: limits.header_read_timeout,
        keep_alive_timeout: limits.keep_alive_timeout,
        body_read_timeout: limits.body_read_timeout,
        body_idle_timeout: limits.body_idle_timeout,
        write_timeout: limits.write_timeout,
    }
}

/// Serves one plain client connection until it closes (see the module
/// docs).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    client_addr: SocketAddr,
    gateway: &Gateway,
    upstream: &UpstreamLease,
    limits: http1::Limits,
    phase: watch::Receiver<Phase>,
) {
    let client = ClientConnection::default();
    serve_client(io, client, client_addr, gateway, upstream, limits, phase).await;
}

/// Serves one client connection made as `client` says (over TLS or not)
/// until it closes; over TLS every request carries [`ClientProto::Https`]
/// in its extensions (nothing is added on plain HTTP: that is the default).
pub async fn serve_client<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    client: ClientConnection,
    client_addr: SocketAddr,
    gateway: &Gateway,
    upstream: &UpstreamLease,
    limits: http1::Limits,
    mut phase: watch::Receiver<Phase>,
) {
    let mut transport = Transport::new(io, limits);
    let mut first = true;
    let mut idle_since = Instant::now();
    loop {
        // A new connection must send its first byte within the header-read
        // timeout; between requests, the keep-alive timeout applies.
        let limits = transport.limits();
        let deadline = idle_since
            + if first {
                limits.header_read_timeout
            } else {
                limits.keep_alive_timeout
            };
        let arrival = tokio::select! {
            biased;
            arrival = transport.wait_for_request(deadline) => arrival,
            () = drain_idle(&mut phase, idle_since) => return,
        };
        match arrival {
            Arrival::Request => {}
            Arrival::Closed => return,
            Arrival::Idle => {
                if first {
                    gateway.metrics.timeout(http1::TimeoutKind::Header.as_str());
                }
                return;
            }
        }
        first = false;

        let head = match transport.read_head().await {
            Ok(head) => head,
            Err(ReadError::Http(err)) => {
                return refuse(&mut transport, gateway, client_addr, err, None).await;
            }
            Err(ReadError::Closed) => return,
        };
        let (mut parts, ()) = head.request.into_parts();
        // Judged by the policy in force when its head arrived.
        parts.extensions.insert(Arrived {
            at: std::time::Instant::now(),
            policy: gateway.live.policy(),
        });
        if client.tls {
            parts.extensions.insert(ClientProto::Https);
        }
        let answering = Answering {
            head_request: parts.method == Method::HEAD,
            version: parts.version,
            close: false,
        };
        // A request its head already refuses gets no `100 Continue`, and
        // its body is not read: the answer, then the connection closes.
        if !matches!(head.framing, Framing::Empty | Framing::Length(0)) {
            if let Some(response) = gateway.admit_before_body(&mut parts, client_addr).await {
                let close = Answering {
                    close: true,
                    ..answering
                };
                return match transport.write_response(response, close).await {
                    Ok(_) => transport.linger(LINGER).await,
                    Err(err) => write_failed(gateway, client_addr, &err),
                };
            }
        }
        let declared = match head.framing {
            Framing::Length(length) => Some(length),
            Framing::Empty | Framing::Chunked => None,
        };
        let (response, body_left_unread) = match streamed_upload(gateway, &parts, declared) {
            // An upload is forwarded while it arrives: its size is bounded,
            // the memory it holds is a few pieces.
            Some(length) => {
                let limit = gateway.config.upstream.object_storage.max_upload_bytes;
                if length > limit {
                    let err = HttpError::BodyTooLarge { limit };
                    return refuse(&mut transport, gateway, client_addr, err, Some(&parts)).await;
                }
                let (sink, body) = ChannelBody::new(length);
                parts.extensions.insert(StreamedLength(length));
                let request = Request::from_parts(parts, ServerBody::Right(body));
                // An upload may take as long as its URL is good for.
                let overall = gateway.config.upstream.object_storage.upload_grant_ttl;
                let (response, streamed) = tokio::join!(
                    gateway.handle(request, client_addr, upstream),
                    transport.stream_body(length, head.expect_continue, overall, sink),
                );
                if let Err(StreamError::Read(ReadError::Http(HttpError::Timeout(kind)))) = &streamed
                {
                    gateway.metrics.timeout(kind.as_str());
                }
                (response, streamed.is_err())
            }
            None => {
                let body = match transport
                    .read_body(head.framing, head.expect_continue)
                    .await
                {
                    Ok(body) => body,
                    Err(ReadError::Http(err)) => {
                        return refuse(&mut transport, gateway, client_addr, err, Some(&parts))
                            .await;
                    }
                    Err(ReadError::Closed) => return,
                };
                if head.framing == Framing::Chunked {
                    // The body was read whole: it goes on with its length.
                    parts.headers.remove(header::TRANSFER_ENCODING);
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                }
                let request = Request::from_parts(parts, ServerBody::Left(Full::new(body)));
                (gateway.handle(request, client_addr, upstream).await, false)
            }
        };
        // A body not read to its end leaves nothing to read the next
        // request from.
        let close = body_left_unread || !head.keep_alive || *phase.borrow() == Phase::Closing;
        match transport
            .write_response(response, Answering { close, ..answering })
            .await
        {
            Ok(false) => {}
            Ok(true) => return transport.linger(LINGER).await,
            Err(err) => return write_failed(gateway, client_addr, &err),
        }
        idle_since = Instant::now();
    }
}

/// The declared length of a body to forward while it arrives: an upload
/// to the object storage (by the canonical path its head was judged by)
/// with a `Content-Length` (`declared`). A chunked upload is read whole,
/// within `limits.max_body_bytes`, like any other body. Both servers ask.
pub(super) fn streamed_upload(
    gateway: &Gateway,
    parts: &http::request::Parts,
    declared: Option<u64>,
) -> Option<u64> {
    let length = declared.filter(|&length| length > 0)?;
    let storage = &gateway.config.upstream.object_storage;
    parts
        .extensions
        .get::<PreAuthenticated>()
        .and_then(|found| found.head.as_ref())
        .is_some_and(|(path, _)| object_storage::is_upload(storage, &parts.method, path.as_str()))
        .then_some(length)
}

/// Completes when the server drains and this idle connection has been quiet
/// for [`DRAIN_IDLE_QUIET`].
async fn drain_idle(phase: &mut watch::Receiver<Phase>, idle_since: Instant) {
    // An error: the server is gone; close as well.
    let _ = phase.wait_for(|phase| *phase == Phase::Closing).await;
    tokio::time::sleep_until(idle_since + DRAIN_IDLE_QUIET).await;
}

/// Answers a request the server refuses itself, logs and counts it, and
/// closes the connection. `request` is its head, when it was read.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    transport: &mut Transport<S>,
    gateway: &Gateway,
    client_addr: SocketAddr,
    err: HttpError,
    request: Option<&http::request::Parts>,
) {
    let status = err.status();
    gateway.metrics.http_error(err.reason());
    if let HttpError::Timeout(kind) = err {
        gateway.metrics.timeout(kind.as_str());
    }
    let method = request.map_or_else(unknown_method, |parts| parts.method.clone());
    let head_request = method == Method::HEAD;
    let mut ctx = gateway.new_ctx(method, client_addr);
    ctx.facts.path = request.and_then(|parts| canonicalize(parts.uri.path()).ok());
    object_storage::hide_signed_key(&gateway.config.upstream.object_storage, &mut ctx);
    let detail = err.to_string();
    ctx.record.denial = Some(detail.clone());
    observe::finish(&ctx, status, &gateway.metrics);
    let answering = Answering {
        head_request,
        version: request.map_or(Version::HTTP_11, |parts| parts.version),
        close: true,
    };
    match transport
        .write_response(error_response(status, &detail, None), answering)
        .await
    {
        Ok(_) => transport.linger(LINGER).await,
        Err(err) => write_failed(gateway, client_addr, &err),
    }
}

/// The method logged for a request whose head could not be read.
fn unknown_method() -> Method {
    Method::from_bytes(b"-").unwrap_or_default()
}

fn write_failed(gateway: &Gateway, client_addr: SocketAddr, err: &WriteError) {
    if let WriteError::Timeout(_) = err {
        gateway.metrics.timeout(http1::TimeoutKind::Write.as_str());
    }
    tracing::debug!(error = %err, %client_addr, "connection closed while writing a response");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_whose_head_was_not_read_is_logged_with_method_dash() {
        assert_eq!(unknown_method().as_str(), "-");
    }

    #[test]
    fn the_config_limits_are_the_connection_limits() {
        let config = crate::config::Config::from_yaml(
            "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\nlimits: { max_header_bytes: 9000, max_header_count: 7, max_body_bytes: 5, header_read_timeout_ms: 101, keep_alive_timeout_ms: 102, body_read_timeout_ms: 103, body_idle_timeout_ms: 104, write_timeout_ms: 105 }\n",
            std::path::Path::new("."),
        )
        .unwrap();
        let ms = Duration::from_millis;
        assert_eq!(
            limits(&config.limits),
            http1::Limits {
                max_head_bytes: 9000,
                max_header_count: 7,
                max_body_bytes: 5,
                header_read_timeout: ms(101),
                keep_alive_timeout: ms(102),
                body_read_timeout: ms(103),
                body_idle_timeout: ms(104),
                write_timeout: ms(105),
            }
        );
    }
}
