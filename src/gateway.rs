//! The request path: canonicalize → authenticate → authorize → forward, with
//! a typed context carried through so that one log line tells the whole story.
//!
//! Each stage returns "go on" or a [`Rejection`]; nothing is forwarded after
//! a rejection. [`Gateway::handle`] is the thin entry point that runs them.

use crate::access_log::log_request;
use crate::admin;
use crate::auth::{AuthError, Authenticator, Principal};
use crate::canonical::{canonicalize, CanonicalPath};
use crate::config::Config;
use crate::forward::{
    boxed, refuse_form_posts_from_service_accounts, rewrite_request_headers, ForwardContext,
    Forwarder,
};
use crate::metrics::Metrics;
use crate::policy::{self, Body, Caller, Effect, Facts, Outcome, Policy};
use crate::rejection::Rejection;
use crate::reload::LiveState;
use crate::request_body::{content_length, read_body};
use crate::store::{self, Store, StoreError};
use crate::token_api;
use crate::upstream_pool::UpstreamLease;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Response body: streamed from the upstream or generated here.
pub type GatewayBody = Either<Incoming, Full<Bytes>>;

/// Everything learned about one request, filled in stage by stage.
#[derive(Default)]
pub struct RequestContext {
    pub path: Option<CanonicalPath>,
    pub principal: Option<Principal>,
    pub rule_id: Option<Arc<str>>,
    pub rule_mode: Option<&'static str>,
    pub decision: Option<&'static str>,
    pub denial: Option<String>,
    pub auth_failure: Option<&'static str>,
    /// Shadow rules that matched: (rule id, `would_deny` | `would_allow`).
    pub shadow: Vec<(Arc<str>, &'static str)>,
    /// The policy this request is judged by, taken when it arrived; a
    /// reload during the request does not change it.
    pub policy: Option<Arc<Policy>>,
}

/// The gateway's shared state: built once from a config, cheap to share.
pub struct Gateway {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub authenticator: Authenticator,
    pub policy: ArcSwap<Policy>,
    pub forwarder: Forwarder,
    pub metrics: Metrics,
    /// Reload status and the live admin settings.
    pub live: LiveState,
}

/// Why a gateway could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the configured store backend.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    match &config.store {
        crate::config::StoreConfig::Redis { url, timeout } => {
            Ok(Arc::new(store::redis::RedisStore::new(url, *timeout)?))
        }
        crate::config::StoreConfig::Embedded { path } => {
            Ok(Arc::new(store::embedded::EmbeddedStore::open(path)?))
        }
    }
}

impl Gateway {
    /// Builds the gateway from a validated config (loads the policy, prepares
    /// the store connection and the upstream pool; does not listen).
    pub fn build(config: Config) -> Result<Arc<Gateway>, BuildError> {
        let store = open_store(&config)?;
        Self::build_with_store(config, store)
    }

    /// Like [`Gateway::build`] with an already opened store.
    pub fn build_with_store(
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Gateway>, BuildError> {
        let policy = Policy::load(&config.policy_file)?;
        Ok(Arc::new(Gateway {
            authenticator: Authenticator::new(store.clone(), &config.verify_cache),
            forwarder: Forwarder::new(config.upstream.clone()),
            metrics: Metrics::new(),
            live: LiveState::new(&config, &policy),
            policy: ArcSwap::from_pointee(policy),
            store,
            config,
        }))
    }

    /// Handles one request from `client_addr`; never fails, never panics on input.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client_addr: SocketAddr,
        upstream: &UpstreamLease,
    ) -> Response<GatewayBody> {
        let started = Instant::now();
        let method = request.method().clone();
        let mut ctx = RequestContext {
            policy: Some(self.policy.load_full()),
            ..RequestContext::default()
        };
        let response = match self
            .run_stages(request, client_addr, upstream, &mut ctx)
            .await
        {
            Ok(response) => response,
            Err(rejection) => {
                if ctx.denial.is_none() {
                    ctx.denial = Some(rejection.to_string());
                }
                rejection.into_response().map(Either::Right)
            }
        };
        log_request(&method, &ctx, response.status(), started);
        self.metrics.record(&ctx);
        response
    }

    async fn run_stages(
        &self,
        request: Request<Incoming>,
        client_addr: SocketAddr,
        upstream: &UpstreamLease,
        ctx: &mut RequestContext,
    ) -> Result<Response<GatewayBody>, Rejection> {
        let path =
            canonicalize(request.uri().path()).map_err(|e| Rejection::BadRequest(e.to_string()))?;
        let result = self.route(request, &path, client_addr, upstream, ctx).await;
        ctx.path = Some(path);
        result
    }

    /// Reserved paths, or authentication and then the principal's request.
    async fn route(
        &self,
        request: Request<Incoming>,
        path: &CanonicalPath,
        client_addr: SocketAddr,
        upstream: &UpstreamLease,
        ctx: &mut RequestContext,
    ) -> Result<Response<GatewayBody>, Rejection> {
        if admin::is_reserved(path) {
            return admin::handle(self, &request, path, client_addr, ctx)
                .await
                .map(|r| r.map(Either::Right));
        }
        if policy::method_bit(request.method()).is_none() {
            return Err(Rejection::MethodNotAllowed(format!(
                "method {} is not supported",
                request.method()
            )));
        }
        let principal = self.authenticate(&request, ctx).await?;
        let result = self
            .serve_authenticated(
                request,
                path,
                client_addr,
                upstream,
                principal.as_ref(),
                ctx,
            )
            .await;
        // The log line and metrics name the caller, whatever the outcome.
        ctx.principal = principal;
        result
    }

    /// The token API, or authorization and forwarding.
    async fn serve_authenticated(
        &self,
        request: Request<Incoming>,
        path: &CanonicalPath,
        client_addr: SocketAddr,
        upstream: &UpstreamLease,
        principal: Option<&Principal>,
        ctx: &mut RequestContext,
    ) -> Result<Response<GatewayBody>, Rejection> {
        if let Some(target) = token_api::route(path) {
            let Some(principal) = principal else {
                return Err(Rejection::Unauthenticated(
                    "the token API requires an `Authorization: Bearer <token>` header".into(),
                ));
            };
            ctx.rule_id = Some("token-api".into());
            ctx.decision = Some("served");
            let (parts, body) = request.into_parts();
            return token_api::handle(self, target, &parts.method, principal, body)
                .await
                .map(|r| r.map(Either::Right));
        }
        let (mut parts, body) = request.into_parts();
        let judged_body = self.authorize(&parts, body, path, principal, ctx).await?;
        refuse_form_posts_from_service_accounts(&parts, principal)?;

        let query = parts.uri.query();
        parts.uri = self.forwarder.upstream_uri(path, query)?;
        rewrite_request_headers(
            &mut parts.headers,
            &ForwardContext {
                principal,
                client_addr,
                forward_authorization: self.forwarder.forward_authorization(),
            },
            self.forwarder.upstream_host(),
        );
        let upstream_request = Request::from_parts(parts, judged_body);
        let sent = Instant::now();
        let response = self.forwarder.send(upstream, upstream_request).await;
        self.metrics
            .observe_upstream(sent.elapsed(), response.is_ok());
        Ok(response?.map(Either::Left))
    }

    /// Stage 2: `None` for a request without credentials.
    async fn authenticate(
        &self,
        request: &Request<Incoming>,
        ctx: &mut RequestContext,
    ) -> Result<Option<Principal>, Rejection> {
        let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            ctx.auth_failure = Some("multiple_authorization_headers");
            return Err(Rejection::BadRequest(
                "send exactly one Authorization header".into(),
            ));
        }
        match self.authenticator.authenticate(value).await {
            Ok(principal) => Ok(Some(principal)),
            Err(err) => {
                ctx.auth_failure = Some(err.reason());
                Err(match err {
                    AuthError::Throttled => Rejection::TooManyRequests(err.to_string()),
                    AuthError::Store(store_error) => {
                        tracing::warn!(error = %store_error, "token store unavailable");
                        Rejection::StoreUnavailable(
                            "the token store is unavailable; try again".into(),
                        )
                    }
                    other => Rejection::Unauthenticated(other.to_string()),
                })
            }
        }
    }

    /// Stage 3: runs the policy; returns the body to forward (the exact
    /// bytes judged, when a rule read them).
    async fn authorize(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        path: &CanonicalPath,
        principal: Option<&Principal>,
        ctx: &mut RequestContext,
    ) -> Result<crate::forward::UpstreamBody, Rejection> {
        let limit = self.config.limits.max_body_bytes;
        if content_length(parts).is_some_and(|len| len > limit) {
            return Err(Rejection::PayloadTooLarge(format!(
                "the request body is larger than {limit} bytes"
            )));
        }
        let policy = ctx
            .policy
            .clone()
            .unwrap_or_else(|| self.policy.load_full());
        let facts = Facts {
            caller: principal.map_or(Caller::Anonymous, |p| Caller::from(p.kind)),
            org: principal.map(|p| p.org.as_str()),
            team_id: principal.and_then(|p| p.team_id.as_deref()),
            user_id: principal.and_then(|p| p.user_id.as_deref()),
            method: &parts.method,
            path,
        };
        let (verdict, forwarded_body) = match policy.evaluate(&facts, Body::NotRead) {
            Outcome::Decided(verdict) => (verdict, boxed(Limited::new(body, limit as usize))),
            Outcome::NeedsBody => {
                let bytes = read_body(body, limit).await?;
                match policy.evaluate_body(&facts, &bytes) {
                    Ok(verdict) => (verdict, boxed(Full::new(bytes))),
                    Err(invalid) => {
                        ctx.rule_id = Some(invalid.rule_id.clone());
                        ctx.decision = Some("bad_request");
                        return Err(Rejection::BadRequest(invalid.to_string()));
                    }
                }
            }
            Outcome::InvalidBody { rule } => {
                ctx.rule_id = Some(rule.id.clone());
                ctx.decision = Some("bad_request");
                return Err(Rejection::BadRequest(format!(
                    "policy rule `{}` needs a JSON body",
                    rule.id
                )));
            }
        };
        ctx.rule_id = Some(verdict.rule_label());
        ctx.rule_mode = Some(verdict.mode());
        ctx.shadow = verdict
            .shadow
            .iter()
            .map(|r| (r.id.clone(), r.would()))
            .collect();
        match verdict.effect {
            Effect::Allow => {
                ctx.decision = Some("allow");
                Ok(forwarded_body)
            }
            Effect::Deny => {
                ctx.decision = Some("deny");
                if principal.is_none() {
                    return Err(Rejection::Unauthenticated(
                        "this path requires an `Authorization: Bearer <token>` header".into(),
                    ));
                }
                let (status, detail) = match verdict.rule {
                    Some(rule) => (rule.status, rule.denial_detail()),
                    None => (
                        StatusCode::FORBIDDEN,
                        "no policy rule allows this request (default: deny)".into(),
                    ),
                };
                ctx.denial = Some(detail.clone());
                Err(Rejection::Denied { status, detail })
            }
        }
    }
}
