//! The request path, top to bottom. [`Gateway::handle`] creates the
//! request's context, runs the stages, turns a rejection into its JSON:API
//! error, and logs and counts the request once, at the end (or, when the
//! client cancels it half-way, as the request is dropped, with status 499).
//! The stages, in
//! the order of [`Gateway::stages`]:
//!
//! 0. **web UI** — `/_tokengate/ui/…`, pages and forms for people,
//!    answered by [`crate::ui`] (a prefix compare for every other request);
//! 1. **canonicalize** ([`canonicalize`]) — the request in one canonical
//!    form: target, judged headers, whole body (400, 413, 415);
//! 2. **reserved endpoints** — `/_tokengate/…`, answered here;
//! 3. **authenticate** ([`authn`]) — bearer token → principal (401, 503);
//!    when a body is announced, the server did this from the head before
//!    reading the body ([`admit`]), and the principal it found is used;
//! 4. **token API**, **team access API** — served here, never forwarded;
//! 5. **authorize** ([`authz`]) — the policy's judgement → a [`Permit`] (403);
//! 6. **access** ([`access`]) — the caller's access to what the request
//!    targets, when the allowing rule `requires:` it (404, 403); an upload
//!    to the object storage, its URL's grant ([`object_storage`], 403);
//! 7. **forward** ([`forward`]) — identity headers, the upstream, the answer.
//!
//! Each stage returns what the next one needs or a [`Rejection`]; nothing is
//! forwarded after a rejection. The answers for people and for the token
//! and team access APIs are boxed futures: their state is large, and kept
//! inline it would make every request's future that large (and every move
//! of it a copy of that size). For the same reason the request's and each
//! stage's future is pinned where it is built (`pin!`) and only a reference
//! to it is wrapped in its span: `fut.instrument(span).await` moves the
//! future into the `Instrumented` and that into the await, two copies of
//! its whole state per stage and request (kilobytes; about 3k of the ~39k
//! instructions of a refused request went to them). When traces are on, the request and the
//! stages 1, 3, 5, 6 (when a rule requires access) and 7 each run in a span
//! ([`crate::observe::trace`]); when they are off, those spans are
//! `Span::none()`.

pub mod access;
pub mod admit;
pub mod authn;
pub mod authz;
pub mod canonicalize;
pub mod forward;
pub mod object_storage;

pub use authz::Permit;
pub use canonicalize::CanonicalRequest;

use crate::body::RequestBody;
use crate::context::{Arrived, RequestContext};
use crate::endpoints::{admin, team_access, tokens};
use crate::gateway::Gateway;
use crate::observe;
use crate::observe::trace::{self, Stage};
use crate::policy;
use crate::rejection::Rejection;
use crate::ui;
use crate::upstream::{UpstreamBody, UpstreamLease};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use std::net::SocketAddr;
use std::pin::pin;
use tracing::Instrument;

/// Response body: streamed from the upstream or generated here.
pub type GatewayBody = Either<UpstreamBody, Full<Bytes>>;

impl Gateway {
    /// Handles one request from `client_addr`; never fails, never panics on
    /// input. `upstream` is the client connection's upstream connection. An
    /// [`Arrived`] extension says when the request arrived and under which
    /// policy (a server that read the body first); without one, now.
    pub async fn handle<B: RequestBody>(
        &self,
        mut request: Request<B>,
        client_addr: SocketAddr,
        upstream: &UpstreamLease,
    ) -> Response<GatewayBody> {
        let method = request.method().clone();
        let ctx = match request.extensions_mut().remove::<Arrived>() {
            Some(arrived) => RequestContext::arrived(method, client_addr, arrived),
            None => self.new_ctx(method, client_addr),
        };
        // Logged and counted even when this future is dropped half-way (an
        // HTTP/2 client resetting its stream after the request was sent
        // upstream): nothing forwarded goes unrecorded.
        let mut request_record = Recorded {
            ctx,
            metrics: &self.metrics,
            finished: false,
        };
        // A request whose head was judged before its body goes on in the
        // span that judgement opened.
        let span = match request.extensions().get::<admit::PreAuthenticated>() {
            Some(found) => found.span.clone(),
            None => trace::request_span(request.method(), request.headers()),
        };
        // Pinned where it is built: only a reference moves into the span's
        // `Instrumented` (see the module docs on moves).
        let outcome = {
            let stages = pin!(self.stages(request, upstream, &mut request_record.ctx));
            stages.instrument(span.clone()).await
        };
        let ctx = &mut request_record.ctx;
        let response = match outcome {
            Ok(response) => response,
            Err(rejection) => reject(rejection, ctx),
        };
        observe::finish(ctx, response.status(), &self.metrics);
        trace::record_request(&span, ctx, response.status());
        request_record.finished = true;
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
            canonicalize::check_ui_host(&request, &self.config.allowed_hosts)?;
            return Ok(generated(Box::pin(ui::serve(self, request, ctx)).await));
        }
        let mut request = {
            let stage = pin!(canonicalize::canonicalize(self, request, ctx));
            stage
                .instrument(trace::stage_span(Stage::Canonicalize))
                .await?
        };
        if admin::is_reserved(ctx.path()) {
            let request = request.into_request()?;
            return Box::pin(admin::handle(self, &request, ctx))
                .await
                .map(generated);
        }
        refuse_unsupported_method(&request.parts.method)?;
        match request.pre_authenticated.take() {
            // The server authenticated it from the head, before the body.
            Some(found) => {
                ctx.facts.principal = found.principal;
                ctx.facts.team_access = found.team_access;
            }
            None => {
                let stage = pin!(authn::authenticate(self, &request.parts.headers, ctx));
                stage
                    .instrument(trace::stage_span(Stage::Authenticate))
                    .await?;
            }
        }
        let target = tokens::Target {
            path: ctx.path(),
            query: request.parts.uri.query(),
            method: &request.parts.method,
            json: request.json.as_ref(),
        };
        let token_route = tokens::route(target, ctx.principal());
        tokens::admit(self, token_route.as_ref(), ctx).await?;
        if let Some(route) = token_route {
            return Box::pin(tokens::handle(self, route, request.into_request()?, ctx))
                .await
                .map(generated);
        }
        if let Some(route) = team_access::route(ctx.path()) {
            return Box::pin(team_access::handle(
                self,
                route,
                request.into_request()?,
                ctx,
            ))
            .await
            .map(generated);
        }
        let mut permit =
            trace::stage_span(Stage::Authorize).in_scope(|| authz::authorize(request, ctx))?;
        if permit.need.is_some() {
            let stage = pin!(access::check(self, &mut permit, ctx));
            stage.instrument(trace::stage_span(Stage::Access)).await?;
        }
        object_storage::check_if_upload(self, &permit.parts.method, ctx.path().as_str()).await?;
        let stage = pin!(forward::forward(self, permit, upstream, ctx));
        stage.instrument(trace::stage_span(Stage::Forward)).await
    }
}

/// The status logged for a request whose client went away before its
/// answer (nginx's "client closed request").
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A request's context, logged and counted when dropped unfinished.
struct Recorded<'m> {
    ctx: RequestContext,
    metrics: &'m observe::metrics::Metrics,
    finished: bool,
}

impl Drop for Recorded<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.ctx.record.cause = Some("the client cancelled the request before its answer".into());
        let status = http::StatusCode::from_u16(CLIENT_CLOSED_REQUEST)
            .unwrap_or(http::StatusCode::BAD_REQUEST);
        observe::finish(&self.ctx, status, self.metrics);
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

/// Records a rejection in the context and turns it into its error response
/// (the detail it tells the client moves into the record: no copy).
fn reject(rejection: Rejection, ctx: &mut RequestContext) -> Response<GatewayBody> {
    let record = &mut ctx.record;
    record.store_failed = rejection.is_store_failure();
    record.cause = rejection.cause().map(str::to_owned);
    let (response, detail) = rejection.respond();
    if record.denial.is_none() {
        record.denial = Some(detail);
    }
    generated(response)
}
