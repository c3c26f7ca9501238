//! `requires:` — a rule that allows a request can require a permission on
//! what the request targets: a workspace permission (`runs:apply`,
//! `variables:write`, `admin`, …) or an organization one
//! (`organization:member`, `organization:manage-workspaces`, …).
//!
//! ```yaml
//! - id: runs-apply
//!   effect: allow
//!   principals: [team, org, user]
//!   methods: [POST]
//!   paths: ["/api/v2/runs/{run_id}/actions/apply"]
//!   requires: runs:apply          # on the run's workspace
//! - id: runs-create
//!   effect: allow
//!   principals: [team, org, user]
//!   methods: [POST]
//!   paths: [/api/v2/runs]
//!   requires: runs:plan
//!   target:                       # ids that are not in the path
//!     workspace_id: { body: /data/relationships/workspace/data/id }
//! ```
//!
//! The targets are the path template's placeholders named after what they
//! hold (`{workspace_id}`, `{run_id}`, `{organization}` with
//! `{workspace_name}`, `{team_id}`, an organization resource's
//! `{project_id}`, …; see [`TargetKind`]) and the
//! `target:` entries (a body JSON Pointer or a query parameter). The policy
//! only says what is required of what; the access stage of the request path
//! finds the targets' workspace and organization and checks the caller's
//! access (`docs/ACCESS.md`).

use super::PathTemplate;
use crate::access_model::{OrgResourceKind, Requirement, ResourceKind, TargetKind};
use crate::canonical::CanonicalPath;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// A rule's `requires:` and `target:`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Requires {
    pub requirement: Requirement,
    /// `target:` entries: which kind of id is found where.
    pub sources: Vec<(TargetKind, TargetSource)>,
}

/// Where a `target:` id is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSource {
    /// A JSON Pointer into the request body (looked up normalized, as
    /// every body key is: [`crate::canonical::json`]).
    Body(super::BodyPointer),
    /// A query parameter, by its decoded name (`filter[workspace][name]`).
    Query(String),
}

impl fmt::Display for TargetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSource::Body(pointer) => write!(f, "body {}", pointer.written),
            TargetSource::Query(name) => write!(f, "query parameter {name}"),
        }
    }
}

/// `target:` entry as written.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTargetSource {
    body: Option<String>,
    query: Option<String>,
}

/// One thing a request targets, with its id as the upstream will read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Workspace(String),
    WorkspaceName {
        organization: String,
        name: String,
    },
    Organization(String),
    Team(String),
    Resource(ResourceKind, String),
    /// An organization's resource by its own id (`{project_id}`, …).
    OrgResource(OrgResourceKind, String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Workspace(id) => write!(f, "workspace {id}"),
            Target::WorkspaceName { organization, name } => {
                write!(f, "workspace {organization}/{name}")
            }
            Target::Organization(name) => write!(f, "organization {name}"),
            Target::Team(id) => write!(f, "team {id}"),
            Target::Resource(kind, id) => write!(f, "{} {id}", kind.noun()),
            Target::OrgResource(kind, id) => write!(f, "{} {id}", kind.noun()),
        }
    }
}

/// What one request needs: the requirement of the rule that allowed it, on
/// each of its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub requirement: Requirement,
    /// The rule that asked for it.
    pub rule: Arc<str>,
    pub targets: Vec<Target>,
}

impl fmt::Display for Need {
    /// `runs:apply on run run-1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on ", self.requirement)?;
        for (index, target) in self.targets.iter().enumerate() {
            if index > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{target}")?;
        }
        Ok(())
    }
}

/// Why the targets of a request could not be read from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NeedError {
    /// A `target:` value is missing (422, naming where it was looked for).
    #[error("policy rule `{rule}` needs the {kind} at {location}, and the request has none")]
    Missing {
        rule: Arc<str>,
        kind: &'static str,
        location: TargetSource,
    },
    /// A `target:` value is there but is not an id (422).
    #[error("the {kind} at {location} must be a string of letters, digits, `-` and `_`")]
    Malformed {
        kind: &'static str,
        location: TargetSource,
    },
    /// An id in the path cannot name anything (404, as the upstream would).
    #[error("not found")]
    NoSuchId,
    /// The query says one thing twice, or rewrites the body the rule reads (400).
    #[error("{0}")]
    Ambiguous(String),
}

impl NeedError {
    /// The JSON Pointer of a body value this error is about.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            NeedError::Missing {
                location: TargetSource::Body(pointer),
                ..
            }
            | NeedError::Malformed {
                location: TargetSource::Body(pointer),
                ..
            } => Some(&pointer.written),
            _ => None,
        }
    }
}

/// Longest id accepted (Terraform Enterprise ids are 20 characters).
const MAX_ID_LEN: usize = 128;

/// An id as the upstream routes it: a Rails `(.:format)` suffix is not part
/// of it (`run-1.json` is `run-1`), and it must be letters, digits, `-` and
/// `_` (what every Terraform Enterprise id, name and organization is), so it
/// can go into a lookup path unchanged.
pub fn routed_id(raw: &str) -> Option<&str> {
    let id = raw.split('.').next().unwrap_or_default();
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(id)
}

impl Requires {
    /// Validates `requires:` and `target:` of a rule; problems are
    /// `(field, message)`.
    pub(super) fn parse(
        requires: Option<String>,
        target: Option<std::collections::BTreeMap<String, RawTargetSource>>,
        rule: &RuleShape<'_>,
    ) -> Result<Option<Requires>, Vec<(String, String)>> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let Some(text) = requires else {
            if target.is_some() {
                problems.push((
                    "target".into(),
                    "says where ids are, but the rule has no `requires`; add one or remove `target`"
                        .into(),
                ));
            }
            return if problems.is_empty() {
                Ok(None)
            } else {
                Err(problems)
            };
        };
        let requirement = match Requirement::parse(&text) {
            Ok(requirement) => Some(requirement),
            Err(message) => {
                problems.push(("requires".into(), message));
                None
            }
        };
        if !rule.allows {
            problems.push((
                "requires".into(),
                "only allow rules can require a permission; remove it, or make the rule an allow rule".into(),
            ));
        }
        if rule.anonymous {
            problems.push((
                "requires".into(),
                "an anonymous caller has no access to check; remove `anonymous` from principals"
                    .into(),
            ));
        }
        let mut sources = Vec::new();
        for (name, raw) in target.unwrap_or_default() {
            let key = format!("target.{name}");
            let Some(kind) = TargetKind::from_placeholder(&name) else {
                problems.push((
                    key,
                    format!(
                        "`{name}` is not a kind of id; use one of {}",
                        placeholder_names()
                    ),
                ));
                continue;
            };
            let source = match (raw.body, raw.query) {
                (Some(pointer), None) if pointer.starts_with('/') => {
                    TargetSource::Body(super::BodyPointer::new(pointer))
                }
                (Some(pointer), None) => {
                    problems.push((
                        key,
                        format!("body pointer `{pointer}` must start with `/` (RFC 6901)"),
                    ));
                    continue;
                }
                (None, Some(name)) if !name.is_empty() => TargetSource::Query(name),
                _ => {
                    problems.push((
                        key,
                        "needs exactly one of `body: /json/pointer` or `query: parameter-name`"
                            .into(),
                    ));
                    continue;
                }
            };
            if matches!(source, TargetSource::Body(_)) && rule.bodiless {
                problems.push((
                    key,
                    "reads the body, but every listed method has no body; use `query:` or list a method with a body".into(),
                ));
                continue;
            }
            sources.push((kind, source));
        }
        if let Some(requirement) = requirement {
            for (i, template) in rule.paths.iter().enumerate() {
                let mut kinds: Vec<TargetKind> = template_kinds(template);
                kinds.extend(sources.iter().map(|(kind, _)| *kind));
                if let Some(message) = missing_target(requirement, &kinds, template) {
                    problems.push((format!("paths[{i}]"), message));
                }
            }
        }
        match requirement {
            Some(requirement) if problems.is_empty() => Ok(Some(Requires {
                requirement,
                sources,
            })),
            _ => Err(problems),
        }
    }

    /// True when a target is read from the body.
    pub fn needs_body(&self) -> bool {
        self.sources
            .iter()
            .any(|(_, source)| matches!(source, TargetSource::Body(_)))
    }
}

/// What [`Requires::parse`] needs to know of the rule.
pub(super) struct RuleShape<'a> {
    pub allows: bool,
    pub anonymous: bool,
    /// Every listed method has no body.
    pub bodiless: bool,
    pub paths: &'a [PathTemplate],
}

fn placeholder_names() -> String {
    TargetKind::all()
        .map(|k| k.placeholder())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kinds named by a template's placeholders.
fn template_kinds(template: &PathTemplate) -> Vec<TargetKind> {
    template
        .placeholders()
        .filter_map(TargetKind::from_placeholder)
        .collect()
}

/// Why `kinds` cannot satisfy `requirement`, if they cannot.
fn missing_target(
    requirement: Requirement,
    kinds: &[TargetKind],
    template: &PathTemplate,
) -> Option<String> {
    let has = |kind| kinds.contains(&kind);
    if has(TargetKind::WorkspaceName) && !has(TargetKind::Organization) {
        return Some(format!(
            "`{template}` names {{workspace_name}} without {{organization}}; a workspace name means something only in its organization"
        ));
    }
    let enough = if requirement.is_workspace() {
        kinds.iter().any(|k| k.leads_to_workspace())
    } else {
        !kinds.is_empty()
    };
    (!enough).then(|| {
        let what = if requirement.is_workspace() {
            "a workspace (`{workspace_id}`, `{organization}` with `{workspace_name}`, or the id of a workspace's resource such as `{run_id}`)"
        } else {
            "an organization, a workspace, a team, a workspace's resource or an organization's resource (`{project_id}`, …)"
        };
        format!(
            "`{template}` names no target for `requires: {requirement}`: it needs {what}; name the id's segment after what it holds ({}) or add a `target:` entry",
            TargetKind::placeholders()
        )
    })
}

/// The decoded query parameters, by name (`+` is a space, raw and
/// percent-encoded brackets alike); a name given twice with two values is
/// ambiguous (frameworks disagree on which one wins).
pub fn query_params(query: &str) -> Result<Vec<(String, String)>, NeedError> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| NeedError::Ambiguous("the query string is not UTF-8".into()))
    };
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode(name)?, decode(value)?);
        match params.iter().find(|(n, _)| *n == name) {
            Some((_, earlier)) if *earlier != value => {
                return Err(NeedError::Ambiguous(format!(
                    "the query parameter `{name}` is given twice with different values"
                )))
            }
            Some(_) => {}
            None => params.push((name, value)),
        }
    }
    Ok(params)
}

impl super::Rule {
    /// What a request allowed by this rule needs: `None` when the rule
    /// requires nothing. `body` is the parsed body (`None` when empty or
    /// not read), `query` the raw query string.
    pub fn need(
        &self,
        path: &CanonicalPath,
        body: Option<&Value>,
        query: Option<&str>,
    ) -> Result<Option<Need>, NeedError> {
        let Some(requires) = &self.requires else {
            return Ok(None);
        };
        let mut bound: Vec<(TargetKind, String)> = Vec::with_capacity(requires.sources.len() + 2);
        if let Some(template) = self.matching_path(path) {
            for (name, raw) in template.bind(path.segments()) {
                if let Some(kind) = TargetKind::from_placeholder(name) {
                    let id = routed_id(raw).ok_or(NeedError::NoSuchId)?;
                    bound.push((kind, id.to_owned()));
                }
            }
        }
        let reads_query = requires
            .sources
            .iter()
            .any(|(_, source)| matches!(source, TargetSource::Query(_)));
        let params = match query {
            Some(query) if reads_query || requires.needs_body() => query_params(query)?,
            _ => Vec::new(),
        };
        if requires.needs_body() {
            if let Some((name, _)) = params
                .iter()
                .find(|(name, _)| name == "data" || name.starts_with("data["))
            {
                return Err(NeedError::Ambiguous(format!(
                    "the query parameter `{name}` would be merged into the body this request is judged by; send it in the body"
                )));
            }
        }
        for (kind, source) in &requires.sources {
            let found = match source {
                TargetSource::Body(pointer) => {
                    body.and_then(|b| b.pointer(&pointer.normalized)).cloned()
                }
                TargetSource::Query(name) => params
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| Value::String(v.clone())),
            };
            let noun = kind.placeholder();
            let value = match found {
                None | Some(Value::Null) => {
                    return Err(NeedError::Missing {
                        rule: self.id.clone(),
                        kind: noun,
                        location: source.clone(),
                    })
                }
                Some(value) => value,
            };
            let id = value
                .as_str()
                .filter(|text| routed_id(text) == Some(*text))
                .ok_or_else(|| NeedError::Malformed {
                    kind: noun,
                    location: source.clone(),
                })?;
            bound.push((*kind, id.to_owned()));
        }
        Ok(Some(Need {
            requirement: requires.requirement,
            rule: self.id.clone(),
            targets: targets_of(bound),
        }))
    }
}

/// Bound ids → targets: `{organization}` with `{workspace_name}` is one
/// workspace by name; everything else stands alone. Duplicates are dropped.
fn targets_of(bound: Vec<(TargetKind, String)>) -> Vec<Target> {
    let organization = bound
        .iter()
        .find(|(k, _)| *k == TargetKind::Organization)
        .map(|(_, v)| v.clone());
    let by_name = bound.iter().any(|(k, _)| *k == TargetKind::WorkspaceName);
    let mut targets: Vec<Target> = Vec::new();
    for (kind, id) in bound {
        let target = match kind {
            TargetKind::Workspace => Target::Workspace(id),
            TargetKind::WorkspaceName => Target::WorkspaceName {
                organization: organization.clone().unwrap_or_default(),
                name: id,
            },
            TargetKind::Organization if by_name => continue,
            TargetKind::Organization => Target::Organization(id),
            TargetKind::Team => Target::Team(id),
            TargetKind::Resource(kind) => Target::Resource(kind, id),
            TargetKind::OrgResource(kind) => Target::OrgResource(kind, id),
        };
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonicalize;
    use crate::policy::Policy;

    fn rule(yaml: &str) -> super::super::Rule {
        Policy::from_yaml(&format!("default: deny\nrules:\n{yaml}"))
            .unwrap_or_else(|e| panic!("{e:?}"))
            .rules
            .remove(0)
    }

    fn need(
        rule: &super::super::Rule,
        path: &str,
        body: &str,
        query: Option<&str>,
    ) -> Result<Option<Need>, NeedError> {
        let body = crate::canonical::json::parse_normalized(body.as_bytes())
            .ok()
            .flatten();
        rule.need(&canonicalize(path).unwrap(), body.as_ref(), query)
    }

    #[test]
    fn path_placeholders_become_targets_without_a_format_suffix() {
        let apply = rule("  - { id: apply, effect: allow, principals: [team], methods: [POST], paths: [\"/api/v2/runs/{run_id}/actions/apply\"], requires: runs:apply }\n");
        let found = need(&apply, "/api/v2/runs/run-1/actions/apply", "", None)
            .unwrap()
            .unwrap();
        assert_eq!(found.to_string(), "runs:apply on run run-1");
        let show = rule("  - { id: show, effect: allow, principals: [team], methods: [GET], paths: [\"/api/v2/runs/{run_id}\", \"/api/v2/organizations/{organization}/workspaces/{workspace_name}\"], requires: runs:read }\n");
        let found = need(&show, "/api/v2/runs/run-1.json", "", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            found.targets,
            [Target::Resource(ResourceKind::Run, "run-1".into())]
        );
        let found = need(
            &show,
            "/api/v2/organizations/acme/workspaces/prod.json",
            "",
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            found.targets,
            [Target::WorkspaceName {
                organization: "acme".into(),
                name: "prod".into()
            }]
        );
        assert_eq!(
            need(
                &show,
                &format!("/api/v2/runs/run-{}", "x".repeat(200)),
                "",
                None
            ),
            Err(NeedError::NoSuchId)
        );
    }

    #[test]
    fn organization_resources_by_id_are_targets_of_their_own_kind() {
        let by_id = rule("  - { id: by-id, effect: allow, principals: [org], methods: [\"*\"], paths: [\"/api/v2/projects/{project_id}/**\", \"/api/v2/team-projects/{team_project_id}/**\"], requires: \"organization:member\" }\n");
        let found = need(&by_id, "/api/v2/projects/prj-1.json", "", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            found.targets,
            [Target::OrgResource(
                OrgResourceKind::Project,
                "prj-1".into()
            )]
        );
        assert_eq!(found.to_string(), "organization:member on project prj-1");
        let found = need(&by_id, "/api/v2/team-projects/tprj-1/x", "", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            found.targets,
            [Target::OrgResource(
                OrgResourceKind::TeamProject,
                "tprj-1".into()
            )]
        );
        // They lead to an organization, not a workspace.
        let problems = Policy::from_yaml("default: deny\nrules:\n  - { id: a, effect: allow, principals: [org], methods: [GET], paths: [\"/api/v2/varsets/{varset_id}\"], requires: runs:read }\n").unwrap_err();
        assert!(
            problems[0].message.contains("names no target"),
            "{problems:?}"
        );
    }

    #[test]
    fn body_and_query_targets_are_read_strictly() {
        let create = rule("  - id: create\n    effect: allow\n    principals: [team]\n    methods: [POST]\n    paths: [/api/v2/runs]\n    requires: runs:plan\n    target: { workspace_id: { body: /data/relationships/workspace/data/id } }\n");
        let body = r#"{"data":{"relationships":{"workspace":{"data":{"id":"ws-1"}}}}}"#;
        let found = need(&create, "/api/v2/runs", body, None).unwrap().unwrap();
        assert_eq!(found.targets, [Target::Workspace("ws-1".into())]);
        let missing = need(&create, "/api/v2/runs", "{}", None).unwrap_err();
        assert_eq!(
            missing.pointer(),
            Some("/data/relationships/workspace/data/id")
        );
        let odd = need(
            &create,
            "/api/v2/runs",
            r#"{"data":{"relationships":{"workspace":{"data":{"id":"../x"}}}}}"#,
            None,
        )
        .unwrap_err();
        assert!(matches!(odd, NeedError::Malformed { .. }), "{odd:?}");
        let overridden = need(
            &create,
            "/api/v2/runs",
            body,
            Some("data%5Brelationships%5D=x"),
        )
        .unwrap_err();
        assert!(
            matches!(overridden, NeedError::Ambiguous(_)),
            "{overridden:?}"
        );

        let list = rule("  - id: list\n    effect: allow\n    principals: [team]\n    methods: [GET]\n    paths: [/api/v2/state-versions]\n    requires: state-versions:read\n    target:\n      organization: { query: \"filter[organization][name]\" }\n      workspace_name: { query: \"filter[workspace][name]\" }\n");
        let found = need(
            &list,
            "/api/v2/state-versions",
            "",
            Some("filter%5Bworkspace%5D%5Bname%5D=prod&filter[organization][name]=acme"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            found.targets,
            [Target::WorkspaceName {
                organization: "acme".into(),
                name: "prod".into()
            }]
        );
        let twice = need(&list, "/api/v2/state-versions", "", Some("filter[organization][name]=acme&filter[organization][name]=globex&filter[workspace][name]=p")).unwrap_err();
        assert!(matches!(twice, NeedError::Ambiguous(_)), "{twice:?}");
    }

    #[test]
    fn rules_that_cannot_find_their_target_do_not_load() {
        let problems = |yaml: &str| -> Vec<String> {
            Policy::from_yaml(&format!("default: deny\nrules:\n{yaml}"))
                .unwrap_err()
                .into_iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect()
        };
        let found = problems("  - { id: a, effect: allow, principals: [team], methods: [GET], paths: [\"/api/v2/x/{id}\"], requires: runs:read }\n");
        assert!(
            found[0].starts_with("rules[0] (a).paths[0]: `/api/v2/x/{id}` names no target"),
            "{found:?}"
        );
        let found = problems("  - { id: a, effect: deny, principals: [team, anonymous], methods: [GET], paths: [\"/api/v2/runs/{run_id}\"], requires: runs:fly }\n");
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].contains("`runs:fly` is not a permission"),
            "{found:?}"
        );
        assert!(found[1].contains("only allow rules"), "{found:?}");
        assert!(found[2].contains("anonymous"), "{found:?}");
        let found = problems("  - { id: a, effect: allow, principals: [team], methods: [GET], paths: [\"/api/v2/w/{workspace_name}\"], requires: runs:read }\n");
        assert!(found[0].contains("without {organization}"), "{found:?}");
        let found = problems("  - { id: a, effect: allow, principals: [team], methods: [GET], paths: [/api/v2/runs], requires: runs:read, target: { workspace_id: { body: /x } } }\n");
        assert!(
            found[0].starts_with("rules[0] (a).target.workspace_id: reads the body"),
            "{found:?}"
        );
        let found = problems("  - { id: a, effect: allow, principals: [team], methods: [POST], paths: [/api/v2/runs], target: { runid: { body: x } } }\n");
        assert!(found[0].contains("has no `requires`"), "{found:?}");
        let found = problems("  - { id: a, effect: allow, principals: [team], methods: [GET], paths: [\"/api/v2/teams/{team_id}\"], requires: admin }\n");
        assert!(found[0].contains("needs a workspace"), "{found:?}");
        // An organization permission is satisfied by a team's organization.
        rule("  - { id: a, effect: allow, principals: [team], methods: [GET], paths: [\"/api/v2/teams/{team_id}\"], requires: organization:member }\n");
    }
}
