//! `tokengate policy explain`: how a policy decides one request, rule by
//! rule — the canonical path, why each rule matched or not, and the decision.

use super::{decide_traced, Caller, Facts, Judgement, Mode, Policy, Rule, RuleCheck, METHODS};
use std::fmt::{self, Write};

/// The story of one decision, ready to print.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// One line per rule, in order (`not reached` after the decision).
    pub steps: Vec<String>,
    /// `allow` / `deny` / `bad_request`.
    pub decision: &'static str,
    /// The deciding rule's id (`default` when no rule decided).
    pub rule_id: String,
    /// The decision in a sentence (status and message of a denial).
    pub summary: String,
    /// What an allowed request requires of the caller, on what (filled in
    /// by [`super::request::CaseRequest::explain`], which knows the query).
    pub requires: Option<String>,
}

impl Policy {
    /// Explains the decision for `facts` with the whole body at hand
    /// (`b""` for no body). A body the gateway would refuse before any rule
    /// (not JSON, or one key spelled twice) is explained as that refusal.
    pub fn explain(&self, facts: &Facts<'_>, body: &[u8]) -> Explanation {
        let body = match crate::canonical::json::parse_normalized(body) {
            Ok(body) => body,
            Err(err) => {
                return Explanation {
                    steps: vec!["the body is refused before any rule is tried".to_owned()],
                    decision: "bad_request",
                    rule_id: "-".to_owned(),
                    summary: format!("bad_request (400): {err}"),
                    requires: None,
                }
            }
        };
        let mut checks: Vec<(&Rule, RuleCheck)> = Vec::new();
        let judgement = decide_traced(self, facts, body.as_ref(), |rule, check| {
            checks.push((rule, check));
        });
        let width = self.rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
        let index_width = format!("rules[{}]", self.rules.len().saturating_sub(1)).len();
        let mut steps = Vec::with_capacity(self.rules.len());
        for (index, rule) in self.rules.iter().enumerate() {
            let what = match checks.get(index) {
                Some((_, check)) => describe(rule, *check, facts),
                None => "not reached (decided above)".to_owned(),
            };
            steps.push(format!(
                "{:<index_width$} {:<width$} {:<7} {what}",
                format!("rules[{index}]"),
                rule.id,
                rule.mode.as_str()
            ));
        }
        Explanation {
            steps,
            decision: judgement.label(),
            rule_id: judgement.rule_label().to_string(),
            summary: summarize(&judgement),
            requires: None,
        }
    }
}

/// The decision in a sentence: what decided, the status and detail of a
/// refusal, and the shadow rules that matched.
fn summarize(judgement: &Judgement<'_>) -> String {
    let mut summary = match judgement.verdict().rule {
        Some(rule) => format!("{} by rule `{}`", judgement.label(), rule.id),
        None => format!("{} by the default", judgement.label()),
    };
    if let Judgement::Deny { status, detail, .. } = judgement {
        let _ = write!(summary, " ({}): {detail}", status.as_u16());
    }
    for rule in judgement.shadow() {
        let _ = write!(summary, "; shadow rule `{}` {}", rule.id, rule.would());
    }
    summary
}

fn describe(rule: &Rule, check: RuleCheck, facts: &Facts<'_>) -> String {
    match check {
        RuleCheck::NotForCaller => format!(
            "no: principals are [{}], the caller is {}",
            principal_names(rule),
            facts.caller.as_str()
        ),
        RuleCheck::MethodNotListed => format!(
            "no: methods are [{}], the request is {}",
            method_names(rule),
            facts.method
        ),
        RuleCheck::PathNotMatched => format!(
            "no: no path template matches ({})",
            rule.paths
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RuleCheck::ConditionFailed(i) => {
            format!("no: when[{i}] does not hold ({})", rule.when[i].describe())
        }
        RuleCheck::BodyNotJson => match rule.mode {
            Mode::Shadow => "skipped: needs a JSON body and the body is not JSON".to_owned(),
            Mode::Enforce => {
                "needs a JSON body and the body is not JSON: the request is refused (400)"
                    .to_owned()
            }
        },
        RuleCheck::Matched => {
            let template = rule
                .matching_path(facts.path)
                .map_or_else(String::new, |t| format!(" (path {t})"));
            match rule.mode {
                Mode::Enforce => match &rule.requires {
                    Some(requires) => format!(
                        "MATCH{template}: {} if the caller has {} — decides",
                        rule.effect.as_str(),
                        requires.requirement
                    ),
                    None => format!("MATCH{template}: {} — decides", rule.effect.as_str()),
                },
                Mode::Shadow => format!(
                    "MATCH{template}: {} — logged only, does not decide",
                    rule.would()
                ),
            }
        }
    }
}

fn principal_names(rule: &Rule) -> String {
    Caller::ALL
        .iter()
        .filter(|c| rule.applies_to(**c))
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn method_names(rule: &Rule) -> String {
    METHODS
        .iter()
        .filter(|m| rule.has_method(m))
        .map(http::Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rules (first enforce match decides, then `default`):")?;
        for step in &self.steps {
            writeln!(f, "  {step}")?;
        }
        write!(f, "decision: {}", self.summary)?;
        match &self.requires {
            Some(refused) if refused.starts_with("refused") => write!(f, "\nrequires: {refused}")?,
            Some(requires) => write!(
                f,
                "\nrequires: {requires} (the gateway checks the caller's access before forwarding; docs/ACCESS.md)"
            )?,
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonicalize;
    use http::Method;

    const POLICY: &str = "default: deny\nrules:\n\
        \x20 - { id: watch-org, effect: deny, principals: [org], methods: [POST], paths: [/api/**], mode: shadow }\n\
        \x20 - { id: teams, effect: allow, principals: [team], methods: [\"*\"], paths: [/api/**] }\n\
        \x20 - { id: org-apply, effect: deny, principals: [org], methods: [POST], paths: [\"/api/v2/runs/{id}/actions/apply\"], message: no applies }\n\
        \x20 - { id: org-auto, effect: deny, principals: [org], methods: [PATCH], paths: [\"/api/v2/workspaces/{id}\"], when: [{ body: /data/attributes/auto-apply, equals: true }] }\n\
        \x20 - { id: org-api, effect: allow, principals: [org], methods: [\"*\"], paths: [/api/**] }\n";

    fn explain(caller: Caller, method: Method, path: &str, body: &[u8]) -> Explanation {
        let policy = Policy::from_yaml(POLICY).unwrap();
        let path = canonicalize(path).unwrap();
        let facts = Facts {
            caller,
            org: Some("acme"),
            team_id: None,
            user_id: None,
            method: &method,
            path: &path,
            query: None,
        };
        policy.explain(&facts, body)
    }

    #[test]
    fn explain_names_the_policy_denial_status() {
        let policy = Policy::from_yaml(&format!("denial_status: 404\n{POLICY}")).unwrap();
        let path = canonicalize("/api/v2/runs/run-1/actions/apply").unwrap();
        let facts = Facts {
            caller: Caller::Org,
            org: Some("acme"),
            team_id: None,
            user_id: None,
            method: &Method::POST,
            path: &path,
            query: None,
        };
        let text = policy.explain(&facts, b"").to_string();
        assert!(text.contains("deny by rule `org-apply` (404)"), "{text}");
    }

    #[test]
    fn every_rule_is_accounted_for_and_the_decision_named() {
        let e = explain(
            Caller::Org,
            Method::POST,
            "/api/v2/runs/run-1/actions/APPLY",
            b"",
        );
        assert_eq!(e.decision, "deny");
        assert_eq!(e.rule_id, "org-apply");
        assert!(
            e.steps[0].contains("MATCH") && e.steps[0].contains("would_deny"),
            "{}",
            e.steps[0]
        );
        assert!(
            e.steps[1].contains("principals are [team], the caller is org"),
            "{}",
            e.steps[1]
        );
        assert!(e.steps[2].contains("MATCH (path /api/v2/runs/{id}/actions/apply): deny — decides"));
        assert!(e.steps[3].contains("not reached") && e.steps[4].contains("not reached"));
        let text = e.to_string();
        assert!(
            text.contains("deny by rule `org-apply` (403): no applies (policy rule `org-apply`)"),
            "{text}"
        );
        assert!(
            text.contains("shadow rule `watch-org` would_deny"),
            "{text}"
        );
    }

    #[test]
    fn body_conditions_and_invalid_bodies_are_explained() {
        let e = explain(
            Caller::Org,
            Method::PATCH,
            "/api/v2/workspaces/ws-1",
            br#"{"data":{"attributes":{"auto-apply":false}}}"#,
        );
        assert_eq!((e.decision, e.rule_id.as_str()), ("allow", "org-api"));
        assert!(
            e.steps[3]
                .contains("when[0] does not hold (body /data/attributes/auto-apply equals true)"),
            "{}",
            e.steps[3]
        );
        let e = explain(
            Caller::Org,
            Method::PATCH,
            "/api/v2/workspaces/ws-1",
            b"{nope",
        );
        assert_eq!((e.decision, e.rule_id.as_str()), ("bad_request", "-"));
        assert!(e.summary.contains("not valid JSON"), "{}", e.summary);
        let e = explain(
            Caller::Org,
            Method::PATCH,
            "/api/v2/workspaces/ws-1",
            br#"{"data":{"attributes":{"AUTO-APPLY":true}}}"#,
        );
        assert_eq!((e.decision, e.rule_id.as_str()), ("deny", "org-auto"));
        let e = explain(Caller::Anonymous, Method::GET, "/api/v2/x", b"");
        assert_eq!((e.decision, e.rule_id.as_str()), ("deny", "default"));
        assert!(e.summary.contains("(401)"), "{}", e.summary);
        let e = explain(Caller::Team, Method::DELETE, "/other", b"");
        assert!(
            e.steps[1].contains("no: no path template matches (/api/**)"),
            "{}",
            e.steps[1]
        );
    }
}
