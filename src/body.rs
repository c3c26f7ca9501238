//! Request bodies: reading a whole body within a limit (for the policy rules
//! and the gateway's own endpoints), the declared length, and the boxed body
//! type that is sent upstream.

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Limited};

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
