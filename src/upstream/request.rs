//! [`UpstreamRequest`]: a judged request, whole, that can be sent more than
//! once. The gateway reads every body fully before judging it, so the body
//! is `Bytes`; each attempt writes the same method, target, headers and
//! bytes ([`super::client`]).

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

/// A request ready for the upstream: origin-form target, rewritten headers,
/// and exactly the body bytes that were judged.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
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

    pub fn body(&self) -> &Bytes {
        &self.body
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
