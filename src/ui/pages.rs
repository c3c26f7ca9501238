//! The UI's pages (GET): the sign-in page, Settings → Teams, a team's
//! page with its Team API Token section, and Settings → API tokens (the
//! organization's team tokens; the organization token for owners).
//!
//! What a page shows is what the token API would answer the viewer: the
//! same checks ([`crate::endpoints::tokens::ops`]) decide whether a
//! team's token section has controls, whether the organization token tab
//! exists, and which team tokens are listed.

use super::session::{self, NoSession, Signed};
use super::views::{
    self, Choice, Layout, Member, Names, OrgTokenPage, Secret, TeamPage, TeamRow, TeamsPage,
    TokensPage,
};
use super::{operator, signin, Arrival, Shared, UiError, PREFIX};
use crate::endpoints::tokens::access::Caller;
use crate::endpoints::tokens::ops::{Intent, ListQuery, OpError};
use crate::endpoints::tokens::routes::query_params;
use crate::store::{Organization, Owner, Timestamp};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How long a shown-once value waits for its page.
const FLASH_MS: u64 = 5 * 60_000;

/// What a page shows once after a change: a notice, and a new token's
/// secret for the page it belongs to. Kept in the store with the session
/// between the POST and the page it redirects to, and taken (deleted) by
/// that page: a reload, the back button or another tab never shows it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Flash {
    pub notice: Option<String>,
    /// The page the secret belongs to: `team:<id>` or `org`.
    pub page: String,
    pub secret: Option<FlashSecret>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FlashSecret {
    pub what: String,
    pub token_id: String,
    pub value: String,
}

/// Keeps `flash` for the session's next page.
pub async fn put_flash(shared: &Shared, signed: &Signed, flash: &Flash) -> Result<(), UiError> {
    let value = serde_json::to_string(flash).unwrap_or_default();
    let until = Timestamp::now().plus_millis(FLASH_MS);
    shared
        .store()
        .put_ui_flash(&signed.key, &value, until)
        .await?;
    Ok(())
}

/// Takes the session's flash: its notice, and its secret when it belongs
/// to `page` (a secret meant for another page is put back for it).
async fn take_flash(
    shared: &Shared,
    signed: &Signed,
    page: &str,
) -> Result<(Option<String>, Option<Secret>), UiError> {
    let Some(text) = shared.store().take_ui_flash(&signed.key).await? else {
        return Ok((None, None));
    };
    let Ok(mut flash) = serde_json::from_str::<Flash>(&text) else {
        return Ok((None, None));
    };
    if flash.secret.is_some() && flash.page != page {
        let notice = flash.notice.take();
        put_flash(shared, signed, &flash).await?;
        return Ok((notice, None));
    }
    let secret = flash.secret.map(|s| Secret {
        what: s.what,
        token_id: s.token_id,
        value: s.value,
    });
    Ok((flash.notice, secret))
}

/// What a page shows besides its facts: a notice, an error, a secret, and
/// the status it is answered with.
pub struct Feedback {
    pub status: StatusCode,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub secret: Option<Secret>,
}

impl Feedback {
    pub fn error(message: String) -> Feedback {
        Feedback {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            notice: None,
            error: Some(message),
            secret: None,
        }
    }
}

/// The signed-in person's organization (it exists while they do).
pub async fn own_org(shared: &Shared, signed: &Signed) -> Result<Organization, UiError> {
    shared
        .store()
        .org(&signed.user.organization)
        .await?
        .ok_or(UiError::NotFound)
}

fn layout(
    signed: &Signed,
    caller: &Caller<'_>,
    org: &Organization,
    section: &'static str,
) -> Layout {
    Layout {
        user_name: signed.user.name.clone(),
        org: org.name.clone(),
        csrf: signed.session.csrf.clone(),
        is_owner: caller.may_manage_org_token(org),
        section,
    }
}

/// `GET /`: the sign-in page, or the teams for a signed-in person.
pub async fn home(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    match session::current(&shared, &headers).await? {
        Ok(_) => Ok(Redirect::to(&format!("{PREFIX}/teams")).into_response()),
        Err(why) => {
            let notice = match query.as_deref() {
                Some("signed-out") => Some("You are signed out."),
                Some("session-ended") => Some("Your session has ended. Sign in again."),
                Some("sign-in") => Some("Sign in to continue."),
                _ if why == NoSession::Ended => Some("Your session has ended. Sign in again."),
                _ => None,
            };
            Ok(signin::page(
                &arrival,
                &headers,
                StatusCode::OK,
                None,
                notice,
                "",
            ))
        }
    }
}

/// `GET /teams`: Settings → Teams.
pub async fn teams(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
) -> Result<Response, UiError> {
    let store = shared.store();
    let org = own_org(&shared, &signed).await?;
    let caller = Caller::load(store, &signed.principal).await?;
    let rights = arrival.rights(&shared);
    let mut rows = Vec::new();
    for team in store.org_teams(&org.name).await? {
        let manageable = caller.may_manage_team(&org, &team, &rights);
        let has_token = manageable
            && crate::token::lifecycle::current(
                store,
                &Owner::Team {
                    org: org.name.clone(),
                    team_id: team.id.clone(),
                },
            )
            .await?
            .is_some();
        rows.push(TeamRow {
            members: store.team_members(&team.id).await?.len(),
            id: team.id,
            name: team.name,
            manageable,
            has_token,
        });
    }
    Ok(views::render(&TeamsPage {
        layout: Some(layout(&signed, &caller, &org, "teams")),
        org: org.name.clone(),
        teams: rows,
    }))
}

/// `GET /teams/{team_id}`: a team's page.
pub async fn team(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
    Path(team_id): Path<String>,
) -> Result<Response, UiError> {
    let (notice, secret) = take_flash(&shared, &signed, &format!("team:{team_id}")).await?;
    let feedback = Feedback {
        status: StatusCode::OK,
        notice,
        error: None,
        secret,
    };
    team_page(&shared, &arrival, &signed, &team_id, feedback).await
}

/// A team's page for the signed-in person: 404 for a team of another
/// organization; the Team API Token section's controls only for those
/// who may manage the team's tokens.
pub async fn team_page(
    shared: &Shared,
    arrival: &Arrival,
    signed: &Signed,
    team_id: &str,
    feedback: Feedback,
) -> Result<Response, UiError> {
    let store = shared.store();
    let org = own_org(shared, signed).await?;
    let team = store
        .team(team_id)
        .await?
        .filter(|t| t.organization == org.name)
        .ok_or(UiError::NotFound)?;
    let caller = Caller::load(store, &signed.principal).await?;
    let rights = arrival.rights(shared);
    let op = operator(shared, &caller, &rights);
    let can_manage = match op.team(&team.id, Intent::Read).await {
        Ok(_) => true,
        Err(OpError::Hidden) => false,
        Err(other) => return Err(other.into()),
    };
    let mut names = Names::default();
    let (mut legacy, mut described) = (None, Vec::new());
    if can_manage {
        let owner = Owner::Team {
            org: org.name.clone(),
            team_id: team.id.clone(),
        };
        if let Some(token) = op.legacy_token(&owner).await? {
            legacy = Some(names.row(store, &token, Some(&team)).await?);
        }
        for token in op.tokens_of(&org.name, |o| *o == owner).await? {
            if token.credential.own_slot {
                described.push(names.row(store, &token, Some(&team)).await?);
            }
        }
    }
    let members = store
        .team_members(&team.id)
        .await?
        .into_iter()
        .map(|user| Member {
            initial: user
                .name
                .chars()
                .next()
                .map(|c| c.to_uppercase().to_string())
                .unwrap_or_default(),
            you: user.id == signed.user.id,
            name: user.name,
        })
        .collect();
    let page = TeamPage {
        layout: Some(layout(signed, &caller, &org, "teams")),
        csrf: signed.session.csrf.clone(),
        can_change_settings: caller.may_change_member_token_management(&org, &team, &rights),
        can_manage,
        team,
        members,
        legacy,
        described,
        secret: feedback.secret,
        notice: feedback.notice,
        error: feedback.error,
    };
    Ok((feedback.status, views::render(&page)).into_response())
}

/// The choices of the status filter, `selected` the one in force.
fn status_options(selected: &str) -> Vec<Choice> {
    [
        ("", "Any status"),
        ("active", "Active"),
        ("expiring_in_7_days", "Expiring in 7 days"),
        ("expiring_in_30_days", "Expiring in 30 days"),
        ("expired", "Expired"),
        ("no_expiration", "No expiration"),
    ]
    .into_iter()
    .map(|(value, label)| Choice {
        value,
        label,
        selected: value == selected,
    })
    .collect()
}

/// The choices of the sort order, `selected` the one in force.
fn sort_options(selected: &str) -> Vec<Choice> {
    [
        ("expired-at", "Expires soonest"),
        ("-created-at", "Newest first"),
        ("created-at", "Oldest first"),
        ("-last-used-at", "Recently used"),
        ("team-name", "Team name"),
        ("created-by", "Created by"),
    ]
    .into_iter()
    .map(|(value, label)| Choice {
        value,
        label,
        selected: value == selected,
    })
    .collect()
}

/// The list's address with its query and page `number`.
fn list_link(params: &[(String, String)], number: usize) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        if key != "page[number]" && !value.is_empty() {
            query.append_pair(key, value);
        }
    }
    query.append_pair("page[number]", &number.to_string());
    format!("{PREFIX}/tokens?{}", query.finish())
}

/// `GET /tokens`: Settings → API tokens → Team tokens: every team token
/// of the organization the person manages, searched by team, filtered by
/// status, sorted and paged (20 a page) with the token API's parameters.
pub async fn team_tokens(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let store = shared.store();
    let org = own_org(&shared, &signed).await?;
    let caller = Caller::load(store, &signed.principal).await?;
    let rights = arrival.rights(&shared);
    let op = operator(&shared, &caller, &rights);
    let (notice, _) = take_flash(&shared, &signed, "tokens").await?;
    let mut params = query_params(query.as_deref());
    let (list, error) = match ListQuery::parse(&params) {
        Ok(list) => (list, None),
        Err(refused) => {
            params.clear();
            (
                ListQuery::parse(&[]).map_err(|_| UiError::NotFound)?,
                Some(format!(
                    "That search could not be used: {refused}. Showing every token."
                )),
            )
        }
    };
    let tokens = op.team_token_list(&org.name, &list).await?;
    let page = list.page;
    let total = tokens.len();
    let pages = total.div_ceil(page.size).max(1);
    let start = (page.number - 1).saturating_mul(page.size).min(total);
    let end = start.saturating_add(page.size).min(total);
    let mut names = Names::default();
    let mut rows = Vec::with_capacity(end - start);
    for (token, team) in &tokens[start..end] {
        rows.push(names.row(store, token, Some(team)).await?);
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let shown = if total == 0 {
        "No tokens".to_owned()
    } else if start >= end {
        format!("Page {} of {pages}: no tokens on this page", page.number)
    } else {
        format!("Showing {}–{end} of {total}", start + 1)
    };
    let page_view = TokensPage {
        layout: Some(layout(&signed, &caller, &org, "tokens")),
        csrf: signed.session.csrf.clone(),
        org: org.name.clone(),
        tab: "team",
        q: get("q").to_owned(),
        status_options: status_options(get("filter[status]")),
        sort_options: sort_options(match get("sort") {
            "" => "expired-at",
            other => other,
        }),
        rows,
        page: page.number,
        pages,
        shown,
        previous: (page.number > 1).then(|| list_link(&params, page.number - 1)),
        next: (end < total).then(|| list_link(&params, page.number + 1)),
        notice,
        error,
    };
    Ok(views::render(&page_view))
}

/// `GET /tokens/organization`: the Organization Token section, for those
/// who may manage the organization token (owners); 404 for anyone else.
pub async fn org_token(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
) -> Result<Response, UiError> {
    let (notice, secret) = take_flash(&shared, &signed, "org").await?;
    let feedback = Feedback {
        status: StatusCode::OK,
        notice,
        error: None,
        secret,
    };
    org_token_page(&shared, &arrival, &signed, feedback).await
}

/// The organization token's page (owners only: 404 otherwise).
pub async fn org_token_page(
    shared: &Shared,
    arrival: &Arrival,
    signed: &Signed,
    feedback: Feedback,
) -> Result<Response, UiError> {
    let store = shared.store();
    let caller = Caller::load(store, &signed.principal).await?;
    let rights = arrival.rights(shared);
    let op = operator(shared, &caller, &rights);
    let org = op.org(&signed.user.organization, Intent::Read).await?;
    let owner = Owner::Org {
        org: org.name.clone(),
    };
    let mut names = Names::default();
    let token = match op.legacy_token(&owner).await? {
        Some(token) => Some(names.row(store, &token, None).await?),
        None => None,
    };
    let page = OrgTokenPage {
        layout: Some(layout(signed, &caller, &org, "tokens")),
        csrf: signed.session.csrf.clone(),
        org: org.name.clone(),
        tab: "organization",
        token,
        secret: feedback.secret,
        notice: feedback.notice,
        error: feedback.error,
    };
    Ok((feedback.status, views::render(&page)).into_response())
}
