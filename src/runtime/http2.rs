//! One client connection as HTTP/2: hyper's server (the `h2` crate
//! underneath), reached with ALPN `h2` over TLS or, when
//! `http2_cleartext` is on, with prior knowledge without TLS.
//!
//! Every stream is one request for [`Gateway::handle`], handled the way
//! the HTTP/1.1 server ([`super::connection`]) handles its requests:
//!
//! * judged by the policy in force when its head arrived ([`Arrived`]),
//!   with the connection's facts ([`ClientConnection`]);
//! * at most `limits.max_header_count` header fields (431), no expectation
//!   but `100-continue` (417); cookies sent as several fields (RFC 9113
//!   §8.2.3) joined into one `Cookie` header, as an HTTP/1.1 upstream reads
//!   it;
//! * its body read whole before anything judges it, within
//!   `limits.max_body_bytes` (413) and the body timeouts (408) — except an
//!   upload to the object storage with a `content-length`, forwarded while
//!   it arrives, as over HTTP/1.1 (`super::connection`);
//! * refusals answered with a JSON:API error, logged and counted as the
//!   HTTP/1.1 server's are.
//!
//! What HTTP/2 itself needs, from hyper and `h2` (`limits.http2`): the
//! number of concurrent streams, the size of a header list (431, and a
//! connection far over it is closed), rapid reset (CVE-2023-44487: streams
//! reset by the client before they were accepted, `GOAWAY` past
//! `max_pending_accept_reset_streams`), streams reset for the client's
//! errors (CVE-2025-8671, `max_local_error_reset_streams`), CONTINUATION
//! floods (bounded by `h2` ≥ 0.4.4: a header block in more frames than its
//! size allows is a `GOAWAY`), connection-specific header fields
//! (`Connection`, `Transfer-Encoding`, `Keep-Alive`, `Upgrade`,
//! `Proxy-Connection`, `TE` other than `trailers`: the stream is reset as
//! malformed), and keep-alive pings.
//!
//! What this module adds around hyper, per connection:
//!
//! * **idle**: a connection with no stream in flight is closed with
//!   `GOAWAY` after `limits.keep_alive_timeout_ms` (its first stream must
//!   come within `limits.header_read_timeout_ms`);
//! * **write timeout**: a response whose data the client does not take
//!   (flow control held shut) for `limits.write_timeout_ms` closes the
//!   connection, which frees the upstream connection behind it;
//! * **drain** ([`Phase::Closing`]): `GOAWAY`, then the streams in flight
//!   finish; the listener closes what is still open when the grace period
//!   ends;
//! * **upstream connections**: a stream borrows one of the connection's
//!   upstream leases (or a new one) and gives it back once its response
//!   has been sent, so concurrent streams never share an upstream
//!   connection and sequential ones reuse it.

use super::connection::streamed_upload;
use super::connection::Phase;
use crate::body::{ChannelBody, ServerBody, StreamedLength};
use crate::canonical::canonicalize;
use crate::config;
use crate::context::{Arrived, ClientConnection, RequestContext};
use crate::gateway::Gateway;
use crate::http1::{self, HttpError, TimeoutKind};
use crate::observe;
use crate::proxy::object_storage;
use crate::proxy::GatewayBody;
use crate::rejection::error_response;
use crate::upstream::headers::ClientProto;
use crate::upstream::UpstreamLease;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

/// After the gateway sent `GOAWAY` to an idle connection, how long the
/// client has to close it before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How HTTP/2 connections are served: hyper's builder, set up once from
/// the config, and the limits shared with HTTP/1.1.
pub struct Settings {
    builder: hyper::server::conn::http2::Builder<TokioExecutor>,
    limits: http1::Limits,
}

impl Settings {
    pub fn new(limits: &config::Limits) -> Settings {
        let http2 = &limits.http2;
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(http2.max_concurrent_streams)
            .max_header_list_size(http2.max_header_list_bytes)
            .max_pending_accept_reset_streams(http2.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(http2.max_local_error_reset_streams)
            .keep_alive_interval(http2.keep_alive_interval)
            .keep_alive_timeout(http2.keep_alive_timeout);
        Settings {
            builder,
            limits: super::connection::limits(limits),
        }
    }
}

/// Serves one HTTP/2 connection until it closes (see the module docs).
pub async fn serve<S>(
    io: S,
    client: ClientConnection,
    client_addr: SocketAddr,
    gateway: Arc<Gateway>,
    settings: &Settings,
    mut phase: watch::Receiver<Phase>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let streams = Arc::new(Streams {
        gateway,
        client,
        client_addr,
        limits: settings.limits.clone(),
        leases: Mutex::new(Vec::new()),
        watch: Mutex::new(Watch::new(Instant::now())),
    });
    let service = {
        let streams = streams.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let streams = streams.clone();
            async move { Ok::<_, std::convert::Infallible>(streams.answer(request).await) }
        })
    };
    let connection = settings.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing_since: Option<Instant> = None;
    let mut check_at = Instant::now();
    loop {
        if closing_since.is_none() && *phase.borrow() == Phase::Closing {
            connection.as_mut().graceful_shutdown();
            closing_since = Some(Instant::now());
            check_at = Instant::now();
        }
        tokio::select! {
            biased;
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(error = %err, %client_addr, "HTTP/2 connection ended with an error");
                }
                return;
            }
            changed = phase.changed(), if closing_since.is_none() => {
                // An error: the server is gone; drain as well.
                if changed.is_err() {
                    connection.as_mut().graceful_shutdown();
                    closing_since = Some(Instant::now());
                    check_at = Instant::now();
                }
            }
            () = tokio::time::sleep_until(check_at) => {
                let now = Instant::now();
                let verdict = streams.watch().check(now, &streams.limits, closing_since);
                match verdict {
                    Verdict::Next(at) => check_at = at,
                    Verdict::Idle { first } => {
                        if first {
                            streams.gateway.metrics.timeout(TimeoutKind::Header.as_str());
                        }
                        connection.as_mut().graceful_shutdown();
                        closing_since = Some(now);
                        check_at = now + CLOSE_GRACE;
                    }
                    Verdict::Close => return,
                    Verdict::Stalled => {
                        streams.gateway.metrics.timeout(TimeoutKind::Write.as_str());
                        tracing::debug!(%client_addr, "HTTP/2 client took no response data within the write timeout; closing");
                        return;
                    }
                }
            }
        }
    }
}

/// What a connection's streams share.
struct Streams {
    gateway: Arc<Gateway>,
    client: ClientConnection,
    client_addr: SocketAddr,
    limits: http1::Limits,
    /// Upstream leases not in use by a stream.
    leases: Mutex<Vec<UpstreamLease>>,
    watch: Mutex<Watch>,
}

impl Streams {
    fn watch(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one stream (see the module docs).
    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Response<StreamBody> {
        let id = self.watch().begin();
        let held = Held {
            streams: self.clone(),
            lease: None,
            id,
        };
        let (mut parts, body) = request.into_parts();
        let head_request = parts.method == Method::HEAD;
        parts.extensions.insert(Arrived {
            at: std::time::Instant::now(),
            policy: self.gateway.live.policy(),
        });
        if self.client.tls {
            parts.extensions.insert(ClientProto::Https);
        }
        if let Err(err) = self.check_head(&mut parts) {
            let response = self.refuse(err, &parts);
            return StreamBody::new(response, head_request, held);
        }
        // A stream its head already refuses gets its answer before a byte
        // of its body is read (see `proxy::admit`).
        if !hyper::body::Body::is_end_stream(&body) {
            let admitted = self
                .gateway
                .admit_before_body(&mut parts, self.client_addr)
                .await;
            if let Some(response) = admitted {
                return StreamBody::new(response, head_request, held);
            }
        }
        let declared = declared_length(&parts.headers);
        let streamed = streamed_upload(&self.gateway, &parts, declared);
        let body = match streamed {
            // An upload is forwarded while it arrives, as over HTTP/1.1.
            Some(length) => {
                let limit = self.gateway.config.upstream.object_storage.max_upload_bytes;
                if length > limit {
                    let response = self.refuse(HttpError::BodyTooLarge { limit }, &parts);
                    return StreamBody::new(response, head_request, held);
                }
                parts.extensions.insert(StreamedLength(length));
                Streamed::Upload(body, length)
            }
            None => match read_body(body, &parts.headers, &self.limits).await {
                Ok(body) => Streamed::Whole(body),
                Err(err) => {
                    let response = self.refuse(err, &parts);
                    return StreamBody::new(response, head_request, held);
                }
            },
        };
        let mut held = held;
        let lease = self
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| self.gateway.forwarder.lease());
        let lease: &UpstreamLease = held.lease.insert(lease);
        let response = match body {
            Streamed::Whole(body) => {
                let request = Request::from_parts(parts, ServerBody::Left(Full::new(body)));
                self.gateway.handle(request, self.client_addr, lease).await
            }
            Streamed::Upload(body, length) => {
                let (sink, pieces) = ChannelBody::new(length);
                let request = Request::from_parts(parts, ServerBody::Right(pieces));
                let overall = self.gateway.config.upstream.object_storage.upload_grant_ttl;
                let (response, streamed) = tokio::join!(
                    self.gateway.handle(request, self.client_addr, lease),
                    stream_body(body, length, &self.limits, overall, sink),
                );
                if let Err(HttpError::Timeout(kind)) = streamed {
                    self.gateway.metrics.timeout(kind.as_str());
                }
                response
            }
        };
        StreamBody::new(response, head_request, held)
    }

    /// The checks the HTTP/1.1 server makes on a head, and the `Cookie`
    /// fields joined.
    fn check_head(&self, parts: &mut http::request::Parts) -> Result<(), HttpError> {
        let limit = self.limits.max_header_count;
        if parts.headers.len() > limit {
            return Err(HttpError::TooManyHeaders { limit });
        }
        for expectation in parts.headers.get_all(header::EXPECT) {
            if !expectation.as_bytes().eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::ExpectationFailed);
            }
        }
        join_cookies(&mut parts.headers);
        Ok(())
    }

    /// Answers a request the server refuses itself; logged and counted
    /// like the HTTP/1.1 server's refusals.
    fn refuse(&self, err: HttpError, parts: &http::request::Parts) -> Response<GatewayBody> {
        let gateway = &self.gateway;
        let status = err.status();
        gateway.metrics.http_error(err.reason());
        if let HttpError::Timeout(kind) = err {
            gateway.metrics.timeout(kind.as_str());
        }
        let method = parts.method.clone();
        let mut ctx = match parts.extensions.get::<Arrived>() {
            Some(arrived) => RequestContext::arrived(method, self.client_addr, arrived.clone()),
            None => gateway.new_ctx(method, self.client_addr),
        };
        ctx.facts.path = canonicalize(parts.uri.path()).ok();
        object_storage::hide_signed_key(&gateway.config.upstream.object_storage, &mut ctx);
        let detail = err.to_string();
        ctx.record.denial = Some(detail.clone());
        observe::finish(&ctx, status, &gateway.metrics);
        error_response(status, &detail, None).map(Either::Right)
    }

    /// A stream's response is over (sent, or dropped): its lease goes back.
    fn finished(&self, id: u64, lease: Option<UpstreamLease>) {
        if let Some(lease) = lease {
            self.leases
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(lease);
        }
        self.watch().end(id, Instant::now());
    }
}

/// Joins the `Cookie` fields of an HTTP/2 request into one, with `; `
/// (RFC 9113 §8.2.3), before it goes to an HTTP/1.1 upstream.
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut crumbs = headers.get_all(header::COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for crumb in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    // Every part was a valid value; so is their join.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// A stream's request body as the gateway gets it.
enum Streamed {
    /// Read whole.
    Whole(Bytes),
    /// An upload of this many bytes, forwarded while it arrives.
    Upload(Incoming, u64),
}

/// The `Content-Length` a request declares, when it is a valid one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Hands an upload's body of `length` bytes to `sink` piece by piece as
/// its frames arrive: each within the between-bytes timeout, the whole
/// within `overall`. Stops as soon as the receiving side is gone (the
/// request was answered without the rest of its body; dropping the body
/// then resets the stream). An error leaves the body short of its length,
/// so the upstream never takes it for a whole upload.
async fn stream_body(
    mut body: Incoming,
    length: u64,
    limits: &http1::Limits,
    overall: Duration,
    sink: tokio::sync::mpsc::Sender<Bytes>,
) -> Result<(), HttpError> {
    let overall = Instant::now() + overall;
    let mut received = 0u64;
    while received < length {
        let idle = Instant::now() + limits.body_idle_timeout;
        let frame = tokio::select! {
            biased;
            () = sink.closed() => return Ok(()),
            frame = tokio::time::timeout_at(overall.min(idle), body.frame()) => frame,
        };
        let data = match frame {
            Err(_) => {
                let kind = TimeoutKind::of_body(overall);
                return Err(HttpError::Timeout(kind));
            }
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Ok(None | Some(Err(_))) => {
                return Err(HttpError::BadRequest {
                    reason: "incomplete",
                    detail: "the stream ended before the request body did",
                })
            }
        };
        received += data.len() as u64;
        if received > length || sink.send(data).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Reads a whole request body within the size limit and the body timeouts
/// (see [`http1::Limits`]).
async fn read_body(
    mut body: Incoming,
    headers: &http::HeaderMap,
    limits: &http1::Limits,
) -> Result<Bytes, HttpError> {
    let limit = limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(HttpError::BodyTooLarge { limit });
    }
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let overall = Instant::now() + limits.body_read_timeout;
    let mut whole = BytesMut::new();
    loop {
        let idle = Instant::now() + limits.body_idle_timeout;
        let frame = match tokio::time::timeout_at(overall.min(idle), body.frame()).await {
            Ok(frame) => frame,
            Err(_) => {
                let kind = TimeoutKind::of_body(overall);
                return Err(HttpError::Timeout(kind));
            }
        };
        match frame {
            None => return Ok(whole.freeze()),
            Some(Err(_)) => {
                return Err(HttpError::BadRequest {
                    reason: "incomplete",
                    detail: "the stream ended before the request body did",
                })
            }
            Some(Ok(frame)) => {
                // Trailers are not forwarded: the body goes on whole, with
                // its length.
                if let Ok(data) = frame.into_data() {
                    if whole.len() as u64 + data.len() as u64 > limit {
                        return Err(HttpError::BodyTooLarge { limit });
                    }
                    whole.extend_from_slice(&data);
                }
            }
        }
    }
}

/// A stream's response body: the gateway's answer (nothing of it for a
/// `HEAD`), reporting to the connection's watch whether the client takes
/// its data, and holding the stream's upstream lease until it is sent.
pub struct StreamBody {
    inner: GatewayBody,
    head_request: bool,
    held: Held,
}

impl StreamBody {
    fn new(response: Response<GatewayBody>, head_request: bool, held: Held) -> Response<Self> {
        response.map(|inner| {
            // Data to send: until hyper asks for it, the client holds it up
            // (a window of zero never lets hyper ask at all).
            if !head_request && !inner.is_end_stream() {
                held.streams.watch().progress(held.id, true, Instant::now());
            }
            StreamBody {
                inner,
                head_request,
                held,
            }
        })
    }
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.head_request {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let handed = matches!(&polled, Poll::Ready(Some(Ok(frame))) if frame.is_data());
        this.held
            .streams
            .watch()
            .progress(this.held.id, handed, Instant::now());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.head_request || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.head_request {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

/// What a stream holds until its response is over.
struct Held {
    streams: Arc<Streams>,
    lease: Option<UpstreamLease>,
    id: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.streams.finished(self.id, self.lease.take());
    }
}

/// The connection's streams as the idle and write timeouts see them.
struct Watch {
    in_flight: usize,
    /// When the last stream ended (or the connection started).
    idle_since: Instant,
    /// No stream has arrived yet.
    first: bool,
    /// Streams whose response handed data to hyper and was not asked for
    /// more since: id → when. One that stays here past the write timeout
    /// has a client that does not take its data.
    awaiting_client: HashMap<u64, Instant>,
    next_id: u64,
}

/// What the connection should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing; check again then.
    Next(Instant),
    /// No stream for the idle timeout (`first`: not even one): `GOAWAY`.
    Idle { first: bool },
    /// Closing, idle, and the client has not closed: drop the connection.
    Close,
    /// A response has waited for the client longer than the write timeout.
    Stalled,
}

impl Watch {
    fn new(now: Instant) -> Watch {
        Watch {
            in_flight: 0,
            idle_since: now,
            first: true,
            awaiting_client: HashMap::new(),
            next_id: 0,
        }
    }

    fn begin(&mut self) -> u64 {
        self.in_flight += 1;
        self.first = false;
        self.next_id += 1;
        self.next_id
    }

    fn progress(&mut self, id: u64, handed_data: bool, now: Instant) {
        if handed_data {
            self.awaiting_client.insert(id, now);
        } else {
            self.awaiting_client.remove(&id);
        }
    }

    fn end(&mut self, id: u64, now: Instant) {
        self.awaiting_client.remove(&id);
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.idle_since = now;
        }
    }

    fn check(
        &self,
        now: Instant,
        limits: &http1::Limits,
        closing_since: Option<Instant>,
    ) -> Verdict {
        let stall_at = self
            .awaiting_client
            .values()
            .min()
            .map(|since| *since + limits.write_timeout);
        if stall_at.is_some_and(|at| now >= at) {
            return Verdict::Stalled;
        }
        let next = if self.in_flight > 0 {
            // Streams run; come back for a stall, or to see them end.
            now + limits.write_timeout.min(limits.keep_alive_timeout) / 2
        } else if let Some(since) = closing_since {
            let close_at = since.max(self.idle_since) + CLOSE_GRACE;
            if now >= close_at {
                return Verdict::Close;
            }
            close_at
        } else {
            let idle_for = if self.first {
                limits.header_read_timeout
            } else {
                limits.keep_alive_timeout
            };
            let idle_at = self.idle_since + idle_for;
            if now >= idle_at {
                return Verdict::Idle { first: self.first };
            }
            idle_at
        };
        Verdict::Next(stall_at.map_or(next, |at| at.min(next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> http1::Limits {
        http1::Limits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            ..http1::Limits::default()
        }
    }

    #[test]
    fn an_idle_connection_gets_goaway_after_the_idle_timeout_then_is_closed() {
        let start = Instant::now();
        let s = Duration::from_secs;
        let mut watch = Watch::new(start);
        let limits = limits();
        assert_eq!(
            watch.check(start, &limits, None),
            Verdict::Next(start + s(10))
        );
        assert_eq!(
            watch.check(start + s(10), &limits, None),
            Verdict::Idle { first: true }
        );
        let id = watch.begin();
        assert_eq!(
            watch.check(start + s(11), &limits, None),
            Verdict::Next(start + s(11) + s(15))
        );
        watch.end(id, start + s(12));
        assert_eq!(
            watch.check(start + s(13), &limits, None),
            Verdict::Next(start + s(72))
        );
        assert_eq!(
            watch.check(start + s(72), &limits, None),
            Verdict::Idle { first: false }
        );
        let closing = Some(start + s(72));
        assert_eq!(
            watch.check(start + s(72), &limits, closing),
            Verdict::Next(start + s(73))
        );
        assert_eq!(watch.check(start + s(73), &limits, closing), Verdict::Close);
    }

    #[test]
    fn a_response_the_client_does_not_take_stalls_after_the_write_timeout() {
        let start = Instant::now();
        let s = Duration::from_secs;
        let limits = limits();
        let mut watch = Watch::new(start);
        let id = watch.begin();
        watch.progress(id, true, start + s(1));
        assert_eq!(
            watch.check(start + s(2), &limits, None),
            Verdict::Next(start + s(2) + s(15))
        );
        // Asked for more: progress.
        watch.progress(id, true, start + s(20));
        assert_eq!(
            watch.check(start + s(31), &limits, None),
            Verdict::Next(start + s(31) + s(15))
        );
        // Waiting for the upstream is not the client's fault.
        watch.progress(id, false, start + s(40));
        assert!(matches!(
            watch.check(start + s(100), &limits, None),
            Verdict::Next(_)
        ));
        watch.progress(id, true, start + s(101));
        assert_eq!(watch.check(start + s(131), &limits, None), Verdict::Stalled);
        watch.end(id, start + s(132));
        assert!(matches!(
            watch.check(start + s(133), &limits, None),
            Verdict::Next(_)
        ));
    }

    #[test]
    fn cookie_fields_are_joined_as_rfc_9113_says() {
        let mut headers = http::HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        join_cookies(&mut headers);
        assert_eq!(headers[header::COOKIE], "a=1");
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut headers);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "a=1; b=2; c=3");
    }
}
