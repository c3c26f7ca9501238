//! The upstream side: the headers of a forwarded request ([`headers`]), the
//! replayable request itself ([`request`]), opening plain and TLS
//! connections ([`connect`]) whose bytes are counted ([`transport`]), the
//! byte-level HTTP/1.1 client that speaks on one of them ([`client`],
//! reading answers as [`response`] says and bodies as [`body`] streams
//! them), keep-alive connections with client-connection affinity
//! ([`pool`]), the rules for sending a request again ([`lease`]), and the
//! [`Forwarder`] that sends a judged request and streams the answer back.

pub mod body;
pub mod client;
pub mod connect;
pub mod forwarder;
pub mod headers;
pub mod lease;
pub mod pool;
pub mod request;
pub mod response;
pub mod transport;

#[cfg(test)]
mod differential;

pub use body::{UpstreamBody, UpstreamBodyError};
pub use forwarder::Forwarder;
pub use lease::UpstreamLease;
pub use request::{StreamedBody, UpstreamRequest};

use std::time::Duration;

/// Why a request could not be forwarded. The `cause`s are for the log
/// line, never for the client.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// 502: no connection could be made.
    #[error("the upstream cannot be reached")]
    Unreachable { cause: String },
    /// 502: every connection tried closed before the request could be sent.
    #[error("the upstream closed the connection")]
    Closed,
    /// 502: the request was sent, and no valid answer came back.
    #[error("the upstream failed to answer")]
    Failed { cause: String },
    /// 504.
    #[error("the upstream did not answer within {} ms", timeout.as_millis())]
    Timeout { timeout: Duration },
    /// 400: the canonical path and query do not form a request target.
    #[error("cannot build the upstream address: {0}")]
    BadTarget(String),
}
