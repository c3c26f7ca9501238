//! One connection's stream, read buffer, write buffer and timer: reads
//! heads and bodies within the limits, writes responses. Generic over the
//! stream, so TLS can wrap it later.
//!
//! The read buffer is reused from request to request: a head and a
//! `Content-Length` body are split off it without copying, and its memory is
//! reused once they are dropped. One timer serves every timeout of the
//! connection, armed lazily ([`LazyTimer`]): between keep-alive requests it
//! is not touched at all, and a write that the socket takes at once never
//! arms it.

use super::chunked::ChunkedDecoder;
use super::head::{self, HeadScanner, RequestHead};
use super::response::{self, Answering, BodyOut};
use super::{Framing, HttpError, Limits, TimeoutKind};
use crate::lazy_timer::LazyTimer;
use bytes::{Bytes, BytesMut};
use http::Response;
use http_body::Body;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// The read buffer starts (and is brought back to) this size.
const INITIAL_BUFFER: usize = 8 * 1024;

/// Each read asks for at least this much room.
const READ_CHUNK: usize = 8 * 1024;

/// A body larger than this leaves a large buffer behind: it is let go.
const SHRINK_AFTER: usize = 256 * 1024;

/// Body bytes up to this size are copied behind the head (or the chunk
/// size line) and written with it; larger ones are written on their own.
const COALESCE: usize = 16 * 1024;

/// Why a read ended without a request to answer.
#[derive(Debug)]
pub enum ReadError {
    /// Refused: answer with this error, then close.
    Http(HttpError),
    /// The connection failed (reset); nothing can be answered.
    Closed,
}

/// Why a streamed body ([`Transport::stream_body`]) ended before all of it
/// was handed on.
#[derive(Debug)]
pub enum StreamError {
    /// Reading it failed or timed out.
    Read(ReadError),
    /// The receiving side went away first.
    Abandoned,
}

impl From<HttpError> for ReadError {
    fn from(err: HttpError) -> Self {
        ReadError::Http(err)
    }
}

/// What happened while waiting for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A byte of the next request is in the buffer.
    Request,
    /// The client closed the connection (or it failed).
    Closed,
    /// Nothing arrived before the deadline.
    Idle,
}

/// Why a response could not be written whole. The connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the client read nothing for {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("writing the response failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the response body failed: {0}")]
    Body(String),
    #[error("the response body did not match its Content-Length")]
    Length,
}

enum Fill {
    Read(usize),
    Timeout,
}

/// One client connection, as HTTP/1.1.
pub struct Transport<S> {
    io: S,
    buf: BytesMut,
    scanner: HeadScanner,
    timer: LazyTimer,
    out: Vec<u8>,
    limits: Limits,
    /// The buffer grew for a large body; let it go between requests.
    shrink: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport<S> {
    pub fn new(io: S, limits: Limits) -> Self {
        Transport {
            io,
            buf: BytesMut::with_capacity(INITIAL_BUFFER),
            scanner: HeadScanner::default(),
            timer: LazyTimer::default(),
            out: Vec::with_capacity(1024),
            limits,
            shrink: false,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes received and not yet consumed (the start of a next request).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads into the buffer, up to `deadline`. `Read(0)`: the peer closed.
    async fn fill(&mut self, deadline: Instant, room: usize) -> std::io::Result<Fill> {
        self.buf.reserve(room.max(64));
        tokio::select! {
            biased;
            read = self.io.read_buf(&mut self.buf) => read.map(Fill::Read),
            () = self.timer.until(deadline) => Ok(Fill::Timeout),
        }
    }

    /// Waits for the first byte of the next request, until `deadline`.
    /// Cancel-safe: nothing read is lost when the future is dropped.
    pub async fn wait_for_request(&mut self, deadline: Instant) -> Arrival {
        if !self.buf.is_empty() {
            return Arrival::Request;
        }
        if std::mem::take(&mut self.shrink) {
            self.buf = BytesMut::with_capacity(INITIAL_BUFFER);
        }
        match self.fill(deadline, READ_CHUNK).await {
            Ok(Fill::Read(0)) | Err(_) => Arrival::Closed,
            Ok(Fill::Read(_)) => Arrival::Request,
            Ok(Fill::Timeout) => Arrival::Idle,
        }
    }

    /// Reads the rest of a head (within the header-read timeout, counted
    /// from now) and parses it.
    pub async fn read_head(&mut self) -> Result<RequestHead, ReadError> {
        let deadline = Instant::now() + self.limits.header_read_timeout;
        let max = self.limits.max_head_bytes;
        loop {
            let scanned = self
                .scanner
                .scan(&self.buf, max, self.limits.max_header_count);
            match scanned {
                Ok(Some(bounds)) => {
                    self.scanner = HeadScanner::default();
                    let bytes = self.buf.split_to(bounds.end).freeze();
                    return Ok(head::parse(&bytes, bounds)?);
                }
                Ok(None) => {}
                Err(err) => return Err(err.into()),
            }
            let room = (max - self.buf.len()).min(READ_CHUNK);
            match self.fill(deadline, room).await {
                Ok(Fill::Read(0)) => return Err(incomplete("head").into()),
                Ok(Fill::Read(_)) => {}
                Ok(Fill::Timeout) => return Err(HttpError::Timeout(TimeoutKind::Header).into()),
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    /// Reads a whole body within the size limit and the body timeouts.
    /// With `expect_continue`, sends `100 Continue` first when the body is
    /// wanted and has not started to arrive. A declared length over the
    /// limit is refused before anything is read.
    pub async fn read_body(
        &mut self,
        framing: Framing,
        expect_continue: bool,
    ) -> Result<Bytes, ReadError> {
        let limit = self.limits.max_body_bytes;
        if let Framing::Length(length) = framing {
            if length > limit {
                return Err(HttpError::BodyTooLarge { limit }.into());
            }
        }
        if !framing.has_body() {
            return Ok(Bytes::new());
        }
        if expect_continue && self.buf.is_empty() {
            self.write_bytes(response::CONTINUE)
                .await
                .map_err(|_| ReadError::Closed)?;
        }
        let started = Instant::now();
        let body = match framing {
            Framing::Length(length) => self.read_length(length as usize, started).await?,
            _ => self.read_chunked(started).await?,
        };
        if body.len() > SHRINK_AFTER {
            self.shrink = true;
        }
        Ok(body)
    }

    /// Hands a `Content-Length` body to `sink` piece by piece as it
    /// arrives, instead of reading it whole (an upload, forwarded while it
    /// arrives): each read within the between-bytes timeout, the whole
    /// within `overall`; the size is the caller's to check. With
    /// `expect_continue`, sends `100 Continue` first, as [`Self::read_body`]
    /// does. Ends with [`StreamError::Abandoned`] as soon as the receiving
    /// side is gone (the request was answered without the rest of its
    /// body): what is left is not read, so the connection must close.
    pub async fn stream_body(
        &mut self,
        length: u64,
        expect_continue: bool,
        overall: Duration,
        sink: tokio::sync::mpsc::Sender<Bytes>,
    ) -> Result<(), StreamError> {
        if expect_continue && self.buf.is_empty() && length > 0 {
            self.write_bytes(response::CONTINUE)
                .await
                .map_err(|_| StreamError::Read(ReadError::Closed))?;
        }
        let overall = Instant::now() + overall;
        let mut left = length;
        loop {
            if left > 0 && !self.buf.is_empty() {
                let take = left.min(self.buf.len() as u64);
                left -= take;
                let piece = self.buf.split_to(take as usize).freeze();
                if sink.send(piece).await.is_err() {
                    return Err(StreamError::Abandoned);
                }
            }
            if left == 0 {
                if length > SHRINK_AFTER as u64 {
                    self.shrink = true;
                }
                return Ok(());
            }
            let room = left.min(64 * 1024) as usize;
            let idle = Instant::now() + self.limits.body_idle_timeout;
            let filled = tokio::select! {
                biased;
                () = sink.closed() => return Err(StreamError::Abandoned),
                filled = self.fill(overall.min(idle), room) => filled,
            };
            match filled {
                Ok(Fill::Read(0)) => return Err(StreamError::Read(incomplete("body").into())),
                Ok(Fill::Read(_)) => {}
                Ok(Fill::Timeout) => {
                    let kind = TimeoutKind::of_body(overall);
                    return Err(StreamError::Read(HttpError::Timeout(kind).into()));
                }
                Err(_) => return Err(StreamError::Read(ReadError::Closed)),
            }
        }
    }

    async fn read_length(&mut self, length: usize, started: Instant) -> Result<Bytes, ReadError> {
        while self.buf.len() < length {
            let room = (length - self.buf.len()).min(64 * 1024);
            self.fill_body(started, room).await?;
        }
        Ok(self.buf.split_to(length).freeze())
    }

    async fn read_chunked(&mut self, started: Instant) -> Result<Bytes, ReadError> {
        let mut decoder = ChunkedDecoder::new(self.limits.max_body_bytes);
        let mut body = BytesMut::new();
        while !decoder.decode(&mut self.buf, &mut body)? {
            self.fill_body(started, READ_CHUNK).await?;
        }
        Ok(body.freeze())
    }

    /// One read of body bytes: within the overall body timeout (from
    /// `started`) and the between-bytes timeout (from now).
    async fn fill_body(&mut self, started: Instant, room: usize) -> Result<(), ReadError> {
        let overall = started + self.limits.body_read_timeout;
        let idle = Instant::now() + self.limits.body_idle_timeout;
        match self.fill(overall.min(idle), room).await {
            Ok(Fill::Read(0)) => Err(incomplete("body").into()),
            Ok(Fill::Read(_)) => Ok(()),
            Ok(Fill::Timeout) => {
                let kind = TimeoutKind::of_body(overall);
                Err(HttpError::Timeout(kind).into())
            }
            Err(_) => Err(ReadError::Closed),
        }
    }

    async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        write_all(
            &mut self.io,
            &mut self.timer,
            self.limits.write_timeout,
            bytes,
        )
        .await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Writes a response (see [`response`] for the framing). `Ok(true)`:
    /// the connection must close now (as the response said).
    pub async fn write_response<B>(
        &mut self,
        response: Response<B>,
        to: Answering,
    ) -> Result<bool, WriteError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let (parts, mut body) = response.into_parts();
        let plan = response::plan(parts.status, &parts.headers, &body.size_hint(), to);
        self.out.clear();
        response::encode_head(&mut self.out, parts.status, &parts.headers, &plan, to);
        drop(parts);
        if plan.body == BodyOut::None {
            let out = std::mem::take(&mut self.out);
            let written = self.write_bytes(&out).await;
            self.out = out;
            written?;
            return Ok(plan.close);
        }
        let chunked = plan.body == BodyOut::Chunked;
        let mut remaining = match plan.body {
            BodyOut::Length(length) => Some(length),
            _ => None,
        };
        // The head waits in `out` for the first body bytes when they are
        // ready at once, so that both leave in one write.
        let mut first = true;
        loop {
            let frame = if first {
                first = false;
                match first_frame(&mut body).await {
                    Some(frame) => frame,
                    None => {
                        self.flush_out().await?;
                        next_frame(&mut body).await
                    }
                }
            } else {
                next_frame(&mut body).await
            };
            let data = match frame {
                None => break,
                Some(Err(err)) => {
                    // What was written cannot be taken back: close.
                    self.flush_out().await.ok();
                    return Err(WriteError::Body(err.to_string()));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_trailers) => continue,
                },
            };
            if data.is_empty() {
                continue;
            }
            if let Some(left) = remaining.as_mut() {
                if data.len() as u64 > *left {
                    self.flush_out().await.ok();
                    return Err(WriteError::Length);
                }
                *left -= data.len() as u64;
            }
            if chunked {
                response::chunk_header(&mut self.out, data.len());
            }
            if data.len() <= COALESCE {
                self.out.extend_from_slice(&data);
                if chunked {
                    self.out.extend_from_slice(b"\r\n");
                }
                self.flush_out().await?;
            } else {
                self.flush_out().await?;
                self.write_bytes(&data).await?;
                if chunked {
                    self.write_bytes(b"\r\n").await?;
                }
            }
        }
        if chunked {
            self.out.extend_from_slice(response::LAST_CHUNK);
        }
        self.flush_out().await?;
        if remaining.is_some_and(|left| left > 0) {
            return Err(WriteError::Length);
        }
        Ok(plan.close)
    }

    /// Writes what waits in the write buffer.
    async fn flush_out(&mut self) -> Result<(), WriteError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let written = self.write_bytes(&out).await;
        self.out = out;
        self.out.clear();
        written
    }

    /// Closes the connection gracefully: ends the sending side, then reads
    /// and drops what the client still sends, until it closes or `within`
    /// passes. Closing with unread bytes would reset the connection, and a
    /// reset can destroy the last response before the client reads it.
    pub async fn linger(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let shut = tokio::select! {
            biased;
            shut = self.io.shutdown() => shut.is_ok(),
            () = self.timer.until(deadline) => false,
        };
        if !shut {
            return;
        }
        loop {
            self.buf.clear();
            match self.fill(deadline, READ_CHUNK).await {
                Ok(Fill::Read(n)) if n > 0 => {}
                _ => return,
            }
        }
    }
}

fn incomplete(what: &'static str) -> HttpError {
    match what {
        "head" => HttpError::bad(
            "incomplete",
            "the connection closed before the request head ended",
        ),
        _ => HttpError::bad(
            "incomplete",
            "the connection closed before the request body ended",
        ),
    }
}

/// Writes all of `bytes`; each write must make progress within `timeout`.
/// A write the socket takes at once does not arm the timer.
async fn write_all<S: AsyncWrite + Unpin>(
    io: &mut S,
    timer: &mut LazyTimer,
    timeout: Duration,
    mut bytes: &[u8],
) -> Result<(), WriteError> {
    while !bytes.is_empty() {
        let mut write = std::pin::pin!(io.write(bytes));
        let written = match poll_now(write.as_mut()) {
            Some(written) => written?,
            None => {
                let deadline = Instant::now() + timeout;
                tokio::select! {
                    biased;
                    written = write => written?,
                    () = timer.until(deadline) => return Err(WriteError::Timeout(timeout)),
                }
            }
        };
        if written == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        bytes = &bytes[written..];
    }
    Ok(())
}

/// The output of `future` if it is ready now; `None` when it would wait
/// (polled again later, it registers its real waker then).
fn poll_now<F: Future>(future: Pin<&mut F>) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

type FrameResult<B> = Option<Result<http_body::Frame<Bytes>, <B as Body>::Error>>;

/// The first frame, when it is ready at once or after one turn of the
/// runtime (a streamed body's producer, such as the upstream connection's
/// task, sends data only once the body is polled); `None` otherwise.
async fn first_frame<B: Body<Data = Bytes> + Unpin>(body: &mut B) -> Option<FrameResult<B>> {
    if let Some(frame) = poll_once(body) {
        return Some(frame);
    }
    tokio::task::yield_now().await;
    poll_once(body)
}

/// The next frame if it is ready now; `None` when it is not.
fn poll_once<B: Body<Data = Bytes> + Unpin>(body: &mut B) -> Option<FrameResult<B>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match Pin::new(body).poll_frame(&mut cx) {
        std::task::Poll::Ready(frame) => Some(frame),
        std::task::Poll::Pending => None,
    }
}

async fn next_frame<B: Body<Data = Bytes> + Unpin>(body: &mut B) -> FrameResult<B> {
    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{StatusCode, Version};
    use http_body_util::Full;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    fn limits() -> Limits {
        Limits {
            max_head_bytes: 8192,
            max_body_bytes: 64,
            header_read_timeout: Duration::from_millis(200),
            keep_alive_timeout: Duration::from_millis(200),
            body_read_timeout: Duration::from_millis(400),
            body_idle_timeout: Duration::from_millis(150),
            write_timeout: Duration::from_millis(200),
            ..Limits::default()
        }
    }

    /// Sends `input` (then keeps the connection open), reads one request.
    async fn read_one(input: &[u8]) -> (Result<(RequestHead, Bytes), String>, Vec<u8>) {
        let (client, server) = duplex(1 << 16);
        let mut transport = Transport::new(server, limits());
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write.write_all(input).await.unwrap();
        let outcome = async {
            let deadline = Instant::now() + Duration::from_secs(1);
            assert_eq!(transport.wait_for_request(deadline).await, Arrival::Request);
            let head = transport.read_head().await.map_err(|e| format!("{e:?}"))?;
            let body = transport
                .read_body(head.framing, head.expect_continue)
                .await
                .map_err(|e| format!("{e:?}"))?;
            Ok((head, body))
        }
        .await;
        drop(transport);
        let mut written = Vec::new();
        client_read.read_to_end(&mut written).await.unwrap();
        drop(client_write);
        (outcome, written)
    }

    #[tokio::test]
    async fn bodies_are_read_whole_and_bounded() {
        let (got, _) =
            read_one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello").await;
        assert_eq!(got.unwrap().1, "hello");
        let (got, _) = read_one(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(got.unwrap().1, "hello");
        let (got, _) = read_one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n").await;
        assert!(
            got.unwrap_err().contains("BodyTooLarge"),
            "declared too large"
        );
        let big = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{0}\r\n20\r\n{0}\r\n1\r\nx\r\n0\r\n\r\n",
            "a".repeat(32)
        );
        let (got, _) = read_one(big.as_bytes()).await;
        assert!(
            got.unwrap_err().contains("BodyTooLarge"),
            "chunked too large"
        );
    }

    #[tokio::test]
    async fn stalled_bodies_and_heads_time_out() {
        let (got, _) = read_one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe").await;
        assert!(got.unwrap_err().contains("BodyIdle"));
        let (got, _) = read_one(b"POST / HTTP/1.1\r\nHost: a\r\n").await;
        assert!(got.unwrap_err().contains("Header"));
    }

    #[tokio::test]
    async fn a_body_trickling_in_hits_the_overall_timeout() {
        let (client, server) = duplex(1 << 16);
        let mut transport = Transport::new(server, limits());
        let (_client_read, mut client_write) = tokio::io::split(client);
        client_write
            .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 60\r\n\r\n")
            .await
            .unwrap();
        let trickle = tokio::spawn(async move {
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if client_write.write_all(b"x").await.is_err() {
                    break;
                }
            }
        });
        let head = transport.read_head().await.unwrap();
        let err = transport.read_body(head.framing, false).await.unwrap_err();
        assert!(
            matches!(err, ReadError::Http(HttpError::Timeout(TimeoutKind::Body))),
            "{err:?}"
        );
        trickle.abort();
    }

    #[tokio::test]
    async fn continue_is_sent_only_when_a_body_is_wanted() {
        let (got, written) = read_one(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(got.is_ok());
        assert!(written.is_empty());
        let (got, written) = read_one(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 65\r\n\r\n",
        )
        .await;
        assert!(got.is_err());
        assert!(written.is_empty(), "no 100 Continue before a 413");
        // The body has not arrived: 100 Continue, then the body.
        let (client, server) = duplex(1 << 16);
        let mut transport = Transport::new(server, limits());
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write
            .write_all(
                b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            )
            .await
            .unwrap();
        let client = tokio::spawn(async move {
            let mut interim = vec![0u8; response::CONTINUE.len()];
            client_read.read_exact(&mut interim).await.unwrap();
            client_write.write_all(b"ok").await.unwrap();
            (interim, client_read, client_write)
        });
        let head = transport.read_head().await.unwrap();
        assert!(head.expect_continue);
        let body = transport.read_body(head.framing, true).await.unwrap();
        assert_eq!(body, "ok");
        let (interim, ..) = client.await.unwrap();
        assert_eq!(interim, response::CONTINUE);
    }

    #[tokio::test]
    async fn the_read_buffer_is_reused_for_pipelined_requests() {
        let (client, server) = duplex(1 << 16);
        let mut transport = Transport::new(server, limits());
        let (_r, mut w) = tokio::io::split(client);
        w.write_all(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nxGET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        for (path, body) in [("/1", ""), ("/2", "x"), ("/3", "")] {
            assert_eq!(transport.wait_for_request(deadline).await, Arrival::Request);
            let head = transport.read_head().await.unwrap();
            assert_eq!(head.request.uri().path(), path);
            let got = transport.read_body(head.framing, false).await.unwrap();
            assert_eq!(got, body);
        }
        assert_eq!(transport.buffered(), 0);
    }

    async fn written<B>(response: Response<B>, to: Answering) -> (Result<bool, String>, String)
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let (client, server) = duplex(1 << 20);
        let mut transport = Transport::new(server, limits());
        let result = transport
            .write_response(response, to)
            .await
            .map_err(|e| e.to_string());
        drop(transport);
        let mut client = client;
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let text = text
            .split("\r\n")
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\r\n");
        (result, text)
    }

    /// A streamed body: its chunks (an `Err` fails the body), size unknown.
    struct Chunks(std::collections::VecDeque<Result<&'static str, &'static str>>);

    fn chunks(items: &[Result<&'static str, &'static str>]) -> Chunks {
        Chunks(items.iter().copied().collect())
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = &'static str;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, &'static str>>> {
            std::task::Poll::Ready(
                self.get_mut().0.pop_front().map(|item| {
                    item.map(|c| http_body::Frame::data(Bytes::from_static(c.as_bytes())))
                }),
            )
        }
    }

    #[tokio::test]
    async fn responses_are_framed_as_planned() {
        let v11 = Answering {
            head_request: false,
            version: Version::HTTP_11,
            close: false,
        };
        let full = Response::new(Full::new(Bytes::from_static(b"hello")));
        assert_eq!(
            written(full, v11).await,
            (
                Ok(false),
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".into()
            )
        );
        let mut head = Response::new(Full::new(Bytes::from_static(b"hello")));
        *head.status_mut() = StatusCode::OK;
        assert_eq!(
            written(
                head,
                Answering {
                    head_request: true,
                    ..v11
                }
            )
            .await,
            (
                Ok(false),
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".into()
            )
        );
        let closing = Response::new(Full::new(Bytes::new()));
        assert_eq!(
            written(closing, Answering { close: true, ..v11 }).await,
            (
                Ok(true),
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()
            )
        );
        let streamed = Response::new(chunks(&[Ok("ab"), Ok(""), Ok("cde")]));
        assert_eq!(
            written(streamed, v11).await,
            (
                Ok(false),
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
                    .into()
            )
        );
        let to_http10 = Answering {
            version: Version::HTTP_10,
            ..v11
        };
        let streamed = Response::new(chunks(&[Ok("ab"), Ok("cde")]));
        assert_eq!(
            written(streamed, to_http10).await,
            (
                Ok(true),
                "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabcde".into()
            )
        );
        let mut upstream = Response::new(chunks(&[Ok("ab"), Ok("cde")]));
        upstream.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("5"),
        );
        assert_eq!(
            written(upstream, v11).await,
            (
                Ok(false),
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabcde".into()
            )
        );
        let mut short = Response::new(chunks(&[Ok("ab")]));
        short.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("5"),
        );
        assert!(written(short, v11).await.0.is_err(), "a short body fails");
        let failing = Response::new(chunks(&[Ok("ab"), Err("upstream reset")]));
        let (result, text) = written(failing, v11).await;
        assert!(result.unwrap_err().contains("upstream reset"));
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "no last chunk after a failure: {text:?}"
        );
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_is_cut_off_at_the_write_timeout() {
        let (client, server) = duplex(1024);
        let mut transport = Transport::new(server, limits());
        let big = Response::new(Full::new(Bytes::from(vec![b'x'; 1 << 20])));
        let started = std::time::Instant::now();
        let to = Answering {
            head_request: false,
            version: Version::HTTP_11,
            close: false,
        };
        let err = transport.write_response(big, to).await.unwrap_err();
        assert!(matches!(err, WriteError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(client);
    }
}
