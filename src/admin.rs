//! The reserved `/_tokengate/` paths, answered by the gateway itself and
//! never forwarded: `health` (the process is alive) and `ready` (the token
//! store answers; 503 otherwise).

use crate::canonical::CanonicalPath;
use crate::gateway::Gateway;
use crate::rejection::{json_api_response, Rejection};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;

/// The first path segment reserved for the gateway.
pub const RESERVED_SEGMENT: &str = "_tokengate";

/// True for `/_tokengate` and everything below it (in any ASCII case).
pub fn is_reserved(path: &CanonicalPath) -> bool {
    path.segments()
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(RESERVED_SEGMENT))
}

/// Answers a reserved path.
pub async fn handle(
    gateway: &Gateway,
    path: &CanonicalPath,
    method: &Method,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let endpoint = path.segments().nth(1).unwrap_or("");
    match (method, endpoint) {
        (&Method::GET | &Method::HEAD, "health") => Ok(json_api_response(
            StatusCode::OK,
            r#"{"status":"ok"}"#.to_owned(),
        )),
        (&Method::GET | &Method::HEAD, "ready") => match gateway.store.ping().await {
            Ok(()) => Ok(json_api_response(
                StatusCode::OK,
                r#"{"status":"ready"}"#.to_owned(),
            )),
            Err(err) => {
                tracing::warn!(error = %err, "readiness check failed");
                Err(Rejection::StoreUnavailable(
                    "the token store is unavailable".into(),
                ))
            }
        },
        _ => Err(Rejection::NotFound(format!(
            "{path} is not a gateway endpoint"
        ))),
    }
}
