//! Stage 6: send a permitted request upstream. The path becomes the
//! canonical one that was judged, the headers are rewritten (client copies
//! of identity and forwarding headers stripped, the gateway's own set, the
//! W3C trace context propagated), and the upstream's answer streams back to
//! the client. The answer to a creation that may issue upload URLs is read
//! first: a configuration version's is the one place that says which
//! workspace it is of (see the resolver), and the upload URLs in it are
//! the only ones the gateway lets clients upload to ([`object_storage`]).

use super::{object_storage, GatewayBody, Permit};
use crate::context::RequestContext;
use crate::gateway::Gateway;
use crate::observe::trace;
use crate::rejection::Rejection;
use crate::upstream::headers::{
    propagate_trace_context, rewrite_request_headers, ClientProto, ForwardContext,
};
use crate::upstream::{UpstreamBody, UpstreamLease, UpstreamRequest};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use std::time::Instant;

/// Forwards `permit` on the client connection's upstream connection.
pub async fn forward(
    gateway: &Gateway,
    permit: Permit,
    upstream: &UpstreamLease,
    ctx: &mut RequestContext,
) -> Result<Response<GatewayBody>, Rejection> {
    let Permit {
        mut parts,
        body,
        streamed,
        host,
        ..
    } = permit;
    let forwarder = &gateway.forwarder;
    let method = parts.method.clone();
    let path = ctx.path().as_str();
    let created_version_of = creates_configuration_version(&method, path);
    let issues_uploads =
        object_storage::issues_uploads(&gateway.config.upstream.object_storage, &method, path);
    let reads_answer = created_version_of.is_some() || issues_uploads;
    if reads_answer {
        // The answer is read here: ask for it uncompressed (a client's
        // `Accept-Encoding: gzip`, which Go's HTTP client sends by
        // default, would leave nothing to read).
        parts.headers.remove(http::header::ACCEPT_ENCODING);
    }
    parts.uri = forwarder.upstream_uri(ctx.path(), parts.uri.query())?;
    rewrite_request_headers(
        &mut parts.headers,
        &ForwardContext {
            principal: ctx.principal(),
            client_addr: ctx.facts.client_addr,
            forward_authorization: forwarder.forward_authorization(),
            client_host: host.as_deref(),
            client_proto: ClientProto::of(&parts.extensions),
        },
        forwarder.upstream_host(),
        &mut upstream.header_values(),
    );
    // The forward span (current when traces are on) is the upstream's parent.
    propagate_trace_context(&mut parts.headers, trace::upstream_parent());
    let sent = Instant::now();
    let request = match streamed {
        Some(streamed) => UpstreamRequest::streamed(parts, streamed),
        None => UpstreamRequest::new(parts, body),
    };
    let response = forwarder.send(upstream, request).await;
    gateway
        .metrics
        .observe_upstream(sent.elapsed(), response.is_ok());
    trace::record_upstream(response.as_ref().ok().map(|r| r.status()));
    let response = response?;
    if response.status().is_success()
        && object_storage::is_upload(&gateway.config.upstream.object_storage, &method, path)
    {
        object_storage::use_up_grant(gateway, path).await;
    }
    if !matches!(response.status(), StatusCode::CREATED | StatusCode::OK)
        || !reads_answer
        || declared_length(&response).is_some_and(|len| len > MAX_CREATION_ANSWER as u64)
    {
        return Ok(response.map(Either::Left));
    }
    let (response, doc) = read_creation_answer(response).await?;
    if let Some(doc) = doc {
        if let Some(workspace) = created_version_of {
            gateway
                .access
                .resolver
                .learn_created_configuration_version(&doc, workspace);
        }
        if issues_uploads {
            object_storage::learn_grants(gateway, &doc).await;
        }
    }
    Ok(response)
}

/// The workspace of `POST /api/v2/workspaces/{id}/configuration-versions`:
/// the one request that tells which workspace a configuration version is
/// of (its own document never does).
fn creates_configuration_version<'p>(method: &Method, path: &'p str) -> Option<&'p str> {
    if method != Method::POST {
        return None;
    }
    let workspace = path
        .strip_prefix("/api/v2/workspaces/")?
        .strip_suffix("/configuration-versions")?;
    (!workspace.contains('/')).then_some(workspace)
}

/// The largest creation answer read to learn from it (TFE's are well
/// under 2 KiB).
const MAX_CREATION_ANSWER: usize = 64 * 1024;

/// The `Content-Length` an answer declares, if any.
fn declared_length<B>(response: &Response<B>) -> Option<u64> {
    response
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads a creation's answer (it is small) and hands it on unchanged, with
/// its JSON document when it is one.
async fn read_creation_answer(
    response: Response<UpstreamBody>,
) -> Result<(Response<GatewayBody>, Option<serde_json::Value>), Rejection> {
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_CREATION_ANSWER)
        .collect()
        .await
        .map_err(|e| Rejection::BadGateway {
            detail: "the upstream's answer could not be read".into(),
            cause: Some(e.to_string()),
        })?
        .to_bytes();
    let doc = serde_json::from_slice::<serde_json::Value>(&body).ok();
    Ok((
        Response::from_parts(parts, Either::Right(Full::new(body))),
        doc,
    ))
}
