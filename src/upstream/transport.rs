//! The byte-level view of one upstream connection, which is what decides
//! whether a failed request may be sent again.
//!
//! A [`Meter`] counts the bytes the kernel accepted from us on the TCP
//! socket ([`Wire`], below TLS) and the bytes hyper received (above TLS,
//! [`Plaintext`]; on plain HTTP the same socket). Comparing the counts
//! before and after a failed attempt tells its [`Fate`]: nothing written
//! means the upstream cannot have seen any of the request.
//!
//! Before the first byte of a request on a reused connection, [`Wire`]
//! also looks at the socket itself (`recv` with `MSG_PEEK`): an idle
//! connection whose peer has closed (end of stream, reset) or that holds
//! bytes nobody asked for cannot carry a request, and saying so before
//! writing is what makes "not sent" provable. The event loop alone may not
//! know yet: the close can still be waiting in its queue.
//!
//! That look is a system call, one per request, which for most requests
//! only says "nothing there" (`EAGAIN`). So a request that may be sent
//! again anyway ([`Probe::IfSignalled`]: GET, HEAD, OPTIONS, PUT, DELETE,
//! which [`super::lease`] sends once more when a connection breaks before
//! any answer) is looked at only when the event loop has already seen the
//! socket become readable since its last read: a close or stray bytes the
//! event loop has seen are still caught before writing, and one it has not
//! seen yet costs a second attempt on a new connection instead of a `recv`
//! on every request. A POST or PATCH, and a request whose body streams as
//! it arrives ([`Probe::Always`]), is always looked at, since it is never
//! sent twice.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Byte counts of one connection, shared by its transport (which counts)
/// and the lease that sends on it (which reads them).
#[derive(Debug, Default)]
pub struct Meter {
    /// Bytes the kernel accepted for sending (TLS records included).
    written: AtomicU64,
    /// Bytes handed to hyper (plaintext).
    received: AtomicU64,
    /// Check the socket before the next write (see the module docs): a
    /// [`Probe`] as `u8`, [`NO_PROBE`] when none is due.
    probe: AtomicU8,
}

/// How the socket is checked before the first byte of a request on a reused
/// connection (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Probe {
    /// Only when the event loop has seen the socket become readable: for
    /// requests that are sent again if the connection turns out closed.
    IfSignalled = 1,
    /// Always (`recv` with `MSG_PEEK`): for requests never sent twice.
    Always = 2,
}

const NO_PROBE: u8 = 0;

/// The counts at the start of an attempt.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    written: u64,
    received: u64,
}

/// What a failed attempt did, as far as the bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// No byte of the request left: the upstream saw nothing.
    NotSent,
    /// Some or all of the request left, and no byte of an answer came back.
    NoAnswer,
    /// Part of an answer came back.
    PartlyAnswered,
}

impl Meter {
    pub fn mark(&self) -> Mark {
        Mark {
            written: self.written.load(Relaxed),
            received: self.received.load(Relaxed),
        }
    }

    /// The fate of the attempt that started at `mark`.
    pub fn fate_since(&self, mark: Mark) -> Fate {
        if self.written.load(Relaxed) == mark.written {
            Fate::NotSent
        } else if self.received.load(Relaxed) == mark.received {
            Fate::NoAnswer
        } else {
            Fate::PartlyAnswered
        }
    }

    /// Makes the next write check that the connection is still open.
    pub fn probe_before_next_write(&self, probe: Probe) {
        self.probe.store(probe as u8, Relaxed);
    }
}

/// The TCP socket under hyper (or under TLS): counts what is written, and
/// what is read when `count_reads` (plain HTTP, where these bytes are the
/// answer).
pub struct Wire {
    tcp: TcpStream,
    meter: Arc<Meter>,
    count_reads: bool,
}

impl Wire {
    pub fn new(tcp: TcpStream, meter: Arc<Meter>, count_reads: bool) -> Self {
        Wire {
            tcp,
            meter,
            count_reads,
        }
    }

    /// When a probe is due: fails if the peer closed or reset the idle
    /// connection, or sent bytes on it, so that nothing is written.
    fn probe_if_due(&self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.meter.probe.swap(NO_PROBE, Relaxed) {
            NO_PROBE => return Ok(()),
            // The readiness the event loop has recorded, no system call:
            // pending means nothing arrived since the last read emptied
            // the socket (as far as the event loop has seen).
            p if p == Probe::IfSignalled as u8 && self.tcp.poll_read_ready(cx).is_pending() => {
                return Ok(())
            }
            _ => {}
        }
        let mut byte = [MaybeUninit::<u8>::uninit()];
        match socket2::SockRef::from(&self.tcp).peek(&mut byte) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the upstream closed the idle connection",
            )),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the upstream sent bytes on an idle connection",
            )),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(err) => Err(err),
        }
    }

    fn count_written(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = result {
            self.meter.written.fetch_add(n as u64, Relaxed);
        }
        result
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if this.count_reads {
            let read = buf.filled().len() - before;
            this.meter.received.fetch_add(read as u64, Relaxed);
        }
        result
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.probe_if_due(cx)?;
        let result = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.count_written(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.probe_if_due(cx)?;
        let result = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.count_written(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The stream above TLS: counts the plaintext bytes hyper receives.
pub struct Plaintext<IO> {
    io: IO,
    meter: Arc<Meter>,
}

impl<IO> Plaintext<IO> {
    pub fn new(io: IO, meter: Arc<Meter>) -> Self {
        Plaintext { io, meter }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Plaintext<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        this.meter.received.fetch_add(read as u64, Relaxed);
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Plaintext<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn written_and_received_bytes_tell_the_fate_of_an_attempt() {
        let (client, mut server) = pair().await;
        let meter = Arc::new(Meter::default());
        let mut wire = Wire::new(client, meter.clone(), true);
        let mark = meter.mark();
        assert_eq!(meter.fate_since(mark), Fate::NotSent);
        wire.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(meter.fate_since(mark), Fate::NoAnswer);
        server.write_all(b"HTTP/1.1").await.unwrap();
        let mut buf = [0u8; 8];
        wire.read_exact(&mut buf).await.unwrap();
        assert_eq!(meter.fate_since(mark), Fate::PartlyAnswered);
    }

    #[tokio::test]
    async fn a_probe_refuses_to_write_on_a_connection_the_peer_closed() {
        let (client, server) = pair().await;
        let meter = Arc::new(Meter::default());
        let mut wire = Wire::new(client, meter.clone(), true);
        drop(server);
        // Wait until the end of stream has arrived (without reading it).
        let mut byte = [MaybeUninit::<u8>::uninit()];
        for _ in 0..500 {
            if matches!(socket2::SockRef::from(&wire.tcp).peek(&mut byte), Ok(0)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // The event loop has not looked at the socket since: only the
        // `recv` of `Probe::Always` can see the close.
        let mark = meter.mark();
        meter.probe_before_next_write(Probe::Always);
        let err = wire.write_all(b"POST / HTTP/1.1\r\n").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(meter.fate_since(mark), Fate::NotSent);
    }

    #[tokio::test]
    async fn a_probe_if_signalled_refuses_to_write_on_a_close_the_event_loop_has_seen() {
        let (client, server) = pair().await;
        let meter = Arc::new(Meter::default());
        let mut wire = Wire::new(client, meter.clone(), true);
        drop(server);
        wire.tcp.readable().await.unwrap();
        let mark = meter.mark();
        meter.probe_before_next_write(Probe::IfSignalled);
        let err = wire.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(meter.fate_since(mark), Fate::NotSent);
    }

    #[tokio::test]
    async fn a_probe_if_signalled_catches_stray_bytes_the_event_loop_has_seen() {
        let (client, mut server) = pair().await;
        let meter = Arc::new(Meter::default());
        let mut wire = Wire::new(client, meter.clone(), true);
        server
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        // The event loop records the readiness once the bytes are there.
        wire.tcp.readable().await.unwrap();
        let mark = meter.mark();
        meter.probe_before_next_write(Probe::IfSignalled);
        let err = wire.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(meter.fate_since(mark), Fate::NotSent);
    }

    #[tokio::test]
    async fn a_probe_lets_a_live_connection_write_and_is_used_once() {
        let (client, mut server) = pair().await;
        let meter = Arc::new(Meter::default());
        let mut wire = Wire::new(client, meter.clone(), true);
        for probe in [Probe::Always, Probe::IfSignalled] {
            meter.probe_before_next_write(probe);
            wire.write_all(b"ping").await.unwrap();
            assert_eq!(meter.probe.load(Relaxed), NO_PROBE, "the probe is spent");
            let mut buf = [0u8; 4];
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        }
    }
}
