//! The request path, top to bottom. [`Gateway::handle`] creates the
//! request's context, runs the stages, turns a rejection into its JSON:API
//! error, and logs and counts the request once, at the end. The stages, in
//! the order of [`Gateway::stages`]:
//!
//! 0. **web UI** — `/_tokengate/ui/…`, pages and forms for people,
//!    answered by [`crate::ui`] (a prefix compare for every other request);
//! 1. **canonicalize** ([`canonicalize`]) — the request in one canonical
//!    form: target, judged headers, whole body (400, 413, 415);
//! 2. **reserved endpoints** — `/_tokengate/…`, answered here;
//! 3. **authenticate** ([`authn`]) — bearer token → principal (401, 503);
//! 4. **token API** — served here, never forwarded;
//! 5. **authorize** ([`authz`]) — the policy's judgement → a [`Permit`] (403);
//! 6. **forward** ([`forward`]) — identity headers, the upstream, the answer.
//!
//! Each stage returns what the next one needs or a [`Rejection`]; nothing is
//! forwarded after a rejection.

pub mod authn;
pub mod authz;
pub mod canonicalize;
pub mod forward;

pub use authz::Permit;
pub use canonicalize::CanonicalRequest;

use crate::body::RequestBody;
use crate::context::RequestContext;
use crate::endpoints::{admin, tokens};
use crate::gateway::Gateway;
use crate::observe;
use crate::policy;
use crate::rejection::Rejection;
use crate::ui;
use crate::upstream::UpstreamLease;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::net::SocketAddr;

/// Response body: streamed from the upstream or generated here.
pub type GatewayBody = Either<Incoming, Full<Bytes>>;

impl Gateway {
    /// Handles one request from `client_addr`; never fails, never panics on
    /// input. `upstream` is the client connection's upstream connection.
    pub async fn handle<B: RequestBody>(
        &self,
        request: Request<B>,
        client_addr: SocketAddr,
        upstream: &UpstreamLease,
    ) -> Response<GatewayBody> {
        let mut ctx = self.new_ctx(request.method().clone(), client_addr);
        let response = match self.stages(request, upstream, &mut ctx).await {
            Ok(response) => response,
            Err(rejection) => reject(rejection, &mut ctx),
        };
        observe::finish(&ctx, response.status(), &self.metrics);
        response
    }

    /// The stages of one request, in order.
    async fn stages<B: RequestBody>(
        &self,
        request: Request<B>,
        upstream: &UpstreamLease,
        ctx: &mut RequestContext,
    ) -> Result<Response<GatewayBody>, Rejection> {
        // The web UI reads forms and cookies of its own, so it comes before
        // the canonical (JSON-only) request; it is never forwarded.
        if ui::is_ui_path(request.uri().path()) {
            return Ok(generated(ui::serve(self, request, ctx).await));
        }
        let request = canonicalize::canonicalize(self, request, ctx).await?;
        if admin::is_reserved(ctx.path()) {
            let request = request.into_request();
            return admin::handle(self, &request, ctx).await.map(generated);
        }
        refuse_unsupported_method(&request.parts.method)?;
        authn::authenticate(self, &request.parts.headers, ctx).await?;
        let target = tokens::Target {
            path: ctx.path(),
            query: request.parts.uri.query(),
            method: &request.parts.method,
            json: request.json.as_ref(),
        };
        let token_route = tokens::route(target, ctx.principal());
        tokens::admit(self, token_route.as_ref(), ctx).await?;
        if let Some(route) = token_route {
            return tokens::handle(self, route, request.into_request(), ctx)
                .await
                .map(generated);
        }
        let permit = authz::authorize(request, ctx)?;
        forward::forward(self, permit, upstream, ctx).await
    }
}

/// 405 for a method the gateway never forwards (policy rules can name none
/// of them).
fn refuse_unsupported_method(method: &http::Method) -> Result<(), Rejection> {
    if policy::method_bit(method).is_none() {
        return Err(Rejection::MethodNotAllowed(format!(
            "method {method} is not supported"
        )));
    }
    Ok(())
}

/// A response the gateway wrote itself.
fn generated(response: Response<Full<Bytes>>) -> Response<GatewayBody> {
    response.map(Either::Right)
}

/// Records a rejection in the context and turns it into its error response.
fn reject(rejection: Rejection, ctx: &mut RequestContext) -> Response<GatewayBody> {
    let record = &mut ctx.record;
    record.store_failed = rejection.is_store_failure();
    record.cause = rejection.cause().map(str::to_owned);
    if record.denial.is_none() {
        record.denial = Some(rejection.to_string());
    }
    generated(rejection.into_response())
}
