//! Request bodies: reading a whole body within a limit (for the policy rules
//! and the gateway's own endpoints), the declared length, and
//! [`ChannelBody`], the body of an upload that is forwarded as it arrives.

use bytes::Bytes;
use http::header;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Errors a request body can carry, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a request body must be for the gateway to read or forward it: any
/// `http_body::Body` of bytes, such as hyper's `Incoming` or, in tests,
/// `Full<Bytes>`.
pub trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body could not be read")]
    Unreadable,
}

/// The declared `Content-Length`, when there is a valid one.
pub fn content_length(parts: &http::request::Parts) -> Option<u64> {
    parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_body<B: RequestBody>(body: B, limit: u64) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err)
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge { limit })
        }
        Err(_) => Err(BodyError::Unreadable),
    }
}

/// A request body as the servers hand it to the gateway: read whole, or an
/// upload's pieces as they arrive (one type for both servers, so the
/// request path is compiled once).
pub type ServerBody = http_body_util::Either<http_body_util::Full<Bytes>, ChannelBody>;

/// Put in a request's extensions by a server that forwards its body while
/// it arrives (a [`ChannelBody`] of this many bytes) instead of reading it
/// whole first; only an upload to the object storage is, and the canonical
/// request takes such a body as it is, unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamedLength(pub u64);

/// How many pieces of a streamed body may wait between the connection that
/// reads them and the upstream connection that writes them (each at most
/// one read's worth, 64 KiB): the memory an upload holds, whatever its size.
const CHANNEL_PIECES: usize = 4;

/// The body of a request forwarded while it arrives (an upload to the
/// object storage): the pieces the client connection reads, exactly
/// `length` bytes in all. When the reading side stops early (the client
/// went away or was too slow), the body ends with an error, so that what
/// was sent upstream is never taken for a whole body.
#[derive(Debug)]
pub struct ChannelBody {
    pieces: mpsc::Receiver<Bytes>,
    length: u64,
    received: u64,
}

impl ChannelBody {
    /// A body of `length` bytes and the sender its pieces come through.
    pub fn new(length: u64) -> (mpsc::Sender<Bytes>, ChannelBody) {
        let (sender, pieces) = mpsc::channel(CHANNEL_PIECES);
        let body = ChannelBody {
            pieces,
            length,
            received: 0,
        };
        (sender, body)
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.received == self.length {
            return Poll::Ready(None);
        }
        match self.pieces.poll_recv(cx) {
            Poll::Ready(Some(piece)) => {
                self.received += piece.len() as u64;
                if self.received > self.length {
                    return Poll::Ready(Some(Err("more request body bytes than declared".into())));
                }
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
            Poll::Ready(None) => Poll::Ready(Some(Err(
                "the request body ended before its declared length".into(),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.received == self.length
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.length.saturating_sub(self.received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_channel_body_is_its_pieces_up_to_its_length() {
        let (sender, body) = ChannelBody::new(5);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        sender.send(Bytes::from_static(b"ab")).await.unwrap();
        sender.send(Bytes::from_static(b"cde")).await.unwrap();
        drop(sender);
        assert_eq!(
            read_body(body, 5).await.unwrap(),
            Bytes::from_static(b"abcde")
        );
    }

    #[tokio::test]
    async fn a_channel_body_whose_sender_stops_early_ends_with_an_error() {
        let (sender, body) = ChannelBody::new(5);
        sender.send(Bytes::from_static(b"ab")).await.unwrap();
        drop(sender);
        assert_eq!(read_body(body, 5).await, Err(BodyError::Unreadable));
        let (sender, body) = ChannelBody::new(2);
        sender.send(Bytes::from_static(b"abc")).await.unwrap();
        drop(sender);
        assert_eq!(read_body(body, 5).await, Err(BodyError::Unreadable));
    }
}
