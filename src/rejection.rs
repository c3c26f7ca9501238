//! The one place where a refused request becomes an HTTP response: a JSON:API
//! error document with content type `application/vnd.api+json`.
//!
//! Errors of the layers below become a [`Rejection`] through pure `From`
//! conversions: no logging in them. An internal cause (why the store or the
//! upstream failed) travels in the rejection and is logged once, beside the
//! access line, never sent to the client.

use crate::auth::AuthError;
use crate::body::BodyError;
use crate::canonical::headers::HeaderError;
use crate::canonical::json::JsonError;
use crate::canonical::{CanonicalError, TargetError};
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

    /// The JSON:API error response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let source = match &self {
            Rejection::Unprocessable {
                pointer: Some(pointer),
                ..
            } => Some(serde_json::json!({ "pointer": pointer })),
            Rejection::BadParameter { parameter, .. } => {
                Some(serde_json::json!({ "parameter": parameter }))
            }
            _ => None,
        };
        let mut response = error_document(status, &self.to_string(), source);
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
        response
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

/// Title of an error document: the status's reason phrase in lower case,
/// as Terraform Enterprise writes them (`not found`, `forbidden`).
fn title(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
}

/// Builds a JSON:API error document response.
pub fn error_response(
    status: StatusCode,
    detail: &str,
    pointer: Option<&str>,
) -> Response<Full<Bytes>> {
    error_document(
        status,
        detail,
        pointer.map(|pointer| serde_json::json!({ "pointer": pointer })),
    )
}

/// Builds a JSON:API error document response with an optional `source`.
fn error_document(
    status: StatusCode,
    detail: &str,
    source: Option<serde_json::Value>,
) -> Response<Full<Bytes>> {
    let mut error = serde_json::json!({
        "status": status.as_u16().to_string(),
        "title": title(status),
        "detail": detail,
    });
    if let Some(source) = source {
        error["source"] = source;
    }
    let body = serde_json::json!({ "errors": [error] }).to_string();
    json_api_response(status, body)
}

/// A response with a JSON:API body.
pub fn json_api_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
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
}
