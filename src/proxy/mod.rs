//! The request path, top to bottom. [`Gateway::handle`] creates the
//! request's context, runs the stages, turns a rejection into its JSON:API
//! error, and logs and counts the request once, at the end. The stages, in
//! the order of [`Gateway::stages`]:
//!
//! 1. **canonicalize** — one canonical path (or 400);
//! 2. **reserved endpoints** — `/_tokengate/…`, answered here;
//! 3. **authenticate** ([`authn`]) — bearer token → principal (401, 503);
//! 4. **token API**, **team access API** — served here, never forwarded;
//! 5. **authorize** ([`authz`]) — the policy's judgement → a [`Permit`] (403);
//! 6. **access** ([`access`]) — the caller's access to what the request
//!    targets, when the allowing rule `requires:` it (404, 403);
//! 7. **forward** ([`forward`]) — identity headers, the upstream, the answer.
//!
//! Each stage returns what the next one needs or a [`Rejection`]; nothing is
//! forwarded after a rejection.

pub mod access;
pub mod authn;
pub mod authz;
pub mod forward;

pub use authz::Permit;

use crate::body::RequestBody;
use crate::canonical::canonicalize;
use crate::context::RequestContext;
use crate::endpoints::{admin, team_access, token_api};
use crate::gateway::Gateway;
use crate::observe;
use crate::policy;
use crate::rejection::Rejection;
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
        ctx.facts.path = Some(canonicalize(request.uri().path())?);
        if admin::is_reserved(ctx.path()) {
            return admin::handle(self, &request, ctx).await.map(generated);
        }
        refuse_unsupported_method(&request)?;
        authn::authenticate(self, &request, ctx).await?;
        if let Some(target) = token_api::route(ctx.path()) {
            return token_api::handle(self, target, request, ctx)
                .await
                .map(generated);
        }
        if let Some(route) = team_access::route(ctx.path()) {
            return team_access::handle(self, route, request, ctx)
                .await
                .map(generated);
        }
        let mut permit = authz::authorize(self, request, ctx).await?;
        access::check(self, &mut permit, ctx).await?;
        forward::forward(self, permit, upstream, ctx).await
    }
}

/// 405 for a method the gateway never forwards (policy rules can name none
/// of them).
fn refuse_unsupported_method<B>(request: &Request<B>) -> Result<(), Rejection> {
    if policy::method_bit(request.method()).is_none() {
        return Err(Rejection::MethodNotAllowed(format!(
            "method {} is not supported",
            request.method()
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
