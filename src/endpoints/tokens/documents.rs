//! The JSON:API documents the token endpoints answer with, in Terraform
//! Enterprise's shapes: a token (`authentication-tokens`), a page of tokens
//! with TFE's pagination meta, the TTL policies, and the synthetic service
//! user of `account/details`.

use crate::store::{Credential, Owner, Store, StoreError, Timestamp, TokenSettings, TokenType};
use crate::token::lifecycle;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The `created-by` relationship data of a token: `users`, `teams` or
/// `organizations`, the types clients understand. Records written before
/// creators were kept by kind name the creating token (`at-…`): its slot
/// still tells whose it was, while the slot holds a token.
pub async fn created_by(store: &dyn Store, credential: &Credential) -> Result<Value, StoreError> {
    let Some(creator) = credential.created_by.as_deref() else {
        return Ok(Value::Null);
    };
    if creator.starts_with("user-") {
        return Ok(json!({"id": creator, "type": "users"}));
    }
    if creator.starts_with("team-") {
        return Ok(json!({"id": creator, "type": "teams"}));
    }
    if let Some(org) = creator.strip_prefix("org:") {
        return Ok(json!({"id": org, "type": "organizations"}));
    }
    let Some(slot) = lifecycle::slot_of_token_id(creator) else {
        return Ok(Value::Null);
    };
    Ok(match store.credential(slot).await?.map(|c| c.owner) {
        Some(Owner::Team { team_id, .. }) => json!({"id": team_id, "type": "teams"}),
        Some(Owner::Org { org }) => json!({"id": org, "type": "organizations"}),
        Some(Owner::User { user_id, .. }) => json!({"id": user_id, "type": "users"}),
        None => Value::Null,
    })
}

/// The resource object of a token; the secret only when just created.
pub fn token_resource(
    credential: &Credential,
    secret: Option<&str>,
    last_used: Option<Timestamp>,
    created_by: Value,
) -> Value {
    let mut relationships = Map::new();
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
    relationships.insert("created-by".into(), json!({ "data": created_by }));
    json!({
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
        "links": {"self": format!("/api/v2/authentication-tokens/{}", credential.token_id)},
    })
}

/// `{"data": …}` of one token, with its `created-by` resolved.
pub async fn token_document(
    store: &dyn Store,
    credential: &Credential,
    secret: Option<&str>,
    last_used: Option<Timestamp>,
) -> Result<Value, StoreError> {
    let creator = created_by(store, credential).await?;
    Ok(json!({ "data": token_resource(credential, secret, last_used, creator) }))
}

/// Which page of a list to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: usize,
    pub size: usize,
}

impl Page {
    /// Terraform Enterprise's default page: the first, of 20.
    pub const DEFAULT: Page = Page {
        number: 1,
        size: 20,
    };
    /// The largest page Terraform Enterprise serves.
    pub const MAX_SIZE: usize = 100;
}

/// A list document. With a page: that page, `links` and TFE's
/// `meta.pagination`; without one (endpoints that are not paginated unless
/// asked): every item.
pub fn list_document(items: Vec<Value>, page: Option<Page>, self_path: &str) -> Value {
    let Some(page) = page else {
        return json!({ "data": items });
    };
    let total = items.len();
    let total_pages = total.div_ceil(page.size).max(1);
    let data: Vec<Value> = items
        .into_iter()
        .skip((page.number - 1).saturating_mul(page.size))
        .take(page.size)
        .collect();
    let link = |n: usize| {
        format!(
            "{self_path}?page%5Bnumber%5D={n}&page%5Bsize%5D={}",
            page.size
        )
    };
    let prev = (page.number > 1).then(|| page.number - 1);
    let next = (page.number < total_pages).then(|| page.number + 1);
    json!({
        "data": data,
        "links": {
            "self": link(page.number),
            "first": link(1),
            "prev": prev.map(link),
            "next": next.map(link),
            "last": link(total_pages),
        },
        "meta": {"pagination": {
            "current-page": page.number,
            "page-size": page.size,
            "prev-page": prev,
            "next-page": next,
            "total-pages": total_pages,
            "total-count": total,
        }},
    })
}

/// The TTL policies of an organization, one resource per token type
/// (`max-ttl-ms` is `null` where no maximum is set).
pub fn ttl_document(org: &str, settings: &TokenSettings, created_at: Timestamp) -> Value {
    let updated = settings.ttl_updated_at.unwrap_or(created_at).to_rfc3339();
    let data: Vec<Value> = TokenType::ALL
        .into_iter()
        .map(|kind| {
            json!({
                "id": format!("ttl-{org}-{}", kind.as_str()),
                "type": "organization-token-ttl-policies",
                "attributes": {
                    "token-type": kind.as_str(),
                    "max-ttl-ms": settings.max_ttl_ms.get(kind),
                    "created-at": created_at.to_rfc3339(),
                    "updated-at": updated,
                },
                "relationships": {
                    "organization": {"data": {"id": org, "type": "organizations"}},
                },
            })
        })
        .collect();
    json!({ "data": data })
}

/// A stable `user-…` id for the synthetic user of a service account.
fn service_user_id(owner_description: &str) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(format!("service-user:{owner_description}").as_bytes());
    let id: String = digest
        .iter()
        .take(16)
        .map(|b| ALPHABET[usize::from(*b) % 62] as char)
        .collect();
    format!("user-{id}")
}

/// `account/details` for a service account: the synthetic service user
/// Terraform Enterprise answers with (`is-service-account: true`), whose
/// `authenticated-resource` is its team or organization.
pub fn service_user_document(owner: &Owner, token_id: &str) -> Value {
    let (username, resource, related) = match owner {
        Owner::Team { team_id, .. } => (
            format!("api-team_{}", team_id.trim_start_matches("team-")),
            json!({"id": team_id, "type": "teams"}),
            format!("/api/v2/teams/{team_id}"),
        ),
        Owner::Org { org } => (
            format!("api-org-{org}"),
            json!({"id": org, "type": "organizations"}),
            format!("/api/v2/organizations/{org}"),
        ),
        Owner::User { user_id, .. } => (
            user_id.clone(),
            json!({"id": user_id, "type": "users"}),
            format!("/api/v2/users/{user_id}"),
        ),
    };
    let id = service_user_id(&owner.describe());
    json!({"data": {
        "id": id,
        "type": "users",
        "attributes": {
            "username": username,
            "is-service-account": true,
            "auth-method": "tfc",
            "avatar-url": null,
            "v2-only": true,
            "is-admin": false,
            "is-site-admin": false,
            "is-sso-login": false,
            "email": null,
            "unconfirmed-email": null,
            "two-factor": {"enabled": false, "verified": false},
            "permissions": {
                "can-create-organizations": false,
                "can-change-email": false,
                "can-change-username": false,
                "can-manage-user-tokens": false,
            },
        },
        "relationships": {
            "authenticated-resource": {"data": resource, "links": {"related": related}},
        },
        "links": {
            "self": format!("/api/v2/users/{id}"),
            "auth-token": format!("/api/v2/authentication-tokens/{token_id}"),
        },
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_tfe_pagination_meta() {
        let items: Vec<Value> = (0..21).map(|i| json!(i)).collect();
        let doc = list_document(items.clone(), Some(Page::DEFAULT), "/x");
        assert_eq!(doc["data"].as_array().unwrap().len(), 20);
        let meta = &doc["meta"]["pagination"];
        assert_eq!(meta["current-page"], 1);
        assert_eq!(meta["next-page"], 2);
        assert_eq!(meta["prev-page"], Value::Null);
        assert_eq!(meta["total-pages"], 2);
        assert_eq!(meta["total-count"], 21);
        let second = list_document(
            items,
            Some(Page {
                number: 2,
                size: 20,
            }),
            "/x",
        );
        assert_eq!(second["data"], json!([20]));
        assert_eq!(second["meta"]["pagination"]["next-page"], Value::Null);
        let empty = list_document(Vec::new(), Some(Page::DEFAULT), "/x");
        assert_eq!(empty["meta"]["pagination"]["total-pages"], 1);
        assert_eq!(
            list_document(vec![json!(1)], None, "/x"),
            json!({"data": [1]})
        );
    }

    #[test]
    fn service_users_are_stable_and_point_at_their_resource() {
        let owner = Owner::Team {
            org: "acme".into(),
            team_id: "team-abc".into(),
        };
        let a = service_user_document(&owner, "at-x");
        let b = service_user_document(&owner, "at-y");
        assert_eq!(a["data"]["id"], b["data"]["id"]);
        assert!(a["data"]["id"].as_str().unwrap().starts_with("user-"));
        assert_eq!(a["data"]["attributes"]["is-service-account"], true);
        assert_eq!(
            a["data"]["relationships"]["authenticated-resource"]["data"]["type"],
            "teams"
        );
    }
}
