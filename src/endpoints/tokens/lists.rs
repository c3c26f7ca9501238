//! Organization-wide token endpoints: the list and bulk delete of team
//! tokens, the TTL policies, and `account/details` for service accounts.

use super::bodies::{parse_bulk_delete, parse_ttl_patch, unprocessable};
use super::documents::{list_document, service_user_document, ttl_document};
use super::manage::resources;
use super::ops::ListQuery;
use super::Call;
use crate::rejection::{json_api_response, Rejection};
use crate::store::{Organization, Owner, StoreError, StoredToken, Timestamp, TokenType};
use crate::token::lifecycle;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;

type Answer = Result<Response<Full<Bytes>>, Rejection>;

fn forbidden(detail: &str) -> Rejection {
    Rejection::Denied {
        status: StatusCode::FORBIDDEN,
        detail: detail.to_owned(),
    }
}

/// The organization, when the caller belongs to it (404 otherwise).
async fn own_org(call: &Call<'_>, name: &str) -> Result<Organization, Rejection> {
    Ok(call.op().own_org(name).await?)
}

/// `/api/v2/organizations/{org}/team-tokens`: GET lists the team tokens
/// (paged, `q` by team name, `sort`, `filter[status]`); DELETE deletes the
/// listed ones (all checked first; each deletion is atomic).
pub async fn org_team_tokens(call: &Call<'_>, name: &str) -> Answer {
    if !matches!(*call.method, Method::GET | Method::DELETE) {
        return Err(Rejection::MethodNotAllowed(format!(
            "{} is not supported here; use GET or DELETE",
            call.method
        )));
    }
    if *call.method == Method::DELETE {
        let org = own_org(call, name).await?;
        return bulk_delete(call, &org).await;
    }
    let org = own_org(call, name).await?;
    let query = ListQuery::parse(&call.params)?;
    let page = query.page;
    let tokens: Vec<StoredToken> = call
        .op()
        .team_token_list(&org.name, &query)
        .await?
        .into_iter()
        .map(|(token, _)| token)
        .collect();
    // Only the page's documents are built (each may resolve its creator).
    let start = (page.number - 1)
        .saturating_mul(page.size)
        .min(tokens.len());
    let end = start.saturating_add(page.size).min(tokens.len());
    let mut items = vec![serde_json::Value::Null; tokens.len()];
    for (slot, item) in items[start..end]
        .iter_mut()
        .zip(resources(call, &tokens[start..end]).await?)
    {
        *slot = item;
    }
    let doc = list_document(items, Some(page), call.path);
    Ok(json_api_response(StatusCode::OK, doc.to_string()))
}

async fn bulk_delete(call: &Call<'_>, org: &Organization) -> Answer {
    if !call.caller.manages_some_team_tokens(org, call.rights) {
        return Err(forbidden(
            "you are not authorized to delete this organization's team tokens",
        ));
    }
    let ids = parse_bulk_delete(&call.body)?;
    let mut targets = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let credential = lifecycle::find(call.store, id).await?;
        let manageable = match &credential {
            Some(
                c @ crate::store::Credential {
                    owner:
                        Owner::Team {
                            org: token_org,
                            team_id,
                        },
                    ..
                },
            ) if *token_org == org.name => match call.store.team(team_id).await? {
                Some(team) if call.caller.may_manage_team(org, &team, call.rights) => {
                    Some(c.clone())
                }
                _ => None,
            },
            _ => None,
        };
        let Some(credential) = manageable else {
            return Err(unprocessable(
                format!("`{id}` is not a team token of organization `{}` that you may delete; nothing was deleted", org.name),
                &format!("/data/{i}/id"),
            ));
        };
        if !targets
            .iter()
            .any(|t: &crate::store::Credential| t.token_id == credential.token_id)
        {
            targets.push(credential);
        }
    }
    let actor = call.caller.actor();
    for credential in &targets {
        lifecycle::delete_audited(call.store, credential, &actor).await?;
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `/api/v2/organizations/{org}/token-ttl-policies`: the maximum lifetime
/// of each token type. Owners only (403 for other members, as the API
/// reference answers). A PATCH (or PUT) sets the given types; existing
/// tokens past a new maximum are shortened to it at once, so they stop
/// working when it is reached, on every replica.
pub async fn ttl_policies(call: &Call<'_>, name: &str) -> Answer {
    if !matches!(*call.method, Method::GET | Method::PATCH | Method::PUT) {
        return Err(Rejection::MethodNotAllowed(format!(
            "{} is not supported here; use GET or PATCH",
            call.method
        )));
    }
    let mut org = own_org(call, name).await?;
    if !call.caller.is_owner(&org) {
        return Err(forbidden(
            "only members of the owners team (or its token) manage token lifetimes",
        ));
    }
    if *call.method != Method::GET {
        let changes = parse_ttl_patch(&call.body)?;
        let mut replaced = false;
        for _ in 0..8 {
            let current = org.token_settings.clone();
            let mut new = current.clone();
            for (kind, max) in &changes {
                new.max_ttl_ms.set(*kind, *max);
            }
            new.ttl_updated_at = Some(Timestamp::now());
            if call
                .store
                .replace_token_settings(&org.name, &current, &new)
                .await?
            {
                org.token_settings = new;
                replaced = true;
                break;
            }
            org = own_org(call, name).await?;
        }
        if !replaced {
            return Err(Rejection::StoreUnavailable {
                detail: "the policies changed concurrently; try again".into(),
                cause: "token settings compare-and-set lost eight times".into(),
            });
        }
        shorten_to_policy(call, &org).await?;
    }
    let doc = ttl_document(&org.name, &org.token_settings, org.created_at);
    Ok(json_api_response(StatusCode::OK, doc.to_string()))
}

/// Shortens every token of `org` that outlives its type's maximum.
async fn shorten_to_policy(call: &Call<'_>, org: &Organization) -> Result<(), StoreError> {
    for token in call.store.org_tokens(&org.name).await? {
        let credential = &token.credential;
        let Some(max) = org
            .token_settings
            .max_ttl_ms
            .get(TokenType::of(&credential.owner))
        else {
            continue;
        };
        let latest = credential.created_at.plus_millis(max);
        if credential.expired_at.is_none_or(|at| at > latest) {
            call.store.clamp_expiry(credential, latest).await?;
        }
    }
    Ok(())
}

/// `/api/v2/account/details` for a team or organization token: the
/// synthetic service user.
pub async fn account_details(call: &Call<'_>) -> Answer {
    if *call.method != Method::GET {
        return Err(Rejection::MethodNotAllowed(format!(
            "{} is not supported here; use GET",
            call.method
        )));
    }
    let principal = call.caller.principal;
    let owner = match &principal.team_id {
        Some(team_id) => Owner::Team {
            org: principal.org.clone(),
            team_id: team_id.clone(),
        },
        None => Owner::Org {
            org: principal.org.clone(),
        },
    };
    let doc = service_user_document(&owner, &principal.token_id);
    Ok(json_api_response(StatusCode::OK, doc.to_string()))
}
