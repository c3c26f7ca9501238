//! Telling HTTP/2 with prior knowledge from HTTP/1.1 on a listener without
//! TLS (`http2_cleartext`): an HTTP/2 client starts with the 24-byte
//! connection preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, which no valid
//! HTTP/1.1 request starts with. The bytes read to decide are handed back
//! to whichever server takes the connection ([`Prefixed`]).

use bytes::{Buf, Bytes, BytesMut};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection say.
pub enum Sniffed<S> {
    /// The HTTP/2 preface: serve HTTP/2 (the preface is read again).
    Http2(Prefixed<S>),
    /// Anything else: serve HTTP/1.1 (the bytes are read again).
    Http1(Prefixed<S>),
    /// Nothing arrived before the deadline.
    Idle,
    /// The client closed (or the connection failed) before saying anything.
    Closed,
}

/// Reads until the first bytes are, or cannot be, the preface.
pub async fn sniff<S: AsyncRead + Unpin>(mut io: S, deadline: Instant) -> Sniffed<S> {
    let mut seen = BytesMut::with_capacity(PREFACE.len());
    loop {
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut seen)).await;
        match read {
            Err(_) if seen.is_empty() => return Sniffed::Idle,
            // Part of a head arrived: the HTTP/1.1 server times it out.
            Err(_) => return Sniffed::Http1(Prefixed::new(seen.freeze(), io)),
            Ok(Ok(0)) | Ok(Err(_)) if seen.is_empty() => return Sniffed::Closed,
            Ok(Ok(0)) | Ok(Err(_)) => return Sniffed::Http1(Prefixed::new(seen.freeze(), io)),
            Ok(Ok(_)) => {}
        }
        let compared = seen.len().min(PREFACE.len());
        if seen[..compared] != PREFACE[..compared] {
            return Sniffed::Http1(Prefixed::new(seen.freeze(), io));
        }
        if compared == PREFACE.len() {
            return Sniffed::Http2(Prefixed::new(seen.freeze(), io));
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
pub struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, io: S) -> Self {
        Prefixed { prefix, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    async fn sniffed(chunks: &[&[u8]], close: bool) -> (&'static str, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(1024);
        for chunk in chunks {
            client.write_all(chunk).await.unwrap();
        }
        if close {
            drop(client);
        } else {
            // Keep the client open while sniffing.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(client);
            });
        }
        let deadline = Instant::now() + Duration::from_millis(300);
        let (kind, stream) = match sniff(server, deadline).await {
            Sniffed::Http2(stream) => ("h2", Some(stream)),
            Sniffed::Http1(stream) => ("http/1.1", Some(stream)),
            Sniffed::Idle => ("idle", None),
            Sniffed::Closed => ("closed", None),
        };
        let mut replayed = Vec::new();
        if let Some(mut stream) = stream {
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).await.unwrap();
            replayed.extend_from_slice(&buf[..n]);
        }
        (kind, replayed)
    }

    #[tokio::test]
    async fn the_preface_means_http2_and_anything_else_http1_with_nothing_lost() {
        let (kind, replayed) = sniffed(&[&PREFACE[..5], &PREFACE[5..]], false).await;
        assert_eq!((kind, replayed.as_slice()), ("h2", PREFACE));
        let (kind, replayed) = sniffed(&[b"GET / HTTP/1.1\r\n"], false).await;
        assert_eq!(
            (kind, replayed.as_slice()),
            ("http/1.1", &b"GET / HTTP/1.1\r\n"[..])
        );
        let (kind, replayed) = sniffed(&[b"PRI * HTTP/1.1\r\n"], false).await;
        assert_eq!(
            (kind, replayed.as_slice()),
            ("http/1.1", &b"PRI * HTTP/1.1\r\n"[..])
        );
        let (kind, replayed) = sniffed(&[b"PRI"], true).await;
        assert_eq!((kind, replayed.as_slice()), ("http/1.1", &b"PRI"[..]));
        assert_eq!(sniffed(&[b"PRI"], false).await.0, "http/1.1");
        assert_eq!(sniffed(&[], false).await.0, "idle");
        assert_eq!(sniffed(&[], true).await.0, "closed");
    }
}
