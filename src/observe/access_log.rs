//! The one log line per request (target `tokengate::access`), the shadow
//! rule lines, and the internal cause of a failure, built from the request's
//! [`RequestContext`]. Never a token: only its public id, and any token
//! pasted into a path is redacted.

use crate::context::RequestContext;
use http::StatusCode;

/// Replaces the secret of anything shaped like a token (`….atlasv1.<secret>`)
/// so that a token pasted into a URL never reaches a log line.
pub fn redact_tokens(text: &str) -> std::borrow::Cow<'_, str> {
    const MARKER: &str = ".atlasv1.";
    if !text.contains(MARKER) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARKER) {
        out.push_str(&rest[..at + MARKER.len()]);
        rest = &rest[at + MARKER.len()..];
        let secret_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        if secret_len > 0 {
            out.push_str("[redacted]");
        }
        rest = &rest[secret_len..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// The log lines of a finished request. Never contains a token: only its
/// public id.
pub fn log_request(ctx: &RequestContext, status: StatusCode) {
    let (facts, record) = (&ctx.facts, &ctx.record);
    let path = redact_tokens(facts.path.as_ref().map_or("-", |p| p.as_str()));
    let path = path.as_ref();
    let method = &facts.method;
    let principal = facts.principal.as_ref();
    tracing::info!(
        target: "tokengate::access",
        method = %method,
        path,
        status = status.as_u16(),
        kind = caller_kind(ctx),
        org = principal.map(|p| p.org.as_str()),
        token_id = principal.map(|p| p.token_id.as_str()),
        rule = record.rule.as_deref(),
        mode = record.rule_mode.map(|m| m.as_str()),
        decision = record.decision.map(|d| d.as_str()),
        reason = record
            .denial
            .as_deref()
            .or(record.auth_failure.map(|f| f.as_str())),
        shadow = ?ShadowList(&record.shadow),
        latency_us = facts.started.elapsed().as_micros() as u64,
        "request"
    );
    for (rule, outcome) in &record.shadow {
        tracing::info!(target: "tokengate::shadow", rule = &**rule, outcome = outcome.as_str(), method = %method, path, "shadow rule matched");
    }
    if let Some(cause) = &record.cause {
        tracing::warn!(target: "tokengate::error", method = %method, path, status = status.as_u16(), cause = %cause, "request failed");
    }
}

/// The caller's kind for the log: the principal's, `invalid` when a token
/// was presented and failed (the token format does not say which kind it
/// claimed), `anonymous` only when no credential was sent.
fn caller_kind(ctx: &RequestContext) -> &'static str {
    match (&ctx.facts.principal, ctx.record.auth_failure) {
        (Some(principal), _) => principal.kind.as_str(),
        (None, Some(_)) => "invalid",
        (None, None) => "anonymous",
    }
}

/// Shadow matches as the access line shows them: `[("rule", "would_deny")]`.
struct ShadowList<'a>(&'a [(std::sync::Arc<str>, crate::context::ShadowOutcome)]);

impl std::fmt::Debug for ShadowList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|(rule, outcome)| (rule, outcome.as_str())),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{caller_kind, redact_tokens};
    use crate::auth::{AuthFailure, Principal};
    use crate::context::RequestContext;
    use crate::store::PrincipalKind;

    #[test]
    fn a_failed_token_is_logged_as_invalid_never_anonymous() {
        let ctx = || {
            RequestContext::new(
                http::Method::GET,
                ([127, 0, 0, 1], 1).into(),
                std::sync::Arc::new(crate::policy::Policy::from_yaml("default: deny").unwrap()),
            )
        };
        assert_eq!(caller_kind(&ctx()), "anonymous");
        for failure in [
            AuthFailure::UnknownToken,
            AuthFailure::BadSecret,
            AuthFailure::ExpiredToken,
            AuthFailure::MalformedToken,
            AuthFailure::StoreError,
        ] {
            let mut failed = ctx();
            failed.record.auth_failure = Some(failure);
            assert_eq!(caller_kind(&failed), "invalid", "{failure:?}");
        }
        let mut known = ctx();
        known.facts.principal = Some(Principal {
            kind: PrincipalKind::Team,
            org: "acme".into(),
            team_id: Some("team-x".into()),
            user_id: None,
            token_id: "at-x".into(),
        });
        assert_eq!(caller_kind(&known), "team");
    }

    #[test]
    fn token_secrets_in_paths_are_redacted() {
        assert_eq!(redact_tokens("/api/v2/ws"), "/api/v2/ws");
        assert_eq!(
            redact_tokens("/x/abcdefghijklmn.atlasv1.SECRET123/y.atlasv1."),
            "/x/abcdefghijklmn.atlasv1.[redacted]/y.atlasv1."
        );
    }
}
