//! Stage 3 of a request: authorization as a pure function of the request
//! facts (and, only when a rule asks for it, the JSON body).
//!
//! Semantics, stated once: rules are tried in file order; the first
//! **enforce** rule whose principals, methods, paths and `when` conditions all
//! match decides; if none does, `default` decides. Matching **shadow** rules
//! met on the way never decide: they are reported as would-allow/would-deny.

mod condition;
mod load;
mod template;

pub use condition::{Condition, Subject, Test};
pub use load::PolicyError;
pub use template::{PathTemplate, Segment};

use crate::canonical::CanonicalPath;
use crate::store::PrincipalKind;
use http::{Method, StatusCode};
use serde_json::Value;

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
    pub id: String,
    pub description: Option<String>,
    pub effect: Effect,
    pub callers: u8,
    pub methods: u8,
    pub paths: Vec<PathTemplate>,
    pub when: Vec<Condition>,
    pub status: StatusCode,
    pub message: Option<String>,
    pub mode: Mode,
    needs_body: bool,
}

impl Rule {
    pub fn applies_to(&self, caller: Caller) -> bool {
        self.callers & caller.bit() != 0
    }

    pub fn has_method(&self, method: &Method) -> bool {
        method_bit(method).is_some_and(|bit| self.methods & bit != 0)
    }

    pub fn matching_path(&self, path: &CanonicalPath) -> Option<&PathTemplate> {
        self.paths.iter().find(|t| t.matches(path.segments()))
    }

    /// True when the rule looks at the request body.
    pub fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// Matches on everything but the `when` conditions.
    fn matches_request(&self, facts: &Facts<'_>) -> bool {
        self.applies_to(facts.caller)
            && self.has_method(facts.method)
            && self.matching_path(facts.path).is_some()
    }

    /// The detail of a denial by this rule, naming it.
    pub fn denial_detail(&self) -> String {
        match &self.message {
            Some(message) => format!("{message} (policy rule `{}`)", self.id),
            None => format!("denied by policy rule `{}`", self.id),
        }
    }
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub default: Effect,
    /// SHA-256 of the policy file's bytes, hex.
    pub source_hash: String,
}

/// The body as far as policy evaluation has seen it.
#[derive(Debug, Clone, Copy)]
pub enum Body<'b> {
    /// Not read yet: evaluation stops at the first rule that needs it.
    NotRead,
    /// Read; `None` when it was empty.
    Read(Option<&'b Value>),
}

/// The result of evaluating a request against a policy.
#[derive(Debug)]
pub enum Outcome<'p> {
    Decided(Verdict<'p>),
    /// A rule that may match needs the body: read it (within the limit) and
    /// evaluate again with [`Body::Read`].
    NeedsBody,
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

impl Verdict<'_> {
    pub fn rule_id(&self) -> &str {
        self.rule.map_or("default", |r| r.id.as_str())
    }
}

impl Policy {
    /// Evaluates the rules in order. Pure: no I/O, no clock.
    pub fn evaluate<'p>(&'p self, facts: &Facts<'_>, body: Body<'_>) -> Outcome<'p> {
        let mut shadow = Vec::new();
        for rule in &self.rules {
            if !rule.matches_request(facts) {
                continue;
            }
            let body_value = match (rule.needs_body, body) {
                (true, Body::NotRead) => return Outcome::NeedsBody,
                (_, Body::Read(value)) => value,
                (false, Body::NotRead) => None,
            };
            if !rule.when.iter().all(|c| c.holds(facts, body_value)) {
                continue;
            }
            match rule.mode {
                Mode::Shadow => shadow.push(rule),
                Mode::Enforce => {
                    return Outcome::Decided(Verdict {
                        effect: rule.effect,
                        rule: Some(rule),
                        shadow,
                    })
                }
            }
        }
        Outcome::Decided(Verdict {
            effect: self.default,
            rule: None,
            shadow,
        })
    }
}
