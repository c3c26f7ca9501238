//! Stage 6: send a permitted request upstream. The path becomes the
//! canonical one that was judged, the headers are rewritten (client copies
//! of identity and forwarding headers stripped, the gateway's own set, the
//! W3C trace context propagated), and the upstream's answer streams back to
//! the client.

use super::{GatewayBody, Permit};
use crate::context::RequestContext;
use crate::gateway::Gateway;
use crate::observe::trace;
use crate::rejection::Rejection;
use crate::upstream::headers::{
    propagate_trace_context, rewrite_request_headers, ClientProto, ForwardContext,
};
use crate::upstream::{UpstreamLease, UpstreamRequest};
use http::Response;
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
        mut parts,
        body,
        host,
        ..
    } = permit;
    let forwarder = &gateway.forwarder;
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
    let response = forwarder
        .send(upstream, UpstreamRequest::new(parts, body))
        .await;
    gateway
        .metrics
        .observe_upstream(sent.elapsed(), response.is_ok());
    trace::record_upstream(response.as_ref().ok().map(|r| r.status()));
    Ok(response?.map(Either::Left))
}
