//! `when` conditions of policy rules: tests on the caller, the query or the
//! JSON body.
//!
//! ```yaml
//! when:
//!   - { body: /data/attributes/auto-apply, equals: true }
//!   - { field: org, in: [acme, globex] }
//!   - { query: include, contains: [outputs, current-state-version] }
//!   - not: { body: /data/attributes/execution-mode, exists: true }
//!   - any:                          # at least one holds
//!       - { body: /data/attributes/auto-apply, equals: true }
//!       - all: [ … ]                # every one holds
//! ```
//! All conditions of a rule must hold. `field` is one of `org`, `team_id`,
//! `user_id`; `body` is a JSON Pointer (RFC 6901) into the request body.
//! Body keys are compared the way the upstream reads them: the body's keys
//! and the pointer's tokens are both normalized with Rails's `underscore`
//! (see [`crate::canonical::json`]), so `/data/attributes/auto-apply` also
//! matches `autoApply`, `AUTO-APPLY` and `auto_apply`.
//!
//! `query` names a query parameter (decoded, in Rack's canonical bracket
//! form, which the gateway requires of every request's query: see
//! [`crate::canonical::query`]), read as Rack reads it
//! ([`crate::canonical::query::param`]): the last `include=` wins.
//! `equals` and `in` compare its string value; `exists` holds when it is
//! given in any form; `contains` treats the value as a JSON:API list
//! (`include=current-state-version,outputs`): it holds when any relationship
//! the list names, at any depth of a dotted path (`current-run.plan` names
//! `current_run` and `plan`), is one of the given names, both compared
//! after Rails's `underscore` (`current-state-version` is
//! `current_state_version`), items trimmed. A parameter also given in a
//! bracket form (`include[]=…`), an array or a hash to Rack, equals no
//! string and contains the items of every value given.

use super::Facts;
use serde_json::Value;

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A JSON Pointer into the request body: as written, and normalized.
    Body(BodyPointer),
    Org,
    TeamId,
    UserId,
    /// A query parameter, by its decoded canonical name (`include`).
    Query(String),
}

/// A JSON pointer of a `body` condition, as written in the policy and with
/// its tokens normalized the way body keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPointer {
    pub written: String,
    pub normalized: String,
}

impl BodyPointer {
    pub fn new(written: String) -> Self {
        BodyPointer {
            normalized: crate::canonical::json::normalize_pointer(&written),
            written,
        }
    }
}

/// The test applied to the subject's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(Value),
    In(Vec<Value>),
    Exists(bool),
    /// A `query` subject's JSON:API list names one of these relationships
    /// (normalized by `underscore`, without dots).
    Contains(Vec<String>),
}

/// The relationships a JSON:API `include` value names, normalized: every
/// dot-separated segment of every comma-separated item, trimmed.
pub fn list_names(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .flat_map(|item| item.split('.'))
        .map(|segment| crate::canonical::json::normalize_key(segment.trim()))
        .filter(|name| !name.is_empty())
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Check { subject: Subject, test: Test },
    Not(Box<Condition>),
    Any(Vec<Condition>),
    All(Vec<Condition>),
}

impl Condition {
    /// True when this condition (or one nested under `not`) reads the body.
    pub fn needs_body(&self) -> bool {
        match self {
            Condition::Check { subject, .. } => matches!(subject, Subject::Body(_)),
            Condition::Not(inner) => inner.needs_body(),
            Condition::Any(list) | Condition::All(list) => list.iter().any(Condition::needs_body),
        }
    }

    /// Evaluates the condition. `body` is the parsed request body; `None`
    /// means the body is empty (every pointer is then absent).
    pub fn holds(&self, facts: &Facts<'_>, body: Option<&Value>) -> bool {
        match self {
            Condition::Not(inner) => !inner.holds(facts, body),
            Condition::Any(list) => list.iter().any(|c| c.holds(facts, body)),
            Condition::All(list) => list.iter().all(|c| c.holds(facts, body)),
            Condition::Check {
                subject: Subject::Query(name),
                test,
            } => {
                let param = facts
                    .query
                    .map(|query| crate::canonical::query::param(query, name))
                    .unwrap_or_default();
                let string = || param.string.as_deref();
                match test {
                    Test::Exists(expected) => param.present == *expected,
                    Test::Equals(expected) => {
                        string().is_some_and(|s| expected.as_str() == Some(s))
                    }
                    Test::In(options) => {
                        string().is_some_and(|s| options.iter().any(|o| o.as_str() == Some(s)))
                    }
                    Test::Contains(names) => param
                        .values
                        .iter()
                        .any(|value| list_names(value).any(|n| names.contains(&n))),
                }
            }
            Condition::Check { subject, test } => {
                let owned;
                let value: Option<&Value> = match subject {
                    Subject::Body(pointer) => body.and_then(|b| b.pointer(&pointer.normalized)),
                    Subject::Org => {
                        owned = facts.org.map(|s| Value::String(s.to_owned()));
                        owned.as_ref()
                    }
                    Subject::TeamId => {
                        owned = facts.team_id.map(|s| Value::String(s.to_owned()));
                        owned.as_ref()
                    }
                    Subject::UserId => {
                        owned = facts.user_id.map(|s| Value::String(s.to_owned()));
                        owned.as_ref()
                    }
                    // Read above.
                    Subject::Query(_) => None,
                };
                match test {
                    Test::Exists(expected) => value.is_some() == *expected,
                    Test::Equals(expected) => value == Some(expected),
                    Test::In(options) => value.is_some_and(|v| options.contains(v)),
                    // Only for `query` (the loader refuses it elsewhere).
                    Test::Contains(_) => false,
                }
            }
        }
    }

    /// A short human description, for explanations and messages.
    pub fn describe(&self) -> String {
        match self {
            Condition::Not(inner) => format!("not ({})", inner.describe()),
            Condition::Any(list) | Condition::All(list) => {
                let parts: Vec<String> = list.iter().map(Condition::describe).collect();
                let joiner = if matches!(self, Condition::Any(_)) {
                    " or "
                } else {
                    " and "
                };
                format!("({})", parts.join(joiner))
            }
            Condition::Check { subject, test } => {
                let subject = match subject {
                    Subject::Body(p) => format!("body {}", p.written),
                    Subject::Org => "org".to_owned(),
                    Subject::TeamId => "team_id".to_owned(),
                    Subject::UserId => "user_id".to_owned(),
                    Subject::Query(name) => format!("query {name}"),
                };
                match test {
                    Test::Equals(v) => format!("{subject} equals {v}"),
                    Test::In(vs) => format!("{subject} in {}", Value::Array(vs.clone())),
                    Test::Exists(true) => format!("{subject} exists"),
                    Test::Exists(false) => format!("{subject} does not exist"),
                    Test::Contains(names) => {
                        format!("{subject} contains any of [{}]", names.join(", "))
                    }
                }
            }
        }
    }
}
