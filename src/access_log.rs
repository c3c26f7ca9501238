//! The one log line per request (target `tokengate::access`) and the shadow
//! rule lines, built from the request's [`RequestContext`]. Never a token:
//! only its public id, and any token pasted into a path is redacted.

use crate::gateway::RequestContext;
use http::{Method, StatusCode};
use std::time::Instant;

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

/// The one log line of a request. Never contains a token: only its public id.
pub fn log_request(method: &Method, ctx: &RequestContext, status: StatusCode, started: Instant) {
    let path = redact_tokens(ctx.path.as_ref().map_or("-", |p| p.as_str()));
    let path = path.as_ref();
    let principal = ctx.principal.as_ref();
    tracing::info!(
        target: "tokengate::access",
        method = %method,
        path,
        status = status.as_u16(),
        kind = principal.map_or("anonymous", |p| p.kind.as_str()),
        org = principal.map(|p| p.org.as_str()),
        token_id = principal.map(|p| p.token_id.as_str()),
        rule = ctx.rule_id.as_deref(),
        mode = ctx.rule_mode,
        decision = ctx.decision,
        reason = ctx.denial.as_deref().or(ctx.auth_failure),
        shadow = ?ctx.shadow,
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    for (rule, outcome) in &ctx.shadow {
        tracing::info!(target: "tokengate::shadow", rule = &**rule, outcome, method = %method, path, "shadow rule matched");
    }
}

#[cfg(test)]
mod tests {
    use super::redact_tokens;

    #[test]
    fn token_secrets_in_paths_are_redacted() {
        assert_eq!(redact_tokens("/api/v2/ws"), "/api/v2/ws");
        assert_eq!(
            redact_tokens("/x/abcdefghijklmn.atlasv1.SECRET123/y.atlasv1."),
            "/x/abcdefghijklmn.atlasv1.[redacted]/y.atlasv1."
        );
    }
}
