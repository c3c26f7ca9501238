//! Which token endpoint a request is for: every path a Rails/Rack upstream
//! (Terraform Enterprise) would route to a token endpoint is recognised
//! here, whatever its case, with `_` for `-`, and with a format suffix on
//! its last segment (`…/authentication-token.json`, `….xml`), so that it is
//! served by the gateway or refused, and never forwarded.

use crate::auth::Principal;
use crate::canonical::json::normalize_key;
use crate::canonical::CanonicalPath;
use crate::store::PrincipalKind;
use http::Method;
use percent_encoding::percent_decode_str;
use serde_json::Value;

/// A token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api/v2/teams/{team_id}/authentication-token`: the legacy team token.
    LegacyTeam(String),
    /// `/api/v2/organizations/{org}/authentication-token`: the organization
    /// token; `token_param` when the query names a token type (`token=`).
    LegacyOrg { org: String, token_param: bool },
    /// `/api/v2/teams/{team_id}/authentication-tokens`: described team tokens.
    TeamTokens(String),
    /// `/api/v2/authentication-tokens/{id}`: any token by id.
    ById(String),
    /// `/api/v2/organizations/{org}/team-tokens`: list, bulk delete.
    OrgTeamTokens(String),
    /// `/api/v2/users/{user_id}/authentication-tokens`: a user's tokens.
    UserTokens(String),
    /// `/api/v2/organizations/{org}/token-ttl-policies`.
    TtlPolicies(String),
    /// `/api/v2/account/details`, for a service account (a user's request
    /// is forwarded).
    AccountDetails,
    /// `PATCH /api/v2/teams/{team_id}` whose only attribute is
    /// `allow-member-token-management`: the gateway's own switch (a PATCH
    /// that changes anything else is the upstream's, and judged by the
    /// policy as usual).
    TeamTokenManagement(String),
    /// A token endpoint the gateway does not serve (agent tokens, unknown
    /// shapes): refused with 404, never forwarded.
    Refused(&'static str),
}

/// True when `segment` is the static word `word` as the upstream's router
/// compares it: any ASCII case, `_` for `-` (`word` is lower case, with `-`).
fn is(segment: &str, word: &str) -> bool {
    segment.len() == word.len()
        && segment.bytes().zip(word.bytes()).all(|(a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == b
        })
}

/// `segment` without a format suffix (`.json`, any `.format`).
fn without_format(segment: &str) -> &str {
    segment.split('.').next().unwrap_or(segment)
}

/// What of a request decides whether it is a token endpoint.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub path: &'a CanonicalPath,
    /// The raw query string.
    pub query: Option<&'a str>,
    pub method: &'a Method,
    /// The body as judged (keys normalized); `None` when empty.
    pub json: Option<&'a Value>,
}

/// True when `json` is a JSON:API document whose only attribute is
/// `allow-member-token-management` (in any spelling the upstream reads as it).
fn only_member_token_management(json: Option<&Value>) -> bool {
    let Some(attributes) = json
        .and_then(|doc| doc.get("data"))
        .and_then(|data| data.get("attributes"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    let data_keys_ok = json
        .and_then(|doc| doc.get("data"))
        .and_then(Value::as_object)
        .is_some_and(|data| {
            data.keys()
                .all(|k| matches!(k.as_str(), "type" | "id" | "attributes"))
        });
    data_keys_ok
        && attributes.len() == 1
        && attributes
            .keys()
            .all(|k| normalize_key(k) == "allow_member_token_management")
}

/// The token endpoint of a request, if it is one. `principal` decides
/// whether `account/details` is answered here. Allocates nothing for a
/// path that is not a token endpoint.
pub fn route(target: Target<'_>, principal: Option<&Principal>) -> Option<Route> {
    let (path, query) = (target.path, target.query);
    let mut segments = path.segments();
    let (api, v2) = (segments.next()?, segments.next()?);
    if !is(api, "api") || !is(v2, "v2") {
        return None;
    }
    let rest: Vec<&str> = segments.collect();
    let last = rest.len().checked_sub(1)?;
    // Rails reads `.json` (any `.format`) on the last segment as the format.
    let at = |i: usize| -> &str {
        if i == last {
            without_format(rest[i])
        } else {
            rest[i]
        }
    };
    let token_leaf = |s: &str| {
        [
            "authentication-token",
            "authentication-tokens",
            "team-tokens",
            "token-ttl-policies",
        ]
        .iter()
        .any(|w| is(s, w))
    };
    let route = match rest.len() {
        1 if is(at(0), "authentication-tokens") => Route::Refused("no such token endpoint"),
        2 if is(at(0), "teams")
            && matches!(*target.method, Method::PATCH | Method::PUT)
            && only_member_token_management(target.json) =>
        {
            Route::TeamTokenManagement(at(1).to_owned())
        }
        2 if is(at(0), "account") && is(at(1), "details") => {
            if !principal.is_some_and(|p| p.kind != PrincipalKind::User) {
                return None;
            }
            Route::AccountDetails
        }
        2 if is(at(0), "authentication-tokens") => Route::ById(at(1).to_owned()),
        3 if is(at(0), "teams") && is(at(2), "authentication-token") => {
            Route::LegacyTeam(at(1).to_owned())
        }
        3 if is(at(0), "teams") && is(at(2), "authentication-tokens") => {
            Route::TeamTokens(at(1).to_owned())
        }
        3 if is(at(0), "organizations") && is(at(2), "authentication-token") => Route::LegacyOrg {
            org: at(1).to_owned(),
            token_param: query.is_some_and(names_token_type),
        },
        3 if is(at(0), "organizations") && is(at(2), "team-tokens") => {
            Route::OrgTeamTokens(at(1).to_owned())
        }
        3 if is(at(0), "organizations") && is(at(2), "token-ttl-policies") => {
            Route::TtlPolicies(at(1).to_owned())
        }
        3 if is(at(0), "users") && is(at(2), "authentication-tokens") => {
            Route::UserTokens(at(1).to_owned())
        }
        n if n >= 3 && is(at(0), "agent-pools") && is(at(2), "authentication-tokens") => {
            Route::Refused("agent tokens are not served by tokengate")
        }
        n if n >= 2 && is(at(0), "authentication-tokens") => {
            Route::Refused("no such token endpoint")
        }
        n if n >= 4
            && ["teams", "organizations", "users"]
                .iter()
                .any(|w| is(at(0), w))
            && token_leaf(at(2)) =>
        {
            Route::Refused("no such token endpoint")
        }
        _ => return None,
    };
    Some(route)
}

/// True when a query string has a `token` parameter (`token=audit-trails`,
/// `token[]=…`, in any spelling the upstream would decode to it).
fn names_token_type(query: &str) -> bool {
    query.split('&').any(|pair| {
        let key = pair.split('=').next().unwrap_or("").replace('+', " ");
        let key = percent_decode_str(&key)
            .decode_utf8_lossy()
            .to_ascii_lowercase();
        key == "token" || key.starts_with("token[")
    })
}

/// Query parameters, decoded (`+` is a space); a repeated key keeps its
/// last value, as Rails reads it.
pub fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let (key, value) = (decode(key), decode(value));
        params.retain(|(k, _)| *k != key);
        params.push((key, value));
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonicalize;

    fn route_of(path: &str) -> Option<Route> {
        let path = canonicalize(path).unwrap();
        let target = Target {
            path: &path,
            query: None,
            method: &Method::GET,
            json: None,
        };
        route(target, None)
    }

    #[test]
    fn a_team_patch_is_ours_only_when_it_changes_nothing_but_member_token_management() {
        let path = canonicalize("/api/v2/teams/team-1").unwrap();
        let ours = |method: &Method, body: &str| {
            let json: Value = serde_json::from_str(body).unwrap();
            route(
                Target {
                    path: &path,
                    query: None,
                    method,
                    json: Some(&json),
                },
                None,
            )
        };
        for body in [
            r#"{"data":{"type":"teams","attributes":{"allow-member-token-management":false}}}"#,
            r#"{"data":{"id":"team-1","attributes":{"allow_member_token_management":true}}}"#,
        ] {
            assert_eq!(
                ours(&Method::PATCH, body),
                Some(Route::TeamTokenManagement("team-1".into())),
                "{body}"
            );
            assert_eq!(ours(&Method::GET, body), None);
        }
        for body in [
            r#"{"data":{"attributes":{"allow-member-token-management":false,"name":"x"}}}"#,
            r#"{"data":{"attributes":{"name":"x"}}}"#,
            r#"{"data":{"attributes":{}}}"#,
            r#"{"data":{"attributes":{"allow-member-token-management":false},"relationships":{}}}"#,
        ] {
            assert_eq!(ours(&Method::PATCH, body), None, "{body}");
        }
    }

    #[test]
    fn token_paths_are_recognised_in_every_spelling_the_upstream_routes() {
        for path in [
            "/api/v2/teams/team-1/authentication-token",
            "/api/v2/teams/team-1/authentication-token/",
            "/api/v2/teams/team-1/authentication-token.json",
            "/API/V2/Teams/team-1/Authentication-Token.JSON",
            "/api/v2/teams/team-1/authentication_token.xml",
            "//api/v2/teams/./team-1/authentication-token",
        ] {
            assert_eq!(
                route_of(path),
                Some(Route::LegacyTeam("team-1".into())),
                "{path}"
            );
        }
        assert_eq!(
            route_of("/api/v2/organizations/acme/authentication-token.json"),
            Some(Route::LegacyOrg {
                org: "acme".into(),
                token_param: false
            })
        );
        assert_eq!(
            route_of("/api/v2/authentication-tokens/at-abc.json"),
            Some(Route::ById("at-abc".into()))
        );
        assert_eq!(
            route_of("/api/v2/organizations/acme/team-tokens.json"),
            Some(Route::OrgTeamTokens("acme".into()))
        );
        assert_eq!(
            route_of("/api/v2/organizations/acme/token_ttl_policies"),
            Some(Route::TtlPolicies("acme".into()))
        );
        assert_eq!(
            route_of("/api/v2/users/user-1/authentication-tokens"),
            Some(Route::UserTokens("user-1".into()))
        );
        for refused in [
            "/api/v2/agent-pools/apool-1/authentication-tokens",
            "/api/v2/authentication-tokens",
            "/api/v2/authentication-tokens/at-1/anything",
            "/api/v2/teams/team-1/authentication-token/x",
        ] {
            assert!(
                matches!(route_of(refused), Some(Route::Refused(_))),
                "{refused}"
            );
        }
        for other in [
            "/api/v2/teams/team-1",
            "/api/v2/workspaces/ws-1",
            "/api/v1/teams/team-1/authentication-token",
            "/api/v2/account/details",
        ] {
            assert_eq!(route_of(other), None, "{other}");
        }
    }

    #[test]
    fn a_token_query_parameter_is_noticed_in_any_spelling() {
        for query in [
            "token=audit-trails",
            "a=1&token=audit-trails",
            "TOKEN=x",
            "%74oken=audit-trails",
            "token%5B%5D=x",
            "token",
        ] {
            assert!(names_token_type(query), "{query}");
        }
        for query in ["", "tokens=x", "page%5Bsize%5D=1"] {
            assert!(!names_token_type(query), "{query}");
        }
    }

    #[test]
    fn query_params_are_decoded_and_the_last_value_wins() {
        assert_eq!(
            query_params(Some("page%5Bnumber%5D=2&q=a+b&q=c%20d&x")),
            [
                ("page[number]".to_owned(), "2".to_owned()),
                ("q".to_owned(), "c d".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
    }
}
