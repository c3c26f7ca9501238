//! Stage 3 of a request: authorization as a pure function of the request
//! facts (and, only when a rule asks for it, the JSON body).
//!
//! Semantics, stated once: rules are tried in file order; the first
//! **enforce** rule whose principals, methods, paths and `when` conditions all
//! match decides; if none does, `default` decides. Matching **shadow** rules
//! met on the way never decide: they are reported as would-allow/would-deny.

pub mod cases;
mod condition;
mod decide;
pub mod explain;
pub mod lint;
mod load;
pub mod request;
mod requires;
mod template;
#[cfg(test)]
mod tests;

pub use condition::{BodyPointer, Condition, Subject, Test};
pub use decide::{decide, decide_traced, Judgement, NO_CREDENTIALS, NO_RULE_ALLOWS};
pub use load::{PolicyError, DEFAULT_WRITE_QUERY_PARAMETERS};
pub use requires::{query_params, routed_id, Need, NeedError, Requires, Target, TargetSource};
pub use template::{PathTemplate, Segment};

use crate::canonical::CanonicalPath;
use crate::store::PrincipalKind;
use http::{Method, StatusCode};
use serde_json::Value;
use std::sync::{Arc, LazyLock};

/// Who is calling, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    Anonymous,
    Team,
    Org,
    User,
}

impl Caller {
    pub const ALL: [Caller; 4] = [Caller::Anonymous, Caller::Team, Caller::Org, Caller::User];

    fn bit(self) -> u8 {
        match self {
            Caller::Anonymous => 1,
            Caller::Team => 2,
            Caller::Org => 4,
            Caller::User => 8,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Team => "team",
            Caller::Org => "org",
            Caller::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Caller> {
        Caller::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl From<PrincipalKind> for Caller {
    fn from(kind: PrincipalKind) -> Self {
        match kind {
            PrincipalKind::Team => Caller::Team,
            PrincipalKind::Org => Caller::Org,
            PrincipalKind::User => Caller::User,
        }
    }
}

/// The methods a rule can name; others are refused before policy.
pub const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// A rule's method set for `methods: ["*"]`.
pub const ALL_METHODS: u8 = (1 << METHODS.len()) - 1;

/// Bit of a method in a rule's method set; `None` for methods tokengate refuses.
pub fn method_bit(method: &Method) -> Option<u8> {
    METHODS.iter().position(|m| m == method).map(|i| 1 << i)
}

/// What the policy knows about a request before reading its body.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub caller: Caller,
    pub org: Option<&'a str>,
    pub team_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub method: &'a Method,
    pub path: &'a CanonicalPath,
    /// The raw query string (checked by [`crate::canonical::query::check`]),
    /// read only by `query` conditions.
    pub query: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Shared, so that logs and metric labels take it without copying.
    pub id: Arc<str>,
    pub description: Option<String>,
    pub effect: Effect,
    pub callers: u8,
    pub methods: u8,
    pub paths: Vec<PathTemplate>,
    pub when: Vec<Condition>,
    pub status: StatusCode,
    pub message: Option<String>,
    pub mode: Mode,
    /// `requires:` (with `target:`): the permission the caller needs on
    /// what the request targets, checked after the policy allowed it.
    pub requires: Option<Requires>,
    needs_body: bool,
}

/// How one rule relates to one request; see [`Policy::evaluate_traced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleCheck {
    /// The caller's kind is not among the rule's principals.
    NotForCaller,
    /// The request method is not among the rule's methods.
    MethodNotListed,
    /// No path template matches the canonical path.
    PathNotMatched,
    /// `when[index]` does not hold.
    ConditionFailed(usize),
    /// The rule needs a JSON body and the body is not JSON.
    BodyNotJson,
    /// Everything matches.
    Matched,
}

impl Rule {
    pub fn applies_to(&self, caller: Caller) -> bool {
        self.callers & caller.bit() != 0
    }

    pub fn has_method(&self, method: &Method) -> bool {
        method_bit(method).is_some_and(|bit| self.methods & bit != 0)
    }

    pub fn matching_path(&self, path: &CanonicalPath) -> Option<&PathTemplate> {
        self.paths.iter().find(|t| t.matches_path(path))
    }

    /// True when the rule looks at the request body.
    pub fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// Checks the rule against a request. `None` when the answer depends on
    /// a body that has not been read yet. Conditions that do not look at the
    /// body are tried first, so a rule whose caller conditions fail never
    /// causes the body to be read.
    pub fn check(&self, facts: &Facts<'_>, body: Body<'_>) -> Option<RuleCheck> {
        if !self.applies_to(facts.caller) {
            return Some(RuleCheck::NotForCaller);
        }
        if !self.has_method(facts.method) {
            return Some(RuleCheck::MethodNotListed);
        }
        if self.matching_path(facts.path).is_none() {
            return Some(RuleCheck::PathNotMatched);
        }
        let failed = |body_value: Option<&Value>, wants_body: bool| {
            self.when
                .iter()
                .enumerate()
                .filter(|(_, c)| c.needs_body() == wants_body)
                .find(|(_, c)| !c.holds(facts, body_value))
                .map(|(i, _)| RuleCheck::ConditionFailed(i))
        };
        if let Some(failure) = failed(None, false) {
            return Some(failure);
        }
        if !self.needs_body {
            return Some(RuleCheck::Matched);
        }
        match body {
            Body::NotRead => None,
            Body::NotJson => Some(RuleCheck::BodyNotJson),
            Body::Read(value) => Some(failed(value, true).unwrap_or(RuleCheck::Matched)),
        }
    }

    /// The detail of a denial by this rule, naming it.
    pub fn denial_detail(&self) -> String {
        match &self.message {
            Some(message) => format!("{message} (policy rule `{}`)", self.id),
            None => format!("denied by policy rule `{}`", self.id),
        }
    }

    /// `would_deny` or `would_allow`: what this rule would do if enforced.
    pub fn would(&self) -> &'static str {
        match self.effect {
            Effect::Deny => "would_deny",
            Effect::Allow => "would_allow",
        }
    }
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub default: Effect,
    /// The status of a denial by the default or by a rule without its own
    /// `status` (top-level `denial_status`: 403, the default, or 404).
    pub denial_status: StatusCode,
    /// Query parameters a write (any method but GET, HEAD, OPTIONS) may
    /// carry (`write_query_parameters`); see [`crate::canonical::query`].
    pub write_query_parameters: Vec<String>,
    /// SHA-256 of the policy file's bytes, hex.
    pub source_hash: String,
    /// Whether any rule `requires:` access (kept at load: asked on every
    /// request).
    requires_access: bool,
}

/// The body as far as policy evaluation has seen it.
#[derive(Debug, Clone, Copy)]
pub enum Body<'b> {
    /// Not read yet: evaluation stops at the first rule that needs it.
    NotRead,
    /// Read; `None` when it was empty.
    Read(Option<&'b Value>),
    /// Read, and not valid JSON: an enforce rule that needs it makes the
    /// request a 400; a shadow rule that needs it is skipped (shadow rules
    /// never change a response).
    NotJson,
}

/// The result of evaluating a request against a policy.
#[derive(Debug)]
pub enum Outcome<'p> {
    Decided(Verdict<'p>),
    /// A rule that may match needs the body: read it (within the limit) and
    /// evaluate again with [`Body::Read`] or [`Body::NotJson`].
    NeedsBody,
    /// An enforce rule that matches everything else needs a JSON body, and
    /// the body is not JSON: the request is malformed (400), never allowed.
    InvalidBody {
        rule: &'p Rule,
    },
}

/// The decision and how it was reached.
#[derive(Debug)]
pub struct Verdict<'p> {
    pub effect: Effect,
    /// The deciding rule; `None` when the default decided.
    pub rule: Option<&'p Rule>,
    /// Shadow rules that matched before the decision.
    pub shadow: Vec<&'p Rule>,
}

/// The label used for decisions made by `default`.
pub const DEFAULT_RULE_ID: &str = "default";

static DEFAULT_RULE_LABEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(DEFAULT_RULE_ID));

impl Verdict<'_> {
    pub fn rule_id(&self) -> &str {
        self.rule.map_or(DEFAULT_RULE_ID, |r| &*r.id)
    }

    /// The deciding rule's id, shared (`default` when the default decided).
    pub fn rule_label(&self) -> Arc<str> {
        self.rule
            .map_or_else(|| DEFAULT_RULE_LABEL.clone(), |r| r.id.clone())
    }

    /// The status of a denial: 401 for an anonymous caller (credentials
    /// might help), else the rule's status, `default_status` (the policy's
    /// `denial_status`) for the default.
    pub fn denial_status(&self, caller: Caller, default_status: StatusCode) -> StatusCode {
        match (caller, self.rule) {
            (Caller::Anonymous, _) => StatusCode::UNAUTHORIZED,
            (_, Some(rule)) => rule.status,
            (_, None) => default_status,
        }
    }
}

/// Why a body that a rule needs was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy rule `{rule_id}` needs a JSON body, and this one cannot be judged: {reason}")]
pub struct InvalidBody {
    pub rule_id: Arc<str>,
    pub reason: String,
}

/// Parses a request body for policy conditions as the gateway judges it:
/// empty (or only whitespace) is `None`; anything else must be strict JSON,
/// one spelling per key, and comes back with its keys normalized
/// ([`crate::canonical::json::parse_normalized`]).
pub fn parse_body(bytes: &[u8]) -> Result<Option<Value>, crate::canonical::json::JsonError> {
    crate::canonical::json::parse_normalized(bytes)
}

impl Policy {
    /// Whether any rule `requires:` access (so requests may need an access
    /// check after the policy allowed them).
    pub fn requires_access(&self) -> bool {
        self.requires_access
    }

    /// Evaluates the rules in order. Pure: no I/O, no clock.
    pub fn evaluate<'p>(&'p self, facts: &Facts<'_>, body: Body<'_>) -> Outcome<'p> {
        self.evaluate_traced(facts, body, |_, _| {})
    }

    /// [`Policy::evaluate`], telling `trace` how each rule it looked at
    /// related to the request (for `tokengate policy explain`).
    pub fn evaluate_traced<'p>(
        &'p self,
        facts: &Facts<'_>,
        body: Body<'_>,
        mut trace: impl FnMut(&'p Rule, RuleCheck),
    ) -> Outcome<'p> {
        let mut shadow = Vec::new();
        for rule in &self.rules {
            let Some(check) = rule.check(facts, body) else {
                return Outcome::NeedsBody;
            };
            trace(rule, check);
            match (check, rule.mode) {
                (RuleCheck::Matched, Mode::Shadow) => shadow.push(rule),
                (RuleCheck::Matched, Mode::Enforce) => {
                    return Outcome::Decided(Verdict {
                        effect: rule.effect,
                        rule: Some(rule),
                        shadow,
                    })
                }
                (RuleCheck::BodyNotJson, Mode::Enforce) => return Outcome::InvalidBody { rule },
                _ => {}
            }
        }
        Outcome::Decided(Verdict {
            effect: self.default,
            rule: None,
            shadow,
        })
    }

    /// Evaluates with the bytes of a body that was read because
    /// [`Outcome::NeedsBody`] asked for it (or, in tools, with the whole body
    /// at hand: the result is the same).
    pub fn evaluate_body<'p>(
        &'p self,
        facts: &Facts<'_>,
        bytes: &[u8],
    ) -> Result<Verdict<'p>, InvalidBody> {
        self.evaluate_body_traced(facts, bytes, |_, _| {})
    }

    /// [`Policy::evaluate_body`] with a trace, as in [`Policy::evaluate_traced`].
    pub fn evaluate_body_traced<'p>(
        &'p self,
        facts: &Facts<'_>,
        bytes: &[u8],
        trace: impl FnMut(&'p Rule, RuleCheck),
    ) -> Result<Verdict<'p>, InvalidBody> {
        let parsed = parse_body(bytes);
        let body = match &parsed {
            Ok(value) => Body::Read(value.as_ref()),
            Err(_) => Body::NotJson,
        };
        match self.evaluate_traced(facts, body, trace) {
            Outcome::Decided(verdict) => Ok(verdict),
            Outcome::InvalidBody { rule } => Err(InvalidBody {
                rule_id: rule.id.clone(),
                reason: parsed.err().map_or_else(String::new, |e| e.to_string()),
            }),
            // A read body never leaves a rule undecided.
            Outcome::NeedsBody => unreachable!("evaluation with a read body always decides"),
        }
    }
}
