//! [`UpstreamBody`]: the body of an upstream answer, read from its
//! connection by whoever polls it (the client connection's task) and
//! handed on in the pieces the reads produce, without copying.
//!
//! A body that arrived whole with its head (most API answers) is handed
//! over at once, and its connection is back home before the response is
//! even written. Any other body owns its connection while it streams and
//! brings it home when it ends; a body dropped before its end closes the
//! connection (its rest would be read as the next answer). A body that
//! stalls for longer than the upstream's response timeout between two
//! reads fails, and the client connection closes.

use super::client::{Connection, READ_CHUNK};
use super::pool::Home;
use super::response::{AnswerError, BodyFraming, ChunkedDecoder, Decoded};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

/// Why an answer's body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    #[error("the upstream closed the connection before the answer's body ended")]
    Closed,
    #[error("the upstream sent nothing of the answer's body for {} ms", .0.as_millis())]
    Stalled(Duration),
    #[error("reading the answer's body: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Malformed(#[from] AnswerError),
}

/// The body of an upstream answer.
pub struct UpstreamBody {
    state: State,
}

enum State {
    /// Arrived with the head (or there is none); the connection is home.
    Whole(Option<Bytes>),
    Streaming(Box<Streaming>),
}

/// A body still arriving, and the connection it arrives on.
struct Streaming {
    /// `None` once the body has ended.
    conn: Option<Connection>,
    framing: Framing,
    home: Arc<Home>,
    idle_timeout: Duration,
    /// Made the first time a read has to wait.
    /// When the last bytes arrived (or the head): the body stalls once
    /// nothing more arrives for `idle_timeout`.
    last_read: tokio::time::Instant,
}

/// What the read buffer holds of a streaming body.
enum Buffered {
    Piece(Bytes),
    /// The piece that ends the body.
    Last(Bytes),
    NeedMore,
    Ended,
}

enum Framing {
    /// This many bytes left.
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl UpstreamBody {
    /// The body framed by `framing`, whose first bytes (if any) wait in
    /// `conn`'s read buffer; `conn` goes to `home` when it ends.
    pub(super) fn new(
        mut conn: Connection,
        framing: BodyFraming,
        home: Arc<Home>,
        idle_timeout: Duration,
    ) -> Self {
        let framing = match framing {
            BodyFraming::Empty => {
                home.bring_back(conn);
                return UpstreamBody::whole(None);
            }
            BodyFraming::Length(length) if length <= conn.read_buf.len() as u64 => {
                let data = conn.read_buf.split_to(length as usize).freeze();
                home.bring_back(conn);
                return UpstreamBody::whole(Some(data).filter(|data| !data.is_empty()));
            }
            BodyFraming::Length(length) => Framing::Length(length),
            BodyFraming::Chunked => Framing::Chunked(ChunkedDecoder::default()),
            BodyFraming::UntilClose => Framing::UntilClose,
        };
        UpstreamBody {
            state: State::Streaming(Box::new(Streaming {
                conn: Some(conn),
                framing,
                home,
                idle_timeout,
                last_read: tokio::time::Instant::now(),
            })),
        }
    }

    fn whole(data: Option<Bytes>) -> Self {
        UpstreamBody {
            state: State::Whole(data),
        }
    }
}

impl Streaming {
    /// The body has ended: the connection goes home (or is closed, when it
    /// cannot carry another request).
    fn end(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.last_used = Instant::now();
            if matches!(self.framing, Framing::UntilClose) {
                conn.keep_alive = false;
            }
            self.home.bring_back(conn);
        }
    }

    /// What the read buffer holds of the body.
    fn take_buffered(&mut self) -> Result<Buffered, UpstreamBodyError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Buffered::Ended);
        };
        let buf = &mut conn.read_buf;
        Ok(match &mut self.framing {
            Framing::Length(0) => Buffered::Ended,
            Framing::Length(_) if buf.is_empty() => Buffered::NeedMore,
            Framing::Length(left) => {
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                let piece = buf.split_to(take as usize).freeze();
                if *left == 0 {
                    Buffered::Last(piece)
                } else {
                    Buffered::Piece(piece)
                }
            }
            Framing::Chunked(decoder) => match decoder.decode(buf)? {
                Decoded::Data(data) => Buffered::Piece(data),
                Decoded::NeedMore => Buffered::NeedMore,
                Decoded::End => Buffered::Ended,
            },
            Framing::UntilClose if buf.is_empty() => Buffered::NeedMore,
            Framing::UntilClose => Buffered::Piece(buf.split().freeze()),
        })
    }

    fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, UpstreamBodyError>>> {
        loop {
            match self.take_buffered() {
                Ok(Buffered::Piece(piece)) => return Poll::Ready(Some(Ok(piece))),
                Ok(Buffered::Last(piece)) => {
                    // The connection goes home now, before the piece is
                    // even written.
                    self.end();
                    return Poll::Ready(Some(Ok(piece)));
                }
                Ok(Buffered::Ended) => {
                    self.end();
                    return Poll::Ready(None);
                }
                Ok(Buffered::NeedMore) => {}
                Err(err) => return Poll::Ready(Some(Err(self.fail(err)))),
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            conn.read_buf.reserve(READ_CHUNK);
            let read =
                tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.read_buf);
            match read {
                Poll::Ready(Ok(0)) if matches!(self.framing, Framing::UntilClose) => {
                    self.end();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Some(Err(self.fail(UpstreamBodyError::Closed))))
                }
                Poll::Ready(Ok(_)) => self.last_read = tokio::time::Instant::now(),
                Poll::Ready(Err(err)) => return Poll::Ready(Some(Err(self.fail(err.into())))),
                Poll::Pending => {
                    ready!(self.poll_stall(cx));
                    let stalled = UpstreamBodyError::Stalled(self.idle_timeout);
                    return Poll::Ready(Some(Err(self.fail(stalled))));
                }
            }
        }
    }

    /// Ready when the body has stalled for the idle timeout (on the
    /// connection's own timer).
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.last_read + self.idle_timeout;
        match self.conn.as_mut() {
            Some(conn) => conn.timer.poll_until(cx, deadline),
            None => Poll::Ready(()),
        }
    }

    /// The body cannot go on: its connection is closed.
    fn fail(&mut self, err: UpstreamBodyError) -> UpstreamBodyError {
        self.conn = None;
        err
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().state {
            State::Whole(data) => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            State::Streaming(streaming) => streaming
                .poll_piece(cx)
                .map(|piece| piece.map(|piece| piece.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Whole(data) => data.is_none(),
            State::Streaming(streaming) => streaming.conn.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Whole(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            State::Streaming(streaming) => match streaming.framing {
                Framing::Length(left) => SizeHint::with_exact(left),
                _ => SizeHint::default(),
            },
        }
    }
}
