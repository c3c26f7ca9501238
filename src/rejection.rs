//! The one place where a refused request becomes an HTTP response: a JSON:API
//! error document with content type `application/vnd.api+json`.
//!
//! Errors of the layers below become a [`Rejection`] through pure `From`
//! conversions: no logging in them. An internal cause (why the store or the
//! upstream failed) travels in the rejection and is logged once, beside the
//! access line, never sent to the client.

use crate::access::{AccessError, ResolveError};
use crate::auth::AuthError;
use crate::body::BodyError;
use crate::canonical::headers::HeaderError;
use crate::canonical::json::JsonError;
use crate::canonical::{CanonicalError, TargetError};
use crate::policy::{NeedError, TargetSource};
use crate::store::StoreError;
use crate::token::lifecycle::IssueError;
use crate::upstream::UpstreamError;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub const JSON_API: &str = "application/vnd.api+json";

/// Every way a request can be refused. Nothing is forwarded after one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 400: the request is malformed (path, headers, body).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credentials; `detail` says what was wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403 or 404 from a policy rule (or the token API hiding what exists).
    #[error("{detail}")]
    Denied { status: StatusCode, detail: String },
    /// 404 for reserved gateway paths that do not exist.
    #[error("{0}")]
    NotFound(String),
    /// 405: a method tokengate never forwards.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 413: body past the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 400: a query parameter the gateway cannot use; names the parameter
    /// (`source.parameter`).
    #[error("{detail}")]
    BadParameter { detail: String, parameter: String },
    /// 422: a well-formed request whose content is not acceptable.
    #[error("{detail}")]
    Unprocessable {
        detail: String,
        pointer: Option<String>,
    },
    /// 415: a body type this caller may not send.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: too many failed attempts.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: the token store cannot be reached or failed; fail closed.
    #[error("{detail}")]
    StoreUnavailable { detail: String, cause: String },
    /// 502: the upstream could not be reached or failed.
    #[error("{detail}")]
    BadGateway {
        detail: String,
        cause: Option<String>,
    },
    /// 504: the upstream did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::BadRequest(_) | Rejection::BadParameter { .. } => StatusCode::BAD_REQUEST,
            Rejection::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Rejection::Denied { status, .. } => *status,
            Rejection::NotFound(_) => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Rejection::StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            Rejection::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// What went wrong inside, for the log line (never for the client).
    pub fn cause(&self) -> Option<&str> {
        match self {
            Rejection::StoreUnavailable { cause, .. } => Some(cause),
            Rejection::BadGateway { cause, .. } => cause.as_deref(),
            _ => None,
        }
    }

    /// True when the token store failed.
    pub fn is_store_failure(&self) -> bool {
        matches!(self, Rejection::StoreUnavailable { .. })
    }

    /// 404 without saying whether the thing exists (as Terraform Enterprise
    /// answers for what a caller may not see).
    pub fn hidden() -> Rejection {
        Rejection::Denied {
            status: StatusCode::NOT_FOUND,
            detail: "not found".into(),
        }
    }

    /// What the client is told (the error document's `detail`): what
    /// `Display` writes, borrowed.
    pub fn detail(&self) -> &str {
        match self {
            Rejection::BadRequest(detail)
            | Rejection::Unauthenticated(detail)
            | Rejection::NotFound(detail)
            | Rejection::MethodNotAllowed(detail)
            | Rejection::PayloadTooLarge(detail)
            | Rejection::UnsupportedMediaType(detail)
            | Rejection::TooManyRequests(detail)
            | Rejection::GatewayTimeout(detail)
            | Rejection::Denied { detail, .. }
            | Rejection::BadParameter { detail, .. }
            | Rejection::Unprocessable { detail, .. }
            | Rejection::StoreUnavailable { detail, .. }
            | Rejection::BadGateway { detail, .. } => detail,
        }
    }

    /// [`Rejection::detail`], moved out.
    fn into_detail(self) -> String {
        match self {
            Rejection::BadRequest(detail)
            | Rejection::Unauthenticated(detail)
            | Rejection::NotFound(detail)
            | Rejection::MethodNotAllowed(detail)
            | Rejection::PayloadTooLarge(detail)
            | Rejection::UnsupportedMediaType(detail)
            | Rejection::TooManyRequests(detail)
            | Rejection::GatewayTimeout(detail)
            | Rejection::Denied { detail, .. }
            | Rejection::BadParameter { detail, .. }
            | Rejection::Unprocessable { detail, .. }
            | Rejection::StoreUnavailable { detail, .. }
            | Rejection::BadGateway { detail, .. } => detail,
        }
    }

    /// The JSON:API error response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        self.respond().0
    }

    /// The JSON:API error response, and the detail it tells the client
    /// (moved out of the rejection, not copied), for the access line.
    pub fn respond(self) -> (Response<Full<Bytes>>, String) {
        let status = self.status();
        let source = match &self {
            Rejection::Unprocessable {
                pointer: Some(pointer),
                ..
            } => Some(("pointer", pointer.as_str())),
            Rejection::BadParameter { parameter, .. } => Some(("parameter", parameter.as_str())),
            _ => None,
        };
        let body = if status == StatusCode::UNAUTHORIZED && source.is_none() {
            unauthorized_body(self.detail())
        } else {
            error_body(status, self.detail(), source)
        };
        let mut response = json_api_bytes(status, body);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        (response, self.into_detail())
    }
}

impl From<CanonicalError> for Rejection {
    fn from(err: CanonicalError) -> Self {
        Rejection::BadRequest(err.to_string())
    }
}

impl From<TargetError> for Rejection {
    fn from(err: TargetError) -> Self {
        Rejection::BadRequest(err.to_string())
    }
}

impl From<HeaderError> for Rejection {
    fn from(err: HeaderError) -> Self {
        if err.is_media_type() {
            Rejection::UnsupportedMediaType(err.to_string())
        } else {
            Rejection::BadRequest(err.to_string())
        }
    }
}

impl From<JsonError> for Rejection {
    fn from(err: JsonError) -> Self {
        Rejection::BadRequest(err.to_string())
    }
}

impl From<BodyError> for Rejection {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge { .. } => Rejection::PayloadTooLarge(err.to_string()),
            BodyError::Unreadable => Rejection::BadRequest(err.to_string()),
        }
    }
}

impl From<StoreError> for Rejection {
    fn from(err: StoreError) -> Self {
        let detail = match err {
            StoreError::Unavailable(_) => "the token store is unavailable; try again",
            _ => "the token store failed; try again",
        };
        Rejection::StoreUnavailable {
            detail: detail.into(),
            cause: err.to_string(),
        }
    }
}

impl From<AuthError> for Rejection {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Store(store) => store.into(),
            AuthError::MultipleHeaders => Rejection::BadRequest(err.to_string()),
            other => Rejection::Unauthenticated(other.to_string()),
        }
    }
}

impl From<UpstreamError> for Rejection {
    fn from(err: UpstreamError) -> Self {
        match err {
            UpstreamError::Timeout { .. } => Rejection::GatewayTimeout(err.to_string()),
            UpstreamError::BadTarget(_) => Rejection::BadRequest(err.to_string()),
            UpstreamError::Closed => Rejection::BadGateway {
                detail: err.to_string(),
                cause: None,
            },
            UpstreamError::Unreachable { ref cause } | UpstreamError::Failed { ref cause } => {
                Rejection::BadGateway {
                    cause: Some(cause.clone()),
                    detail: err.to_string(),
                }
            }
        }
    }
}

impl From<IssueError> for Rejection {
    fn from(err: IssueError) -> Self {
        match err {
            IssueError::Store(err) => err.into(),
            IssueError::Hash(cause) => Rejection::StoreUnavailable {
                detail: "the token could not be created; try again".into(),
                cause,
            },
        }
    }
}

impl From<AccessError> for Rejection {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Hidden { .. } => Rejection::hidden(),
            AccessError::Forbidden { detail, .. } => Rejection::Denied {
                status: StatusCode::FORBIDDEN,
                detail,
            },
            AccessError::Store(err) => err.into(),
            AccessError::Unresolved { ref source, .. } => match source {
                ResolveError::NotFound { .. } => Rejection::hidden(),
                ResolveError::Timeout { .. } => Rejection::GatewayTimeout(err.to_string()),
                _ => Rejection::BadGateway {
                    detail: match &err {
                        AccessError::Unresolved { target, .. } => format!(
                            "the gateway could not check access to {target}: the upstream gave no usable answer"
                        ),
                        _ => err.to_string(),
                    },
                    cause: Some(err.to_string()),
                },
            },
        }
    }
}

impl From<NeedError> for Rejection {
    fn from(err: NeedError) -> Self {
        match &err {
            NeedError::NoSuchId => Rejection::hidden(),
            NeedError::Ambiguous(_)
            | NeedError::Missing {
                location: TargetSource::Query(_),
                ..
            }
            | NeedError::Malformed {
                location: TargetSource::Query(_),
                ..
            } => Rejection::BadRequest(err.to_string()),
            NeedError::Missing { .. } | NeedError::Malformed { .. } => Rejection::Unprocessable {
                pointer: err.pointer().map(str::to_owned),
                detail: err.to_string(),
            },
        }
    }
}

/// Builds a JSON:API error document response.
pub fn error_response(
    status: StatusCode,
    detail: &str,
    pointer: Option<&str>,
) -> Response<Full<Bytes>> {
    json_api_bytes(
        status,
        error_body(status, detail, pointer.map(|pointer| ("pointer", pointer))),
    )
}

/// The bytes of a JSON:API error document with one error, written by hand:
/// exactly what `serde_json` writes for
/// `{"errors":[{"status":…,"title":…,"detail":…,"source":{key:value}}]}`
/// (its maps sort their keys; strings escaped as it escapes them), without
/// building a `serde_json::Value` (a refused request is the cheapest the
/// gateway answers; a test compares both for awkward details).
fn error_body(status: StatusCode, detail: &str, source: Option<(&str, &str)>) -> Bytes {
    let reason = status.canonical_reason().unwrap_or("error");
    let extra = source.map_or(0, |(key, value)| key.len() + value.len() + 16);
    let mut out = Vec::with_capacity(64 + reason.len() + detail.len() + extra);
    out.extend_from_slice(br#"{"errors":[{"detail":"#);
    push_json_str(&mut out, detail);
    if let Some((key, value)) = source {
        out.extend_from_slice(br#","source":{"#);
        push_json_str(&mut out, key);
        out.push(b':');
        push_json_str(&mut out, value);
        out.push(b'}');
    }
    out.extend_from_slice(br#","status":""#);
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(br#"","title":"#);
    // A reason phrase is printable ASCII; lower-cased in place after it is
    // written (escaped, should one ever need it).
    let title_at = out.len();
    push_json_str(&mut out, reason);
    out[title_at..].make_ascii_lowercase();
    out.extend_from_slice(b"}]}");
    Bytes::from(out)
}

/// At most this many 401 documents are kept per worker thread.
const UNAUTHORIZED_KEPT: usize = 16;

thread_local! {
    /// The 401 documents rendered on this thread, by detail: a 401's detail
    /// is one of the gateway's own few fixed texts (why a token failed), so a
    /// flood of forged tokens is answered with a copy of one of a handful.
    static UNAUTHORIZED_BODIES: std::cell::RefCell<Vec<(Box<str>, Bytes)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The 401 error document with `detail`: rendered once per thread (up to
/// [`UNAUTHORIZED_KEPT`] details; past that, every time) and shared.
fn unauthorized_body(detail: &str) -> Bytes {
    UNAUTHORIZED_BODIES.with(|kept| {
        let mut kept = kept.borrow_mut();
        if let Some((_, body)) = kept.iter().find(|(known, _)| **known == *detail) {
            return body.clone();
        }
        let body = error_body(StatusCode::UNAUTHORIZED, detail, None);
        if kept.len() < UNAUTHORIZED_KEPT {
            kept.push((detail.into(), body.clone()));
        }
        body
    })
}

/// `value` as a JSON string, as `serde_json` escapes it; printable ASCII
/// without a quote or backslash (almost every detail) is copied as it is,
/// which is what `serde_json` writes for it.
fn push_json_str(out: &mut Vec<u8>, value: &str) {
    if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// A response with a JSON:API body.
pub fn json_api_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    json_api_bytes(status, Bytes::from(body))
}

/// A response with a JSON:API body of bytes.
fn json_api_bytes(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn denial_is_a_json_api_error_document() {
        let response = Rejection::Denied {
            status: StatusCode::FORBIDDEN,
            detail: "no (policy rule `r1`)".into(),
        }
        .into_response();
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON_API);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["errors"][0]["status"], "403");
        assert_eq!(doc["errors"][0]["title"], "forbidden");
        assert_eq!(doc["errors"][0]["detail"], "no (policy rule `r1`)");
    }

    #[test]
    fn unauthenticated_asks_for_a_bearer_token() {
        let response = Rejection::Unauthenticated("missing".into()).into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    /// The error document as it was built before it was written by hand:
    /// `serde_json` values (maps sort their keys), the title the status's
    /// reason phrase in lower case.
    fn reference_document(
        status: StatusCode,
        detail: &str,
        source: Option<(&str, &str)>,
    ) -> String {
        let title = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase();
        let mut error = serde_json::json!({
            "status": status.as_u16().to_string(),
            "title": title,
            "detail": detail,
        });
        if let Some((key, value)) = source {
            error["source"] = serde_json::json!({ key: value });
        }
        serde_json::json!({ "errors": [error] }).to_string()
    }

    #[test]
    fn error_documents_are_byte_for_byte_what_serde_json_wrote() {
        let details = [
            "",
            "the token is unknown or was revoked",
            "the Authorization header is not `Bearer <token>`",
            "quote \" and backslash \\ and slash /",
            "controls \u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1b}\u{1f} and del \u{7f}",
            "non-ASCII: é, 日本, 🦀, \u{2028}\u{2029}",
            "</script><!-- & ' %",
        ];
        let sources = [
            None,
            Some(("pointer", "/data/attributes/auto-apply")),
            Some(("parameter", "filter[\"x\"]\n")),
        ];
        let statuses = [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::IM_A_TEAPOT,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            StatusCode::from_u16(599).unwrap(),
        ];
        for status in statuses {
            for detail in details {
                for source in sources {
                    let written = error_body(status, detail, source);
                    let reference = reference_document(status, detail, source);
                    assert_eq!(
                        std::str::from_utf8(&written).unwrap(),
                        reference,
                        "{status} {detail:?} {source:?}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn a_kept_401_document_is_the_one_of_its_detail() {
        // More details than are kept, each twice, in turn: every answer
        // carries its own detail, kept or not.
        for round in 0..2 {
            for i in 0..UNAUTHORIZED_KEPT + 3 {
                let detail = format!("failure \"{i}\"");
                let response = Rejection::Unauthenticated(detail.clone()).into_response();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(
                    body,
                    reference_document(StatusCode::UNAUTHORIZED, &detail, None).as_bytes(),
                    "round {round}, detail {i}"
                );
            }
        }
        UNAUTHORIZED_BODIES.with(|kept| assert_eq!(kept.borrow().len(), UNAUTHORIZED_KEPT));
    }

    #[tokio::test]
    async fn every_rejection_answers_its_detail_and_moves_it_out() {
        let detail = || "a detail with \"quotes\"".to_owned();
        let rejections = [
            Rejection::BadRequest(detail()),
            Rejection::Unauthenticated(detail()),
            Rejection::Denied {
                status: StatusCode::FORBIDDEN,
                detail: detail(),
            },
            Rejection::NotFound(detail()),
            Rejection::MethodNotAllowed(detail()),
            Rejection::PayloadTooLarge(detail()),
            Rejection::BadParameter {
                detail: detail(),
                parameter: "page[size]".into(),
            },
            Rejection::Unprocessable {
                detail: detail(),
                pointer: Some("/data".into()),
            },
            Rejection::Unprocessable {
                detail: detail(),
                pointer: None,
            },
            Rejection::UnsupportedMediaType(detail()),
            Rejection::TooManyRequests(detail()),
            Rejection::StoreUnavailable {
                detail: detail(),
                cause: "inner".into(),
            },
            Rejection::BadGateway {
                detail: detail(),
                cause: None,
            },
            Rejection::GatewayTimeout(detail()),
        ];
        for rejection in rejections {
            let status = rejection.status();
            assert_eq!(rejection.detail(), rejection.to_string());
            let source = match &rejection {
                Rejection::BadParameter { parameter, .. } => Some(("parameter", parameter.clone())),
                Rejection::Unprocessable {
                    pointer: Some(pointer),
                    ..
                } => Some(("pointer", pointer.clone())),
                _ => None,
            };
            let shown = rejection.to_string();
            let (response, moved) = rejection.respond();
            assert_eq!(moved, shown);
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[header::CONTENT_TYPE], JSON_API);
            assert_eq!(
                response.headers().contains_key(header::WWW_AUTHENTICATE),
                status == StatusCode::UNAUTHORIZED
            );
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let source = source.as_ref().map(|(key, value)| (*key, value.as_str()));
            assert_eq!(body, reference_document(status, &shown, source).as_bytes());
        }
    }
}
