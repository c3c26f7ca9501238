//! One upstream connection spoken to byte by byte: [`Connection::exchange`]
//! writes a judged request (head and body in one write when the body is
//! small) and reads the answer's head ([`super::response`]); the body is
//! then read from the same connection by [`super::body::UpstreamBody`], in
//! the client connection's own task. No task drives the connection and no
//! channel stands between the client connection and the upstream: a
//! request costs the reads and writes it needs and nothing else.
//!
//! To the upstream the gateway always speaks HTTP/1.1 (it is its own hop,
//! whatever version the client spoke), and the body's length is always the
//! `Content-Length` of the bytes that were judged.

use super::request::{StreamedBody, UpstreamRequest};
use super::response::{parse_head, AnswerError, AnswerHead};
use super::transport::{Fate, Meter, Probe};
use crate::lazy_timer::LazyTimer;
use bytes::BytesMut;
use http::header;
use http::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant as Deadline;

/// What an upstream connection runs on: TCP, or TLS over TCP (with the
/// byte counts of [`super::transport`] in both cases).
pub trait UpstreamIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpstreamIo for T {}

/// How much room a read asks for.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// A body up to this size is copied behind the head, so both leave in one
/// write; a larger one is written from its own buffer.
const COALESCE_BODY: usize = 16 * 1024;

/// One open upstream connection.
pub struct Connection {
    pub(super) io: Box<dyn UpstreamIo>,
    meter: Arc<Meter>,
    /// What was read and not yet taken: the rest of an answer.
    pub(super) read_buf: BytesMut,
    write_buf: Vec<u8>,
    /// When its last answer ended (or when it opened): the start of its
    /// idle time as the upstream's keep-alive timer would count it, or a
    /// little before.
    pub(super) last_used: Instant,
    /// Whether it has carried a request (a reused connection is checked
    /// before it carries another).
    used: bool,
    /// False once it must not carry another request: the upstream said
    /// close, an answer's framing was not plain, or an answer failed.
    pub(super) keep_alive: bool,
    /// The response timeout of its exchanges, armed lazily: from one
    /// request to the next it is not touched. An answer's body uses it for
    /// its stall timeout.
    pub(super) timer: LazyTimer,
}

/// A failed exchange: what its bytes say, and the cause for the log.
#[derive(Debug)]
pub struct Failure {
    pub fate: Fate,
    pub cause: String,
    /// No answer's head came before the deadline.
    pub timed_out: bool,
}

impl Connection {
    pub fn new(io: Box<dyn UpstreamIo>, meter: Arc<Meter>) -> Self {
        Connection {
            io,
            meter,
            read_buf: BytesMut::new(),
            write_buf: Vec::new(),
            last_used: Instant::now(),
            used: false,
            keep_alive: true,
            timer: LazyTimer::default(),
        }
    }

    /// Can carry another request: its last answer was read whole and left
    /// nothing behind, the upstream keeps it open, and it has not been idle
    /// for `idle_timeout`.
    pub fn reusable(&self, idle_timeout: Duration) -> bool {
        self.keep_alive && self.read_buf.is_empty() && self.last_used.elapsed() < idle_timeout
    }

    /// Sends `request` and reads the head of its answer (interim 1xx
    /// answers are skipped), all before `deadline`. The body, if any,
    /// starts in `read_buf`. On a reused connection the socket is checked
    /// right before the first byte is written (see [`super::transport`]).
    pub async fn exchange(
        &mut self,
        request: &UpstreamRequest,
        deadline: Deadline,
        timeout: Duration,
    ) -> Result<AnswerHead, Failure> {
        let mark = self.meter.mark();
        if self.used {
            // Only a request sent again when its connection breaks may skip
            // the `recv`; a streamed body is never sent again.
            let sent_again = request.is_idempotent() && request.streamed_body().is_none();
            self.meter.probe_before_next_write(if sent_again {
                Probe::IfSignalled
            } else {
                Probe::Always
            });
        }
        self.used = true;
        // Whatever happens next, this connection is done unless the
        // answer's head says otherwise.
        self.keep_alive = false;
        let talked = match request.streamed_body() {
            Some(streamed) => self.talk_streamed(request, streamed, timeout).await,
            None => {
                let mut timer = std::mem::take(&mut self.timer);
                let talked = tokio::select! {
                    biased;
                    talked = self.talk(request) => Some(talked),
                    () = timer.until(deadline) => None,
                };
                self.timer = timer;
                talked
            }
        };
        let failed = |cause: String, timed_out: bool| Failure {
            fate: self.meter.fate_since(mark),
            cause,
            timed_out,
        };
        match talked {
            Some(Ok(head)) => {
                self.keep_alive = head.keep_alive;
                Ok(head)
            }
            Some(Err(cause)) => Err(failed(cause, false)),
            None => Err(failed("no answer before the response timeout".into(), true)),
        }
    }

    /// Writes the request and reads its answer's head.
    async fn talk(&mut self, request: &UpstreamRequest) -> Result<AnswerHead, String> {
        if let Err(err) = self.write_request(request).await {
            return Err(format!("writing the request: {err}"));
        }
        self.read_answer_head(request).await
    }

    /// [`Self::talk`] for a body that arrives while it is written (`None`:
    /// timed out). The body takes the client's time, which the client
    /// connection's body timeouts bound; here no write may make no progress
    /// for `timeout` (an upstream that stopped reading), and the answer's
    /// head must come within `timeout` of the body's end.
    async fn talk_streamed(
        &mut self,
        request: &UpstreamRequest,
        streamed: &StreamedBody,
        timeout: Duration,
    ) -> Option<Result<AnswerHead, String>> {
        self.write_buf.clear();
        encode_head(&mut self.write_buf, request);
        match self.write_streamed(streamed, timeout).await {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::TimedOut => return None,
            Err(err) => return Some(Err(format!("writing the request: {err}"))),
        }
        tokio::time::timeout(timeout, self.read_answer_head(request))
            .await
            .ok()
    }

    /// Writes the head in `write_buf`, then the streamed body piece by
    /// piece as it arrives; each write within `stall`. The body is taken
    /// only once the head is out, so an attempt that wrote nothing leaves
    /// it for the next one.
    async fn write_streamed(
        &mut self,
        streamed: &StreamedBody,
        stall: Duration,
    ) -> std::io::Result<()> {
        use http_body_util::BodyExt;
        let stalled = |_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the upstream took no request bytes for the response timeout",
            )
        };
        tokio::time::timeout(stall, self.io.write_all(&self.write_buf))
            .await
            .map_err(stalled)??;
        let Some(mut body) = streamed.take() else {
            return Err(std::io::Error::other("the request body was already sent"));
        };
        let mut sent = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            let Ok(piece) = frame.into_data() else {
                continue;
            };
            sent += piece.len() as u64;
            tokio::time::timeout(stall, self.io.write_all(&piece))
                .await
                .map_err(stalled)??;
        }
        if sent != streamed.length() {
            return Err(std::io::Error::other(
                "the request body ended before its declared length",
            ));
        }
        tokio::time::timeout(stall, self.io.flush())
            .await
            .map_err(stalled)?
    }

    /// Reads the answer's head, skipping interim (1xx) answers.
    async fn read_answer_head(&mut self, request: &UpstreamRequest) -> Result<AnswerHead, String> {
        let head_request = request.method() == Method::HEAD;
        loop {
            let head = self.read_head(head_request).await?;
            if !head.is_interim() {
                return Ok(head);
            }
        }
    }

    async fn write_request(&mut self, request: &UpstreamRequest) -> std::io::Result<()> {
        let body = request.body();
        self.write_buf.clear();
        encode_head(&mut self.write_buf, request);
        if body.len() <= COALESCE_BODY {
            self.write_buf.extend_from_slice(body);
            self.io.write_all(&self.write_buf).await?;
        } else {
            self.io.write_all(&self.write_buf).await?;
            self.io.write_all(body).await?;
        }
        self.io.flush().await
    }

    /// Reads until a whole head is in the buffer, and parses it.
    async fn read_head(&mut self, head_request: bool) -> Result<AnswerHead, String> {
        loop {
            if !self.read_buf.is_empty() {
                match parse_head(&mut self.read_buf, head_request) {
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(err) => return Err(err.to_string()),
                }
            }
            self.read_buf.reserve(READ_CHUNK);
            match self.io.read_buf(&mut self.read_buf).await {
                Ok(0) if self.read_buf.is_empty() => {
                    return Err("the connection closed before any answer".into())
                }
                Ok(0) => {
                    return Err(AnswerError::MalformedHead(
                        "the connection closed within the head".into(),
                    )
                    .to_string())
                }
                Ok(_) => {}
                Err(err) => return Err(format!("reading the answer: {err}")),
            }
        }
    }
}

/// Appends the request line and headers of `request` to `out`: HTTP/1.1,
/// the headers as they are, except that the length is always the
/// `Content-Length` of the body that was judged (written when there is a
/// body, when the method carries one, or when the client sent a length).
pub(super) fn encode_head(out: &mut Vec<u8>, request: &UpstreamRequest) {
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut had_length = false;
    for (name, value) in request.headers() {
        if name == header::CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let length = request.body_len();
    let method_has_body = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    if had_length || length > 0 || method_has_body {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
