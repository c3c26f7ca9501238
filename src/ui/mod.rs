//! The web UI for people, served by the gateway itself under
//! `/_tokengate/ui/` and never forwarded: sign in with a username and a
//! password, see an organization's teams, manage team tokens (the legacy
//! "Team API Token" and described ones) and the organization token.
//!
//! * **Routes** are an `axum` router (a `tower` service), called from the
//!   request path with `oneshot` ([`serve`]); its response body is
//!   collected into the gateway's response. The proxy reaches it only for
//!   paths under [`PREFIX`] ([`is_ui_path`], a prefix compare before
//!   anything else is done with the request), so proxied requests pay one
//!   comparison for it.
//! * **Operations and permission checks** are the token API's own
//!   ([`crate::endpoints::tokens::ops`]): the UI never decides who may do
//!   what by itself, and every change lands in the audit trail with the
//!   signed-in user as the actor.
//! * **Sessions** ([`session`]) are random ids in an `HttpOnly`,
//!   `SameSite=Strict` cookie limited to [`PREFIX`] (so it never reaches the
//!   upstream), `Secure` over TLS, kept in the store under their digest,
//!   with idle and absolute timeouts; signing out deletes them (on every
//!   replica). **CSRF**: `tower-http`'s cross-origin protection
//!   (`Sec-Fetch-Site`/`Origin`) in front of everything, and a per-session
//!   token in every form, compared in constant time.
//! * **Passwords** are argon2id, verified off the async threads behind a
//!   bound; failed sign-ins are throttled per user and per address
//!   (`governor`); a token pasted as a password is refused without being
//!   checked ([`signin`]).
//! * **Pages** are compile-time checked `askama` templates
//!   (`src/ui/templates/`) with embedded CSS and a little JavaScript
//!   ([`assets`]): a copy button, confirmations, local times.

mod actions;
mod assets;
mod form;
mod pages;
pub mod password;
mod session;
mod signin;
mod views;

use crate::body::RequestBody;
use crate::canonical::canonicalize;
use crate::config::{AdminConfig, Argon2Params, UiConfig};
use crate::context::{Decision, RequestContext};
use crate::endpoints::tokens::access::{Caller, Rights};
use crate::endpoints::tokens::ops::{Issuing, OpError, Operator};
use crate::gateway::Gateway;
use crate::store::{Store, StoreError};
use crate::upstream::headers::ClientProto;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use tower::ServiceExt;

/// Where the UI lives; every path below it is the UI's.
pub const PREFIX: &str = "/_tokengate/ui";

/// The rule id recorded for requests the UI serves.
pub const RULE_ID: &str = "ui";

static RULE_LABEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(RULE_ID));

/// Largest form the UI reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Largest page the UI writes (the gateway's response is collected whole).
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// True for the UI's paths, `/_tokengate/ui` and below, as the client
/// wrote them. One prefix compare: the proxy calls it for every request.
/// Other spellings of reserved paths are the admin endpoints' (404 there).
pub fn is_ui_path(path: &str) -> bool {
    path.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Why a UI request could not be served; each becomes a page
/// ([`views::error_response`]), never a stack trace or raw JSON.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Not there, or not the viewer's to see (a forged form gets this too).
    #[error("not found")]
    NotFound,
    /// No valid session: back to the sign-in page, saying why.
    #[error("signed out ({0:?})")]
    SignedOut(session::NoSession),
    /// A form without the session's CSRF token: nothing was changed.
    #[error("the form could not be verified")]
    Csrf,
    /// Input the UI cannot use, said for people.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the token could not be created: {0}")]
    Issue(String),
    #[error("the page could not be rendered: {0}")]
    Render(#[from] askama::Error),
}

impl From<OpError> for UiError {
    fn from(err: OpError) -> Self {
        match err {
            OpError::Hidden | OpError::Forbidden(_) => UiError::NotFound,
            OpError::Store(err) => UiError::Store(err),
            OpError::Issue(crate::token::lifecycle::IssueError::Store(err)) => UiError::Store(err),
            OpError::Issue(err) => UiError::Issue(err.to_string()),
            other => UiError::BadRequest(views::op_message(&other)),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> AxumResponse {
        views::error_response(&self)
    }
}

/// What lives as long as the gateway: the store, the settings that new
/// tokens and sessions follow, the sign-in throttles.
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    issuing: Issuing,
    org_tokens_manage_team_tokens: bool,
    settings: UiConfig,
    argon2: Argon2Params,
    signin: signin::SignIn,
}

impl Shared {
    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// What the gateway knows about the request that the UI needs, put into
/// its extensions by [`serve`].
#[derive(Debug, Clone)]
pub(crate) struct Arrival {
    pub client: SocketAddr,
    /// Cookies are `Secure` (TLS, or `ui.secure_cookies`).
    pub secure: bool,
    /// The admin settings in force (admin teams bound who manages what).
    pub admin: Arc<AdminConfig>,
}

impl Arrival {
    /// The config's rights, for [`Caller`] checks.
    fn rights<'a>(&'a self, shared: &Shared) -> Rights<'a> {
        Rights {
            org_tokens_manage_team_tokens: shared.org_tokens_manage_team_tokens,
            admin_teams: &self.admin.teams,
        }
    }
}

/// A signed-in person's token operations, as the token API's.
pub(crate) fn operator<'a>(
    shared: &'a Shared,
    caller: &'a Caller<'a>,
    rights: &'a Rights<'a>,
) -> Operator<'a> {
    Operator {
        store: shared.store(),
        caller,
        rights,
        issuing: shared.issuing,
    }
}

/// The UI of one gateway: its router, built on the first request.
struct Ui {
    router: Router,
}

impl Ui {
    fn new(gateway: &Gateway) -> Ui {
        let shared = Arc::new(Shared {
            store: gateway.store.clone(),
            issuing: Issuing {
                hashing: gateway.config.hashing,
                default_expiry_ms: gateway.config.token_default_expiry_ms,
            },
            org_tokens_manage_team_tokens: gateway.config.org_tokens_manage_team_tokens,
            settings: gateway.config.ui,
            argon2: gateway.config.hashing.argon2,
            signin: signin::SignIn::new(),
        });
        Ui {
            router: router(shared),
        }
    }

    /// The gateway's UI, made once.
    fn of(gateway: &Gateway) -> Option<Arc<Ui>> {
        gateway
            .ui
            .get_or_init(|| Arc::new(Ui::new(gateway)))
            .clone()
            .downcast::<Ui>()
            .ok()
    }
}

/// Every route of the UI, relative to [`PREFIX`].
fn router(shared: Arc<Shared>) -> Router {
    let routes = Router::new()
        .route("/", get(pages::home))
        .route("/sign-in", post(signin::sign_in))
        .route("/sign-out", post(signin::sign_out))
        .route("/teams", get(pages::teams))
        .route("/teams/{team_id}", get(pages::team))
        .route("/teams/{team_id}/token", post(actions::team_token))
        .route(
            "/teams/{team_id}/token/delete",
            post(actions::delete_team_token),
        )
        .route("/teams/{team_id}/tokens", post(actions::described_token))
        .route(
            "/teams/{team_id}/member-token-management",
            post(actions::member_token_management),
        )
        .route("/tokens", get(pages::team_tokens))
        .route(
            "/tokens/organization",
            get(pages::org_token).post(actions::org_token),
        )
        .route(
            "/tokens/organization/delete",
            post(actions::delete_org_token),
        )
        .route("/tokens/{token_id}/delete", post(actions::delete_token))
        .route("/assets/{file}", get(assets::serve))
        .fallback(|| async { UiError::NotFound })
        .method_not_allowed_fallback(|| async {
            views::error_page(
                StatusCode::METHOD_NOT_ALLOWED,
                "This page does not take that request",
                "Use the links and buttons of the pages.",
            )
        })
        .with_state(shared);
    Router::new()
        .nest(PREFIX, routes)
        .fallback(|| async { UiError::NotFound })
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(tower_http::csrf::CsrfLayer::new())
        .layer(axum::middleware::map_response(views::finish_response))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            views::panic_response,
        ))
}

/// Serves one UI request (`is_ui_path` was true). Never fails: every
/// outcome is a page.
pub async fn serve<B: RequestBody>(
    gateway: &Gateway,
    request: Request<B>,
    ctx: &mut RequestContext,
) -> Response<Full<Bytes>> {
    ctx.record.rule = Some(RULE_LABEL.clone());
    ctx.record.decision = Some(Decision::Served);
    let (mut parts, body) = request.into_parts();
    // One spelling of the path: no dot segments, escapes or doubled
    // slashes reach the routes, and nothing outside the prefix.
    let path = match canonicalize(parts.uri.path()) {
        Ok(path) if is_ui_path(path.as_str()) => path,
        _ => return collect(UiError::NotFound.into_response()).await,
    };
    ctx.facts.path = Some(path.clone());
    if !gateway.config.ui.enabled {
        return collect(views::error_page(
            StatusCode::NOT_FOUND,
            "The web UI is turned off",
            "This gateway is configured with ui.enabled: false.",
        ))
        .await;
    }
    let Some(ui) = Ui::of(gateway) else {
        return collect(views::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The web UI could not start. Nothing was changed.",
        ))
        .await;
    };
    let target = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    match target.parse() {
        Ok(uri) => parts.uri = uri,
        Err(_) => return collect(UiError::NotFound.into_response()).await,
    }
    let secure = gateway.config.ui.secure_cookies
        || ClientProto::of(&parts.extensions) == ClientProto::Https;
    parts.extensions.insert(Arrival {
        client: ctx.facts.client_addr,
        secure,
        admin: gateway.live.admin(),
    });
    let request = Request::from_parts(parts, axum::body::Body::new(body));
    let response = match ui.router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if response.status().is_client_error() || response.status().is_server_error() {
        ctx.record.denial = response.status().canonical_reason().map(str::to_owned);
    }
    collect(response).await
}

/// The UI's response with its body read whole.
async fn collect(response: AxumResponse) -> Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, MAX_PAGE_BYTES).await {
        Ok(bytes) => Response::from_parts(parts, Full::new(bytes)),
        Err(_) => {
            let mut response = Response::new(Full::new(Bytes::from_static(
                b"The page could not be written. Nothing was changed.",
            )));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    }
}
