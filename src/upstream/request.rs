//! [`UpstreamRequest`]: a judged request, whole, that can be sent more than
//! once. The gateway reads every body fully before judging it, so the body
//! is `Bytes`; each attempt builds its own hyper request from the same
//! method, target, headers and bytes. A retry never depends on hyper
//! handing an unsent request back.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::Full;

/// The body hyper sends: the whole judged body, in one piece.
pub type SendBody = Full<Bytes>;

/// A request ready for the upstream: origin-form target, rewritten headers,
/// and exactly the body bytes that were judged.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl UpstreamRequest {
    /// The request to send; `parts.extensions` are not sent (hyper would
    /// ignore them anyway).
    pub fn new(parts: http::request::Parts, body: Bytes) -> Self {
        UpstreamRequest {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
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

    /// One attempt's copy for hyper: the headers are copied, the body bytes
    /// are shared.
    pub(crate) fn to_hyper(&self) -> Request<SendBody> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

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

    #[tokio::test]
    async fn every_attempt_carries_the_same_method_target_headers_and_bytes() {
        let original = request(Method::POST);
        for _ in 0..2 {
            let (parts, body) = original.to_hyper().into_parts();
            assert_eq!(parts.method, Method::POST);
            assert_eq!(parts.uri, "/api/v2/runs?x=1");
            assert_eq!(parts.headers["x-kept"], "1");
            let bytes = body.collect().await.unwrap().to_bytes();
            assert_eq!(bytes, Bytes::from_static(b"{\"a\":1}"));
        }
    }
}
