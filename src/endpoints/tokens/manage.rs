//! Creating, reading and deleting tokens: the legacy team and organization
//! tokens, described team tokens, user tokens, and any token by id.

use super::bodies::{parse_create_body, unprocessable, CreateBody};
use super::documents::{created_by, list_document, token_document, token_resource};
use super::{user_tokens_disabled, user_tokens_enabled, Call};
use crate::rejection::{json_api_response, Rejection};
use crate::store::audit::{self, AuditEvent};
use crate::store::{
    Credential, Organization, Owner, StoreError, StoredToken, Team, Timestamp, TokenType,
};
use crate::token::lifecycle::{self, Actor, ExpiryError, Issued};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

type Answer = Result<Response<Full<Bytes>>, Rejection>;

fn method_not_allowed(method: &Method, allowed: &str) -> Rejection {
    Rejection::MethodNotAllowed(format!("{method} is not supported here; use {allowed}"))
}

fn no_content() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn json(status: StatusCode, doc: &Value) -> Response<Full<Bytes>> {
    json_api_response(status, doc.to_string())
}

/// Records a refused attempt to change a token (reads are not recorded).
async fn refused(call: &Call<'_>, target: &str) {
    let action = match *call.method {
        Method::POST => "generate_refused",
        Method::DELETE => "revoke_refused",
        _ => return,
    };
    let event = AuditEvent::new(
        &call.caller.principal.org,
        &call.caller.actor(),
        action,
        target,
        None,
    );
    audit::record(call.store, event).await;
}

/// A team and its organization, when both exist.
async fn team_and_org(
    call: &Call<'_>,
    team_id: &str,
) -> Result<Option<(Team, Organization)>, StoreError> {
    let Some(team) = call.store.team(team_id).await? else {
        return Ok(None);
    };
    let Some(org) = call.store.org(&team.organization).await? else {
        return Ok(None);
    };
    Ok(Some((team, org)))
}

fn actor<'a>(call: &Call<'_>, id: &'a str) -> Actor<'a> {
    Actor {
        id,
        created_by: Some(call.caller.creator()),
    }
}

/// The expiry of a new token of `kind` in `org`, or 422.
fn expiry(
    call: &Call<'_>,
    org: &Organization,
    kind: TokenType,
    body: &CreateBody,
) -> Result<Option<Timestamp>, Rejection> {
    lifecycle::expiry_for(
        kind,
        body.expired_at,
        call.gateway.config.token_default_expiry_ms,
        &org.token_settings,
        Timestamp::now(),
    )
    .map_err(|err: ExpiryError| unprocessable(err.to_string(), "/data/attributes/expired-at"))
}

/// After a token was written: if the organization's maximum lifetime for
/// its type shrank meanwhile (a TTL change that read the token list before
/// this token was in it), shortens the token to it.
async fn within_current_ttl(call: &Call<'_>, issued: &mut Issued) -> Result<(), Rejection> {
    let credential = &issued.credential;
    let Some(org) = call.store.org(credential.owner.org()).await? else {
        return Ok(());
    };
    let Some(max) = org
        .token_settings
        .max_ttl_ms
        .get(TokenType::of(&credential.owner))
    else {
        return Ok(());
    };
    let latest = credential.created_at.plus_millis(max);
    if credential.expired_at.is_none_or(|at| at > latest)
        && call.store.clamp_expiry(credential, latest).await?
    {
        issued.credential.expired_at = Some(latest);
    }
    Ok(())
}

async fn created(call: &Call<'_>, mut issued: Issued) -> Answer {
    within_current_ttl(call, &mut issued).await?;
    let doc = token_document(
        call.store,
        &issued.credential,
        Some(&issued.token.secret_token),
        None,
    )
    .await?;
    Ok(json(StatusCode::CREATED, &doc))
}

/// `/api/v2/teams/{team_id}/authentication-token`: the team's legacy token.
pub async fn legacy_team(call: &Call<'_>, team_id: &str) -> Answer {
    let target = format!("team:{team_id}");
    let allowed = match team_and_org(call, team_id).await? {
        Some((team, org)) if call.caller.may_manage_team(&org, &team, call.rights) => {
            Some((team, org))
        }
        _ => None,
    };
    if !matches!(*call.method, Method::POST | Method::GET | Method::DELETE) {
        return Err(method_not_allowed(call.method, "POST, GET or DELETE"));
    }
    let Some((team, org)) = allowed else {
        refused(call, &target).await;
        return Err(Rejection::hidden());
    };
    let owner = Owner::Team {
        org: org.name.clone(),
        team_id: team.id.clone(),
    };
    legacy(call, owner, &org, TokenType::Team).await
}

/// `/api/v2/organizations/{org}/authentication-token`: the organization
/// token.
pub async fn legacy_org(call: &Call<'_>, name: &str) -> Answer {
    if !matches!(*call.method, Method::POST | Method::GET | Method::DELETE) {
        return Err(method_not_allowed(call.method, "POST, GET or DELETE"));
    }
    let org = call
        .store
        .org(name)
        .await?
        .filter(|org| call.caller.may_manage_org_token(org));
    let Some(org) = org else {
        refused(call, &format!("org:{name}")).await;
        return Err(Rejection::hidden());
    };
    let owner = Owner::Org {
        org: org.name.clone(),
    };
    legacy(call, owner, &org, TokenType::Organization).await
}

async fn legacy(call: &Call<'_>, owner: Owner, org: &Organization, kind: TokenType) -> Answer {
    let store = call.store;
    let actor_id = call.caller.actor();
    match *call.method {
        Method::GET => {
            let credential = lifecycle::current(store, &owner)
                .await?
                .ok_or_else(Rejection::hidden)?;
            let last_used = store.last_used(&credential.slot).await?;
            let doc = token_document(store, &credential, None, last_used).await?;
            Ok(json(StatusCode::OK, &doc))
        }
        Method::DELETE => {
            lifecycle::revoke_audited(store, &owner, &actor_id)
                .await?
                .ok_or_else(Rejection::hidden)?;
            Ok(no_content())
        }
        _ => {
            let body = parse_create_body(&call.body)?;
            let expired_at = expiry(call, org, kind, &body)?;
            let issued = lifecycle::generate_audited(
                store,
                owner,
                call.gateway.config.hashing,
                actor(call, &actor_id),
                expired_at,
            )
            .await?;
            created(call, issued).await
        }
    }
}

/// Every current token of `org` whose owner passes `keep`, oldest first.
pub(super) async fn tokens_of(
    call: &Call<'_>,
    org: &str,
    keep: impl Fn(&Owner) -> bool,
) -> Result<Vec<StoredToken>, StoreError> {
    let mut tokens: Vec<StoredToken> = call
        .store
        .org_tokens(org)
        .await?
        .into_iter()
        .filter(|t| keep(&t.credential.owner))
        .collect();
    tokens.sort_by(|a, b| {
        (a.credential.created_at, &a.credential.token_id)
            .cmp(&(b.credential.created_at, &b.credential.token_id))
    });
    Ok(tokens)
}

/// The resource objects of tokens, for a list (never a secret).
pub(super) async fn resources(
    call: &Call<'_>,
    tokens: &[StoredToken],
) -> Result<Vec<Value>, StoreError> {
    let mut items = Vec::with_capacity(tokens.len());
    for token in tokens {
        let creator = created_by(call.store, &token.credential).await?;
        items.push(token_resource(
            &token.credential,
            None,
            token.last_used,
            creator,
        ));
    }
    Ok(items)
}

/// `/api/v2/teams/{team_id}/authentication-tokens`: POST creates a
/// described token (the team's other tokens stay valid); GET lists the
/// team's tokens (tokengate's addition; Terraform Enterprise lists them
/// per organization).
pub async fn team_tokens(call: &Call<'_>, team_id: &str) -> Answer {
    if !matches!(*call.method, Method::POST | Method::GET) {
        return Err(method_not_allowed(call.method, "POST or GET"));
    }
    let allowed = match team_and_org(call, team_id).await? {
        Some((team, org)) if call.caller.may_manage_team(&org, &team, call.rights) => {
            Some((team, org))
        }
        _ => None,
    };
    let Some((team, org)) = allowed else {
        refused(call, &format!("team:{team_id}")).await;
        return Err(Rejection::hidden());
    };
    let owner = Owner::Team {
        org: org.name.clone(),
        team_id: team.id.clone(),
    };
    if *call.method == Method::GET {
        let page = super::bodies::page(&call.params)?;
        let tokens = tokens_of(call, &org.name, |o| *o == owner).await?;
        let items = resources(call, &tokens).await?;
        return Ok(json(StatusCode::OK, &list_document(items, page, call.path)));
    }
    let body = parse_create_body(&call.body)?;
    let Some(description) = body.description.clone() else {
        return Err(unprocessable(
            "`description` is required: a team may have several tokens, told apart by their description (a token without one is the team's legacy token: POST /api/v2/teams/{team_id}/authentication-token)",
            "/data/attributes/description",
        ));
    };
    let expired_at = expiry(call, &org, TokenType::Team, &body)?;
    let actor_id = call.caller.actor();
    let issued = lifecycle::issue_own_audited(
        call.store,
        owner,
        call.gateway.config.hashing,
        actor(call, &actor_id),
        expired_at,
        Some(description),
    )
    .await
    .map_err(|err| match err {
        lifecycle::IssueError::Store(StoreError::AlreadyExists(_)) => unprocessable(
            "Validation failed: Description has already been taken",
            "/data/attributes/description",
        ),
        other => other.into(),
    })?;
    created(call, issued).await
}

/// `/api/v2/users/{user_id}/authentication-tokens`: only the user, with a
/// user token, lists and creates their tokens; anyone else gets 404.
pub async fn user_tokens(call: &Call<'_>, user_id: &str) -> Answer {
    if !matches!(*call.method, Method::POST | Method::GET) {
        return Err(method_not_allowed(call.method, "POST or GET"));
    }
    let user = call
        .caller
        .user
        .as_ref()
        .filter(|user| call.caller.is_user(user_id) && user.id == user_id);
    let Some(user) = user else {
        refused(call, &format!("user:{user_id}")).await;
        return Err(Rejection::hidden());
    };
    let owner = Owner::User {
        org: user.organization.clone(),
        user_id: user.id.clone(),
    };
    if *call.method == Method::GET {
        let page = super::bodies::page(&call.params)?;
        let mut tokens = tokens_of(call, &user.organization, |o| *o == owner).await?;
        // A token issued before user tokens had slots of their own.
        if let Some(legacy) = lifecycle::current(call.store, &owner).await? {
            if !tokens
                .iter()
                .any(|t| t.credential.token_id == legacy.token_id)
            {
                let last_used = call.store.last_used(&legacy.slot).await?;
                tokens.insert(
                    0,
                    StoredToken {
                        credential: legacy,
                        last_used,
                    },
                );
            }
        }
        let items = resources(call, &tokens).await?;
        return Ok(json(StatusCode::OK, &list_document(items, page, call.path)));
    }
    let org = call
        .store
        .org(&user.organization)
        .await?
        .ok_or_else(Rejection::hidden)?;
    let body = parse_create_body(&call.body)?;
    let expired_at = expiry(call, &org, TokenType::User, &body)?;
    let actor_id = call.caller.actor();
    let issued = lifecycle::issue_own_audited(
        call.store,
        owner,
        call.gateway.config.hashing,
        actor(call, &actor_id),
        expired_at,
        body.description,
    )
    .await?;
    created(call, issued).await
}

/// True when the caller may read and delete `credential`.
async fn may_manage(call: &Call<'_>, credential: &Credential) -> Result<bool, Rejection> {
    let caller = call.caller;
    let allowed = match &credential.owner {
        Owner::Team { team_id, .. } => match team_and_org(call, team_id).await? {
            Some((team, org)) => caller.may_manage_team(&org, &team, call.rights),
            None => false,
        },
        Owner::Org { org } => match call.store.org(org).await? {
            Some(org) => caller.may_manage_org_token(&org),
            None => false,
        },
        Owner::User { user_id, .. } => return Ok(caller.is_user(user_id)),
    };
    // A user token reaches team and organization tokens only where its
    // organization allows user tokens.
    if allowed
        && caller.principal.kind == crate::store::PrincipalKind::User
        && !user_tokens_enabled(call.store, caller.principal).await?
    {
        return Err(user_tokens_disabled(&caller.principal.org));
    }
    Ok(allowed)
}

/// `/api/v2/authentication-tokens/{id}`: read or delete any token the
/// caller may manage (a team's, the organization's, the caller's own user
/// token); 404 when it does not exist or is not the caller's to see.
pub async fn by_id(call: &Call<'_>, token_id: &str) -> Answer {
    if !matches!(*call.method, Method::GET | Method::DELETE) {
        return Err(method_not_allowed(call.method, "GET or DELETE"));
    }
    let credential = lifecycle::find(call.store, token_id).await?;
    let credential = match credential {
        Some(credential) if may_manage(call, &credential).await? => credential,
        other => {
            let target = other.map_or_else(|| format!("token:{token_id}"), |c| c.owner.describe());
            refused(call, &target).await;
            return Err(Rejection::hidden());
        }
    };
    if *call.method == Method::GET {
        let last_used = call.store.last_used(&credential.slot).await?;
        let doc = token_document(call.store, &credential, None, last_used).await?;
        return Ok(json(StatusCode::OK, &doc));
    }
    lifecycle::delete_audited(call.store, &credential, &call.caller.actor())
        .await?
        .ok_or_else(Rejection::hidden)?;
    Ok(no_content())
}

/// `PATCH /api/v2/teams/{team_id}` with only `allow-member-token-management`:
/// owners and manage-teams turn the team's member token management on or
/// off (the gateway's record, which decides who manages the team's tokens).
pub async fn team_token_management(call: &Call<'_>, team_id: &str) -> Answer {
    let allowed = match team_and_org(call, team_id).await? {
        Some((team, org))
            if call
                .caller
                .may_change_member_token_management(&org, &team, call.rights) =>
        {
            Some(team)
        }
        _ => None,
    };
    let Some(team) = allowed else {
        return Err(Rejection::hidden());
    };
    let doc: Value = serde_json::from_slice(&call.body)
        .map_err(|e| unprocessable(format!("the body is not valid JSON: {e}"), ""))?;
    let value = doc
        .pointer("/data/attributes")
        .and_then(Value::as_object)
        .and_then(|attributes| attributes.values().next())
        .and_then(Value::as_bool)
        .ok_or_else(|| {
            unprocessable(
                "`allow-member-token-management` must be true or false",
                "/data/attributes/allow-member-token-management",
            )
        })?;
    let team = call
        .store
        .set_member_token_management(&team.id, value)
        .await?;
    let event = AuditEvent::new(
        &team.organization,
        &call.caller.actor(),
        if value {
            "member_token_management_on"
        } else {
            "member_token_management_off"
        },
        &format!("team:{}", team.id),
        None,
    );
    audit::record(call.store, event).await;
    let doc = serde_json::json!({"data": {
        "id": team.id,
        "type": "teams",
        "attributes": {
            "name": team.name,
            "allow-member-token-management": team.allow_member_token_management,
        },
        "relationships": {
            "organization": {"data": {"id": team.organization, "type": "organizations"}},
        },
    }});
    Ok(json(StatusCode::OK, &doc))
}
