//! The UI's changes (POST): create, regenerate and delete team tokens and
//! the organization token, add and delete described team tokens, and the
//! owners' switch "allow member token management".
//!
//! Each one: the session's CSRF token first (without it nothing changes),
//! then the token API's own check and operation
//! ([`crate::endpoints::tokens::ops`]; what the caller may not manage is
//! 404, and the refused attempt is audited), then POST-redirect-GET: the
//! new secret is kept with the session for the one page that shows it.
//! Regenerate and delete need `confirmed=yes`, which the confirmation
//! dialog adds; without it (no JavaScript) a confirmation page asks first.

use super::form::Form;
use super::pages::{self, Feedback, Flash, FlashSecret};
use super::session::Signed;
use super::views::{self, ConfirmPage, Field, Layout};
use super::{operator, Arrival, Shared, UiError, PREFIX};
use crate::endpoints::tokens::access::Caller;
use crate::endpoints::tokens::ops::{Intent, OpError, Operator};
use crate::store::{Credential, Organization, Owner, Timestamp};
use crate::token::lifecycle::{ExpiryError, Issued};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use bytes::Bytes;
use std::sync::Arc;

const DAY_MS: u64 = 86_400_000;

/// The sentence every confirmation says.
const STOPS_AT_ONCE: &str = "stops working on the very next request";

/// The expiry a form asks for: `Ok(None)` for the default (never, unless
/// `token_api.default_expiry` says otherwise), a message for people when
/// the form cannot be read. `keep` (regenerate) gives the new token the
/// lifetime the current one had.
fn requested_expiry(
    form: &Form,
    current: Option<&Credential>,
) -> Result<Option<Timestamp>, String> {
    let now = Timestamp::now();
    let days = |n: u64| Ok(Some(now.plus_millis(n * DAY_MS)));
    match form.text("expires") {
        "" | "never" => Ok(None),
        "7" => days(7),
        "30" => days(30),
        "60" => days(60),
        "90" => days(90),
        "365" => days(365),
        "keep" => Ok(current.and_then(|c| {
            let lifetime = c.expired_at?.0.checked_sub(c.created_at.0)?;
            Some(now.plus_millis(u64::try_from(lifetime).ok()?))
        })),
        "date" => {
            let text = form.text("date");
            Timestamp::parse_iso8601(&format!("{text}T00:00:00"))
                .filter(|_| text.len() == 10)
                .map(Some)
                .ok_or_else(|| "Enter the expiration date as a day, such as 2030-01-31.".to_owned())
        }
        _ => Err("Choose an expiration from the list.".to_owned()),
    }
}

/// A person's operations, for one request.
struct Acting<'a> {
    caller: Caller<'a>,
}

impl<'a> Acting<'a> {
    async fn load(shared: &Shared, signed: &'a Signed) -> Result<Acting<'a>, UiError> {
        Ok(Acting {
            caller: Caller::load(shared.store(), &signed.principal).await?,
        })
    }
}

/// Reads the form and checks its CSRF token: without it nothing changes.
fn checked_form(signed: &Signed, body: &Bytes) -> Result<Form, UiError> {
    let form = Form::parse(body);
    signed.check_csrf(&form)?;
    Ok(form)
}

/// The confirmation page of a regenerate or delete sent without
/// `confirmed=yes` (a browser without JavaScript).
#[allow(clippy::too_many_arguments)]
fn confirm(
    signed: &Signed,
    caller: &Caller<'_>,
    org: &Organization,
    title: String,
    text: String,
    action: String,
    button: &str,
    cancel: String,
    form: &Form,
    keep: &[&str],
) -> Response {
    let fields = keep
        .iter()
        .filter_map(|name| {
            form.get(name).map(|value| Field {
                name: (*name).to_owned(),
                value: value.to_owned(),
            })
        })
        .collect();
    views::render(&ConfirmPage {
        layout: Some(Layout {
            user_name: signed.user.name.clone(),
            org: org.name.clone(),
            csrf: signed.session.csrf.clone(),
            is_owner: caller.may_manage_org_token(org),
            section: "teams",
        }),
        csrf: signed.session.csrf.clone(),
        title,
        text,
        action,
        button: button.to_owned(),
        cancel,
        fields,
    })
}

/// Generates a legacy token with the form's expiry; a refused expiry is
/// a message for the page.
async fn generate(
    op: &Operator<'_>,
    owner: Owner,
    org: &Organization,
    form: &Form,
    current: Option<&Credential>,
) -> Result<Result<Issued, String>, UiError> {
    let requested = match requested_expiry(form, current) {
        Ok(requested) => requested,
        Err(message) => return Ok(Err(message)),
    };
    match op.generate_legacy(owner.clone(), org, requested).await {
        Ok(issued) => Ok(Ok(issued)),
        // Regenerate keeps the lifetime; past a newer maximum, the maximum.
        Err(OpError::Expiry(ExpiryError::PastMaximum { .. })) if form.text("expires") == "keep" => {
            Ok(Ok(op.generate_legacy(owner, org, None).await?))
        }
        Err(err @ OpError::Expiry(_)) => Ok(Err(views::op_message(&err))),
        Err(err) => Err(err.into()),
    }
}

/// Keeps the new secret for `page` and redirects there.
async fn show_once(
    shared: &Shared,
    signed: &Signed,
    page: String,
    what: String,
    issued: Issued,
    notice: &str,
    to: String,
) -> Result<Response, UiError> {
    let flash = Flash {
        notice: Some(notice.to_owned()),
        page,
        secret: Some(FlashSecret {
            what,
            token_id: issued.credential.token_id.clone(),
            value: issued.token.secret_token,
        }),
    };
    pages::put_flash(shared, signed, &flash).await?;
    Ok(Redirect::to(&to).into_response())
}

/// Keeps a notice for the next page and redirects there.
async fn tell(
    shared: &Shared,
    signed: &Signed,
    notice: &str,
    to: String,
) -> Result<Response, UiError> {
    let flash = Flash {
        notice: Some(notice.to_owned()),
        ..Flash::default()
    };
    pages::put_flash(shared, signed, &flash).await?;
    Ok(Redirect::to(&to).into_response())
}

/// `POST /teams/{team_id}/token`: create the team's token, or regenerate
/// it (confirmed).
pub async fn team_token(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
    Path(team_id): Path<String>,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = checked_form(&signed, &body)?;
    let acting = Acting::load(&shared, &signed).await?;
    let rights = arrival.rights(&shared);
    let op = operator(&shared, &acting.caller, &rights);
    let (team, org) = op.team(&team_id, Intent::Generate).await?;
    let owner = Owner::Team {
        org: org.name.clone(),
        team_id: team.id.clone(),
    };
    let current = op.legacy_token(&owner).await?.map(|t| t.credential);
    let page = format!("{PREFIX}/teams/{}", team.id);
    if let Some(current) = &current {
        if !form.confirmed() {
            return Ok(confirm(
                &signed,
                &acting.caller,
                &org,
                format!("Regenerate the token of {}?", team.name),
                format!(
                    "The current token {} {STOPS_AT_ONCE}. Anything that uses it needs the new token, which is shown once.",
                    current.token_id
                ),
                page.clone() + "/token",
                "Regenerate",
                page,
                &form,
                &["expires", "date"],
            ));
        }
    }
    match generate(&op, owner, &org, &form, current.as_ref()).await? {
        Ok(issued) => {
            let notice = if current.is_some() {
                "The token was regenerated. The previous token stopped working."
            } else {
                "The team token was created."
            };
            show_once(
                &shared,
                &signed,
                format!("team:{}", team.id),
                format!("token of {}", team.name),
                issued,
                notice,
                format!("{page}#token"),
            )
            .await
        }
        Err(message) => {
            pages::team_page(
                &shared,
                &arrival,
                &signed,
                &team.id,
                Feedback::error(message),
            )
            .await
        }
    }
}

/// `POST /teams/{team_id}/token/delete` (confirmed).
pub async fn delete_team_token(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
    Path(team_id): Path<String>,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = checked_form(&signed, &body)?;
    let acting = Acting::load(&shared, &signed).await?;
    let rights = arrival.rights(&shared);
    let op = operator(&shared, &acting.caller, &rights);
    let (team, org) = op.team(&team_id, Intent::Revoke).await?;
    let owner = Owner::Team {
        org: org.name.clone(),
        team_id: team.id.clone(),
    };
    let page = format!("{PREFIX}/teams/{}", team.id);
    if !form.confirmed() {
        let current = op.legacy_token(&owner).await?;
        let id = current.map_or_else(String::new, |t| t.credential.token_id + " ");
        return Ok(confirm(
            &signed,
            &acting.caller,
            &org,
            format!("Delete the token of {}?", team.name),
            format!("The token {id}{STOPS_AT_ONCE}. This cannot be undone."),
            page.clone() + "/token/delete",
            "Delete",
            page,
            &form,
            &[],
        ));
    }
    let notice = match op.revoke_legacy(&owner).await {
        Ok(_) => "The team token was deleted. It stopped working at once.",
        Err(OpError::Hidden) => "This team has no token (any more).",
        Err(err) => return Err(err.into()),
    };
    tell(&shared, &signed, notice, format!("{page}#token")).await
}

/// `POST /teams/{team_id}/tokens`: a described token of the team.
pub async fn described_token(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
    Path(team_id): Path<String>,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = checked_form(&signed, &body)?;
    let acting = Acting::load(&shared, &signed).await?;
    let rights = arrival.rights(&shared);
    let op = operator(&shared, &acting.caller, &rights);
    let (team, org) = op.team(&team_id, Intent::Generate).await?;
    let refuse = |message: String| {
        let shared = shared.clone();
        let arrival = arrival.clone();
        let team_id = team.id.clone();
        let signed = &signed;
        async move {
            pages::team_page(
                &shared,
                &arrival,
                signed,
                &team_id,
                Feedback::error(message),
            )
            .await
        }
    };
    let description = form.text("description").to_owned();
    if description.is_empty() {
        return refuse("Enter a description for the new token.".to_owned()).await;
    }
    if description.chars().count() > 255 {
        return refuse("The description must be at most 255 characters long.".to_owned()).await;
    }
    let requested = match requested_expiry(&form, None) {
        Ok(requested) => requested,
        Err(message) => return refuse(message).await,
    };
    let issued = match op
        .create_described(&team, &org, description.clone(), requested)
        .await
    {
        Ok(issued) => issued,
        Err(err @ (OpError::Expiry(_) | OpError::DescriptionTaken)) => {
            return refuse(views::op_message(&err)).await
        }
        Err(err) => return Err(err.into()),
    };
    show_once(
        &shared,
        &signed,
        format!("team:{}", team.id),
        format!("token “{description}”"),
        issued,
        "The described token was created. The team's other tokens keep working.",
        format!("{PREFIX}/teams/{}#token", team.id),
    )
    .await
}

/// `POST /tokens/{token_id}/delete` (confirmed): any token the person may
/// manage, by id (described team tokens, the organization list).
pub async fn delete_token(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
    Path(token_id): Path<String>,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = checked_form(&signed, &body)?;
    let acting = Acting::load(&shared, &signed).await?;
    let rights = arrival.rights(&shared);
    let op = operator(&shared, &acting.caller, &rights);
    let credential = op.token(&token_id, Intent::Revoke).await?;
    let back = match (&credential.owner, form.text("back")) {
        (Owner::Team { team_id, .. }, "team") => format!("{PREFIX}/teams/{team_id}#token"),
        (Owner::Org { .. }, _) => format!("{PREFIX}/tokens/organization"),
        _ => format!("{PREFIX}/tokens"),
    };
    if !form.confirmed() {
        let org = pages::own_org(&shared, &signed).await?;
        return Ok(confirm(
            &signed,
            &acting.caller,
            &org,
            "Delete this token?".to_owned(),
            format!(
                "The token {} {STOPS_AT_ONCE}. This cannot be undone.",
                credential.token_id
            ),
            format!("{PREFIX}/tokens/{}/delete", credential.token_id),
            "Delete",
            back,
            &form,
            &["back"],
        ));
    }
    let notice = match op.delete(&credential).await {
        Ok(_) => "The token was deleted. It stopped working at once.",
        Err(OpError::Hidden) => "That token was already gone.",
        Err(err) => return Err(err.into()),
    };
    tell(&shared, &signed, notice, back).await
}

/// `POST /teams/{team_id}/member-token-management`: owners (and
/// manage-teams) turn member token management on (`allow=yes`) or off, as
/// the API's `PATCH /api/v2/teams/{id}` does.
pub async fn member_token_management(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
    Path(team_id): Path<String>,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = checked_form(&signed, &body)?;
    let acting = Acting::load(&shared, &signed).await?;
    let rights = arrival.rights(&shared);
    let op = operator(&shared, &acting.caller, &rights);
    let allowed = form.get("allow") == Some("yes");
    let (team, _) = op.team_settings(&team_id).await?;
    let team = op.set_member_token_management(&team, allowed).await?;
    let notice = if allowed {
        format!("Members of {} now manage its tokens.", team.name)
    } else {
        format!(
            "Only owners now manage the tokens of {} (members no longer do).",
            team.name
        )
    };
    tell(
        &shared,
        &signed,
        &notice,
        format!("{PREFIX}/teams/{}", team.id),
    )
    .await
}

/// `POST /tokens/organization`: create or regenerate (confirmed) the
/// organization token. Owners only.
pub async fn org_token(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = checked_form(&signed, &body)?;
    let acting = Acting::load(&shared, &signed).await?;
    let rights = arrival.rights(&shared);
    let op = operator(&shared, &acting.caller, &rights);
    let org = op.org(&signed.user.organization, Intent::Generate).await?;
    let owner = Owner::Org {
        org: org.name.clone(),
    };
    let current = op.legacy_token(&owner).await?.map(|t| t.credential);
    let page = format!("{PREFIX}/tokens/organization");
    if let Some(current) = &current {
        if !form.confirmed() {
            return Ok(confirm(
                &signed,
                &acting.caller,
                &org,
                "Regenerate the organization token?".to_owned(),
                format!(
                    "The current token {} {STOPS_AT_ONCE}. Anything that uses it needs the new token, which is shown once.",
                    current.token_id
                ),
                page.clone(),
                "Regenerate",
                page,
                &form,
                &["expires", "date"],
            ));
        }
    }
    match generate(&op, owner, &org, &form, current.as_ref()).await? {
        Ok(issued) => {
            let notice = if current.is_some() {
                "The organization token was regenerated. The previous token stopped working."
            } else {
                "The organization token was created."
            };
            show_once(
                &shared,
                &signed,
                "org".to_owned(),
                "organization token".to_owned(),
                issued,
                notice,
                page,
            )
            .await
        }
        Err(message) => {
            pages::org_token_page(&shared, &arrival, &signed, Feedback::error(message)).await
        }
    }
}

/// `POST /tokens/organization/delete` (confirmed). Owners only.
pub async fn delete_org_token(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    signed: Signed,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = checked_form(&signed, &body)?;
    let acting = Acting::load(&shared, &signed).await?;
    let rights = arrival.rights(&shared);
    let op = operator(&shared, &acting.caller, &rights);
    let org = op.org(&signed.user.organization, Intent::Revoke).await?;
    let owner = Owner::Org {
        org: org.name.clone(),
    };
    let page = format!("{PREFIX}/tokens/organization");
    if !form.confirmed() {
        let current = op.legacy_token(&owner).await?;
        let id = current.map_or_else(String::new, |t| t.credential.token_id + " ");
        return Ok(confirm(
            &signed,
            &acting.caller,
            &org,
            "Delete the organization token?".to_owned(),
            format!("The token {id}{STOPS_AT_ONCE}. This cannot be undone."),
            page.clone() + "/delete",
            "Delete",
            page,
            &form,
            &[],
        ));
    }
    let notice = match op.revoke_legacy(&owner).await {
        Ok(_) => "The organization token was deleted. It stopped working at once.",
        Err(OpError::Hidden) => "The organization has no token (any more).",
        Err(err) => return Err(err.into()),
    };
    tell(&shared, &signed, notice, page).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> Form {
        Form::parse(text.as_bytes())
    }

    #[test]
    fn expiry_choices_are_read_for_people() {
        let now = Timestamp::now();
        assert_eq!(requested_expiry(&form(""), None), Ok(None));
        assert_eq!(requested_expiry(&form("expires=never"), None), Ok(None));
        let thirty = requested_expiry(&form("expires=30"), None)
            .unwrap()
            .unwrap();
        assert!((thirty.0 - now.plus_millis(30 * DAY_MS).0).abs() < 5_000);
        assert_eq!(
            requested_expiry(&form("expires=date&date=2031-02-03"), None),
            Ok(Timestamp::parse_rfc3339("2031-02-03T00:00:00Z"))
        );
        for bad in [
            "expires=date&date=",
            "expires=date&date=tomorrow",
            "expires=date&date=2031-02-03T10:00:00",
            "expires=soon",
        ] {
            assert!(requested_expiry(&form(bad), None).is_err(), "{bad}");
        }
    }
}
