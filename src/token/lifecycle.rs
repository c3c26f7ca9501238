//! Token lifecycle shared by the CLI and the token API: generate (which
//! replaces any current token of the owner in one atomic store write) and
//! revoke.

use super::format::{self as token, NewToken};
use super::secret_hash;
use crate::config::{HashingConfig, SecretScheme};
use crate::store::audit::{self, AuditEvent};
use crate::store::{Credential, Owner, Store, StoreError, Timestamp};

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// What the caller of [`issue`] gets back: the stored metadata and the
/// token itself, which must be shown once and then forgotten.
pub struct Issued {
    pub credential: Credential,
    pub token: NewToken,
}

/// Generates a new token for `owner`, replacing (and so invalidating) the
/// current one atomically.
pub async fn issue(
    store: &dyn Store,
    owner: Owner,
    hashing: HashingConfig,
    created_by: Option<String>,
    expired_at: Option<Timestamp>,
) -> Result<Issued, IssueError> {
    let slot = store.ensure_slot(&owner).await?;
    let token = token::generate(&slot);
    let secret_hash = hash_off_thread(&token.secret_token, hashing).await?;
    let credential = Credential {
        token_id: token.public_id(),
        slot,
        generation: token.generation.clone(),
        owner,
        secret_hash,
        created_at: Timestamp::now(),
        created_by,
        expired_at,
        description: None,
    };
    store.put_credential(&credential).await?;
    Ok(Issued { credential, token })
}

/// Hashes a token in the configured scheme; argon2id runs on a blocking
/// thread, the cheap SHA-256 right here.
pub async fn hash_off_thread(token: &str, hashing: HashingConfig) -> Result<String, IssueError> {
    let hash = match hashing.scheme {
        SecretScheme::Sha256 => secret_hash::hash_token(token, &hashing),
        SecretScheme::Argon2id => {
            let token = token.to_owned();
            tokio::task::spawn_blocking(move || secret_hash::hash_token(&token, &hashing))
                .await
                .map_err(|e| IssueError::Hash(e.to_string()))?
        }
    };
    hash.map_err(|e| IssueError::Hash(e.to_string()))
}

/// The owner's current credential, if it has one.
pub async fn current(store: &dyn Store, owner: &Owner) -> Result<Option<Credential>, StoreError> {
    match store.slot_of(owner).await? {
        None => Ok(None),
        Some(slot) => store.credential(&slot).await,
    }
}

/// Revokes the owner's token; returns the revoked credential, if there was one.
pub async fn revoke(store: &dyn Store, owner: &Owner) -> Result<Option<Credential>, StoreError> {
    match store.slot_of(owner).await? {
        None => Ok(None),
        Some(slot) => store.delete_credential(&slot).await,
    }
}

/// Who asked for a change: the audit actor and, when it is a principal, the
/// `created-by` of a new token.
pub struct Actor<'a> {
    /// `user-…`, `at-…` (a service account) or `cli`.
    pub id: &'a str,
    /// Recorded as `created-by` on new tokens.
    pub is_principal: bool,
}

/// Generates (or regenerates) the owner's token and appends the matching
/// audit event (`generate` or `regenerate`).
pub async fn generate_audited(
    store: &dyn Store,
    owner: Owner,
    hashing: HashingConfig,
    actor: Actor<'_>,
    expired_at: Option<Timestamp>,
) -> Result<Issued, IssueError> {
    let previous = current(store, &owner).await?;
    let created_by = actor.is_principal.then(|| actor.id.to_owned());
    let issued = issue(store, owner.clone(), hashing, created_by, expired_at).await?;
    let action = if previous.is_some() {
        "regenerate"
    } else {
        "generate"
    };
    let event = AuditEvent::new(
        owner.org(),
        actor.id,
        action,
        &owner.describe(),
        Some(&issued.credential.token_id),
    );
    audit::record(store, event).await;
    Ok(issued)
}

/// Revokes the owner's token and, when there was one, appends a `revoke` event.
pub async fn revoke_audited(
    store: &dyn Store,
    owner: &Owner,
    actor: &str,
) -> Result<Option<Credential>, StoreError> {
    let revoked = revoke(store, owner).await?;
    if let Some(credential) = &revoked {
        let event = AuditEvent::new(
            owner.org(),
            actor,
            "revoke",
            &owner.describe(),
            Some(&credential.token_id),
        );
        audit::record(store, event).await;
    }
    Ok(revoked)
}
