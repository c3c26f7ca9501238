//! What the UI's pages show: the `askama` templates (`src/ui/templates/`,
//! checked at compile time, HTML-escaped), the rows and facts they list,
//! error pages, and the headers every UI response carries.

use super::session::NoSession;
use super::{UiError, PREFIX};
use crate::endpoints::tokens::ops::OpError;
use crate::store::{Credential, Owner, Store, StoreError, StoredToken, Team, Timestamp, User};
use crate::token::lifecycle::{self, ExpiryError};
use askama::Template;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use http::{header, HeaderValue, StatusCode};
use std::collections::HashMap;

/// Headers every UI response carries (a page, an asset, a redirect).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers, `Cache-Control: no-store` (no page of the
/// UI is kept by a browser or proxy: some show a secret, all show
/// tokens' facts), and turns any error the framework answered by itself
/// (a form past its size, a method a route does not take, a cross-origin
/// POST refused by `tower-http`) into a page.
pub async fn finish_response(response: Response) -> Response {
    let status = response.status();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let mut response = if (status.is_client_error() || status.is_server_error()) && !is_html {
        let (title, message) = match status {
            StatusCode::FORBIDDEN => (
                "This form could not be verified",
                "It did not come from a page of this site. Nothing was changed.",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "That form is too large",
                "Nothing was changed. Go back and send less.",
            ),
            StatusCode::METHOD_NOT_ALLOWED => (
                "This page does not take that request",
                "Use the links and buttons of the pages.",
            ),
            _ => (
                "Something went wrong",
                "Nothing was changed. Go back and try again.",
            ),
        };
        let mut page = error_page(status, title, message);
        page.headers_mut().extend(
            response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| (header::SET_COOKIE, v.clone())),
        );
        page
    } else {
        response
    };
    let headers = response.headers_mut();
    let set = |headers: &mut http::HeaderMap, name: header::HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(headers, header::CACHE_CONTROL, "no-store");
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    response
}

/// The page for a panic in a handler (`tower-http`'s catch-panic): never
/// the panic's text.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!(target: "tokengate::error", "a web UI handler panicked");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The page failed. Reload it to see what was changed.",
    )
}

/// A page from a template; a template that fails is a 500 page.
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(target: "tokengate::error", error = %err, "a web UI page could not be rendered");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The page could not be shown. Nothing was changed.",
            )
        }
    }
}

/// An error page with `status`.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage {
        layout: None,
        status: status.as_u16(),
        title: title.to_owned(),
        message: message.to_owned(),
    };
    let html = page.render().unwrap_or_else(|_| {
        format!(
            "<!doctype html><title>Error</title><h1>Error {}</h1>",
            status.as_u16()
        )
    });
    (status, Html(html)).into_response()
}

/// The page (or redirect) for a [`UiError`].
pub fn error_response(err: &UiError) -> Response {
    match err {
        UiError::NotFound => error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here, or it is not yours to see or change. Nothing was changed.",
        ),
        UiError::SignedOut(why) => {
            let (flag, jar) = match why {
                NoSession::Absent => ("sign-in", CookieJar::new()),
                NoSession::Ended => (
                    "session-ended",
                    CookieJar::new().add(super::session::removal(
                        super::session::SESSION_COOKIE,
                        false,
                    )),
                ),
            };
            (jar, Redirect::to(&format!("{PREFIX}/?{flag}"))).into_response()
        }
        UiError::Csrf => error_page(
            StatusCode::FORBIDDEN,
            "This form could not be verified",
            "It has no valid security token: it may be from an old page, or it did not come from this site. Nothing was changed. Go back, reload the page and try again.",
        ),
        UiError::BadRequest(message) => {
            error_page(StatusCode::BAD_REQUEST, "That did not work", message)
        }
        UiError::Store(err) => {
            tracing::warn!(target: "tokengate::error", cause = %err, "web UI: the store failed");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The token store is not answering",
                "Try again in a moment. If you were changing a token, reload its page to see whether the change was made.",
            )
        }
        UiError::Issue(cause) => {
            tracing::warn!(target: "tokengate::error", cause = %cause, "web UI: a token could not be created");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The token could not be created",
                "Try again in a moment.",
            )
        }
        UiError::Render(err) => {
            tracing::error!(target: "tokengate::error", error = %err, "a web UI page could not be rendered");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The page could not be shown. Nothing was changed.",
            )
        }
    }
}

/// What to tell a person for an operation's refusal of their input.
pub fn op_message(err: &OpError) -> String {
    match err {
        OpError::Expiry(ExpiryError::InThePast) => {
            "The expiration must be in the future.".to_owned()
        }
        OpError::Expiry(ExpiryError::PastMaximum { kind, max }) => format!(
            "The expiration is later than the organization allows for {kind} tokens: at most {max} from now."
        ),
        OpError::DescriptionTaken => {
            "Another token of this team already has that description.".to_owned()
        }
        OpError::Hidden | OpError::Forbidden(_) => {
            "That is not yours to change.".to_owned()
        }
        OpError::Store(_) | OpError::Issue(_) => {
            "The token store is not answering; try again in a moment.".to_owned()
        }
    }
}

// --- what pages show --------------------------------------------------

/// The frame of a signed-in page.
pub struct Layout {
    pub user_name: String,
    pub org: String,
    pub csrf: String,
    pub is_owner: bool,
    /// `teams` or `tokens`: the current entry of the side navigation.
    pub section: &'static str,
}

/// A time: UTC text (shown without JavaScript, and on hover), the
/// machine-readable value the page's script shows in the viewer's zone.
pub struct Time {
    pub iso: String,
    pub utc: String,
}

impl Time {
    pub fn of(at: Timestamp) -> Time {
        let iso = at.to_rfc3339();
        let utc = format!(
            "{} {} UTC",
            iso.get(..10).unwrap_or(&iso),
            iso.get(11..16).unwrap_or("")
        );
        Time { iso, utc }
    }

    /// `<time>` markup (both values are made here, from a number).
    pub fn html(&self) -> String {
        format!(
            "<time datetime=\"{iso}\" title=\"{utc}\">{utc}</time>",
            iso = self.iso,
            utc = self.utc
        )
    }
}

/// A token's facts, never its secret.
pub struct TokenRow {
    pub id: String,
    pub description: String,
    pub team_id: String,
    pub team_name: String,
    pub created_at: Time,
    pub created_by: String,
    pub last_used: Option<Time>,
    pub expires: Option<Time>,
    pub expired: bool,
    /// Expires within 7 days.
    pub expiring_soon: bool,
}

/// Names for `created-by` values, read once per page.
#[derive(Default)]
pub struct Names {
    users: HashMap<String, Option<User>>,
    teams: HashMap<String, Option<Team>>,
}

impl Names {
    /// Who created a token, for people: a user's name, a team's token, the
    /// organization token, or "—" when not known.
    pub async fn creator(
        &mut self,
        store: &dyn Store,
        credential: &Credential,
    ) -> Result<String, StoreError> {
        let Some(creator) = credential.created_by.as_deref() else {
            return Ok("—".to_owned());
        };
        if creator.starts_with("user-") {
            return Ok(self
                .user(store, creator)
                .await?
                .map_or_else(|| "a deleted user".to_owned(), |u| u.name));
        }
        if creator.starts_with("team-") {
            return Ok(self.team(store, creator).await?.map_or_else(
                || "a team's token".to_owned(),
                |t| format!("{} team token", t.name),
            ));
        }
        if creator.starts_with("org:") {
            return Ok("the organization token".to_owned());
        }
        // Older records name the creating token: its slot tells whose.
        let owner = match lifecycle::slot_of_token_id(creator) {
            Some(slot) => store.credential(slot).await?.map(|c| c.owner),
            None => None,
        };
        Ok(match owner {
            Some(Owner::User { user_id, .. }) => self
                .user(store, &user_id)
                .await?
                .map_or_else(|| "a user".to_owned(), |u| u.name),
            Some(Owner::Team { team_id, .. }) => self.team(store, &team_id).await?.map_or_else(
                || "a team's token".to_owned(),
                |t| format!("{} team token", t.name),
            ),
            Some(Owner::Org { .. }) => "the organization token".to_owned(),
            None => "—".to_owned(),
        })
    }

    async fn user(&mut self, store: &dyn Store, id: &str) -> Result<Option<User>, StoreError> {
        if !self.users.contains_key(id) {
            let user = store.user(id).await?;
            self.users.insert(id.to_owned(), user);
        }
        Ok(self.users.get(id).cloned().flatten())
    }

    pub async fn team(&mut self, store: &dyn Store, id: &str) -> Result<Option<Team>, StoreError> {
        if !self.teams.contains_key(id) {
            let team = store.team(id).await?;
            self.teams.insert(id.to_owned(), team);
        }
        Ok(self.teams.get(id).cloned().flatten())
    }

    /// A stored token as a row.
    pub async fn row(
        &mut self,
        store: &dyn Store,
        token: &StoredToken,
        team: Option<&Team>,
    ) -> Result<TokenRow, StoreError> {
        let credential = &token.credential;
        let now = Timestamp::now();
        let expired = credential.is_expired(now);
        Ok(TokenRow {
            id: credential.token_id.clone(),
            description: credential.description.clone().unwrap_or_default(),
            team_id: team.map(|t| t.id.clone()).unwrap_or_default(),
            team_name: team.map(|t| t.name.clone()).unwrap_or_default(),
            created_at: Time::of(credential.created_at),
            created_by: self.creator(store, credential).await?,
            last_used: token.last_used.map(Time::of),
            expires: credential.expired_at.map(Time::of),
            expired,
            expiring_soon: !expired
                && credential
                    .expired_at
                    .is_some_and(|at| at <= now.plus_millis(7 * 86_400_000)),
        })
    }
}

/// A new token's secret, shown once.
pub struct Secret {
    /// "team token", "organization token", "token “CI”".
    pub what: String,
    pub token_id: String,
    pub value: String,
}

/// A member of a team.
pub struct Member {
    pub name: String,
    pub initial: String,
    pub you: bool,
}

/// A team in the list of teams.
pub struct TeamRow {
    pub id: String,
    pub name: String,
    pub members: usize,
    pub manageable: bool,
    pub has_token: bool,
}

/// An option of a select.
pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// A hidden field of a confirmation form.
pub struct Field {
    pub name: String,
    pub value: String,
}

// --- the templates ----------------------------------------------------

#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    pub layout: Option<Layout>,
    pub error: Option<String>,
    pub notice: Option<String>,
    pub username: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "teams.html")]
pub struct TeamsPage {
    pub layout: Option<Layout>,
    pub org: String,
    pub teams: Vec<TeamRow>,
}

#[derive(Template)]
#[template(path = "team.html")]
pub struct TeamPage {
    pub layout: Option<Layout>,
    pub csrf: String,
    pub team: Team,
    pub members: Vec<Member>,
    /// May turn member token management on or off (owners, manage-teams).
    pub can_change_settings: bool,
    pub can_manage: bool,
    pub legacy: Option<TokenRow>,
    pub described: Vec<TokenRow>,
    pub secret: Option<Secret>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    pub layout: Option<Layout>,
    pub csrf: String,
    pub org: String,
    pub tab: &'static str,
    pub q: String,
    pub status_options: Vec<Choice>,
    pub sort_options: Vec<Choice>,
    pub rows: Vec<TokenRow>,
    pub page: usize,
    pub pages: usize,
    pub shown: String,
    pub previous: Option<String>,
    pub next: Option<String>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "org_token.html")]
pub struct OrgTokenPage {
    pub layout: Option<Layout>,
    pub csrf: String,
    pub org: String,
    pub tab: &'static str,
    pub token: Option<TokenRow>,
    pub secret: Option<Secret>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub layout: Option<Layout>,
    pub csrf: String,
    pub title: String,
    pub text: String,
    pub action: String,
    pub button: String,
    pub cancel: String,
    pub fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Option<Layout>,
    pub status: u16,
    pub title: String,
    pub message: String,
}
