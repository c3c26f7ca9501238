//! Stage 5: may this request be forwarded? The policy judges it
//! ([`crate::policy::decide`]), reading the body only when a rule needs it;
//! the answer is a [`Permit`] that carries exactly the body that was judged
//! and what the allowing rule requires of the caller, or a rejection.

use crate::auth::Principal;
use crate::body::{boxed, content_length, read_body, RequestBody, UpstreamBody};
use crate::context::{Decision, RequestContext, RuleMode, ShadowOutcome};
use crate::gateway::Gateway;
use crate::policy::{self, Body, Caller, Facts, Judgement};
use crate::rejection::Rejection;
use crate::store::PrincipalKind;
use http::{header, Method, Request};
use http_body_util::{Full, Limited};

/// Permission to forward: the request as judged, with the body to send
/// (the exact bytes a rule read, or the client's stream within the limit),
/// and what the allowing rule requires of the caller (`requires:`), which
/// the access stage ([`super::access`]) checks next.
pub struct Permit {
    pub parts: http::request::Parts,
    pub body: UpstreamBody,
    pub need: Option<policy::Need>,
}

/// Runs the policy on the request and records the decision in `ctx`.
pub async fn authorize<B: RequestBody>(
    gateway: &Gateway,
    request: Request<B>,
    ctx: &mut RequestContext,
) -> Result<Permit, Rejection> {
    let (parts, body) = request.into_parts();
    let limit = gateway.config.limits.max_body_bytes;
    if content_length(&parts).is_some_and(|len| len > limit) {
        return Err(Rejection::PayloadTooLarge(format!(
            "the request body is larger than {limit} bytes"
        )));
    }
    let principal = ctx.facts.principal.as_ref();
    let facts = Facts {
        caller: principal.map_or(Caller::Anonymous, |p| Caller::from(p.kind)),
        org: principal.map(|p| p.org.as_str()),
        team_id: principal.and_then(|p| p.team_id.as_deref()),
        user_id: principal.and_then(|p| p.user_id.as_deref()),
        method: &parts.method,
        path: ctx.path(),
    };
    let policy = ctx.facts.policy.clone();
    let (judgement, forwarded, read) = match policy::decide(&policy, &facts, Body::NotRead) {
        Some(judgement) => (judgement, boxed(Limited::new(body, limit as usize)), None),
        None => {
            let bytes = read_body(body, limit).await?;
            let judgement = policy::decide_with_body(&policy, &facts, &bytes);
            (judgement, boxed(Full::new(bytes.clone())), Some(bytes))
        }
    };
    let record = &mut ctx.record;
    record.rule = Some(judgement.rule_label());
    match judgement {
        Judgement::BadBody(invalid) => {
            record.decision = Some(Decision::BadRequest);
            Err(Rejection::BadRequest(invalid.to_string()))
        }
        Judgement::Deny {
            verdict,
            status,
            detail,
        } => {
            record.rule_mode = Some(RuleMode::of(verdict.rule));
            record.shadow = shadow_record(&verdict.shadow);
            record.decision = Some(Decision::Deny);
            record.denial = Some(detail.clone());
            Err(Rejection::Denied { status, detail })
        }
        Judgement::Allow(verdict) => {
            record.rule_mode = Some(RuleMode::of(verdict.rule));
            record.shadow = shadow_record(&verdict.shadow);
            record.decision = Some(Decision::Allow);
            refuse_form_posts_from_service_accounts(&parts, ctx.principal())?;
            let need = match verdict.rule {
                Some(rule) => need_of(rule, ctx.path(), read.as_deref(), parts.uri.query())?,
                None => None,
            };
            Ok(Permit {
                parts,
                body: forwarded,
                need,
            })
        }
    }
}

/// What the allowing rule requires, read from the path, the query and the
/// body it judged (already known to be JSON when a target is in it).
fn need_of(
    rule: &policy::Rule,
    path: &crate::canonical::CanonicalPath,
    body: Option<&[u8]>,
    query: Option<&str>,
) -> Result<Option<policy::Need>, Rejection> {
    if rule.requires.is_none() {
        return Ok(None);
    }
    let value = body.and_then(|bytes| policy::parse_body(bytes).ok().flatten());
    Ok(rule.need(path, value.as_ref(), query)?)
}

fn shadow_record(rules: &[&policy::Rule]) -> Vec<(std::sync::Arc<str>, ShadowOutcome)> {
    rules
        .iter()
        .map(|rule| (rule.id.clone(), ShadowOutcome::of(rule)))
        .collect()
}
/// Refuses a service-account `POST` whose body a Rack/Rails upstream would
/// read as form data: `MethodOverride` then honours a `_method` field in it,
/// turning the POST the policy judged into another method upstream. That is
/// a form (`application/x-www-form-urlencoded`, `multipart/form-data`) or a
/// body with no content type at all. API clients send JSON:API, so this
/// costs them nothing; people (user tokens) are not affected.
pub fn refuse_form_posts_from_service_accounts(
    parts: &http::request::Parts,
    principal: Option<&Principal>,
) -> Result<(), Rejection> {
    let service_account =
        principal.is_some_and(|p| matches!(p.kind, PrincipalKind::Team | PrincipalKind::Org));
    if !service_account || parts.method != Method::POST {
        return Ok(());
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let form = match content_type.as_deref() {
        None | Some("") => has_body,
        Some(t) => {
            t.starts_with("application/x-www-form-urlencoded")
                || t.starts_with("multipart/form-data")
        }
    };
    if form {
        return Err(Rejection::UnsupportedMediaType(
            "service account tokens must send JSON (application/vnd.api+json), not form data"
                .into(),
        ));
    }
    Ok(())
}
