//! `tokengate policy test CASES.yaml`: a table of requests and the decision
//! each must get, checked against a policy before it goes live.
//!
//! ```yaml
//! policy: policy.yaml            # optional; relative to this file
//! cases:
//!   - name: org token cannot apply
//!     kind: org                  # team | org | user | anonymous
//!     org: acme                  # optional; team, user likewise
//!     method: POST
//!     path: /api/v2/runs/run-1/actions/apply
//!     body: { comment: ok }      # optional JSON (as YAML), or raw_body: "text"
//!     expect: deny               # allow | deny | bad_request
//!     rule: org-no-run-actions   # optional: the deciding rule (or `default`)
//!     status: 403                # optional: the status of a denial
//!     shadow: []                 # optional: ids of shadow rules that must match
//!     requires: runs:apply       # optional: the permission required (`none`: nothing)
//! ```

pub use super::request::{Actual, CaseRequest, RequestFields};
use super::Policy;
use crate::config::{parse_yaml, render_problems, ConfigProblem};
use serde::Deserialize;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Why a cases file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("cannot read cases file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems("cases file", path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
    },
}

#[derive(Debug, Default, Deserialize)]
struct RawCases {
    policy: Option<String>,
    cases: Option<Vec<RawCase>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawCase {
    name: Option<String>,
    kind: Option<String>,
    org: Option<String>,
    team: Option<String>,
    user: Option<String>,
    method: Option<String>,
    path: Option<String>,
    #[serde(default, deserialize_with = "super::load::optional_finite_json")]
    body: Option<serde_json::Value>,
    raw_body: Option<String>,
    expect: Option<String>,
    rule: Option<String>,
    status: Option<u16>,
    shadow: Option<Vec<String>>,
    requires: Option<String>,
}

/// A validated cases file.
#[derive(Debug, Clone)]
pub struct CaseSet {
    /// The policy the file names, resolved against the file's folder.
    pub policy: Option<PathBuf>,
    pub cases: Vec<Case>,
}

/// One request and what it must get.
#[derive(Debug, Clone)]
pub struct Case {
    /// `cases[3] (name)`.
    pub label: String,
    pub request: CaseRequest,
    pub expect: &'static str,
    pub rule: Option<String>,
    pub status: Option<u16>,
    pub shadow: Option<Vec<String>>,
    /// The permission the allowing rule must require (`none`: none).
    pub requires: Option<String>,
}

/// The result of running a case set.
#[derive(Debug, Clone, Default)]
pub struct CaseReport {
    pub passed: usize,
    /// One readable paragraph per failed case.
    pub failures: Vec<String>,
}

impl CaseSet {
    /// Reads and validates a cases file, reporting every problem at once.
    pub fn load(path: &Path) -> Result<CaseSet, CasesError> {
        let text = std::fs::read_to_string(path).map_err(|source| CasesError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml(&text, base).map_err(|problems| CasesError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    /// Parses cases YAML; a `policy:` path resolves against `base_dir`.
    pub fn from_yaml(text: &str, base_dir: &Path) -> Result<CaseSet, Vec<ConfigProblem>> {
        let parsed = parse_yaml::<RawCases>(text)?;
        let mut problems: Vec<ConfigProblem> = parsed
            .unknown_keys
            .into_iter()
            .map(|key| ConfigProblem {
                key,
                message: "unknown key; see docs/POLICY.md (policy test)".into(),
            })
            .collect();
        let raw_cases = parsed.value.cases.unwrap_or_default();
        if raw_cases.is_empty() {
            problems.push(ConfigProblem {
                key: "cases".into(),
                message: "is missing or empty; list at least one case".into(),
            });
        }
        let mut cases = Vec::new();
        for (index, raw) in raw_cases.into_iter().enumerate() {
            let label = match &raw.name {
                Some(name) => format!("cases[{index}] ({name})"),
                None => format!("cases[{index}]"),
            };
            match validate_case(raw, &label) {
                Ok(case) => cases.push(case),
                Err(errors) => problems.extend(errors),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(CaseSet {
            policy: parsed.value.policy.map(|p| base_dir.join(p)),
            cases,
        })
    }

    /// Runs every case against `policy`.
    pub fn run(&self, policy: &Policy) -> CaseReport {
        let mut report = CaseReport::default();
        for case in &self.cases {
            let actual = case.request.decide(policy);
            match case.mismatch(&actual) {
                None => report.passed += 1,
                Some(expected) => report.failures.push(format!(
                    "FAIL {}: {}\n  expected: {expected}\n  actual:   {}",
                    case.label, case.request, actual,
                )),
            }
        }
        report
    }
}

fn validate_case(raw: RawCase, label: &str) -> Result<Case, Vec<ConfigProblem>> {
    let body = match (raw.body, raw.raw_body) {
        (Some(_), Some(_)) => Err(ConfigProblem {
            key: format!("{label}.body"),
            message: "give either `body` or `raw_body`, not both".into(),
        }),
        (Some(value), None) => Ok(serde_json::to_vec(&value).unwrap_or_default()),
        (None, Some(text)) => Ok(text.into_bytes()),
        (None, None) => Ok(Vec::new()),
    };
    let fields = RequestFields {
        kind: raw.kind,
        org: raw.org,
        team: raw.team,
        user: raw.user,
        method: raw.method,
        path: raw.path,
        body: body.clone().unwrap_or_default(),
    };
    let request = CaseRequest::parse(fields, &format!("{label}."));
    let mut problems = match &request {
        Ok(_) => Vec::new(),
        Err(problems) => problems.clone(),
    };
    problems.extend(body.err());
    let expect = match raw.expect.as_deref() {
        Some("allow") => "allow",
        Some("deny") => "deny",
        Some("bad_request") => "bad_request",
        _ => {
            problems.push(ConfigProblem {
                key: format!("{label}.expect"),
                message: "is missing or unknown; use allow, deny or bad_request".into(),
            });
            "deny"
        }
    };
    match request {
        Ok(request) if problems.is_empty() => Ok(Case {
            label: label.to_owned(),
            request,
            expect,
            rule: raw.rule,
            status: raw.status,
            shadow: raw.shadow,
            requires: raw.requires,
        }),
        _ => Err(problems),
    }
}

impl Case {
    /// `None` when `actual` is what the case expects; else the expectation.
    fn mismatch(&self, actual: &Actual) -> Option<String> {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let ok = self.expect == actual.decision
            && self.rule.as_ref().is_none_or(|r| *r == actual.rule)
            && self.status.is_none_or(|s| s == actual.status)
            && self
                .shadow
                .as_ref()
                .is_none_or(|s| sorted(s) == sorted(&actual.shadow))
            && self.requires.as_ref().is_none_or(|r| {
                actual.requires.as_deref().unwrap_or("none") == r
                    && !actual
                        .need
                        .as_deref()
                        .is_some_and(|n| n.starts_with("refused"))
            });
        if ok {
            return None;
        }
        let mut expected = self.expect.to_owned();
        if let Some(rule) = &self.rule {
            let _ = write!(expected, " by `{rule}`");
        }
        if let Some(status) = self.status {
            let _ = write!(expected, " (status {status})");
        }
        if let Some(shadow) = &self.shadow {
            let _ = write!(expected, ", shadow matches [{}]", shadow.join(", "));
        }
        if let Some(requires) = &self.requires {
            let _ = write!(expected, ", requires {requires}");
        }
        Some(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "default: deny\nrules:\n\
        \x20 - { id: watch, effect: deny, principals: [team], methods: [DELETE], paths: [/api/**], mode: shadow }\n\
        \x20 - { id: org-auto, effect: deny, principals: [org], methods: [PATCH], paths: [\"/api/v2/workspaces/{id}\"], when: [{ body: /data/attributes/auto-apply, equals: true }] }\n\
        \x20 - { id: acme-only, effect: allow, principals: [team, org], methods: [\"*\"], paths: [/api/**], when: [{ field: org, in: [acme] }] }\n";

    fn run(cases: &str) -> CaseReport {
        let set = CaseSet::from_yaml(cases, Path::new("/etc")).unwrap();
        set.run(&Policy::from_yaml(POLICY).unwrap())
    }

    #[test]
    fn passing_cases_cover_bodies_fields_shadow_and_statuses() {
        let report = run(r#"
cases:
  - { name: auto-apply on, kind: org, org: acme, method: PATCH, path: /api/v2/workspaces/ws-1,
      body: { data: { attributes: { auto-apply: true } } }, expect: deny, rule: org-auto, status: 403 }
  - { kind: org, org: acme, method: PATCH, path: /api/v2/workspaces/ws-1,
      body: { data: { attributes: { auto-apply: false } } }, expect: allow, rule: acme-only }
  - { kind: org, org: acme, method: PATCH, path: /api/v2/workspaces/ws-1, raw_body: "{x", expect: bad_request }
  - { kind: org, org: acme, method: PATCH, path: /api/v2/workspaces/ws-1,
      body: { data: { attributes: { autoApply: true } } }, expect: deny, rule: org-auto }
  - { kind: org, org: acme, method: PATCH, path: "/api/v2/workspaces/ws-1?data[attributes][auto-apply]=true", expect: bad_request }
  - { kind: team, org: globex, method: GET, path: /api/v2/x, expect: deny, rule: default }
  - { kind: team, org: acme, method: DELETE, path: /api/v2/x, expect: allow, shadow: [watch] }
  - { kind: anonymous, method: GET, path: /api/v2/x, expect: deny, status: 401 }
  - { kind: team, org: acme, method: GET, path: "/api/v2/%2e%2e/x", expect: allow }
  - { kind: team, org: acme, method: GET, path: "/api/v2/a%2fb", expect: bad_request }
"#);
        assert_eq!(report.failures, Vec::<String>::new());
        assert_eq!(report.passed, 10);
    }

    #[test]
    fn cases_see_the_policy_denial_status() {
        let policy = Policy::from_yaml(&format!("denial_status: 404\n{POLICY}")).unwrap();
        let set = CaseSet::from_yaml(
            "cases:\n  - { kind: team, org: globex, method: GET, path: /api/v2/x, expect: deny, rule: default, status: 404 }\n",
            Path::new("/etc"),
        )
        .unwrap();
        let report = set.run(&policy);
        assert_eq!(report.failures, Vec::<String>::new());
        assert_eq!(report.passed, 1);
    }

    #[test]
    fn a_failing_case_says_what_was_expected_and_what_happened() {
        let report = run(r#"
cases:
  - { name: wrong, kind: team, method: GET, path: /api/v2/x, expect: allow, rule: acme-only }
"#);
        assert_eq!(report.passed, 0);
        let failure = &report.failures[0];
        assert!(
            failure.starts_with(
                "FAIL cases[0] (wrong): GET /api/v2/x as team org=example-org team=team-example"
            ),
            "{failure}"
        );
        assert!(
            failure.contains("expected: allow by `acme-only`"),
            "{failure}"
        );
        assert!(
            failure.contains("actual:   deny by `default` (status 403)"),
            "{failure}"
        );
    }

    #[test]
    fn bad_cases_files_name_every_problem() {
        let problems = CaseSet::from_yaml(
            "polcy: x\ncases:\n  - { name: a, kind: robot, method: TRACE, expect: maybe }\n  - { kind: org, team: t, method: GET, path: /, expect: allow, body: {}, raw_body: x }\n",
            Path::new("."),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "polcy",
                "cases[0] (a).kind",
                "cases[0] (a).method",
                "cases[0] (a).path",
                "cases[0] (a).expect",
                "cases[1].team",
                "cases[1].body",
            ]
        );
        assert!(CaseSet::from_yaml("cases: []", Path::new(".")).is_err());
    }

    #[test]
    fn a_body_with_nan_or_infinity_is_refused_not_sent_as_null() {
        let problems = CaseSet::from_yaml(
            "cases:\n  - { kind: org, method: POST, path: /a, expect: deny, body: { x: .nan } }\n",
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].key.starts_with("cases[0].body"), "{problems:?}");
        assert!(
            problems[0].message.contains("no JSON value"),
            "{problems:?}"
        );
    }
}
