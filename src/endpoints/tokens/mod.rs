//! The Terraform-Enterprise-compatible token API, served by the gateway
//! itself and never forwarded (docs/TOKENS.md has the full table):
//!
//! | method | path | |
//! |---|---|---|
//! | POST, GET, DELETE | `/api/v2/teams/{team_id}/authentication-token` | the legacy team token (one per team) |
//! | POST, GET, DELETE | `/api/v2/organizations/{org}/authentication-token` | the organization token; `?token=…` is 404 |
//! | POST, GET | `/api/v2/teams/{team_id}/authentication-tokens` | described team tokens (GET: tokengate's own) |
//! | GET, DELETE | `/api/v2/authentication-tokens/{id}` | any token by id |
//! | GET, DELETE | `/api/v2/organizations/{org}/team-tokens` | list (paged, `q`, `sort`, `filter[status]`), bulk delete |
//! | GET, POST | `/api/v2/users/{user_id}/authentication-tokens` | a user's tokens |
//! | GET, PATCH | `/api/v2/organizations/{org}/token-ttl-policies` | maximum lifetimes |
//! | GET | `/api/v2/account/details` | for service accounts (users' are forwarded) |
//! | PATCH | `/api/v2/teams/{team_id}` with only `allow-member-token-management` | the gateway's switch |
//!
//! Every other path the upstream would route to a token endpoint (agent
//! tokens, format suffixes of unknown shapes) is refused with 404 here
//! ([`routes`]). Who may call what is in [`access`]; anyone else gets 404,
//! as Terraform Enterprise does not reveal what exists, except where its
//! API reference answers 403 (bulk delete, TTL policies).

pub mod access;
pub mod bodies;
pub mod documents;
mod lists;
mod manage;
pub mod ops;
pub mod routes;

pub use routes::{route, Route, Target};

use crate::auth::Principal;
use crate::body::{read_body, RequestBody};
use crate::context::{Decision, RequestContext};
use crate::gateway::Gateway;
use crate::rejection::Rejection;
use crate::store::{PrincipalKind, Store};
use access::{Caller, Rights};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::sync::{Arc, LazyLock};

/// Largest request body the token API reads.
const MAX_BODY: u64 = 64 * 1024;

/// The rule id recorded for requests the token API serves.
pub const RULE_ID: &str = "token-api";

static RULE_LABEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(RULE_ID));

/// What one token API request works with.
pub(crate) struct Call<'a> {
    pub gateway: &'a Gateway,
    pub store: &'a dyn Store,
    pub caller: &'a Caller<'a>,
    pub rights: &'a Rights<'a>,
    pub method: &'a Method,
    pub params: Vec<(String, String)>,
    pub body: Bytes,
    /// The canonical path, for `links`.
    pub path: &'a str,
}

impl Call<'_> {
    /// The caller's token operations ([`ops`]).
    pub(crate) fn op(&self) -> ops::Operator<'_> {
        ops::Operator {
            store: self.store,
            caller: self.caller,
            rights: self.rights,
            issuing: ops::Issuing {
                hashing: self.gateway.config.hashing,
                default_expiry_ms: self.gateway.config.token_default_expiry_ms,
            },
        }
    }
}

/// Serves one token API request. Only an authenticated principal may call
/// it.
pub async fn handle<B: RequestBody>(
    gateway: &Gateway,
    route: Route,
    request: Request<B>,
    ctx: &mut RequestContext,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let Some(principal) = ctx.facts.principal.clone() else {
        return Err(Rejection::Unauthenticated(
            "the token API requires an `Authorization: Bearer <token>` header".into(),
        ));
    };
    ctx.record.rule = Some(RULE_LABEL.clone());
    ctx.record.decision = Some(Decision::Served);
    if let Route::Refused(why) = route {
        return Err(Rejection::Denied {
            status: StatusCode::NOT_FOUND,
            detail: format!("not found: {why}"),
        });
    }
    let (parts, body) = request.into_parts();
    let body = if matches!(parts.method, Method::GET | Method::HEAD) {
        Bytes::new()
    } else {
        read_body(body, MAX_BODY).await?
    };
    let store = gateway.store.as_ref();
    let caller = Caller::load(store, &principal).await?;
    let admin = gateway.live.admin();
    let rights = Rights {
        org_tokens_manage_team_tokens: gateway.config.org_tokens_manage_team_tokens,
        admin_teams: &admin.teams,
    };
    let path = ctx.path().as_str().to_owned();
    let call = Call {
        gateway,
        store,
        caller: &caller,
        rights: &rights,
        method: &parts.method,
        params: routes::query_params(parts.uri.query()),
        body,
        path: &path,
    };
    let mut response = match route {
        Route::LegacyTeam(team_id) => manage::legacy_team(&call, &team_id).await,
        Route::LegacyOrg { org, token_param } => {
            if token_param {
                return Err(Rejection::Denied {
                    status: StatusCode::NOT_FOUND,
                    detail: "not found: tokengate serves no token type other than the organization token (`token=` is not supported)".into(),
                });
            }
            manage::legacy_org(&call, &org).await
        }
        Route::TeamTokens(team_id) => manage::team_tokens(&call, &team_id).await,
        Route::ById(id) => manage::by_id(&call, &id).await,
        Route::UserTokens(user_id) => manage::user_tokens(&call, &user_id).await,
        Route::OrgTeamTokens(org) => lists::org_team_tokens(&call, &org).await,
        Route::TtlPolicies(org) => lists::ttl_policies(&call, &org).await,
        Route::AccountDetails => lists::account_details(&call).await,
        Route::TeamTokenManagement(team_id) => manage::team_token_management(&call, &team_id).await,
        Route::Refused(_) => unreachable!("answered above"),
    }?;
    // An answer may carry a token's secret, shown once: no cache keeps it.
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// Refuses a user token where its organization does not allow user tokens
/// on its resources (organization setting `user-tokens-enabled: false`):
/// 403 for everything but the user's own tokens and account, which stay
/// reachable. Costs one store read, for user tokens only.
pub async fn admit(
    gateway: &Gateway,
    route: Option<&Route>,
    ctx: &mut RequestContext,
) -> Result<(), Rejection> {
    let Some(principal) = ctx.facts.principal.clone() else {
        return Ok(());
    };
    if principal.kind != PrincipalKind::User
        || matches!(
            route,
            Some(Route::UserTokens(_) | Route::ById(_) | Route::Refused(_))
        )
        || is_account_path(ctx.path().as_str())
    {
        return Ok(());
    }
    if user_tokens_enabled(gateway.store.as_ref(), &principal).await? {
        return Ok(());
    }
    ctx.record.rule = Some(RULE_LABEL.clone());
    ctx.record.decision = Some(Decision::Deny);
    Err(user_tokens_disabled(&principal.org))
}

/// Paths a user token may call while its organization refuses user tokens:
/// its account, ping and discovery (any case, with a format suffix).
fn is_account_path(path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    let path = match path.rsplit_once('/') {
        Some((head, last)) if !last.is_empty() => {
            let last = if last.starts_with('.') {
                last.split('.').take(2).collect::<Vec<_>>().join(".")
            } else {
                last.split('.').next().unwrap_or(last).to_owned()
            };
            format!("{head}/{last}")
        }
        _ => path,
    };
    matches!(
        path.as_str(),
        "/api/v2/account/details" | "/api/v2/ping" | "/.well-known/terraform"
    )
}

/// Whether the principal's organization allows user tokens.
pub(crate) async fn user_tokens_enabled(
    store: &dyn Store,
    principal: &Principal,
) -> Result<bool, Rejection> {
    Ok(store
        .org(&principal.org)
        .await?
        .is_none_or(|org| org.token_settings.user_tokens_enabled))
}

pub(crate) fn user_tokens_disabled(org: &str) -> Rejection {
    Rejection::Denied {
        status: StatusCode::FORBIDDEN,
        detail: format!(
            "organization `{org}` does not allow user tokens on its resources (its setting user-tokens-enabled is off); use a team token"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::is_account_path;

    #[test]
    fn account_paths_in_their_spellings() {
        for path in [
            "/api/v2/account/details",
            "/API/V2/Account/Details.json",
            "/api/v2/ping",
            "/.well-known/terraform.json",
        ] {
            assert!(is_account_path(path), "{path}");
        }
        for path in [
            "/api/v2/workspaces",
            "/api/v2/account",
            "/.well-known/x.json",
            "/",
        ] {
            assert!(!is_account_path(path), "{path}");
        }
    }
}
