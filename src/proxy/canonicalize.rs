//! Stage 1: the canonical request. The target (path, and the query a write
//! may carry), the headers the gateway judges (`Host`, `Connection`, the
//! body's content headers) and the whole body (JSON, one spelling per key)
//! are checked and put in one canonical form, or the request is refused.
//! What later stages judge is exactly what [`CanonicalRequest`] holds, and
//! that is what is forwarded. See [`crate::canonical`] for the rules.

use super::admit::PreAuthenticated;
use super::object_storage;
use crate::body::{content_length, read_body, RequestBody, StreamedLength};
use crate::canonical::{canonical_target, headers, json};
use crate::config::{AllowedHosts, Config};
use crate::context::RequestContext;
use crate::endpoints::admin;
use crate::gateway::Gateway;
use crate::rejection::Rejection;
use crate::upstream::StreamedBody;
use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::Full;
use serde_json::Value;

/// A request in the one form the gateway judges and forwards.
pub struct CanonicalRequest {
    /// Method, target, version and headers as received (the path to judge
    /// and forward is the context's canonical path).
    pub parts: http::request::Parts,
    /// The whole body, as sent (empty when `streamed`).
    pub body: Bytes,
    /// The body of an upload the server forwards as it arrives, unread
    /// ([`StreamedLength`]): opaque bytes no rule reads.
    pub streamed: Option<StreamedBody>,
    /// The body as judged: parsed, keys normalized; `None` when empty.
    pub json: Option<Value>,
    /// The checked `Host` (or `:authority`); `None` on HTTP/1.0 without one.
    pub host: Option<String>,
    /// What the server found from the head before reading the body, when
    /// it did ([`super::admit`]): the caller, for the authenticate stage.
    pub pre_authenticated: Option<PreAuthenticated>,
}

impl CanonicalRequest {
    /// The request with its body as bytes, for the gateway's own endpoints.
    /// Only an upload to the object storage has a streamed body, and its
    /// prefix is kept apart from theirs by the config: refused all the same.
    pub fn into_request(self) -> Result<Request<Full<Bytes>>, Rejection> {
        if self.streamed.is_some() {
            return Err(Rejection::NotFound(
                "an upload to the object storage goes to the upstream only".into(),
            ));
        }
        Ok(Request::from_parts(self.parts, Full::new(self.body)))
    }
}

/// The checks of a request's head: its target (the canonical path goes into
/// `ctx`), `Host` (the checked one comes back) and `Connection`. Also what
/// the servers judge before a body is read ([`super::admit`]).
pub fn canonical_head(
    parts: &http::request::Parts,
    config: &Config,
    ctx: &mut RequestContext,
) -> Result<Option<String>, Rejection> {
    let path = canonical_target(
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &ctx.facts.policy.write_query_parameters,
    )?;
    ctx.facts.path = Some(path);
    object_storage::hide_signed_key(&config.upstream.object_storage, ctx);
    let host = headers::check_host(&parts.headers, parts.uri.authority(), parts.version)?;
    // The gateway's own endpoints answer any host: a load balancer's or
    // Kubernetes' health check names the address it dials.
    if !admin::is_reserved(ctx.path()) {
        headers::check_allowed_host(&config.allowed_hosts, host.as_deref())?;
    }
    headers::check_connection(&parts.headers)?;
    Ok(host)
}

/// The web UI is not canonicalized, but answers only for `allowed_hosts`
/// too (when set).
pub fn check_ui_host<B>(
    request: &Request<B>,
    allowed_hosts: &AllowedHosts,
) -> Result<(), Rejection> {
    if allowed_hosts.is_any() {
        return Ok(());
    }
    let host = headers::check_host(
        request.headers(),
        request.uri().authority(),
        request.version(),
    )?;
    Ok(headers::check_allowed_host(allowed_hosts, host.as_deref())?)
}

/// Puts the request into canonical form; the canonical path goes into `ctx`.
pub async fn canonicalize<B: RequestBody>(
    gateway: &Gateway,
    request: Request<B>,
    ctx: &mut RequestContext,
) -> Result<CanonicalRequest, Rejection> {
    let (mut parts, body) = request.into_parts();
    let mut pre_authenticated = parts.extensions.remove::<PreAuthenticated>();
    // The head was checked before the body was read: not again.
    let host = match pre_authenticated
        .as_mut()
        .and_then(|found| found.head.take())
    {
        Some((path, host)) => {
            ctx.facts.path = Some(path);
            host
        }
        None => canonical_head(&parts, &gateway.config, ctx)?,
    };
    // An upload to the object storage is opaque bytes (an archive, a
    // state file) that no rule reads and no Rails action parses: forwarded
    // as sent, once its URL is checked ([`object_storage`]). One the
    // server streams is forwarded as it arrives, unread.
    let opaque = object_storage::is_upload(
        &gateway.config.upstream.object_storage,
        &parts.method,
        ctx.path().as_str(),
    );
    if opaque {
        if let Some(StreamedLength(length)) = parts.extensions.remove::<StreamedLength>() {
            return Ok(CanonicalRequest {
                parts,
                body: Bytes::new(),
                streamed: Some(StreamedBody::new(
                    length,
                    object_storage::GrantCheckedBody::new(
                        gateway,
                        ctx.path().as_str(),
                        length,
                        body,
                    ),
                )),
                json: None,
                host,
                pre_authenticated,
            });
        }
    }
    let limit = gateway.config.limits.max_body_bytes;
    if content_length(&parts).is_some_and(|len| len > limit) {
        return Err(Rejection::PayloadTooLarge(format!(
            "the request body is larger than {limit} bytes"
        )));
    }
    let had_framing = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let body = read_body(body, limit).await?;
    let json = if body.is_empty() || opaque {
        None
    } else {
        headers::check_body_headers(&parts.headers)?;
        Some(json::parse_normalized(&body)?.unwrap_or(Value::Null))
    };
    // The body is forwarded whole, with its exact length.
    parts.headers.remove(header::TRANSFER_ENCODING);
    if !body.is_empty() || had_framing {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok(CanonicalRequest {
        parts,
        body,
        streamed: None,
        json,
        host,
        pre_authenticated,
    })
}
