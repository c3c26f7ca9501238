//! [`UpstreamRequest`]: a judged request that can be sent more than once.
//! The gateway reads a body fully before judging it, so the body is
//! usually `Bytes` and each attempt writes the same method, target, headers
//! and bytes ([`super::client`]). An upload to the object storage, which no
//! rule reads, is a [`StreamedBody`] instead: forwarded as it arrives, by
//! the one attempt that takes it.

use crate::body::BoxError;
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use std::sync::Mutex;

/// A request ready for the upstream: origin-form target, rewritten headers,
/// and exactly the body bytes that were judged (or, for an upload, the
/// bytes as they arrive).
#[derive(Debug)]
pub struct UpstreamRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    streamed: Option<StreamedBody>,
}

/// A body forwarded while it arrives, of a declared length. Its bytes can
/// be sent once: the attempt that writes them takes them, and a request
/// whose body was taken is never sent again.
pub struct StreamedBody {
    length: u64,
    body: Mutex<Option<UnsyncBoxBody<Bytes, BoxError>>>,
}

impl std::fmt::Debug for StreamedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedBody")
            .field("length", &self.length)
            .field("spent", &self.spent())
            .finish()
    }
}

impl StreamedBody {
    /// `length` bytes to come from `body`.
    pub fn new<B>(length: u64, body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        StreamedBody {
            length,
            body: Mutex::new(Some(body.map_err(Into::into).boxed_unsync())),
        }
    }

    pub fn length(&self) -> u64 {
        self.length
    }

    /// The bytes, for the one attempt that sends them.
    pub(super) fn take(&self) -> Option<UnsyncBoxBody<Bytes, BoxError>> {
        self.body.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// True once an attempt took the bytes.
    pub fn spent(&self) -> bool {
        self.body
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }
}

impl UpstreamRequest {
    /// The request to send; `parts.version` and `parts.extensions` are not
    /// sent (the gateway speaks HTTP/1.1 to the upstream).
    pub fn new(parts: http::request::Parts, body: Bytes) -> Self {
        UpstreamRequest {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            streamed: None,
        }
    }

    /// A request whose body is forwarded as it arrives (see [`StreamedBody`]).
    pub fn streamed(parts: http::request::Parts, body: StreamedBody) -> Self {
        UpstreamRequest {
            streamed: Some(body),
            ..UpstreamRequest::new(parts, Bytes::new())
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body, when it is whole (empty for a streamed one).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body forwarded as it arrives, if it is one.
    pub fn streamed_body(&self) -> Option<&StreamedBody> {
        self.streamed.as_ref()
    }

    /// The length of the body, whole or streamed.
    pub fn body_len(&self) -> u64 {
        self.streamed
            .as_ref()
            .map_or(self.body.len() as u64, StreamedBody::length)
    }

    /// True when no attempt can send the request again: its streamed body
    /// was taken by an attempt.
    pub fn spent(&self) -> bool {
        self.streamed.as_ref().is_some_and(StreamedBody::spent)
    }

    /// True for the methods the gateway may send again after a connection
    /// broke before any byte of the answer (RFC 9110 §9.2.2: GET, HEAD,
    /// OPTIONS, PUT, DELETE; TRACE is never forwarded). POST and PATCH are
    /// not: the upstream may have acted on them.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn request(method: Method) -> UpstreamRequest {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method;
        parts.uri = Uri::from_static("/api/v2/runs?x=1");
        parts.headers.insert("x-kept", "1".parse().unwrap());
        UpstreamRequest::new(parts, Bytes::from_static(b"{\"a\":1}"))
    }

    #[test]
    fn only_idempotent_methods_may_be_sent_again_after_a_reset() {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(request(method.clone()).is_idempotent(), "{method}");
        }
        for method in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!request(method.clone()).is_idempotent(), "{method}");
        }
    }

    #[test]
    fn every_attempt_writes_the_same_method_target_headers_and_length() {
        let original = request(Method::POST);
        let mut first = Vec::new();
        super::super::client::encode_head(&mut first, &original);
        assert_eq!(
            String::from_utf8(first.clone()).unwrap(),
            "POST /api/v2/runs?x=1 HTTP/1.1\r\nx-kept: 1\r\ncontent-length: 7\r\n\r\n"
        );
        let mut second = Vec::new();
        super::super::client::encode_head(&mut second, &original);
        assert_eq!(first, second);
        assert_eq!(original.body(), &Bytes::from_static(b"{\"a\":1}"));
    }
}
