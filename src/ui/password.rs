//! People's passwords: what a new password must be, and how one is kept
//! (argon2id, [`crate::token::secret_hash::hash_password`]) and checked.
//! Used by `tokengate user set-password` and by sign-in.

use crate::config::Argon2Params;
use crate::store::{Login, Store, StoreError, Timestamp, User};
use crate::token::secret_hash;
use crate::token_format::PresentedToken;

/// Shortest password accepted.
pub const MIN_LEN: usize = 12;
/// Longest password accepted, in bytes (argon2 would take more, but no
/// person types this much).
pub const MAX_BYTES: usize = 1024;

/// Why a password or a sign-in could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be at least {MIN_LEN} characters long")]
    TooShort,
    #[error("the password must be at most {MAX_BYTES} bytes long")]
    TooLong,
    #[error("the password looks like an API token; a token cannot be a password (service accounts cannot be used interactively)")]
    LooksLikeToken,
    #[error("the password must not contain line breaks or other control characters")]
    ControlCharacter,
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// True for text shaped like an API token: one of tokengate's (the shape
/// check), or anything in Terraform's `<id>.atlasv1.<secret>` form.
pub fn looks_like_token(text: &str) -> bool {
    let text = text.trim();
    PresentedToken::parse(text).is_ok() || text.contains(".atlasv1.")
}

/// Checks a new password against the rules above.
pub fn check_new(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::ControlCharacter);
    }
    if looks_like_token(password) {
        return Err(PasswordError::LooksLikeToken);
    }
    Ok(())
}

/// Sets `user`'s password (checked with [`check_new`]): hashes it with
/// argon2id on a blocking thread and stores the sign-in under the user's
/// name, then ends the user's sessions (a new password signs everyone out).
/// Returns how many sessions ended.
pub async fn set(
    store: &dyn Store,
    user: &User,
    password: String,
    params: Argon2Params,
) -> Result<usize, PasswordError> {
    check_new(&password)?;
    let hash = tokio::task::spawn_blocking(move || secret_hash::hash_password(&password, params))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    store
        .set_login(&Login {
            name: user.name.clone(),
            user_id: user.id.clone(),
            password_hash: hash,
            updated_at: Timestamp::now(),
        })
        .await?;
    Ok(store.delete_user_ui_sessions(&user.id).await?)
}

/// True when `password` matches the argon2id `hash`. CPU-heavy: call it
/// off the async threads.
pub fn verify(password: &str, hash: &str) -> bool {
    secret_hash::verify_password(password, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_format as format;

    #[test]
    fn new_passwords_follow_the_rules() {
        check_new("correct horse battery").unwrap();
        check_new("twelve chars").unwrap();
        assert!(matches!(check_new("short"), Err(PasswordError::TooShort)));
        assert!(matches!(
            check_new(&"x".repeat(MAX_BYTES + 1)),
            Err(PasswordError::TooLong)
        ));
        assert!(matches!(
            check_new("line one\nline two"),
            Err(PasswordError::ControlCharacter)
        ));
        let token = format::generate(&format::new_slot()).secret_token;
        assert!(matches!(
            check_new(&token),
            Err(PasswordError::LooksLikeToken)
        ));
    }

    #[test]
    fn tokens_are_recognised_by_their_shape() {
        let token = format::generate(&format::new_slot()).secret_token;
        assert!(looks_like_token(&token));
        assert!(looks_like_token(&format!("  {token}\n")));
        assert!(looks_like_token("abc.atlasv1.def"));
        assert!(!looks_like_token("a perfectly normal password"));
    }
}
