//! Reading request bodies within the configured limit (413 past it), for
//! the policy rules and the token API that need the whole body.

use crate::rejection::Rejection;
use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

/// The declared `Content-Length`, when there is a valid one.
pub fn content_length(parts: &http::request::Parts) -> Option<u64> {
    parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_body(body: Incoming, limit: u64) -> Result<Bytes, Rejection> {
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err)
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Rejection::PayloadTooLarge(format!(
                "the request body is larger than {limit} bytes"
            )))
        }
        Err(_) => Err(Rejection::BadRequest(
            "the request body could not be read".into(),
        )),
    }
}
