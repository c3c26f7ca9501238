//! Records of the web UI (`/_tokengate/ui/`), kept by every backend:
//!
//! * a person's **sign-in** ([`Login`]): their sign-in name (the user's
//!   name in lower case, claimed once across the whole store, so one name
//!   signs in one user) and the argon2id hash of their password;
//! * **sessions** ([`UiSession`]) of signed-in people, stored under the
//!   SHA-256 digest of the random id their cookie carries (the id itself is
//!   never stored), dropped by the store once they expire;
//! * a session's **flash**: a value shown once (a new token's secret
//!   between the request that made it and the page that shows it), taken
//!   atomically so that two pages can never both show it.
//!
//! None of these is read on the proxy's request path.

use super::{validate_name, StoreError, Timestamp};
use serde::{Deserialize, Serialize};

/// A user's sign-in: the name they type and their password's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The sign-in name: the user's name in lower case.
    pub name: String,
    pub user_id: String,
    /// An argon2id PHC string; never the password.
    pub password_hash: String,
    pub updated_at: Timestamp,
}

/// A signed-in person's session, stored under the digest of its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiSession {
    pub user_id: String,
    /// When the person signed in (the absolute timeout counts from here).
    pub created_at: Timestamp,
    /// When the session was last used (the idle timeout counts from here).
    pub last_seen: Timestamp,
    /// When the store drops the session: the earlier of the two timeouts.
    pub expires_at: Timestamp,
    /// The session's CSRF token, put into every form.
    pub csrf: String,
}

/// The sign-in name for a user name: its lower-case form, after the same
/// check as every user name. Sign-in names are compared without case.
pub fn login_name(name: &str) -> Result<String, StoreError> {
    validate_name("user", name)?;
    Ok(name.to_ascii_lowercase())
}

/// A session key (the digest of a session id) becomes part of a store key:
/// only 64 lower-case hexadecimal digits.
pub fn validate_session_key(key: &str) -> Result<(), StoreError> {
    if key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::Invalid("malformed session key".into()))
    }
}

pub(crate) fn login_taken(name: &str, user_id: &str) -> StoreError {
    StoreError::AlreadyExists(format!(
        "the sign-in name `{name}` (used by {user_id}; sign-in names are unique across the gateway)"
    ))
}
