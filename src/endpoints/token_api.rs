//! The Terraform-Enterprise-compatible token API, served by the gateway
//! itself and never forwarded:
//!
//! | method | path |
//! |---|---|
//! | POST, GET, DELETE | `/api/v2/teams/{team_id}/authentication-token` |
//! | POST, GET, DELETE | `/api/v2/organizations/{org}/authentication-token` |
//!
//! Who may manage a token (anyone else gets 404, as Terraform Enterprise
//! does not reveal what exists):
//! * a **user** who is a member of the team (when the team allows member
//!   token management) or of the organization's `owners` team; only owners
//!   manage the organization token;
//! * an **organization token**: the team tokens of its own organization,
//!   never the organization token (as in Terraform Enterprise; an operator can
//!   turn this off with `token_api.org_tokens_manage_team_tokens: false`,
//!   because a minted team token can apply);
//! * a **team token**: nothing (a service account is not a team member).

use crate::auth::Principal;
use crate::body::{read_body, RequestBody};
use crate::canonical::CanonicalPath;
use crate::context::{Decision, RequestContext};
use crate::gateway::Gateway;
use crate::rejection::{json_api_response, Rejection};
use crate::store::audit::{self, AuditEvent};
use crate::store::{
    Credential, Organization, Owner, PrincipalKind, Store, StoreError, Team, Timestamp,
};
use crate::token::lifecycle;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use std::sync::{Arc, LazyLock};

/// Largest request body the token API reads.
const MAX_BODY: u64 = 64 * 1024;

/// Whose token a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Team(String),
    Org(String),
}

impl Target {
    /// `team:team-…` or `org:NAME`, as the audit trail names targets.
    fn describe(&self) -> String {
        match self {
            Target::Team(id) => format!("team:{id}"),
            Target::Org(name) => format!("org:{name}"),
        }
    }
}

/// What a request asks the token API to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST`: generate a token, replacing the current one.
    Generate,
    /// `GET`: the current token's metadata.
    Read,
    /// `DELETE`: revoke the current token.
    Revoke,
}

impl Action {
    /// The action a method asks for; 405 for any other method.
    pub fn from_method(method: &Method) -> Result<Action, Rejection> {
        match *method {
            Method::POST => Ok(Action::Generate),
            Method::GET => Ok(Action::Read),
            Method::DELETE => Ok(Action::Revoke),
            _ => Err(Rejection::MethodNotAllowed(format!(
                "{method} is not supported here; use POST, GET or DELETE"
            ))),
        }
    }

    /// The audit action of a refused attempt.
    fn refused(self) -> Option<&'static str> {
        match self {
            Action::Generate => Some("generate_refused"),
            Action::Revoke => Some("revoke_refused"),
            Action::Read => None,
        }
    }
}

/// The rule id recorded for requests the token API serves.
pub const RULE_ID: &str = "token-api";

static RULE_LABEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(RULE_ID));

/// Recognises the token API's paths.
pub fn route(path: &CanonicalPath) -> Option<Target> {
    let segments: Vec<&str> = path.segments().collect();
    match segments.as_slice() {
        [api, v2, kind, id, leaf]
            if api.eq_ignore_ascii_case("api")
                && v2.eq_ignore_ascii_case("v2")
                && leaf.eq_ignore_ascii_case("authentication-token") =>
        {
            if kind.eq_ignore_ascii_case("teams") {
                Some(Target::Team((*id).to_owned()))
            } else if kind.eq_ignore_ascii_case("organizations") {
                Some(Target::Org((*id).to_owned()))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The resolved target: the owner and the records needed to decide access.
struct Resolved {
    owner: Owner,
    org: Organization,
    team: Option<Team>,
}

async fn resolve(store: &dyn Store, target: &Target) -> Result<Option<Resolved>, StoreError> {
    match target {
        Target::Team(team_id) => {
            let Some(team) = store.team(team_id).await? else {
                return Ok(None);
            };
            let Some(org) = store.org(&team.organization).await? else {
                return Ok(None);
            };
            Ok(Some(Resolved {
                owner: Owner::Team {
                    org: org.name.clone(),
                    team_id: team.id.clone(),
                },
                org,
                team: Some(team),
            }))
        }
        Target::Org(name) => {
            let Some(org) = store.org(name).await? else {
                return Ok(None);
            };
            Ok(Some(Resolved {
                owner: Owner::Org {
                    org: org.name.clone(),
                },
                org,
                team: None,
            }))
        }
    }
}

/// True when `principal` may manage the token of `resolved`.
async fn may_manage(
    store: &dyn Store,
    principal: &Principal,
    resolved: &Resolved,
    org_tokens_manage_team_tokens: bool,
    admin_teams: &[String],
) -> Result<bool, StoreError> {
    if principal.org != resolved.org.name {
        return Ok(false);
    }
    match principal.kind {
        PrincipalKind::Team => Ok(false),
        // Never the token of an admin team: it reaches /_tokengate/reload.
        PrincipalKind::Org => Ok(org_tokens_manage_team_tokens
            && resolved
                .team
                .as_ref()
                .is_some_and(|team| !admin_teams.contains(&team.id))),
        PrincipalKind::User => {
            let Some(user_id) = &principal.user_id else {
                return Ok(false);
            };
            let Some(user) = store.user(user_id).await? else {
                return Ok(false);
            };
            let is_owner = user.team_ids.contains(&resolved.org.owners_team_id);
            Ok(match &resolved.team {
                None => is_owner,
                Some(team) => {
                    is_owner
                        || (team.allow_member_token_management && user.team_ids.contains(&team.id))
                }
            })
        }
    }
}

/// Who did it, for `created-by` and the audit trail: a user id or, for a
/// service account, its token id.
fn actor(principal: &Principal) -> String {
    principal
        .user_id
        .clone()
        .unwrap_or_else(|| principal.token_id.clone())
}

/// Serves one token API request. Only an authenticated principal may call
/// it; anyone who may not manage the target gets 404.
pub async fn handle<B: RequestBody>(
    gateway: &Gateway,
    target: Target,
    request: Request<B>,
    ctx: &mut RequestContext,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let Some(principal) = ctx.facts.principal.as_ref() else {
        return Err(Rejection::Unauthenticated(
            "the token API requires an `Authorization: Bearer <token>` header".into(),
        ));
    };
    ctx.record.rule = Some(RULE_LABEL.clone());
    ctx.record.decision = Some(Decision::Served);
    let (parts, body) = request.into_parts();
    let action = Action::from_method(&parts.method)?;
    let store = gateway.store.as_ref();
    let resolved = resolve(store, &target).await?;
    let allowed = match &resolved {
        Some(resolved) => {
            may_manage(
                store,
                principal,
                resolved,
                gateway.config.org_tokens_manage_team_tokens,
                &gateway.live.admin().teams,
            )
            .await?
        }
        None => false,
    };
    let Some(resolved) = resolved.filter(|_| allowed) else {
        if let Some(refused) = action.refused() {
            let event = AuditEvent::new(
                &principal.org,
                &actor(principal),
                refused,
                &target.describe(),
                None,
            );
            audit::record(store, event).await;
        }
        return Err(Rejection::hidden());
    };
    match action {
        Action::Read => {
            let credential = lifecycle::current(store, &resolved.owner)
                .await?
                .ok_or_else(Rejection::hidden)?;
            let last_used = store.last_used(&credential.slot).await?;
            Ok(json_api_response(
                StatusCode::OK,
                document(&credential, None, last_used).to_string(),
            ))
        }
        Action::Revoke => {
            lifecycle::revoke_audited(store, &resolved.owner, &actor(principal))
                .await?
                .ok_or_else(Rejection::hidden)?;
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        Action::Generate => {
            let bytes = read_body(body, MAX_BODY).await?;
            let expired_at = parse_create_body(&bytes)?;
            let actor = actor(principal);
            let actor = lifecycle::Actor {
                id: &actor,
                is_principal: true,
            };
            let issued = lifecycle::generate_audited(
                store,
                resolved.owner.clone(),
                gateway.config.hashing,
                actor,
                expired_at,
            )
            .await?;
            let doc = document(&issued.credential, Some(&issued.token.secret_token), None);
            Ok(json_api_response(StatusCode::CREATED, doc.to_string()))
        }
    }
}

fn unprocessable(detail: &str, pointer: &str) -> Rejection {
    Rejection::Unprocessable {
        detail: detail.to_owned(),
        pointer: Some(pointer.to_owned()),
    }
}

/// Parses a create body. Empty, `null`, `{}`, a missing `data` or missing
/// `attributes` are all accepted; returns the requested expiry.
pub fn parse_create_body(bytes: &[u8]) -> Result<Option<Timestamp>, Rejection> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| unprocessable(&format!("the body is not valid JSON: {e}"), ""))?;
    let data = match &doc {
        Value::Null => return Ok(None),
        Value::Object(map) => match map.get("data") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(data)) => data,
            Some(_) => return Err(unprocessable("`data` must be an object", "/data")),
        },
        _ => return Err(unprocessable("the body must be a JSON object", "")),
    };
    match data.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "authentication-token" || t == "authentication-tokens" => {}
        Some(_) => {
            return Err(unprocessable(
                "`type` must be \"authentication-token\"",
                "/data/type",
            ))
        }
    }
    let attributes = match data.get("attributes") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(attributes)) => attributes,
        Some(_) => {
            return Err(unprocessable(
                "`attributes` must be an object",
                "/data/attributes",
            ))
        }
    };
    match attributes.get("expired-at") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let at = Timestamp::parse_rfc3339(text).ok_or_else(|| {
                unprocessable(
                    "`expired-at` must be an ISO 8601 time such as 2030-01-01T00:00:00.000Z",
                    "/data/attributes/expired-at",
                )
            })?;
            if at <= Timestamp::now() {
                return Err(unprocessable(
                    "`expired-at` must be in the future",
                    "/data/attributes/expired-at",
                ));
            }
            Ok(Some(at))
        }
        Some(_) => Err(unprocessable(
            "`expired-at` must be a string",
            "/data/attributes/expired-at",
        )),
    }
}

/// The JSON:API document of a token; the secret only when just created.
pub fn document(
    credential: &Credential,
    secret: Option<&str>,
    last_used: Option<Timestamp>,
) -> Value {
    let created_by = credential.created_by.as_deref().map(|id| {
        let kind = if id.starts_with("user-") {
            "users"
        } else {
            "authentication-tokens"
        };
        json!({"id": id, "type": kind})
    });
    let mut relationships = serde_json::Map::new();
    match &credential.owner {
        Owner::Team { team_id, .. } => {
            relationships.insert(
                "team".into(),
                json!({"data": {"id": team_id, "type": "teams"}}),
            );
        }
        Owner::Org { org } => {
            relationships.insert(
                "organization".into(),
                json!({"data": {"id": org, "type": "organizations"}}),
            );
        }
        Owner::User { user_id, .. } => {
            relationships.insert(
                "user".into(),
                json!({"data": {"id": user_id, "type": "users"}}),
            );
        }
    }
    relationships.insert("created-by".into(), json!({"data": created_by}));
    json!({
        "data": {
            "id": credential.token_id,
            "type": "authentication-tokens",
            "attributes": {
                "created-at": credential.created_at.to_rfc3339(),
                "last-used-at": last_used.map(Timestamp::to_rfc3339),
                "description": credential.description,
                "token": secret,
                "expired-at": credential.expired_at.map(Timestamp::to_rfc3339),
            },
            "relationships": relationships,
        }
    })
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
            r#"{"data":{"type":"authentication-token"}}"#,
            r#"{"data":{"type":"authentication-token","attributes":{}}}"#,
            r#"{"data":{"type":"authentication-token","attributes":{"expired-at":null}}}"#,
        ] {
            assert_eq!(parse_create_body(body.as_bytes()).unwrap(), None, "{body}");
        }
        let future = parse_create_body(
            br#"{"data":{"attributes":{"expired-at":"2999-01-01T00:00:00.000Z"}}}"#,
        )
        .unwrap();
        assert!(future.is_some());
    }

    #[test]
    fn bad_create_bodies_are_422_with_a_pointer() {
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
                r#"{"data":{"attributes":{"expired-at":"2001-01-01T00:00:00Z"}}}"#,
                "/data/attributes/expired-at",
            ),
            (
                r#"{"data":{"attributes":{"expired-at":5}}}"#,
                "/data/attributes/expired-at",
            ),
        ] {
            match parse_create_body(body.as_bytes()) {
                Err(Rejection::Unprocessable {
                    pointer: Some(p), ..
                }) => assert_eq!(p, pointer, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn token_paths_are_recognised() {
        let route_of = |p: &str| route(&crate::canonical::canonicalize(p).unwrap());
        assert_eq!(
            route_of("/api/v2/teams/team-1/authentication-token"),
            Some(Target::Team("team-1".into()))
        );
        assert_eq!(
            route_of("/api/v2/organizations/acme/authentication-token/"),
            Some(Target::Org("acme".into()))
        );
        assert_eq!(route_of("/api/v2/teams/team-1"), None);
        assert_eq!(route_of("/api/v2/users/u/authentication-token"), None);
    }
}
