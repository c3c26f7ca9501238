//! Sessions of signed-in people and the CSRF tokens of their forms.
//!
//! * The session cookie (`tg_session`) carries a random id: 43 base62
//!   characters (~256 bits) from the OS CSPRNG. The store keeps the
//!   session under the SHA-256 digest of the id ([`key_of`]), so the store's
//!   contents cannot be replayed as cookies.
//! * The cookie is `HttpOnly`, `SameSite=Strict`, limited to `Path=`
//!   [`PREFIX`] (it is never sent to a proxied path, so never upstream),
//!   `Secure` when the connection is TLS or `ui.secure_cookies` is set, and
//!   has no `Max-Age` (the browser drops it when it closes).
//! * A session ends `ui.session_idle_timeout_s` after its last use and
//!   `ui.session_max_age_s` after sign-in, whichever comes first; the store
//!   drops it then. Its last use is written at most once a minute.
//! * Signing out deletes it from the store: the next request with the
//!   cookie is signed out, on every replica sharing the store.
//! * Every form carries the session's CSRF token (random, stored with the
//!   session), compared in constant time; the sign-in form, before any
//!   session, carries a token that must match its own cookie (`tg_signin`).

use super::form::Form;
use super::{Shared, UiError, PREFIX};
use crate::auth::Principal;
use crate::store::{PrincipalKind, Timestamp, UiSession, User};
use crate::token_format::random_string;
use axum::extract::FromRequestParts;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use http::request::Parts;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The session cookie.
pub const SESSION_COOKIE: &str = "tg_session";
/// The sign-in form's own CSRF cookie.
pub const SIGNIN_COOKIE: &str = "tg_signin";
/// Length of session ids and CSRF tokens (base62, ~256 bits).
const SECRET_LEN: usize = 43;
/// A session's last use is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A fresh random session id or CSRF token.
pub fn new_secret() -> String {
    random_string(SECRET_LEN)
}

/// The store key of a session id: its SHA-256 digest, in hex.
pub fn key_of(id: &str) -> String {
    format!("{:x}", Sha256::digest(id.as_bytes()))
}

/// True for something shaped like [`new_secret`]'s output.
pub fn well_formed(secret: &str) -> bool {
    secret.len() == SECRET_LEN && secret.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Constant-time comparison of a submitted token with the expected one.
pub fn tokens_match(expected: &str, given: Option<&str>) -> bool {
    match given {
        Some(given) if well_formed(expected) => expected.as_bytes().ct_eq(given.as_bytes()).into(),
        _ => false,
    }
}

/// A cookie of the UI: `HttpOnly`, `SameSite=Strict`, `Path=/_tokengate/ui`.
pub fn cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path(PREFIX)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
}

/// A cookie that deletes the UI's cookie `name` in the browser.
pub fn removal(name: &'static str, secure: bool) -> Cookie<'static> {
    let mut cookie = cookie(name, String::new(), secure);
    cookie.make_removal();
    cookie
}

/// The value of the UI's cookie `name` in a request.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(name)
        .map(|c| c.value().to_owned())
}

/// A session's expiry: the earlier of its idle and absolute ends.
pub fn expiry(shared: &Shared, created_at: Timestamp, last_seen: Timestamp) -> Timestamp {
    let idle = last_seen.plus_millis(shared.settings.idle_timeout.as_millis() as u64);
    let absolute = created_at.plus_millis(shared.settings.max_age.as_millis() as u64);
    idle.min(absolute)
}

/// A new session for `user_id`, signed in now.
pub fn new_session(shared: &Shared, user_id: &str) -> UiSession {
    let now = Timestamp::now();
    UiSession {
        user_id: user_id.to_owned(),
        created_at: now,
        last_seen: now,
        expires_at: expiry(shared, now, now),
        csrf: new_secret(),
    }
}

/// A signed-in person, from a valid session.
pub struct Signed {
    /// The store key of the session.
    pub key: String,
    pub session: UiSession,
    pub user: User,
    /// The person as the token operations see a caller: a user of their
    /// organization (no token; the audit trail names the user).
    pub principal: Principal,
}

impl Signed {
    /// Refuses a form without the session's CSRF token: nothing changes.
    pub fn check_csrf(&self, form: &Form) -> Result<(), UiError> {
        if tokens_match(&self.session.csrf, form.get("csrf")) {
            Ok(())
        } else {
            Err(UiError::Csrf)
        }
    }
}

/// Why a request has no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSession {
    /// No session cookie.
    Absent,
    /// A cookie whose session is gone: signed out, timed out, or unknown.
    Ended,
}

/// The request's session, if it has a valid one; its last use is written
/// when a minute has passed.
pub async fn current(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<Result<Signed, NoSession>, UiError> {
    let Some(id) = cookie_value(headers, SESSION_COOKIE).filter(|id| !id.is_empty()) else {
        return Ok(Err(NoSession::Absent));
    };
    if !well_formed(&id) {
        return Ok(Err(NoSession::Ended));
    }
    let key = key_of(&id);
    let store = shared.store();
    let Some(mut session) = store.ui_session(&key).await? else {
        return Ok(Err(NoSession::Ended));
    };
    let now = Timestamp::now();
    if expiry(shared, session.created_at, session.last_seen) <= now {
        store.delete_ui_session(&key).await?;
        return Ok(Err(NoSession::Ended));
    }
    let Some(user) = store.user(&session.user_id).await? else {
        store.delete_ui_session(&key).await?;
        return Ok(Err(NoSession::Ended));
    };
    if now.0 - session.last_seen.0 >= TOUCH_EVERY_MS {
        session.last_seen = now;
        session.expires_at = expiry(shared, session.created_at, now);
        store.put_ui_session(&key, &session).await?;
    }
    let principal = Principal {
        kind: PrincipalKind::User,
        org: user.organization.clone(),
        team_id: None,
        user_id: Some(user.id.clone()),
        token_id: "ui-session".to_owned(),
    };
    Ok(Ok(Signed {
        key,
        session,
        user,
        principal,
    }))
}

impl FromRequestParts<Arc<Shared>> for Signed {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, UiError> {
        current(shared, &parts.headers)
            .await?
            .map_err(UiError::SignedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_keys_are_their_digests() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        let key = key_of(&a);
        assert_eq!(key.len(), 64);
        assert!(!key.contains(&a));
        crate::store::ui::validate_session_key(&key).unwrap();
    }

    #[test]
    fn tokens_match_only_exactly() {
        let token = new_secret();
        assert!(tokens_match(&token, Some(&token)));
        assert!(!tokens_match(&token, None));
        assert!(!tokens_match(&token, Some("")));
        assert!(!tokens_match(&token, Some(&token[1..])));
        assert!(!tokens_match(&token, Some(&format!("{token}x"))));
        // An empty or malformed expected token matches nothing, not even itself.
        assert!(!tokens_match("", Some("")));
        assert!(!tokens_match("short", Some("short")));
    }

    #[test]
    fn cookies_are_http_only_strict_and_scoped_to_the_ui() {
        let text = cookie(SESSION_COOKIE, "v".into(), false).to_string();
        assert!(text.contains("HttpOnly"), "{text}");
        assert!(text.contains("SameSite=Strict"), "{text}");
        assert!(text.contains("Path=/_tokengate/ui"), "{text}");
        assert!(!text.contains("Secure"), "{text}");
        assert!(!text.contains("Max-Age"), "{text}");
        let secure = cookie(SESSION_COOKIE, "v".into(), true).to_string();
        assert!(secure.contains("Secure"), "{secure}");
        let gone = removal(SESSION_COOKIE, false).to_string();
        assert!(gone.contains("Max-Age=0"), "{gone}");
    }
}
