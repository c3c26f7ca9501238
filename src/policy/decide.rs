//! [`decide`]: a policy's answer to one request, exactly as the gateway
//! gives it — allow, or deny with the status and detail the client sees.
//! The gateway, `policy test` and `policy explain` all call this one
//! function on the same canonical request (path from
//! [`crate::canonical`], body parsed and key-normalized by
//! [`crate::canonical::json::parse_normalized`]), so they cannot disagree.

use super::{Body, Caller, Effect, Facts, Outcome, Policy, Rule, RuleCheck, Verdict};
use http::StatusCode;
use serde_json::Value;
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

    /// `allow` or `deny`.
    pub fn label(&self) -> &'static str {
        match self {
            Judgement::Allow(_) => "allow",
            Judgement::Deny { .. } => "deny",
        }
    }

    /// The status the client gets; 200 stands for "forwarded".
    pub fn status(&self) -> StatusCode {
        match self {
            Judgement::Allow(_) => StatusCode::OK,
            Judgement::Deny { status, .. } => *status,
        }
    }

    pub fn verdict(&self) -> &Verdict<'p> {
        match self {
            Judgement::Allow(verdict) | Judgement::Deny { verdict, .. } => verdict,
        }
    }

    /// The deciding rule's id (`default` when the default decided).
    pub fn rule_label(&self) -> Arc<str> {
        self.verdict().rule_label()
    }

    /// Shadow rules that matched on the way to the decision.
    pub fn shadow(&self) -> &[&'p Rule] {
        &self.verdict().shadow
    }
}

/// Decides a request whose body has been judged: `body` is the body parsed
/// and key-normalized (`None` when it was empty).
pub fn decide<'p>(policy: &'p Policy, facts: &Facts<'_>, body: Option<&Value>) -> Judgement<'p> {
    decide_traced(policy, facts, body, |_, _| {})
}

/// [`decide`], telling `trace` how each rule it looked at related to the
/// request (for `tokengate policy explain`).
pub fn decide_traced<'p>(
    policy: &'p Policy,
    facts: &Facts<'_>,
    body: Option<&Value>,
    trace: impl FnMut(&'p Rule, RuleCheck),
) -> Judgement<'p> {
    match policy.evaluate_traced(facts, Body::Read(body), trace) {
        Outcome::Decided(verdict) if verdict.effect == Effect::Allow => {
            // What Rails' `wrap_parameters` would read as attributes must
            // pass the same rules (see [`wrapped_views`]).
            for view in wrapped_views(body) {
                if let Outcome::Decided(denied) = policy.evaluate(facts, Body::Read(Some(&view))) {
                    if denied.effect == Effect::Deny && denied.rule.is_some() {
                        return Judgement::from_verdict(denied, facts.caller, policy.denial_status);
                    }
                }
            }
            Judgement::from_verdict(verdict, facts.caller, policy.denial_status)
        }
        Outcome::Decided(verdict) => {
            Judgement::from_verdict(verdict, facts.caller, policy.denial_status)
        }
        // A read JSON body leaves no rule undecided and no body unjudgeable;
        // should that ever change, refusing is the safe answer.
        Outcome::NeedsBody | Outcome::InvalidBody { .. } => Judgement::from_verdict(
            Verdict {
                effect: Effect::Deny,
                rule: None,
                shadow: Vec::new(),
            },
            facts.caller,
            policy.denial_status,
        ),
    }
}

/// The top-level members of a JSON:API document; any other top-level key
/// is one Rails may read as an attribute.
const JSON_API_MEMBERS: [&str; 5] = ["data", "included", "meta", "jsonapi", "links"];

/// Rails' `wrap_parameters` (on in every Rails app's default initializer)
/// copies a JSON body's top-level keys that name a model attribute into the
/// resource's parameters: `{"auto_apply": true}`, or
/// `{"workspace": {"auto_apply": true}}`, is an update a rule reading
/// `/data/attributes/auto-apply` never sees in the document itself. For
/// each top-level key `k` outside the JSON:API members, with value `v`, the
/// views `{"data": {"attributes": {k: v}}}` and, when `v` is an object,
/// `{"data": {"attributes": v}}`; an allowed request is refused when a
/// rule denies one of them. Plain JSON bodies TFE takes (`{"reason": …}` of
/// a lock) pass, unless a rule forbids what they say.
fn wrapped_views(body: Option<&Value>) -> Vec<Value> {
    let Some(Value::Object(members)) = body else {
        return Vec::new();
    };
    let mut views = Vec::new();
    for (key, value) in members {
        if JSON_API_MEMBERS.contains(&key.as_str()) {
            continue;
        }
        let mut attributes = serde_json::Map::new();
        attributes.insert(key.clone(), value.clone());
        views.push(serde_json::json!({ "data": { "attributes": attributes } }));
        if value.is_object() {
            views.push(serde_json::json!({ "data": { "attributes": value } }));
        }
    }
    views
}
