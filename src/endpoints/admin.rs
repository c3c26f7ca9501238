//! The reserved `/_tokengate/` paths, answered by the gateway itself and
//! never forwarded.
//!
//! Open to everyone: `health` (the process is alive) and `ready` (the token
//! store answers and the gateway is not draining; 503 otherwise). Admin-only: `status` (policy hash, load
//! time, reload history), `metrics` (Prometheus text) and `POST reload`.
//! Admin access needs a peer address in `admin.allow_from` (loopback by
//! default; `X-Forwarded-For` is never trusted) and, when `admin.teams` or
//! `admin.users` is set, a bearer token of a listed team or user.

use crate::auth::AuthError;
use crate::canonical::CanonicalPath;
use crate::config::ConfigError;
use crate::context::RequestContext;
use crate::gateway::Gateway;
use crate::live::{ReloadError, ReloadReport};
use crate::observe::metrics;
use crate::policy::PolicyError;
use crate::rejection::{error_response, json_api_response, Rejection};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

/// The first path segment reserved for the gateway.
pub const RESERVED_SEGMENT: &str = "_tokengate";

/// True for `/_tokengate` and everything below it (in any ASCII case).
pub fn is_reserved(path: &CanonicalPath) -> bool {
    path.segments()
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(RESERVED_SEGMENT))
}

/// Answers a reserved path (`ctx`'s path).
pub async fn handle<B>(
    gateway: &Gateway,
    request: &Request<B>,
    ctx: &mut RequestContext,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let path = ctx.path().clone();
    let mut segments = path.segments().skip(1);
    let endpoint = match (segments.next(), segments.next()) {
        (Some(endpoint), None) => endpoint,
        _ => "",
    };
    let method = request.method();
    let read = method == Method::GET || method == Method::HEAD;
    match (endpoint, read) {
        ("health", true) => Ok(json_api_response(
            StatusCode::OK,
            r#"{"status":"ok"}"#.to_owned(),
        )),
        ("ready", true) => {
            if gateway.live.is_draining() {
                return Ok(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the gateway is shutting down; send new requests to another replica",
                    None,
                ));
            }
            gateway.store.ping().await?;
            Ok(json_api_response(
                StatusCode::OK,
                r#"{"status":"ready"}"#.to_owned(),
            ))
        }
        ("status", true) => {
            authorize(gateway, request, ctx).await?;
            Ok(json_api_response(
                StatusCode::OK,
                gateway.live.status_json().to_string(),
            ))
        }
        ("metrics", true) => {
            authorize(gateway, request, ctx).await?;
            let mut response = Response::new(Full::new(Bytes::from(gateway.metrics.encode())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            Ok(response)
        }
        ("reload", _) if method == Method::POST => {
            authorize(gateway, request, ctx).await?;
            Ok(reload_response(gateway.reload()))
        }
        ("health" | "ready" | "status" | "metrics" | "reload", _) => {
            Err(Rejection::MethodNotAllowed(format!(
                "{path} does not accept {method}; use {}",
                if endpoint == "reload" { "POST" } else { "GET" }
            )))
        }
        _ => Err(Rejection::NotFound(format!(
            "{path} is not a gateway endpoint"
        ))),
    }
}

/// Admin access: an allowed peer address and, when configured, a bearer
/// token of a listed team or user. A failed authentication is recorded in
/// `ctx` (access log and metrics), as on the request path.
async fn authorize<B>(
    gateway: &Gateway,
    request: &Request<B>,
    ctx: &mut RequestContext,
) -> Result<(), Rejection> {
    let admin = gateway.live.admin();
    if !admin.allows(ctx.facts.client_addr.ip()) {
        return Err(Rejection::Denied {
            status: StatusCode::FORBIDDEN,
            detail: "admin endpoints are only served to addresses listed in admin.allow_from"
                .into(),
        });
    }
    if !admin.requires_token() {
        return Ok(());
    }
    let principal = match gateway
        .authenticator
        .authenticate_headers(request.headers(), None)
        .await
    {
        Ok(Some(authenticated)) => authenticated.principal,
        Ok(None) | Err(AuthError::MultipleHeaders) => return Err(Rejection::Unauthenticated(
            "admin endpoints need one `Authorization: Bearer <token>` header of a team or user in admin.teams / admin.users".into(),
        )),
        Err(err) => {
            ctx.record.auth_failure = Some(err.failure());
            return Err(err.into());
        }
    };
    let listed = |ids: &[String], id: Option<&String>| id.is_some_and(|id| ids.contains(id));
    if listed(&admin.teams, principal.team_id.as_ref())
        || listed(&admin.users, principal.user_id.as_ref())
    {
        Ok(())
    } else {
        Err(Rejection::Denied {
            status: StatusCode::FORBIDDEN,
            detail: format!(
                "token {} belongs to no team or user listed in admin.teams / admin.users",
                principal.token_id
            ),
        })
    }
}

/// 200 with the report, or 422 (500 for an unreadable file) listing every
/// problem; the old policy keeps serving either way.
fn reload_response(result: Result<ReloadReport, ReloadError>) -> Response<Full<Bytes>> {
    match result {
        Ok(report) => json_api_response(
            StatusCode::OK,
            serde_json::json!({ "reloaded": report }).to_string(),
        ),
        Err(err) => {
            let status = match &err {
                ReloadError::Config(ConfigError::Invalid { .. })
                | ReloadError::Policy(PolicyError::Invalid { .. }) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let problems: Vec<serde_json::Value> = err
                .problems()
                .iter()
                .map(|p| serde_json::json!({ "key": p.key, "message": p.message }))
                .collect();
            let body = serde_json::json!({ "errors": [{
                "status": status.as_u16().to_string(),
                "title": "reload refused",
                "detail": format!("{err}; the previous policy keeps serving"),
                "meta": { "problems": problems },
            }]});
            json_api_response(status, body.to_string())
        }
    }
}
