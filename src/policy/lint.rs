//! `tokengate policy lint`: warnings about a policy that loads but does not
//! say what its author probably meant:
//!
//! * rules that can never be reached because an earlier rule always decides
//!   first;
//! * deny rules that list `GET` without `HEAD` (Rails, like most
//!   frameworks, answers `HEAD` with the `GET` action, so the `HEAD` would
//!   get through), and `PATCH` without `PUT` (Rails routes `PUT` to the same
//!   update action);
//! * body conditions of one rule whose pointers are the same key once
//!   normalized the way Rails reads keys (`/data/attributes/auto-apply` and
//!   `/data/attributes/auto_apply`): body keys are always compared
//!   normalized, so one of them is enough, and a policy written as if each
//!   spelling needed its own condition is not key-normalized.
//! * allow rules whose paths name a workspace or run but that require no
//!   access to it.

use super::{Condition, Mode, Policy, Rule, Subject};
use std::fmt;

/// One warning about a loaded policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintWarning {
    /// Key path of the rule the warning is about, e.g. `rules[4] (org-no-x)`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for LintWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Policy {
    /// Finds rules that can never decide (or, for shadow rules, never be
    /// evaluated) because an earlier enforce rule without conditions matches
    /// every request they match.
    ///
    /// Only single earlier rules are considered: a rule covered by the union
    /// of several earlier rules is not reported.
    pub fn lint(&self) -> Vec<LintWarning> {
        let mut warnings = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let earlier = &self.rules[..index];
            if let Some(cover) = earlier.iter().find(|e| always_decides_before(e, rule)) {
                let consequence = match (rule.mode, cover.effect == rule.effect) {
                    (Mode::Shadow, _) => "this shadow rule is never evaluated",
                    (Mode::Enforce, true) => "this rule is redundant",
                    (Mode::Enforce, false) => "this rule never takes effect",
                };
                warnings.push(LintWarning {
                    key: format!("rules[{index}] ({})", rule.id),
                    message: format!(
                        "shadowed by earlier rule `{}` ({} every request this rule matches); {consequence}; \
                         move it above `{}` or remove it",
                        cover.id,
                        if cover.effect == super::Effect::Allow { "allows" } else { "denies" },
                        cover.id,
                    ),
                });
            }
            let key = || format!("rules[{index}] ({})", rule.id);
            if rule.effect == super::Effect::Deny
                && rule.has_method(&http::Method::PATCH)
                && !rule.has_method(&http::Method::PUT)
            {
                warnings.push(LintWarning {
                    key: key(),
                    message:
                        "denies PATCH but not PUT; Rails routes PUT to the same update action, \
                              so add PUT to `methods`"
                            .into(),
                });
            }
            let mut pointers: Vec<(&str, &str)> = Vec::new();
            collect_pointers(&rule.when, &mut pointers);
            let mut reported: Vec<&str> = Vec::new();
            for (i, (written, normalized)) in pointers.iter().enumerate() {
                if reported.contains(normalized) {
                    continue;
                }
                if let Some((other, _)) = pointers[..i]
                    .iter()
                    .find(|(w, n)| n == normalized && w != written)
                {
                    reported.push(normalized);
                    warnings.push(LintWarning {
                        key: key(),
                        message: format!(
                            "body pointers `{other}` and `{written}` are the same key once normalized \
                             (`{normalized}`): body keys are compared the way Rails reads them, \
                             so keep one spelling"
                        ),
                    });
                }
            }
            if let Some(message) = unchecked_target(rule) {
                warnings.push(LintWarning {
                    key: key(),
                    message,
                });
            }
            if rule.effect == super::Effect::Deny
                && rule.has_method(&http::Method::GET)
                && !rule.has_method(&http::Method::HEAD)
            {
                warnings.push(LintWarning {
                    key: format!("rules[{index}] ({})", rule.id),
                    message:
                        "denies GET but not HEAD; most upstreams answer HEAD with the GET action, \
                              so add HEAD to `methods`"
                            .into(),
                });
            }
        }
        warnings
    }
}

/// A warning for an allow rule whose paths name what they target (a
/// `{workspace_id}`, `{run_id}`, …) but that requires nothing: the caller's
/// access to it is never checked.
fn unchecked_target(rule: &Rule) -> Option<String> {
    if rule.effect != super::Effect::Allow
        || rule.requires.is_some()
        || rule.callers == super::Caller::Anonymous.bit()
    {
        return None;
    }
    let named = rule.paths.iter().find_map(|template| {
        template
            .placeholders()
            .find(|name| crate::access_model::TargetKind::from_placeholder(name).is_some())
            .map(|name| (template, name))
    })?;
    Some(format!(
        "allows `{}`, which names a {{{}}}, without `requires`: the caller's access to it is not checked; add `requires:` (docs/ACCESS.md)",
        named.0, named.1
    ))
}

/// Every body pointer of `conditions` (at any depth): (as written, normalized).
fn collect_pointers<'c>(conditions: &'c [Condition], out: &mut Vec<(&'c str, &'c str)>) {
    for condition in conditions {
        match condition {
            Condition::Check {
                subject: Subject::Body(pointer),
                ..
            } => out.push((&pointer.written, &pointer.normalized)),
            Condition::Check { .. } => {}
            Condition::Not(inner) => collect_pointers(std::slice::from_ref(inner), out),
            Condition::Any(list) | Condition::All(list) => collect_pointers(list, out),
        }
    }
}

/// True when `earlier` decides every request that `later` could match.
fn always_decides_before(earlier: &Rule, later: &Rule) -> bool {
    earlier.mode == Mode::Enforce
        && earlier.when.is_empty()
        && later.callers & !earlier.callers == 0
        && later.methods & !earlier.methods == 0
        && later
            .paths
            .iter()
            .all(|path| earlier.paths.iter().any(|cover| path.is_covered_by(cover)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &str) -> Policy {
        Policy::from_yaml(&format!("default: deny\nrules:\n{rules}")).unwrap()
    }

    #[test]
    fn a_deny_of_get_without_head_is_reported() {
        let p = policy(
            "  - { id: no-plan, effect: deny, principals: [org], methods: [GET], paths: [/api/v2/plans/x] }\n\
             \x20 - { id: both, effect: deny, principals: [org], methods: [GET, HEAD], paths: [/api/v2/y] }\n\
             \x20 - { id: allow-get, effect: allow, principals: [org], methods: [GET], paths: [/api/v2/z] }\n",
        );
        let warnings = p.lint();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "rules[0] (no-plan)");
        assert!(warnings[0].message.contains("HEAD"));
    }

    #[test]
    fn a_deny_of_patch_without_put_is_reported() {
        let p = policy(
            "  - { id: no-patch, effect: deny, principals: [org], methods: [PATCH], paths: [/api/v2/x] }\n\
             \x20 - { id: both, effect: deny, principals: [org], methods: [PATCH, PUT], paths: [/api/v2/y] }\n",
        );
        let warnings = p.lint();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "rules[0] (no-patch)");
        assert!(warnings[0].message.contains("PUT"));
    }

    #[test]
    fn spellings_of_one_body_key_in_one_rule_are_reported() {
        let p = policy(
            "  - { id: two-spellings, effect: deny, principals: [org], methods: [PATCH, PUT], paths: [/api/v2/x],\n\
             \x20     when: [{ any: [{ body: /data/attributes/auto-apply, equals: true }, { body: /data/attributes/auto_apply, equals: true }] }] }\n\
             \x20 - { id: one, effect: deny, principals: [org], methods: [PATCH, PUT], paths: [/api/v2/y],\n\
             \x20     when: [{ body: /data/attributes/autoApply, equals: true }] }\n",
        );
        let warnings = p.lint();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "rules[0] (two-spellings)");
        assert!(
            warnings[0]
                .message
                .contains("`/data/attributes/auto_apply`"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn a_rule_behind_a_broader_one_is_reported_with_both_ids() {
        let p = policy(
            "  - { id: all-api, effect: allow, principals: [team, org], methods: [\"*\"], paths: [/api/**] }\n\
             \x20 - { id: org-no-apply, effect: deny, principals: [org], methods: [POST], paths: [\"/api/v2/runs/{id}/actions/apply\"] }\n",
        );
        let warnings = p.lint();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "rules[1] (org-no-apply)");
        assert!(warnings[0].message.contains("`all-api`"), "{}", warnings[0]);
        assert!(warnings[0].message.contains("never takes effect"));
    }

    #[test]
    fn narrower_earlier_rules_conditions_and_shadow_rules_do_not_shadow() {
        let p = policy(
            "  - { id: one-path, effect: deny, principals: [org], methods: [POST], paths: [/api/v2/runs] }\n\
             \x20 - { id: cond, effect: deny, principals: [org], methods: [\"*\"], paths: [/api/**], when: [{ field: org, equals: acme }] }\n\
             \x20 - { id: watch, effect: deny, principals: [org], methods: [\"*\"], paths: [/api/**], mode: shadow }\n\
             \x20 - { id: teams-only, effect: allow, principals: [team], methods: [\"*\"], paths: [/api/**] }\n\
             \x20 - { id: org-and-team, effect: allow, principals: [team, org], methods: [GET], paths: [/api/v2/runs/*] }\n",
        );
        assert_eq!(p.lint(), Vec::new());
    }

    #[test]
    fn an_allow_rule_naming_a_target_without_requires_is_reported() {
        let p = policy(
            "  - { id: open-runs, effect: allow, principals: [team], methods: [GET], paths: [\"/api/v2/runs/{run_id}\"] }\n\
             \x20 - { id: checked, effect: allow, principals: [team], methods: [GET], paths: [\"/api/v2/workspaces/{workspace_id}\"], requires: runs:read }\n\
             \x20 - { id: people, effect: allow, principals: [team], methods: [GET], paths: [\"/api/v2/things/{id}\"] }\n",
        );
        let warnings = p.lint();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "rules[0] (open-runs)");
        assert!(
            warnings[0].message.contains("{run_id}") && warnings[0].message.contains("requires")
        );
    }

    #[test]
    fn redundant_and_unreachable_shadow_rules_are_named() {
        let p = policy(
            "  - { id: all, effect: allow, principals: [user], methods: [\"*\"], paths: [/**] }\n\
             \x20 - { id: again, effect: allow, principals: [user], methods: [GET], paths: [/api/x] }\n\
             \x20 - { id: late-watch, effect: deny, principals: [user], methods: [GET, HEAD], paths: [/a], mode: shadow }\n",
        );
        let messages: Vec<String> = p.lint().iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("rules[1] (again)") && messages[0].contains("redundant"));
        assert!(
            messages[1].starts_with("rules[2] (late-watch)")
                && messages[1].contains("never evaluated")
        );
    }
}
