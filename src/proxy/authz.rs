//! Stage 5: may this request be forwarded? The policy judges the canonical
//! request ([`crate::policy::decide`]); the answer is a [`Permit`] that
//! carries exactly the body that was judged and what the allowing rule
//! requires of the caller, or a rejection.

use super::CanonicalRequest;
use crate::context::{Decision, RequestContext, RuleMode, ShadowOutcome};
use crate::policy::{self, Caller, Facts, Judgement};
use crate::rejection::Rejection;
use bytes::Bytes;

/// Permission to forward: the request as judged, with the body to send
/// (exactly the bytes that were judged, whole, so a retry sends them again),
/// and what the allowing rule requires of the caller (`requires:`), which
/// the access stage ([`super::access`]) checks next.
pub struct Permit {
    pub parts: http::request::Parts,
    pub body: Bytes,
    /// An upload's body, forwarded as it arrives (see [`CanonicalRequest`]).
    pub streamed: Option<crate::upstream::StreamedBody>,
    /// The `Host` the client sent (checked), for `X-Forwarded-Host`.
    pub host: Option<String>,
    pub need: Option<policy::Need>,
}

/// Runs the policy on the canonical request and records the decision in `ctx`.
pub fn authorize(request: CanonicalRequest, ctx: &mut RequestContext) -> Result<Permit, Rejection> {
    let CanonicalRequest {
        parts,
        body,
        streamed,
        json,
        host,
        ..
    } = request;
    let principal = ctx.facts.principal.as_ref();
    let facts = Facts {
        caller: principal.map_or(Caller::Anonymous, |p| Caller::from(p.kind)),
        org: principal.map(|p| p.org.as_str()),
        team_id: principal.and_then(|p| p.team_id.as_deref()),
        user_id: principal.and_then(|p| p.user_id.as_deref()),
        method: &parts.method,
        path: ctx.path(),
        query: parts.uri.query(),
    };
    let policy = ctx.facts.policy.clone();
    let judgement = policy::decide(&policy, &facts, json.as_ref());
    let record = &mut ctx.record;
    record.rule = Some(judgement.rule_label());
    record.rule_mode = Some(RuleMode::of(judgement.verdict().rule));
    record.shadow = shadow_record(judgement.shadow());
    match judgement {
        Judgement::Deny { status, detail, .. } => {
            record.decision = Some(Decision::Deny);
            record.denial = Some(detail.clone());
            Err(Rejection::Denied { status, detail })
        }
        Judgement::Allow(verdict) => {
            record.decision = Some(Decision::Allow);
            // What the allowing rule requires, read from the path, the
            // query and the body it judged (keys normalized).
            let need = match verdict.rule {
                Some(rule) => rule.need(ctx.path(), json.as_ref(), parts.uri.query())?,
                None => None,
            };
            Ok(Permit {
                parts,
                body,
                streamed,
                host,
                need,
            })
        }
    }
}

pub(super) fn shadow_record(rules: &[&policy::Rule]) -> Vec<(std::sync::Arc<str>, ShadowOutcome)> {
    rules
        .iter()
        .map(|rule| (rule.id.clone(), ShadowOutcome::of(rule)))
        .collect()
}
