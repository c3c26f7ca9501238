//! Signing in and out.
//!
//! Sign-in takes a username (the sign-in name: the user's name, any case)
//! and a password, checked against the argon2id hash kept by
//! `tokengate user set-password`. The check runs on a blocking thread,
//! at most [`MAX_CONCURRENT_VERIFIES`] at a time; an unknown name costs
//! the same check (against a stand-in hash), so timing does not tell
//! which names exist. Failed sign-ins are throttled with `governor`, per
//! sign-in name and per client address (this process's count; each
//! replica counts its own): past the burst, the name or address waits
//! before its next try, and no password is checked meanwhile.
//!
//! **Service accounts cannot be used interactively**: a token pasted into
//! either field is refused before anything else (it is never checked,
//! stored, logged or counted as a password).

use super::form::Form;
use super::session::{self, NoSession, Signed, SESSION_COOKIE, SIGNIN_COOKIE};
use super::views::{self, SignInPage};
use super::{password, Arrival, Shared, UiError, PREFIX};
use crate::store::audit::{self, AuditEvent};
use crate::store::Login;
use crate::token_format::PresentedToken;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use axum_extra::extract::cookie::CookieJar;
use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::StatusCode;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Password checks running at once (each is tens of milliseconds of CPU).
pub const MAX_CONCURRENT_VERIFIES: usize = 2;

/// The sentence shown when a token is pasted into the sign-in form.
pub const SERVICE_ACCOUNTS_REFUSED: &str = "Service accounts cannot be used interactively: a team or organization token cannot sign in here. Sign in with your username and password; tokens are for API calls.";

const WRONG: &str = "The username or password is not correct.";

fn per_minute(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Failed sign-ins per sign-in name: 5 at once, then one every 20 s.
fn user_quota() -> Quota {
    Quota::per_minute(per_minute(3)).allow_burst(per_minute(5))
}

/// Failed sign-ins per client address: 20 at once, then one every 3 s.
fn address_quota() -> Quota {
    Quota::per_minute(per_minute(20)).allow_burst(per_minute(20))
}

/// Most names or addresses remembered as waiting.
const MAX_WAITING: u64 = 100_000;

/// The throttle of failed sign-ins and the bound on password checks.
pub struct SignIn {
    users: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    /// Names and addresses past their quota, until when they wait.
    waiting_users: moka::sync::Cache<String, Instant>,
    waiting_addresses: moka::sync::Cache<IpAddr, Instant>,
    verifies: Semaphore,
    /// A hash to check unknown names against, made on first need.
    stand_in: OnceLock<String>,
}

fn waiting_cache<K: std::hash::Hash + Eq + Send + Sync + 'static>() -> moka::sync::Cache<K, Instant>
{
    moka::sync::Cache::builder()
        .max_capacity(MAX_WAITING)
        .time_to_live(Duration::from_secs(15 * 60))
        .build()
}

impl SignIn {
    pub fn new() -> SignIn {
        SignIn {
            users: RateLimiter::keyed(user_quota()),
            addresses: RateLimiter::keyed(address_quota()),
            waiting_users: waiting_cache(),
            waiting_addresses: waiting_cache(),
            verifies: Semaphore::new(MAX_CONCURRENT_VERIFIES),
            stand_in: OnceLock::new(),
        }
    }

    /// How long `name` or `address` must still wait, if either must.
    pub fn waiting(&self, name: &str, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let left = |until: Option<Instant>| until.and_then(|u| u.checked_duration_since(now));
        let user = left(self.waiting_users.get(name));
        let addr = left(self.waiting_addresses.get(&address));
        user.max(addr).filter(|d| !d.is_zero())
    }

    /// Counts a failed sign-in of `name` from `address`.
    pub fn failed(&self, name: &str, address: IpAddr) {
        let clock = DefaultClock::default();
        if let Err(not_until) = self.users.check_key(&name.to_owned()) {
            let wait = not_until.wait_time_from(clock.now());
            self.waiting_users
                .insert(name.to_owned(), Instant::now() + wait);
        }
        if let Err(not_until) = self.addresses.check_key(&address) {
            let wait = not_until.wait_time_from(clock.now());
            self.waiting_addresses
                .insert(address, Instant::now() + wait);
        }
        // Forget names and addresses whose quota is whole again.
        if self.users.len() > 10_000 {
            self.users.retain_recent();
        }
        if self.addresses.len() > 10_000 {
            self.addresses.retain_recent();
        }
    }
}

/// Checks `password` against `login` (or a stand-in hash when there is no
/// such sign-in) on a blocking thread, within the bound.
async fn verify(shared: &Shared, login: Option<&Login>, password: String) -> bool {
    let Ok(_slot) = shared.signin.verifies.acquire().await else {
        return false;
    };
    let (hash, real) = match login {
        Some(login) => (login.password_hash.clone(), true),
        None => {
            let params = shared.argon2;
            let stand_in = shared.signin.stand_in.get().cloned();
            let stand_in = match stand_in {
                Some(hash) => hash,
                None => {
                    let made = tokio::task::spawn_blocking(move || {
                        crate::token::secret_hash::hash_password("stand-in", params)
                    })
                    .await;
                    match made {
                        Ok(Ok(hash)) => shared.signin.stand_in.get_or_init(|| hash).clone(),
                        _ => return false,
                    }
                }
            };
            (stand_in, false)
        }
    };
    let matched = tokio::task::spawn_blocking(move || password::verify(&password, &hash))
        .await
        .unwrap_or(false);
    matched && real
}

/// The sign-in page, with the form's own CSRF cookie set when missing.
pub fn page(
    arrival: &Arrival,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    notice: Option<&str>,
    username: &str,
) -> Response {
    let existing =
        session::cookie_value(headers, SIGNIN_COOKIE).filter(|token| session::well_formed(token));
    let (csrf, jar) = match existing {
        Some(token) => (token, CookieJar::new()),
        None => {
            let token = session::new_secret();
            let jar = CookieJar::new().add(session::cookie(
                SIGNIN_COOKIE,
                token.clone(),
                arrival.secure,
            ));
            (token, jar)
        }
    };
    let page = SignInPage {
        layout: None,
        error: error.map(str::to_owned),
        notice: notice.map(str::to_owned),
        username: username.to_owned(),
        csrf,
    };
    (status, jar, views::render(&page)).into_response()
}

/// `POST /sign-in`.
pub async fn sign_in(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = Form::parse(&body);
    let username = form.text("username");
    let password = form.get("password").unwrap_or("");
    let refuse = |status: StatusCode, error: &str, username: &str| {
        Ok(page(
            &arrival,
            &headers,
            status,
            Some(error),
            None,
            username,
        ))
    };
    let expected = session::cookie_value(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if !session::tokens_match(&expected, form.get("csrf")) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This sign-in form could not be verified (it expired, or your browser does not keep cookies). Try again.",
            username,
        );
    }
    if password::looks_like_token(password) || password::looks_like_token(username) {
        let shown = [password, username]
            .iter()
            .find_map(|text| PresentedToken::parse(text.trim()).ok())
            .map(|token| token.public_id());
        tracing::warn!(
            client = %arrival.client.ip(),
            token_id = shown.as_deref().unwrap_or("-"),
            "a token was pasted into the sign-in form; refused (service accounts cannot be used interactively)"
        );
        shared.signin.failed("", arrival.client.ip());
        return refuse(StatusCode::FORBIDDEN, SERVICE_ACCOUNTS_REFUSED, "");
    }
    if username.is_empty() || password.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Enter your username and your password.",
            username,
        );
    }
    let name = username.to_ascii_lowercase();
    let address = arrival.client.ip();
    if let Some(wait) = shared.signin.waiting(&name, address) {
        let seconds = wait.as_secs().max(1);
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed sign-ins. Wait {seconds} seconds, then try again."),
            username,
        );
    }
    let login = shared.store().login(&name).await?;
    let user = match &login {
        Some(login) => shared.store().user(&login.user_id).await?,
        None => None,
    };
    let matched = verify(&shared, login.as_ref(), password.to_owned()).await;
    let Some(user) = user.filter(|_| matched) else {
        shared.signin.failed(&name, address);
        if let Some(login) = &login {
            if let Some(user) = shared.store().user(&login.user_id).await? {
                let event = AuditEvent::new(
                    &user.organization,
                    "anonymous",
                    "sign_in_refused",
                    &format!("user:{}", user.id),
                    None,
                );
                audit::record(shared.store(), event).await;
            }
        }
        return refuse(StatusCode::UNAUTHORIZED, WRONG, username);
    };
    // A session of its own, never one the browser brought (no fixation).
    if let Some(old) = session::cookie_value(&headers, SESSION_COOKIE) {
        shared
            .store()
            .delete_ui_session(&session::key_of(&old))
            .await?;
    }
    let id = session::new_secret();
    let record = session::new_session(&shared, &user.id);
    shared
        .store()
        .put_ui_session(&session::key_of(&id), &record)
        .await?;
    let event = AuditEvent::new(
        &user.organization,
        &user.id,
        "sign_in",
        &format!("user:{}", user.id),
        None,
    );
    audit::record(shared.store(), event).await;
    let jar = CookieJar::new()
        .add(session::cookie(SESSION_COOKIE, id, arrival.secure))
        .add(session::removal(SIGNIN_COOKIE, arrival.secure));
    Ok((jar, Redirect::to(&format!("{PREFIX}/teams"))).into_response())
}

/// `POST /sign-out`: ends this session (`everywhere=yes`: every session
/// of the user) in the store, and deletes the cookie.
pub async fn sign_out(
    State(shared): State<Arc<Shared>>,
    Extension(arrival): Extension<Arrival>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let signed = match session::current(&shared, &headers).await? {
        Ok(signed) => signed,
        // Already signed out: say so.
        Err(NoSession::Absent | NoSession::Ended) => return Ok(signed_out(&arrival)),
    };
    let form = Form::parse(&body);
    signed.check_csrf(&form)?;
    let everywhere = form.get("everywhere") == Some("yes");
    let action = if everywhere {
        shared
            .store()
            .delete_user_ui_sessions(&signed.user.id)
            .await?;
        "sign_out_everywhere"
    } else {
        shared.store().delete_ui_session(&signed.key).await?;
        "sign_out"
    };
    let Signed { user, .. } = signed;
    let event = AuditEvent::new(
        &user.organization,
        &user.id,
        action,
        &format!("user:{}", user.id),
        None,
    );
    audit::record(shared.store(), event).await;
    Ok(signed_out(&arrival))
}

/// To the sign-in page, saying the person is signed out; the cookie goes.
fn signed_out(arrival: &Arrival) -> Response {
    let jar = CookieJar::new().add(session::removal(SESSION_COOKIE, arrival.secure));
    (jar, Redirect::to(&format!("{PREFIX}/?signed-out"))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_burst_make_a_name_wait() {
        let signin = SignIn::new();
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(signin.waiting("alice", address), None);
            signin.failed("alice", address);
        }
        signin.failed("alice", address);
        let wait = signin.waiting("alice", address).expect("alice waits");
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        // Another name from another address does not wait.
        assert_eq!(signin.waiting("bob", "192.0.2.2".parse().unwrap()), None);
    }

    #[test]
    fn failures_past_the_burst_make_an_address_wait() {
        let signin = SignIn::new();
        let address: IpAddr = "192.0.2.9".parse().unwrap();
        for n in 0..21 {
            signin.failed(&format!("name{n}"), address);
        }
        assert!(signin.waiting("somebody-else", address).is_some());
        assert_eq!(
            signin.waiting("somebody-else", "192.0.2.10".parse().unwrap()),
            None
        );
    }
}
