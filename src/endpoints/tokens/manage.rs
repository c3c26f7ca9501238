//! Creating, reading and deleting tokens over HTTP: the legacy team and
//! organization tokens, described team tokens, user tokens, and any token
//! by id. Who may do what, and what each change does, is in [`super::ops`];
//! this file reads the request and writes the JSON:API answer.

use super::bodies::{parse_create_body, unprocessable};
use super::documents::{created_by, list_document, token_document, token_resource};
use super::ops::{Intent, OpError};
use super::{user_tokens_disabled, user_tokens_enabled, Call};
use crate::rejection::{json_api_response, Rejection};
use crate::store::{Organization, Owner, StoreError, StoredToken};
use crate::token::lifecycle::{self, Issued};
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

/// What the request's method asks for, for the record of refused attempts.
fn intent(method: &Method) -> Intent {
    match *method {
        Method::POST => Intent::Generate,
        Method::DELETE => Intent::Revoke,
        _ => Intent::Read,
    }
}

/// 201 with the new token's document, its secret included (shown once).
async fn created(call: &Call<'_>, issued: Issued) -> Answer {
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
    if !matches!(*call.method, Method::POST | Method::GET | Method::DELETE) {
        return Err(method_not_allowed(call.method, "POST, GET or DELETE"));
    }
    let op = call.op();
    let (team, org) = op.team(team_id, intent(call.method)).await?;
    let owner = Owner::Team {
        org: org.name.clone(),
        team_id: team.id.clone(),
    };
    legacy(call, owner, &org).await
}

/// `/api/v2/organizations/{org}/authentication-token`: the organization
/// token.
pub async fn legacy_org(call: &Call<'_>, name: &str) -> Answer {
    if !matches!(*call.method, Method::POST | Method::GET | Method::DELETE) {
        return Err(method_not_allowed(call.method, "POST, GET or DELETE"));
    }
    let org = call.op().org(name, intent(call.method)).await?;
    let owner = Owner::Org {
        org: org.name.clone(),
    };
    legacy(call, owner, &org).await
}

async fn legacy(call: &Call<'_>, owner: Owner, org: &Organization) -> Answer {
    let op = call.op();
    match *call.method {
        Method::GET => {
            let token = op.legacy_token(&owner).await?.ok_or(OpError::Hidden)?;
            let doc = token_document(call.store, &token.credential, None, token.last_used).await?;
            Ok(json(StatusCode::OK, &doc))
        }
        Method::DELETE => {
            op.revoke_legacy(&owner).await?;
            Ok(no_content())
        }
        _ => {
            let body = parse_create_body(&call.body)?;
            let issued = op.generate_legacy(owner, org, body.expired_at).await?;
            created(call, issued).await
        }
    }
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
    let op = call.op();
    let (team, org) = op.team(team_id, intent(call.method)).await?;
    if *call.method == Method::GET {
        let page = super::bodies::page(&call.params)?;
        let owner = Owner::Team {
            org: org.name.clone(),
            team_id: team.id.clone(),
        };
        let tokens = op.tokens_of(&org.name, |o| *o == owner).await?;
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
    let issued = op
        .create_described(&team, &org, description, body.expired_at)
        .await?;
    created(call, issued).await
}

/// `/api/v2/users/{user_id}/authentication-tokens`: only the user, with a
/// user token, lists and creates their tokens; anyone else gets 404.
pub async fn user_tokens(call: &Call<'_>, user_id: &str) -> Answer {
    if !matches!(*call.method, Method::POST | Method::GET) {
        return Err(method_not_allowed(call.method, "POST or GET"));
    }
    let op = call.op();
    let user = call
        .caller
        .user
        .as_ref()
        .filter(|user| call.caller.is_user(user_id) && user.id == user_id);
    let Some(user) = user else {
        op.refused(intent(call.method), &format!("user:{user_id}"))
            .await;
        return Err(Rejection::hidden());
    };
    let owner = Owner::User {
        org: user.organization.clone(),
        user_id: user.id.clone(),
    };
    if *call.method == Method::GET {
        let page = super::bodies::page(&call.params)?;
        let mut tokens = op.tokens_of(&user.organization, |o| *o == owner).await?;
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
    let issued = op
        .create_user_token(owner, &org, body.description, body.expired_at)
        .await?;
    created(call, issued).await
}

/// `/api/v2/authentication-tokens/{id}`: read or delete any token the
/// caller may manage (a team's, the organization's, the caller's own user
/// token); 404 when it does not exist or is not the caller's to see.
pub async fn by_id(call: &Call<'_>, token_id: &str) -> Answer {
    if !matches!(*call.method, Method::GET | Method::DELETE) {
        return Err(method_not_allowed(call.method, "GET or DELETE"));
    }
    let op = call.op();
    let credential = op.token(token_id, intent(call.method)).await?;
    // A user token reaches team and organization tokens only where its
    // organization allows user tokens.
    if !matches!(credential.owner, Owner::User { .. })
        && call.caller.principal.kind == crate::store::PrincipalKind::User
        && !user_tokens_enabled(call.store, call.caller.principal).await?
    {
        return Err(user_tokens_disabled(&call.caller.principal.org));
    }
    if *call.method == Method::GET {
        let last_used = call.store.last_used(&credential.slot).await?;
        let doc = token_document(call.store, &credential, None, last_used).await?;
        return Ok(json(StatusCode::OK, &doc));
    }
    op.delete(&credential).await?;
    Ok(no_content())
}

/// `PATCH /api/v2/teams/{team_id}` with only `allow-member-token-management`:
/// owners and manage-teams turn the team's member token management on or
/// off (the gateway's record, which decides who manages the team's tokens).
pub async fn team_token_management(call: &Call<'_>, team_id: &str) -> Answer {
    let op = call.op();
    let (team, _) = op.team_settings(team_id).await?;
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
    let team = op.set_member_token_management(&team, value).await?;
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
