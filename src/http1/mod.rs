//! A strict HTTP/1.1 server side, pure framing: no gateway types.
//!
//! A security gateway must read a request exactly as every server behind it
//! will, so this layer refuses what other implementations read differently
//! (RFC 9112, strictly):
//!
//! - the head ([`head`]): every line ends in CRLF, no obs-fold, origin-form
//!   targets only, HTTP/1.0 or 1.1, a bounded number of header lines and a
//!   bounded size (exactly `limits.max_header_bytes`, request line to the
//!   final CRLF);
//! - the framing ([`head::Framing`]): one `Transfer-Encoding: chunked` or one
//!   `Content-Length` of digits, never both, never a list;
//! - the body ([`chunked`] and [`Transport::read_body`]): bounded in size and
//!   in time (overall, and between bytes);
//! - the response ([`response`]): our own framing, `Connection: close`
//!   whenever the server closes after it.
//!
//! [`Transport`] owns one connection's stream, read buffer and timer; the
//! per-connection loop that uses it is `runtime::connection`.

pub mod chunked;
pub mod head;
pub mod response;
mod transport;

pub use head::{Framing, RequestHead};
pub use transport::{Arrival, ReadError, StreamError, Transport, WriteError};

use http::StatusCode;
use std::time::Duration;

/// What one connection may send and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The head, request line to the final CRLF, at most this many bytes (431).
    pub max_head_bytes: usize,
    /// At most this many header lines (431).
    pub max_header_count: usize,
    /// A body of at most this many bytes (413).
    pub max_body_bytes: u64,
    /// From the first byte of a head to its end; also how long a new
    /// connection may wait before its first byte.
    pub header_read_timeout: Duration,
    /// How long a connection may be idle between requests.
    pub keep_alive_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_read_timeout: Duration,
    /// Between two reads of body bytes.
    pub body_idle_timeout: Duration,
    /// How long one write may make no progress (a client that does not read).
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_header_count: 100,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// The head did not arrive in time.
    Header,
    /// The body did not arrive within the overall body timeout.
    Body,
    /// The body stalled longer than the between-bytes timeout.
    BodyIdle,
    /// The client did not read the response.
    Write,
}

impl TimeoutKind {
    /// Which of a body's two timeouts fired: the overall one, when its
    /// deadline `overall` has passed, else the between-bytes one.
    pub fn of_body(overall: tokio::time::Instant) -> TimeoutKind {
        if tokio::time::Instant::now() >= overall {
            TimeoutKind::Body
        } else {
            TimeoutKind::BodyIdle
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::Header => "header",
            TimeoutKind::Body => "body",
            TimeoutKind::BodyIdle => "body_idle",
            TimeoutKind::Write => "write",
        }
    }
}

/// A request the server refuses itself, before anything else sees it. Each
/// is answered with its status and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// 400. `reason` is a short label for metrics.
    #[error("{detail}")]
    BadRequest {
        reason: &'static str,
        detail: &'static str,
    },
    /// 431: the head is larger than the limit.
    #[error("the request head is larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    /// 431: more header lines than the limit.
    #[error("the request has more than {limit} header lines")]
    TooManyHeaders { limit: usize },
    /// 505.
    #[error("only HTTP/1.1 and HTTP/1.0 are supported")]
    VersionNotSupported,
    /// 417.
    #[error("the only expectation supported is `Expect: 100-continue`")]
    ExpectationFailed,
    /// 413.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// 408.
    #[error("{}", timeout_detail(*.0))]
    Timeout(TimeoutKind),
}

fn timeout_detail(kind: TimeoutKind) -> &'static str {
    match kind {
        TimeoutKind::Header => "the request head did not arrive in time",
        TimeoutKind::Body => "the request body did not arrive in time",
        TimeoutKind::BodyIdle => "the request body stalled",
        TimeoutKind::Write => "the response was not read in time",
    }
}

impl HttpError {
    pub(crate) const fn bad(reason: &'static str, detail: &'static str) -> HttpError {
        HttpError::BadRequest { reason, detail }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HttpError::VersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            HttpError::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            HttpError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// A short, stable label for metrics (`tokengate_http_errors_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::BadRequest { reason, .. } => reason,
            HttpError::HeadTooLarge { .. } => "head_too_large",
            HttpError::TooManyHeaders { .. } => "too_many_headers",
            HttpError::VersionNotSupported => "version",
            HttpError::ExpectationFailed => "expectation",
            HttpError::BodyTooLarge { .. } => "body_too_large",
            HttpError::Timeout(_) => "timeout",
        }
    }
}
