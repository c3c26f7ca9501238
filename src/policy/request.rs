//! One request as the policy tools (`policy test`, `policy explain`) see it:
//! who calls, the method, the path as a client sends it and the body; and
//! what the gateway would do with it.

use super::{decide, Caller, Facts, Policy};
use crate::canonical::{canonical_target, CanonicalPath, TargetError};
use crate::config::ConfigProblem;
use http::Method;
use serde_json::Value;
use std::fmt;

/// One request as a policy sees it: who, method, path (as sent) and body.
#[derive(Debug, Clone)]
pub struct CaseRequest {
    pub caller: Caller,
    pub org: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub method: Method,
    pub path: String,
    pub body: Vec<u8>,
}

/// The fields of a [`CaseRequest`] as written (in a file or on the command line).
#[derive(Debug, Clone, Default)]
pub struct RequestFields {
    pub kind: Option<String>,
    pub org: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub body: Vec<u8>,
}

/// What the gateway would do with a case's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    pub decision: &'static str,
    pub rule: String,
    pub status: u16,
    pub shadow: Vec<String>,
    /// The permission an allowed request requires (`runs:apply`), if any.
    pub requires: Option<String>,
    /// On what: `runs:apply on run run-1`, or why the targets cannot be
    /// read from the request (the gateway then refuses it).
    pub need: Option<String>,
}

impl CaseRequest {
    /// Validates request fields; problem keys are `key_prefix` + field name.
    /// A principal without a given org, team or user gets a placeholder
    /// (`example-org`, `team-example`, `user-example`), as a real token
    /// always has them.
    pub fn parse(
        fields: RequestFields,
        key_prefix: &str,
    ) -> Result<CaseRequest, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(ConfigProblem {
                key: format!("{key_prefix}{field}"),
                message,
            })
        };
        let caller = match fields.kind.as_deref().map(Caller::parse) {
            Some(Some(caller)) => caller,
            _ => {
                problem(
                    "kind",
                    "is missing or unknown; use team, org, user or anonymous".into(),
                );
                Caller::Anonymous
            }
        };
        let mut identity = |field: &str,
                            given: Option<String>,
                            applies: bool,
                            placeholder: &str| match (given, applies) {
            (Some(_), false) => {
                problem(
                    field,
                    format!("a {} caller has no {field}; remove it", caller.as_str()),
                );
                None
            }
            (Some(value), true) => Some(value),
            (None, true) => Some(placeholder.to_owned()),
            (None, false) => None,
        };
        let org = identity(
            "org",
            fields.org,
            caller != Caller::Anonymous,
            "example-org",
        );
        let team = identity("team", fields.team, caller == Caller::Team, "team-example");
        let user = identity("user", fields.user, caller == Caller::User, "user-example");
        let method = match fields.method.as_deref().map(str::parse::<Method>) {
            Some(Ok(m)) if super::method_bit(&m).is_some() => m,
            _ => {
                problem(
                    "method",
                    "is missing or not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".into(),
                );
                Method::GET
            }
        };
        let path = fields.path.unwrap_or_else(|| {
            problem(
                "path",
                "is missing; give the request path, e.g. /api/v2/runs".into(),
            );
            String::new()
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(CaseRequest {
            caller,
            org,
            team,
            user,
            method,
            path,
            body: fields.body,
        })
    }

    /// The path and the query string as the request gives them.
    fn path_and_query(&self) -> (&str, Option<&str>) {
        match self.path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (&self.path, None),
        }
    }

    /// What the rule that allowed this request requires, on what: `None`
    /// when it requires nothing (or the request is not allowed).
    fn need(
        &self,
        judgement: &super::Judgement<'_>,
        path: &CanonicalPath,
        body: Option<&Value>,
    ) -> Option<String> {
        let super::Judgement::Allow(verdict) = judgement else {
            return None;
        };
        let rule = verdict.rule?;
        rule.requires.as_ref()?;
        let (_, query) = self.path_and_query();
        Some(match rule.need(path, body, query) {
            Ok(Some(need)) => need.to_string(),
            Ok(None) => return None,
            Err(err) => format!("refused by the gateway: {err}"),
        })
    }

    /// Runs `judge` with the request's facts; `Err` when the gateway would
    /// refuse the target itself (400: the path, or the query on a write)
    /// before any policy. `path` may carry a query (`/x?a=1`).
    fn with_facts<T>(
        &self,
        policy: &Policy,
        judge: impl FnOnce(&Facts<'_>) -> T,
    ) -> Result<T, TargetError> {
        let (path, query) = self.path_and_query();
        let path = canonical_target(&self.method, path, query, &policy.write_query_parameters)?;
        Ok(judge(&Facts {
            caller: self.caller,
            org: self.org.as_deref(),
            team_id: self.team.as_deref(),
            user_id: self.user.as_deref(),
            method: &self.method,
            path: &path,
            query,
        }))
    }

    /// The canonical path and how `policy` decides the request, rule by rule.
    pub fn explain(
        &self,
        policy: &Policy,
    ) -> Result<(String, super::explain::Explanation), TargetError> {
        let body = crate::canonical::json::parse_normalized(&self.body)
            .ok()
            .flatten();
        self.with_facts(policy, |facts| {
            let mut explanation = policy.explain(facts, &self.body);
            let judgement = decide(policy, facts, body.as_ref());
            explanation.requires = self.need(&judgement, facts.path, body.as_ref());
            (facts.path.to_string(), explanation)
        })
    }

    /// Decides the request as the gateway would.
    pub fn decide(&self, policy: &Policy) -> Actual {
        let refused = || Actual {
            decision: "bad_request",
            rule: "-".into(),
            status: 400,
            shadow: Vec::new(),
            requires: None,
            need: None,
        };
        let Ok(body) = crate::canonical::json::parse_normalized(&self.body) else {
            return refused();
        };
        let decided = self.with_facts(policy, |facts| {
            let judgement = decide(policy, facts, body.as_ref());
            let requires = Some(judgement.verdict())
                .filter(|_| matches!(judgement, super::Judgement::Allow(_)))
                .and_then(|v| v.rule)
                .and_then(|r| r.requires.as_ref())
                .map(|r| r.requirement.to_string());
            Actual {
                decision: judgement.label(),
                rule: judgement.rule_label().to_string(),
                status: judgement.status().as_u16(),
                shadow: judgement
                    .shadow()
                    .iter()
                    .map(|r| r.id.to_string())
                    .collect(),
                need: self.need(&judgement, facts.path, body.as_ref()),
                requires,
            }
        });
        decided.unwrap_or_else(|_| refused())
    }
}

impl fmt::Display for CaseRequest {
    /// `POST /path as org org=acme with body {...}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} as {}",
            self.method,
            self.path,
            self.caller.as_str()
        )?;
        for (name, value) in [
            ("org", &self.org),
            ("team", &self.team),
            ("user", &self.user),
        ] {
            if let Some(value) = value {
                write!(f, " {name}={value}")?;
            }
        }
        if !self.body.is_empty() {
            write!(f, " with body {}", String::from_utf8_lossy(&self.body))?;
        }
        Ok(())
    }
}

impl fmt::Display for Actual {
    /// `deny by `rule` (status 403), shadow matches [a, b]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} by `{}` (status {})",
            self.decision, self.rule, self.status
        )?;
        if !self.shadow.is_empty() {
            write!(f, ", shadow matches [{}]", self.shadow.join(", "))?;
        }
        if let Some(need) = &self.need {
            write!(f, ", requires {need}")?;
        }
        Ok(())
    }
}
