//! Before the body: the servers call [`Gateway::admit_before_body`] with a
//! request's head when a body is announced, before they send `100 Continue`
//! or read a byte of it. A request that its head already refuses — a bad
//! target or `Host`, an unsupported method, a bad or unknown token, or no
//! token where the policy allows nobody without one — is answered at once,
//! so nobody without a valid token makes the gateway receive and hold a
//! body (up to `limits.max_body_bytes` per connection). What it found — the
//! canonical path, the checked `Host`, the caller — travels with the
//! request ([`PreAuthenticated`]), so the request path neither checks the
//! head again nor reads the credential twice: it was read after the head
//! arrived, as fresh as the request path's own read.

use super::canonicalize::canonical_head;
use super::{authn, authz, object_storage, refuse_unsupported_method, reject, GatewayBody};
use crate::auth::{Principal, TeamAccessRead};
use crate::canonical::CanonicalPath;
use crate::context::{Arrived, Decision, RequestContext, RuleMode};
use crate::endpoints::admin;
use crate::gateway::Gateway;
use crate::observe::{
    self,
    trace::{self, Stage},
};
use crate::policy::{self, Body, Caller, Effect, Facts, Outcome};
use crate::rejection::Rejection;
use crate::ui;
use http::{Response, StatusCode};
use std::net::SocketAddr;
use std::pin::pin;
use tracing::{Instrument, Span};

/// The caller [`Gateway::admit_before_body`] authenticated (a request
/// extension only the servers set; `principal` is `None` for a request
/// without a token that the policy may allow).
#[derive(Debug, Clone)]
pub struct PreAuthenticated {
    /// The canonical path and the checked `Host` (taken by the canonical
    /// stage).
    pub head: Option<(CanonicalPath, Option<String>)>,
    pub principal: Option<Principal>,
    pub team_access: Option<TeamAccessRead>,
    /// The request's span, opened when its head was judged: the request
    /// path goes on in it, so the authentication is in the request's trace.
    pub span: Span,
}

impl Gateway {
    /// Judges a request by its head before its body is read; `Some` is the
    /// answer to send instead (logged and counted), after which the body is
    /// not read and the connection is not used again.
    pub async fn admit_before_body(
        &self,
        parts: &mut http::request::Parts,
        client_addr: SocketAddr,
    ) -> Option<Response<GatewayBody>> {
        // The web UI reads forms of people who sign in: its own rules.
        if ui::is_ui_path(parts.uri.path()) {
            return None;
        }
        let method = parts.method.clone();
        let mut ctx = match parts.extensions.get::<Arrived>() {
            Some(arrived) => RequestContext::arrived(method, client_addr, arrived.clone()),
            None => self.new_ctx(method, client_addr),
        };
        let span = trace::request_span(&parts.method, &parts.headers);
        let judged = {
            let judging = pin!(self.judge_head(parts, &mut ctx, &span));
            judging.instrument(span.clone()).await
        };
        match judged {
            Ok(None) => None,
            Ok(Some(found)) => {
                parts.extensions.insert(found);
                None
            }
            Err(rejection) => {
                let response = reject(rejection, &mut ctx);
                observe::finish(&ctx, response.status(), &self.metrics);
                trace::record_request(&span, &ctx, response.status());
                Some(response)
            }
        }
    }

    /// The head's checks; `Ok(None)` for the gateway's own endpoints, which
    /// are judged whole later.
    async fn judge_head(
        &self,
        parts: &http::request::Parts,
        ctx: &mut RequestContext,
        span: &Span,
    ) -> Result<Option<PreAuthenticated>, Rejection> {
        let host = canonical_head(parts, &self.config, ctx)?;
        if admin::is_reserved(ctx.path()) {
            return Ok(None);
        }
        refuse_unsupported_method(&parts.method)?;
        {
            let stage = pin!(authn::authenticate(self, &parts.headers, ctx));
            stage
                .instrument(trace::stage_span(Stage::Authenticate))
                .await?;
        }
        if ctx.facts.principal.is_none() {
            let facts = Facts {
                caller: Caller::Anonymous,
                org: None,
                team_id: None,
                user_id: None,
                method: &parts.method,
                path: ctx.path(),
                query: parts.uri.query(),
            };
            let policy = ctx.facts.policy.clone();
            if let Outcome::Decided(verdict) = policy.evaluate(&facts, Body::NotRead) {
                if verdict.effect == Effect::Deny {
                    // Recorded as the policy stage records a denial.
                    let record = &mut ctx.record;
                    record.rule = Some(verdict.rule_label());
                    record.rule_mode = Some(RuleMode::of(verdict.rule));
                    record.shadow = authz::shadow_record(&verdict.shadow);
                    record.decision = Some(Decision::Deny);
                    record.denial = Some(policy::NO_CREDENTIALS.to_owned());
                    return Err(Rejection::Denied {
                        status: StatusCode::UNAUTHORIZED,
                        detail: policy::NO_CREDENTIALS.to_owned(),
                    });
                }
            }
        }
        // An upload to a URL the upstream did not issue through the gateway
        // is refused before its body (often megabytes) is read.
        object_storage::check_if_upload(self, &parts.method, ctx.path().as_str()).await?;
        Ok(Some(PreAuthenticated {
            head: ctx.facts.path.take().map(|path| (path, host)),
            principal: ctx.facts.principal.take(),
            team_access: ctx.facts.team_access.take(),
            span: span.clone(),
        }))
    }
}
