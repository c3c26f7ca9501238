//! Request bodies and query parameters of the token endpoints. Every
//! refusal is a 422 with `source.pointer` (bodies) or a 400 with
//! `source.parameter` (queries) naming the problem.

use super::documents::Page;
use crate::rejection::Rejection;
use crate::store::{Timestamp, TokenType};
use serde_json::{Map, Value};

pub fn unprocessable(detail: impl Into<String>, pointer: &str) -> Rejection {
    Rejection::Unprocessable {
        detail: detail.into(),
        pointer: Some(pointer.to_owned()),
    }
}

fn bad_parameter(detail: impl Into<String>, parameter: &str) -> Rejection {
    Rejection::BadParameter {
        detail: detail.into(),
        parameter: parameter.to_owned(),
    }
}

/// What a create body asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateBody {
    pub expired_at: Option<Timestamp>,
    /// `Some` when `description` was given as a string.
    pub description: Option<String>,
}

/// Parses the JSON body, if any: empty (or whitespace) is `None`.
fn parse_json(bytes: &[u8]) -> Result<Option<Value>, Rejection> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| unprocessable(format!("the body is not valid JSON: {e}"), ""))
}

/// `data` of a JSON:API document: `None` when the body, or `data`, is absent or null.
fn data_object(doc: &Option<Value>) -> Result<Option<&Map<String, Value>>, Rejection> {
    match doc {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => match map.get("data") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(data)) => Ok(Some(data)),
            Some(_) => Err(unprocessable("`data` must be an object", "/data")),
        },
        Some(_) => Err(unprocessable("the body must be a JSON object", "")),
    }
}

/// The attribute `name` in any spelling that normalizes to it (the
/// canonical request refused a body with two such spellings).
fn attribute<'a>(attributes: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let wanted = crate::canonical::json::normalize_key(name);
    attributes
        .iter()
        .find(|(key, _)| crate::canonical::json::normalize_key(key) == wanted)
        .map(|(_, value)| value)
}

/// Parses a token create body. Empty, `null`, `{}`, a missing `data` or
/// missing `attributes` are all accepted; `type` may be absent, empty (as
/// go-tfe sends it), `authentication-token` or `authentication-tokens`.
/// `expired-at` is an ISO 8601 time; one without a zone is UTC. Attributes
/// are read in every spelling Rails reads as one (`expiredAt`,
/// `expired_at`): a client asking for an expiry never gets a token without
/// one because of how it spelled the key.
pub fn parse_create_body(bytes: &[u8]) -> Result<CreateBody, Rejection> {
    let doc = parse_json(bytes)?;
    let Some(data) = data_object(&doc)? else {
        return Ok(CreateBody::default());
    };
    match data.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t))
            if t.is_empty() || t == "authentication-token" || t == "authentication-tokens" => {}
        Some(_) => {
            return Err(unprocessable(
                "`type` must be \"authentication-tokens\"",
                "/data/type",
            ))
        }
    }
    let attributes = match data.get("attributes") {
        None | Some(Value::Null) => return Ok(CreateBody::default()),
        Some(Value::Object(attributes)) => attributes,
        Some(_) => {
            return Err(unprocessable(
                "`attributes` must be an object",
                "/data/attributes",
            ))
        }
    };
    let expired_at = match attribute(attributes, "expired-at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(Timestamp::parse_iso8601(text).ok_or_else(|| {
            unprocessable(
                "`expired-at` must be an ISO 8601 time such as 2030-01-01T00:00:00.000Z (a time without a zone is UTC)",
                "/data/attributes/expired-at",
            )
        })?),
        Some(_) => {
            return Err(unprocessable(
                "`expired-at` must be a string",
                "/data/attributes/expired-at",
            ))
        }
    };
    let description = match attribute(attributes, "description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.chars().count() > 255 => {
            return Err(unprocessable(
                "`description` must be at most 255 characters",
                "/data/attributes/description",
            ))
        }
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            return Err(unprocessable(
                "`description` must be a string",
                "/data/attributes/description",
            ))
        }
    };
    Ok(CreateBody {
        expired_at,
        description,
    })
}

/// The token ids of a bulk delete body:
/// `{"data":[{"type":"authentication-tokens","id":"at-…"}, …]}`.
pub fn parse_bulk_delete(bytes: &[u8]) -> Result<Vec<String>, Rejection> {
    let doc = parse_json(bytes)?;
    let list =
        match &doc {
            Some(Value::Object(map)) => match map.get("data") {
                Some(Value::Array(list)) => list,
                _ => return Err(unprocessable(
                    "`data` must be a list of {\"type\":\"authentication-tokens\",\"id\":\"at-…\"}",
                    "/data",
                )),
            },
            _ => {
                return Err(unprocessable(
                    "send {\"data\":[{\"type\":\"authentication-tokens\",\"id\":\"at-…\"}]}",
                    "",
                ))
            }
        };
    if list.is_empty() {
        return Err(unprocessable("list at least one token", "/data"));
    }
    let mut ids = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let Some(item) = item.as_object() else {
            return Err(unprocessable(
                "each entry must be an object",
                &format!("/data/{i}"),
            ));
        };
        match item.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "authentication-tokens" => {}
            Some(_) => {
                return Err(unprocessable(
                    "`type` must be \"authentication-tokens\"",
                    &format!("/data/{i}/type"),
                ))
            }
        }
        match item.get("id") {
            Some(Value::String(id)) => ids.push(id.clone()),
            _ => {
                return Err(unprocessable(
                    "`id` must be a token id such as at-…",
                    &format!("/data/{i}/id"),
                ))
            }
        }
    }
    Ok(ids)
}

/// The changes of a TTL PATCH: `(type, max-ttl-ms)` pairs, `None` to
/// remove a maximum. Both shapes clients send are read: the API
/// reference's `{"data":{"attributes":{"token-ttl-policies":[…]}}}` and
/// the Python SDK's `{"data":[{"attributes":{…}}, …]}`.
pub fn parse_ttl_patch(bytes: &[u8]) -> Result<Vec<(TokenType, Option<u64>)>, Rejection> {
    let doc = parse_json(bytes)?;
    let (entries, base): (Vec<(&Value, String)>, &str) = match &doc {
        Some(Value::Object(map)) => match map.get("data") {
            Some(Value::Array(list)) => (
                list.iter()
                    .enumerate()
                    .map(|(i, item)| (item, format!("/data/{i}/attributes")))
                    .map(|(item, pointer)| {
                        (item.get("attributes").unwrap_or(&Value::Null), pointer)
                    })
                    .collect(),
                "/data",
            ),
            Some(Value::Object(data)) => match data
                .get("attributes")
                .and_then(|a| a.get("token-ttl-policies"))
            {
                Some(Value::Array(list)) => (
                    list.iter()
                        .enumerate()
                        .map(|(i, item)| (item, format!("/data/attributes/token-ttl-policies/{i}")))
                        .collect(),
                    "/data/attributes/token-ttl-policies",
                ),
                _ => return Err(unprocessable(
                    "`token-ttl-policies` must be a list of {\"token-type\":…,\"max-ttl-ms\":…}",
                    "/data/attributes/token-ttl-policies",
                )),
            },
            _ => return Err(unprocessable("`data` is missing", "/data")),
        },
        _ => return Err(unprocessable("the body must be a JSON object", "")),
    };
    if entries.is_empty() {
        return Err(unprocessable("list at least one policy", base));
    }
    let mut changes = Vec::new();
    for (entry, pointer) in entries {
        let Some(entry) = entry.as_object() else {
            return Err(unprocessable("each policy must be an object", &pointer));
        };
        let kind = entry
            .get("token-type")
            .and_then(Value::as_str)
            .and_then(TokenType::parse)
            .ok_or_else(|| {
                unprocessable(
                    "`token-type` must be organization, team, user or audit_trails",
                    &format!("{pointer}/token-type"),
                )
            })?;
        let max = match entry.get("max-ttl-ms") {
            Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|ms| ms > 0) => n.as_u64(),
            _ => return Err(unprocessable(
                "`max-ttl-ms` must be a positive number of milliseconds (or null for no maximum)",
                &format!("{pointer}/max-ttl-ms"),
            )),
        };
        changes.push((kind, max));
    }
    Ok(changes)
}

/// `page[number]` and `page[size]`: `None` when neither is given.
pub fn page(params: &[(String, String)]) -> Result<Option<Page>, Rejection> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let (number, size) = (get("page[number]"), get("page[size]"));
    if number.is_none() && size.is_none() {
        return Ok(None);
    }
    let positive = |name: &str, value: Option<&String>, default: usize| match value {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad_parameter(format!("`{name}` must be a positive integer"), name)),
    };
    Ok(Some(Page {
        number: positive("page[number]", number, Page::DEFAULT.number)?,
        size: positive("page[size]", size, Page::DEFAULT.size)?.min(Page::MAX_SIZE),
    }))
}

/// How the organization's team tokens are sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    CreatedAt,
    CreatedBy,
    ExpiredAt,
    LastUsedAt,
    TeamName,
}

/// `sort`: `created-at`, `created-by`, `expired-at` (the default),
/// `last-used-at` or `team-name`, `-` first for descending.
pub fn sort(params: &[(String, String)]) -> Result<(SortKey, bool), Rejection> {
    let Some((_, text)) = params.iter().find(|(k, _)| k == "sort") else {
        return Ok((SortKey::ExpiredAt, false));
    };
    let (descending, name) = match text.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, text.as_str()),
    };
    let key = match name {
        "created-at" => SortKey::CreatedAt,
        "created-by" => SortKey::CreatedBy,
        "expired-at" => SortKey::ExpiredAt,
        "last-used-at" => SortKey::LastUsedAt,
        "team-name" => SortKey::TeamName,
        _ => {
            return Err(bad_parameter(
                format!("`sort={text}` is unknown; use created-at, created-by, expired-at, last-used-at or team-name, with - first for descending"),
                "sort",
            ))
        }
    };
    Ok((key, descending))
}

/// An expiry status of `filter[status]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryStatus {
    Active,
    ExpiringIn7Days,
    ExpiringIn30Days,
    Expired,
    NoExpiration,
}

impl ExpiryStatus {
    /// Whether a token expiring at `expired_at` has this status at `now`.
    pub fn holds(self, expired_at: Option<Timestamp>, now: Timestamp) -> bool {
        const DAY: u64 = 86_400_000;
        let within =
            |days: u64| expired_at.is_some_and(|at| at > now && at <= now.plus_millis(days * DAY));
        match self {
            ExpiryStatus::Active => expired_at.is_none_or(|at| at > now),
            ExpiryStatus::ExpiringIn7Days => within(7),
            ExpiryStatus::ExpiringIn30Days => within(30),
            ExpiryStatus::Expired => expired_at.is_some_and(|at| at <= now),
            ExpiryStatus::NoExpiration => expired_at.is_none(),
        }
    }
}

/// `filter[status]` (the API reference's name) or `filter[expiry_status]`
/// (the OpenAPI spec's): a comma-separated list; a token matching any of
/// them is listed. Empty when not given.
pub fn status_filter(params: &[(String, String)]) -> Result<Vec<ExpiryStatus>, Rejection> {
    let mut statuses = Vec::new();
    for name in ["filter[status]", "filter[expiry_status]"] {
        let Some((_, text)) = params.iter().find(|(k, _)| k == name) else {
            continue;
        };
        for value in text.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            statuses.push(match value {
                "active" => ExpiryStatus::Active,
                "expiring_in_7_days" => ExpiryStatus::ExpiringIn7Days,
                "expiring_in_30_days" => ExpiryStatus::ExpiringIn30Days,
                "expired" => ExpiryStatus::Expired,
                "no_expiration" => ExpiryStatus::NoExpiration,
                _ => return Err(bad_parameter(
                    format!("`{value}` is not a status; use active, expiring_in_7_days, expiring_in_30_days, expired or no_expiration"),
                    name,
                )),
            });
        }
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_that_terraform_clients_send_are_accepted() {
        for body in [
            "",
            "  ",
            "null",
            "{}",
            r#"{"data":null}"#,
            r#"{"data":{"type":""}}"#,
            r#"{"data":{"type":"authentication-token"}}"#,
            r#"{"data":{"type":"authentication-token","attributes":{}}}"#,
            r#"{"data":{"type":"authentication-token","attributes":{"expired-at":null}}}"#,
        ] {
            assert_eq!(
                parse_create_body(body.as_bytes()).unwrap(),
                CreateBody::default(),
                "{body}"
            );
        }
        for spelling in ["expiredAt", "expired_at", "Expired-At"] {
            let body =
                format!(r#"{{"data":{{"attributes":{{"{spelling}":"2999-01-01T00:00:00Z"}}}}}}"#);
            let parsed = parse_create_body(body.as_bytes()).unwrap();
            assert_eq!(
                parsed.expired_at,
                Some(Timestamp(32_472_144_000_000)),
                "{spelling}"
            );
        }
        for (text, millis) in [
            ("2999-01-01T00:00:00.000Z", 32_472_144_000_000),
            ("2999-01-01T00:00:00", 32_472_144_000_000),
            ("2999-01-01T00:00:00.123456", 32_472_144_000_123),
            ("2999-01-01T01:00:00+01:00", 32_472_144_000_000),
        ] {
            let body = format!(r#"{{"data":{{"attributes":{{"expired-at":"{text}"}}}}}}"#);
            let parsed = parse_create_body(body.as_bytes()).unwrap();
            assert_eq!(parsed.expired_at, Some(Timestamp(millis)), "{text}");
        }
        let described = parse_create_body(
            br#"{"data":{"type":"authentication-tokens","attributes":{"description":"ci"}}}"#,
        )
        .unwrap();
        assert_eq!(described.description.as_deref(), Some("ci"));
    }

    #[test]
    fn bad_bodies_are_422_with_a_pointer() {
        for (body, pointer) in [
            ("{", ""),
            ("[]", ""),
            (r#"{"data":1}"#, "/data"),
            (r#"{"data":{"type":"workspaces"}}"#, "/data/type"),
            (r#"{"data":{"attributes":"x"}}"#, "/data/attributes"),
            (
                r#"{"data":{"attributes":{"expired-at":"tomorrow"}}}"#,
                "/data/attributes/expired-at",
            ),
            (
                r#"{"data":{"attributes":{"expired-at":"2030-01-01"}}}"#,
                "/data/attributes/expired-at",
            ),
            (
                r#"{"data":{"attributes":{"expired-at":5}}}"#,
                "/data/attributes/expired-at",
            ),
            (
                r#"{"data":{"attributes":{"description":5}}}"#,
                "/data/attributes/description",
            ),
        ] {
            match parse_create_body(body.as_bytes()) {
                Err(Rejection::Unprocessable {
                    pointer: Some(p), ..
                }) => assert_eq!(p, pointer, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        for (body, pointer) in [
            ("{}", "/data"),
            (r#"{"data":[]}"#, "/data"),
            (r#"{"data":[{"id":5}]}"#, "/data/0/id"),
            (r#"{"data":[{"id":"at-1","type":"teams"}]}"#, "/data/0/type"),
        ] {
            match parse_bulk_delete(body.as_bytes()) {
                Err(Rejection::Unprocessable {
                    pointer: Some(p), ..
                }) => assert_eq!(p, pointer, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn ttl_patches_in_both_client_shapes() {
        let spec = br#"{"data":{"type":"organization-token-ttl-policies","attributes":{"token-ttl-policies":[{"token-type":"team","max-ttl-ms":2592000000},{"token-type":"user","max-ttl-ms":null}]}}}"#;
        assert_eq!(
            parse_ttl_patch(spec).unwrap(),
            [
                (TokenType::Team, Some(2_592_000_000)),
                (TokenType::User, None)
            ]
        );
        let python = br#"{"data":[{"type":"organization-token-ttl-policies","attributes":{"token-type":"audit_trails","max-ttl-ms":1000}}]}"#;
        assert_eq!(
            parse_ttl_patch(python).unwrap(),
            [(TokenType::AuditTrails, Some(1000))]
        );
        for (body, pointer) in [
            (
                r#"{"data":[{"attributes":{"token-type":"agent","max-ttl-ms":1}}]}"#,
                "/data/0/attributes/token-type",
            ),
            (
                r#"{"data":[{"attributes":{"token-type":"team","max-ttl-ms":-1}}]}"#,
                "/data/0/attributes/max-ttl-ms",
            ),
            (r#"{"data":[]}"#, "/data"),
        ] {
            match parse_ttl_patch(body.as_bytes()) {
                Err(Rejection::Unprocessable {
                    pointer: Some(p), ..
                }) => assert_eq!(p, pointer, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn list_parameters_are_checked_and_named() {
        let params = |q: &str| super::super::routes::query_params(Some(q));
        assert_eq!(page(&params("")).unwrap(), None);
        assert_eq!(
            page(&params("page[size]=500")).unwrap(),
            Some(Page {
                number: 1,
                size: 100
            })
        );
        for (q, name) in [
            ("page[number]=0", "page[number]"),
            ("page[size]=x", "page[size]"),
        ] {
            match page(&params(q)) {
                Err(Rejection::BadParameter { parameter, .. }) => assert_eq!(parameter, name),
                other => panic!("{q}: {other:?}"),
            }
        }
        assert_eq!(
            sort(&params("sort=-team-name")).unwrap(),
            (SortKey::TeamName, true)
        );
        assert!(sort(&params("sort=color")).is_err());
        assert_eq!(
            status_filter(&params("filter[status]=expired,no_expiration")).unwrap(),
            [ExpiryStatus::Expired, ExpiryStatus::NoExpiration]
        );
        assert!(status_filter(&params("filter[expiry_status]=soon")).is_err());
    }
}
