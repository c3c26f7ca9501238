//! [`decide`]: a policy's answer to one request, exactly as the gateway
//! gives it — allow, deny with the status and detail the client sees, or a
//! refused body. The gateway, `policy test` and `policy explain` all call
//! this one function, so they cannot disagree.

use super::{Body, Caller, Effect, Facts, InvalidBody, Outcome, Policy, Rule, RuleCheck, Verdict};
use http::StatusCode;
use std::sync::Arc;

/// The policy's answer to one request.
#[derive(Debug)]
pub enum Judgement<'p> {
    /// Forward the request.
    Allow(Verdict<'p>),
    /// Refuse it with `status` (401 for an anonymous caller, else the rule's
    /// status, 403 for the default) and `detail` (the client is told why).
    Deny {
        verdict: Verdict<'p>,
        status: StatusCode,
        detail: String,
    },
    /// An enforce rule needs a JSON body and the body is not JSON (400).
    BadBody(InvalidBody),
}

/// Why an anonymous request that the policy does not allow is refused.
pub const NO_CREDENTIALS: &str = "this path requires an `Authorization: Bearer <token>` header";

/// Why a request that no rule allows is refused.
pub const NO_RULE_ALLOWS: &str = "no policy rule allows this request (default: deny)";

impl<'p> Judgement<'p> {
    fn from_verdict(verdict: Verdict<'p>, caller: Caller, default_status: StatusCode) -> Self {
        if verdict.effect == Effect::Allow {
            return Judgement::Allow(verdict);
        }
        let status = verdict.denial_status(caller, default_status);
        let detail = match (caller, verdict.rule) {
            (Caller::Anonymous, _) => NO_CREDENTIALS.to_owned(),
            (_, Some(rule)) => rule.denial_detail(),
            (_, None) => NO_RULE_ALLOWS.to_owned(),
        };
        Judgement::Deny {
            verdict,
            status,
            detail,
        }
    }

    /// `allow`, `deny` or `bad_request`.
    pub fn label(&self) -> &'static str {
        match self {
            Judgement::Allow(_) => "allow",
            Judgement::Deny { .. } => "deny",
            Judgement::BadBody(_) => "bad_request",
        }
    }

    /// The status the client gets; 200 stands for "forwarded".
    pub fn status(&self) -> StatusCode {
        match self {
            Judgement::Allow(_) => StatusCode::OK,
            Judgement::Deny { status, .. } => *status,
            Judgement::BadBody(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The deciding rule's id (`default` when the default decided).
    pub fn rule_label(&self) -> Arc<str> {
        match self {
            Judgement::Allow(verdict) | Judgement::Deny { verdict, .. } => verdict.rule_label(),
            Judgement::BadBody(invalid) => invalid.rule_id.clone(),
        }
    }

    /// The verdict, unless the body was refused.
    pub fn verdict(&self) -> Option<&Verdict<'p>> {
        match self {
            Judgement::Allow(verdict) | Judgement::Deny { verdict, .. } => Some(verdict),
            Judgement::BadBody(_) => None,
        }
    }

    /// Shadow rules that matched on the way to the decision.
    pub fn shadow(&self) -> &[&'p Rule] {
        self.verdict().map_or(&[], |v| &v.shadow)
    }
}

/// Decides a request whose body has not been read (`Body::NotRead`) or has
/// been; `None` when a rule that may decide needs the body first.
pub fn decide<'p>(policy: &'p Policy, facts: &Facts<'_>, body: Body<'_>) -> Option<Judgement<'p>> {
    match policy.evaluate(facts, body) {
        Outcome::Decided(verdict) => Some(Judgement::from_verdict(
            verdict,
            facts.caller,
            policy.denial_status,
        )),
        Outcome::NeedsBody => None,
        Outcome::InvalidBody { rule } => Some(Judgement::BadBody(InvalidBody {
            rule_id: rule.id.clone(),
            reason: String::new(),
        })),
    }
}

/// Decides a request with its whole body at hand (`b""` for none).
pub fn decide_with_body<'p>(policy: &'p Policy, facts: &Facts<'_>, bytes: &[u8]) -> Judgement<'p> {
    decide_with_body_traced(policy, facts, bytes, |_, _| {})
}

/// [`decide_with_body`], telling `trace` how each rule it looked at related
/// to the request (for `tokengate policy explain`).
pub fn decide_with_body_traced<'p>(
    policy: &'p Policy,
    facts: &Facts<'_>,
    bytes: &[u8],
    trace: impl FnMut(&'p Rule, RuleCheck),
) -> Judgement<'p> {
    match policy.evaluate_body_traced(facts, bytes, trace) {
        Ok(verdict) => Judgement::from_verdict(verdict, facts.caller, policy.denial_status),
        Err(invalid) => Judgement::BadBody(invalid),
    }
}
