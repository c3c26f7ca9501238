//! Loading a policy file: raw YAML structs, then validation that names the
//! rule and field of every problem. A policy that fails to load is never
//! replaced by "allow everything": the caller keeps the old one or stops.

use super::{
    method_bit, BodyPointer, Caller, Condition, Effect, Mode, PathTemplate, Policy, Rule, Subject,
    Test, ALL_METHODS,
};
use crate::config::{parse_yaml, render_problems, ConfigProblem};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems("policy file", path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
    },
}

#[derive(Debug, Default, Deserialize)]
struct RawPolicy {
    default: Option<String>,
    denial_status: Option<u16>,
    write_query_parameters: Option<Vec<String>>,
    rules: Option<Vec<RawRule>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRule {
    id: Option<String>,
    description: Option<String>,
    effect: Option<String>,
    principals: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    when: Option<Vec<RawCondition>>,
    status: Option<u16>,
    message: Option<String>,
    mode: Option<String>,
    requires: Option<String>,
    target: Option<std::collections::BTreeMap<String, super::requires::RawTargetSource>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawCondition {
    body: Option<String>,
    field: Option<String>,
    query: Option<String>,
    /// `Some(Value::Null)` for `equals: null`, `None` when the key is absent.
    #[serde(default, deserialize_with = "present")]
    equals: Option<serde_json::Value>,
    #[serde(rename = "in", default, deserialize_with = "finite_list")]
    in_: Option<Vec<serde_json::Value>>,
    exists: Option<bool>,
    /// `contains: outputs` or `contains: [outputs, current-state-version]`.
    #[serde(default, deserialize_with = "one_or_many")]
    contains: Option<Vec<serde_yaml::Value>>,
    not: Option<Box<RawCondition>>,
    any: Option<Vec<RawCondition>>,
    all: Option<Vec<RawCondition>>,
}

/// Deserializes a key that is present, even when its value is `null`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    finite_json(serde_yaml::Value::deserialize(deserializer)?).map(Some)
}

/// An optional JSON value written as YAML (a case's `body`), as [`finite_json`].
pub(crate) fn optional_finite_json<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    Option::<serde_yaml::Value>::deserialize(deserializer)?
        .map(finite_json)
        .transpose()
}

/// `contains:`, one value or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<serde_yaml::Value>>, D::Error> {
    Ok(match serde_yaml::Value::deserialize(deserializer)? {
        serde_yaml::Value::Sequence(list) => Some(list),
        one => Some(vec![one]),
    })
}

/// `in:`, each value as [`finite_json`].
fn finite_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<serde_json::Value>>, D::Error> {
    Option::<Vec<serde_yaml::Value>>::deserialize(deserializer)?
        .map(|list| list.into_iter().map(finite_json).collect())
        .transpose()
}

/// A YAML value as JSON. `.nan` and `.inf` are refused: JSON has no such
/// numbers, and serde_json would quietly turn them into `null`.
pub(crate) fn finite_json<E: serde::de::Error>(
    value: serde_yaml::Value,
) -> Result<serde_json::Value, E> {
    fn check(value: &serde_yaml::Value) -> bool {
        match value {
            serde_yaml::Value::Number(n) => !(n.is_nan() || n.is_infinite()),
            serde_yaml::Value::Sequence(list) => list.iter().all(check),
            serde_yaml::Value::Mapping(map) => map.iter().all(|(k, v)| check(k) && check(v)),
            serde_yaml::Value::Tagged(tagged) => check(&tagged.value),
            _ => true,
        }
    }
    if !check(&value) {
        return Err(E::custom(
            "`.nan` and `.inf` have no JSON value; a request body can never hold them",
        ));
    }
    serde_json::to_value(&value).map_err(E::custom)
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Policy::from_yaml(&text).map_err(|problems| PolicyError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    /// Parses and validates policy YAML, reporting every problem at once.
    pub fn from_yaml(text: &str) -> Result<Policy, Vec<ConfigProblem>> {
        let parsed = parse_yaml::<RawPolicy>(text)?;
        let mut problems: Vec<ConfigProblem> = Vec::new();
        let problem = |problems: &mut Vec<ConfigProblem>, key: String, message: String| {
            problems.push(ConfigProblem { key, message })
        };
        let labels: Vec<Option<String>> = parsed
            .value
            .rules
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| r.id.as_ref().map(|id| format!("rules[{i}] ({id})")))
            .collect();
        for key in parsed.unknown_keys {
            // `rules[3].colour` → `rules[3] (some-id).colour`
            let key = labels
                .iter()
                .enumerate()
                .find_map(|(i, label)| {
                    let prefix = format!("rules[{i}].");
                    Some(format!(
                        "{}.{}",
                        label.as_ref()?,
                        key.strip_prefix(&prefix)?
                    ))
                })
                .unwrap_or(key);
            problem(
                &mut problems,
                key,
                "unknown key; see docs/POLICY.md for the rule language".to_owned(),
            );
        }
        let raw = parsed.value;
        let default = match raw.default.as_deref() {
            Some("allow") => Effect::Allow,
            Some("deny") => Effect::Deny,
            Some(other) => {
                problem(
                    &mut problems,
                    "default".into(),
                    format!("`{other}` is unknown; use allow or deny"),
                );
                Effect::Deny
            }
            None => {
                problem(
                    &mut problems,
                    "default".into(),
                    "is missing; add `default: deny` (or allow)".into(),
                );
                Effect::Deny
            }
        };
        let denial_status = match raw.denial_status {
            None | Some(403) => http::StatusCode::FORBIDDEN,
            Some(404) => http::StatusCode::NOT_FOUND,
            Some(other) => {
                problem(
                    &mut problems,
                    "denial_status".into(),
                    format!("{other} is not allowed; use 403 (the default: the client is told the rule's reason) or 404 (as Terraform Enterprise answers what a caller may not see)"),
                );
                http::StatusCode::FORBIDDEN
            }
        };
        let write_query_parameters = raw
            .write_query_parameters
            .unwrap_or_else(|| DEFAULT_WRITE_QUERY_PARAMETERS.map(str::to_owned).to_vec());
        for (index, name) in write_query_parameters.iter().enumerate() {
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !plain || name == "_method" {
                problem(
                    &mut problems,
                    format!("write_query_parameters[{index}]"),
                    format!("`{name}` is not a plain parameter name; use letters, digits, `_` or `-` (not `_method`)"),
                );
            }
        }
        let mut rules = Vec::new();
        let mut seen_ids = HashSet::new();
        for (index, raw_rule) in raw.rules.unwrap_or_default().into_iter().enumerate() {
            let label = match &raw_rule.id {
                Some(id) => format!("rules[{index}] ({id})"),
                None => format!("rules[{index}]"),
            };
            if let Some(id) = &raw_rule.id {
                if !seen_ids.insert(id.clone()) {
                    problem(
                        &mut problems,
                        format!("{label}.id"),
                        format!("duplicate id `{id}`; rule ids must be unique"),
                    );
                }
            }
            match validate_rule(raw_rule, &label, denial_status) {
                Ok(rule) => rules.push(rule),
                Err(errors) => problems.extend(errors),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Policy {
            requires_access: rules.iter().any(|rule| rule.requires.is_some()),
            rules,
            default,
            denial_status,
            write_query_parameters,
            source_hash: hex(&Sha256::digest(text.as_bytes())),
        })
    }
}

/// The query parameters a write may carry when the policy does not say:
/// `token` (the token API's `?token=audit-trails`) and `include` (which
/// related resources a response carries).
pub const DEFAULT_WRITE_QUERY_PARAMETERS: [&str; 2] = ["token", "include"];

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Names that label decisions made by no rule: the default, a refusal
/// before the policy ran, the token API and the team access API (see
/// `metrics.rs`).
const RESERVED_IDS: [&str; 4] = [super::DEFAULT_RULE_ID, "none", "token-api", "team-access"];

fn validate_rule(
    raw: RawRule,
    label: &str,
    denial_status: http::StatusCode,
) -> Result<Rule, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(ConfigProblem {
            key: format!("{label}.{field}"),
            message,
        })
    };
    let id = raw.id.unwrap_or_default();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        problem(
            "id",
            "is missing or invalid; use letters, digits, `-` and `_`".into(),
        );
    } else if RESERVED_IDS.contains(&id.as_str()) {
        problem(
            "id",
            format!("`{id}` is reserved (explanations, `policy test` and the metrics use it for a decision no rule made); choose another id"),
        );
    }
    let effect = match raw.effect.as_deref() {
        Some("allow") => Effect::Allow,
        Some("deny") => Effect::Deny,
        Some(other) => {
            problem(
                "effect",
                format!("`{other}` is not an effect; use allow or deny"),
            );
            Effect::Deny
        }
        None => {
            problem("effect", "is missing; use allow or deny".into());
            Effect::Deny
        }
    };
    let mut callers = 0u8;
    let principals = raw.principals.unwrap_or_default();
    if principals.is_empty() {
        problem(
            "principals",
            "is missing or empty; list any of team, org, user, anonymous".into(),
        );
    }
    for name in &principals {
        match Caller::parse(name) {
            Some(caller) => callers |= caller.bit(),
            None => problem(
                "principals",
                format!("`{name}` is unknown; use team, org, user or anonymous"),
            ),
        }
    }
    let mut methods = 0u8;
    let method_names = raw.methods.unwrap_or_default();
    if method_names.is_empty() {
        problem(
            "methods",
            "is missing or empty; list HTTP methods or \"*\"".into(),
        );
    }
    for name in &method_names {
        if name == "*" {
            methods = ALL_METHODS;
            continue;
        }
        match name.parse::<http::Method>().ok().as_ref().and_then(method_bit) {
            Some(bit) if name.bytes().all(|b| b.is_ascii_uppercase()) => methods |= bit,
            _ => problem(
                "methods",
                format!("`{name}` is unknown; use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or \"*\""),
            ),
        }
    }
    let raw_paths = raw.paths.unwrap_or_default();
    if raw_paths.is_empty() {
        problem(
            "paths",
            "is missing or empty; list path templates such as /api/v2/runs/{id}".into(),
        );
    }
    let mut paths = Vec::new();
    for (i, source) in raw_paths.iter().enumerate() {
        match PathTemplate::parse(source) {
            Ok(template) => paths.push(template),
            Err(reason) => problem(&format!("paths[{i}]"), reason),
        }
    }
    let mut when = Vec::new();
    for (i, raw_condition) in raw.when.unwrap_or_default().into_iter().enumerate() {
        match validate_condition(raw_condition, callers) {
            Ok(condition) => when.push(condition),
            Err(reason) => problem(&format!("when[{i}]"), reason),
        }
    }
    let bodiless = [
        http::Method::GET,
        http::Method::HEAD,
        http::Method::DELETE,
        http::Method::OPTIONS,
    ];
    let only_bodiless =
        bodiless.iter().filter_map(method_bit).fold(0, |a, b| a | b) & methods == methods;
    let requires = super::requires::Requires::parse(
        raw.requires,
        raw.target,
        &super::requires::RuleShape {
            allows: effect == Effect::Allow,
            anonymous: callers & Caller::Anonymous.bit() != 0,
            bodiless: only_bodiless,
            paths: &paths,
        },
    )
    .unwrap_or_else(|errors| {
        for (field, message) in errors {
            problem(&field, message);
        }
        None
    });
    let needs_body =
        when.iter().any(Condition::needs_body) || requires.as_ref().is_some_and(|r| r.needs_body());
    if when.iter().any(Condition::needs_body) && only_bodiless {
        problem(
            "when",
            "tests the body, but every listed method has no body; this rule can never match".into(),
        );
    }
    let status = match (raw.status, effect) {
        (None, _) => denial_status,
        (Some(403), Effect::Deny) => http::StatusCode::FORBIDDEN,
        (Some(404), Effect::Deny) => http::StatusCode::NOT_FOUND,
        (Some(_), Effect::Allow) => {
            problem("status", "only deny rules have a status; remove it".into());
            http::StatusCode::FORBIDDEN
        }
        (Some(other), Effect::Deny) => {
            problem("status", format!("{other} is not allowed; use 403 or 404"));
            http::StatusCode::FORBIDDEN
        }
    };
    let mode = match raw.mode.as_deref() {
        None | Some("enforce") => Mode::Enforce,
        Some("shadow") => Mode::Shadow,
        Some(other) => {
            problem(
                "mode",
                format!("`{other}` is unknown; use enforce or shadow"),
            );
            Mode::Enforce
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Rule {
        id: id.into(),
        description: raw.description,
        effect,
        callers,
        methods,
        paths,
        when,
        status,
        message: raw.message,
        mode,
        requires,
        needs_body,
    })
}

fn validate_condition(raw: RawCondition, callers: u8) -> Result<Condition, String> {
    let has_check = raw.body.is_some()
        || raw.field.is_some()
        || raw.query.is_some()
        || raw.contains.is_some()
        || raw.equals.is_some()
        || raw.in_.is_some()
        || raw.exists.is_some();
    let combinators = [raw.not.is_some(), raw.any.is_some(), raw.all.is_some()];
    if combinators.iter().filter(|c| **c).count() + usize::from(has_check) > 1 {
        return Err("`not`, `any` and `all` must each stand alone in their condition".into());
    }
    if let Some(inner) = raw.not {
        return validate_condition(*inner, callers).map(|c| Condition::Not(Box::new(c)));
    }
    for (list, name, empty) in [
        (
            raw.any,
            "any",
            "`any: []` can never match; list at least one condition",
        ),
        (
            raw.all,
            "all",
            "`all: []` says nothing; list at least one condition or remove it",
        ),
    ] {
        let Some(list) = list else { continue };
        if list.is_empty() {
            return Err(empty.into());
        }
        let inner = list
            .into_iter()
            .enumerate()
            .map(|(i, c)| validate_condition(c, callers).map_err(|e| format!("{name}[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if name == "any" {
            Condition::Any(inner)
        } else {
            Condition::All(inner)
        });
    }
    if let Some(name) = raw.query {
        if raw.body.is_some() || raw.field.is_some() {
            return Err("use one of `body`, `field` or `query`".into());
        }
        return validate_query_condition(name, raw.equals, raw.in_, raw.exists, raw.contains);
    }
    if raw.contains.is_some() {
        return Err(
            "`contains` tests a query parameter's JSON:API list; use it with `query: include`"
                .into(),
        );
    }
    let subject = match (raw.body, raw.field.as_deref()) {
        (Some(pointer), None) => {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(format!(
                    "body pointer `{pointer}` must be empty or start with `/` (RFC 6901)"
                ));
            }
            Subject::Body(BodyPointer::new(pointer))
        }
        (None, Some(field)) => {
            let (subject, needed) = match field {
                "org" => (
                    Subject::Org,
                    Caller::Team.bit() | Caller::Org.bit() | Caller::User.bit(),
                ),
                "team_id" => (Subject::TeamId, Caller::Team.bit()),
                "user_id" => (Subject::UserId, Caller::User.bit()),
                other => {
                    return Err(format!(
                        "field `{other}` is unknown; use org, team_id or user_id"
                    ))
                }
            };
            if callers & needed == 0 {
                return Err(format!(
                    "field `{field}` is never set for this rule's principals; this rule can never match"
                ));
            }
            subject
        }
        (Some(_), Some(_)) => return Err("use one of `body`, `field` or `query`".into()),
        (None, None) => {
            return Err(
                "needs `body: /json/pointer`, `field: org|team_id|user_id`, `query: name`, `not`, `any` or `all`"
                    .into(),
            )
        }
    };
    let test = match (raw.equals, raw.in_, raw.exists) {
        (Some(value), None, None) => Test::Equals(value),
        (None, Some(values), None) => {
            if values.is_empty() {
                return Err("`in: []` can never match; list at least one value".into());
            }
            Test::In(values)
        }
        (None, None, Some(exists)) => Test::Exists(exists),
        _ => return Err("needs exactly one test: `equals`, `in` or `exists`".into()),
    };
    Ok(Condition::Check { subject, test })
}

/// A `query` condition: the name must be one Rack reads as written, and
/// the tests compare strings (a query value is always one).
fn validate_query_condition(
    name: String,
    equals: Option<serde_json::Value>,
    in_: Option<Vec<serde_json::Value>>,
    exists: Option<bool>,
    contains: Option<Vec<serde_yaml::Value>>,
) -> Result<Condition, String> {
    if !crate::canonical::query::is_canonical_name(&name) || name == "_method" {
        return Err(format!(
            "query parameter `{name}` is not a name the gateway forwards; use a decoded name in the form `name`, `name[key]` or `name[]` (not `_method`)"
        ));
    }
    let strings = |values: &[serde_json::Value]| values.iter().all(serde_json::Value::is_string);
    let test = match (equals, in_, exists, contains) {
        (Some(value), None, None, None) => {
            if !value.is_string() {
                return Err(format!(
                    "query parameter `{name}`: `equals: {value}` can never match, a query value is a string; quote it"
                ));
            }
            Test::Equals(value)
        }
        (None, Some(values), None, None) => {
            if values.is_empty() {
                return Err("`in: []` can never match; list at least one value".into());
            }
            if !strings(&values) {
                return Err(format!(
                    "query parameter `{name}`: every `in` value must be a string (a query value is one); quote them"
                ));
            }
            Test::In(values)
        }
        (None, None, Some(exists), None) => Test::Exists(exists),
        (None, None, None, Some(values)) => {
            if values.is_empty() {
                return Err("`contains: []` can never match; list at least one name".into());
            }
            let mut names = Vec::with_capacity(values.len());
            for value in values {
                let text = match &value {
                    serde_yaml::Value::String(text) => text.trim(),
                    _ => "",
                };
                if text.is_empty() || text.contains(',') || text.contains('.') {
                    return Err(format!(
                        "query parameter `{name}`: `contains` lists relationship names such as `outputs` or `current-state-version` (no `,` or `.`: a name matches at any depth of a dotted include path); {} is not one",
                        serde_json::to_string(&serde_json::to_value(&value).unwrap_or_default()).unwrap_or_default()
                    ));
                }
                names.push(crate::canonical::json::normalize_key(text));
            }
            Test::Contains(names)
        }
        _ => {
            return Err(format!(
                "query parameter `{name}` needs exactly one test: `equals`, `in`, `exists` or `contains`"
            ))
        }
    };
    Ok(Condition::Check {
        subject: Subject::Query(name),
        test,
    })
}
