//! Stage 6: send a permitted request upstream. The path becomes the
//! canonical one that was judged, the headers are rewritten (client copies
//! of identity and forwarding headers stripped, the gateway's own set), and
//! the upstream's answer streams back to the client.

use super::{GatewayBody, Permit};
use crate::context::RequestContext;
use crate::gateway::Gateway;
use crate::rejection::Rejection;
use crate::upstream::headers::{rewrite_request_headers, ForwardContext};
use crate::upstream::UpstreamLease;
use http::{Request, Response};
use http_body_util::Either;
use std::time::Instant;

/// Forwards `permit` on the client connection's upstream connection.
pub async fn forward(
    gateway: &Gateway,
    permit: Permit,
    upstream: &UpstreamLease,
    ctx: &mut RequestContext,
) -> Result<Response<GatewayBody>, Rejection> {
    let Permit {
        mut parts, body, ..
    } = permit;
    let forwarder = &gateway.forwarder;
    parts.uri = forwarder.upstream_uri(ctx.path(), parts.uri.query())?;
    rewrite_request_headers(
        &mut parts.headers,
        &ForwardContext {
            principal: ctx.principal(),
            client_addr: ctx.facts.client_addr,
            forward_authorization: forwarder.forward_authorization(),
        },
        forwarder.upstream_host(),
    );
    let sent = Instant::now();
    let response = forwarder
        .send(upstream, Request::from_parts(parts, body))
        .await;
    gateway
        .metrics
        .observe_upstream(sent.elapsed(), response.is_ok());
    Ok(response?.map(Either::Left))
}
