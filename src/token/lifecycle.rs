//! Token lifecycle shared by the CLI and the token API: generate (which
//! replaces any current legacy token of the owner in one atomic store
//! write, or adds a token with a slot of its own: described team tokens,
//! user tokens), revoke, delete by id, and the expiry a new token gets.

use super::secret_hash;
use crate::config::{HashingConfig, SecretScheme};
use crate::store::audit::{self, AuditEvent};
use crate::store::{Credential, Owner, Store, StoreError, Timestamp, TokenSettings, TokenType};
use crate::token_format::{self as token, NewToken};

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

/// Generates a new token for `owner`: for a team or an organization the
/// legacy token, replacing (and so invalidating) the current one
/// atomically; for a user one more token of theirs, in a slot of its own.
pub async fn issue(
    store: &dyn Store,
    owner: Owner,
    hashing: HashingConfig,
    created_by: Option<String>,
    expired_at: Option<Timestamp>,
) -> Result<Issued, IssueError> {
    if let Owner::User { .. } = owner {
        return issue_own(store, owner, hashing, created_by, expired_at, None).await;
    }
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
        own_slot: false,
    };
    store.put_credential(&credential).await?;
    Ok(Issued { credential, token })
}

/// Generates a token in a slot of its own (a described team token or a
/// user token), leaving the owner's other tokens as they are. A team
/// token's description must be unique within the team
/// (`StoreError::AlreadyExists`).
pub async fn issue_own(
    store: &dyn Store,
    owner: Owner,
    hashing: HashingConfig,
    created_by: Option<String>,
    expired_at: Option<Timestamp>,
    description: Option<String>,
) -> Result<Issued, IssueError> {
    let slot = token::new_slot();
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
        description,
        own_slot: true,
    };
    store.insert_token(&credential).await?;
    Ok(Issued { credential, token })
}

/// [`issue_own`] with its `generate` audit event.
pub async fn issue_own_audited(
    store: &dyn Store,
    owner: Owner,
    hashing: HashingConfig,
    actor: Actor<'_>,
    expired_at: Option<Timestamp>,
    description: Option<String>,
) -> Result<Issued, IssueError> {
    let issued = issue_own(
        store,
        owner.clone(),
        hashing,
        actor.created_by.clone(),
        expired_at,
        description,
    )
    .await?;
    let event = AuditEvent::new(
        owner.org(),
        actor.id,
        "generate",
        &owner.describe(),
        Some(&issued.credential.token_id),
    );
    audit::record(store, event).await;
    Ok(issued)
}

/// The token with public id `token_id` (`at-…`), if it is current: legacy
/// or with a slot of its own.
pub async fn find(store: &dyn Store, token_id: &str) -> Result<Option<Credential>, StoreError> {
    let Some(slot) = slot_of_token_id(token_id) else {
        return Ok(None);
    };
    Ok(store
        .credential(slot)
        .await?
        .filter(|credential| credential.token_id == token_id))
}

/// The slot named by a public token id `at-<slot><generation>`.
pub fn slot_of_token_id(token_id: &str) -> Option<&str> {
    let id = token_id.strip_prefix(token::TOKEN_ID_PREFIX)?;
    (id.len() == token::SLOT_LEN + token::GENERATION_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then(|| &id[..token::SLOT_LEN])
}

/// Deletes the token `credential` (if its slot still holds it) and
/// appends a `revoke` event; returns what was deleted.
pub async fn delete_audited(
    store: &dyn Store,
    credential: &Credential,
    actor: &str,
) -> Result<Option<Credential>, StoreError> {
    let deleted = store
        .delete_token(&credential.slot, &credential.token_id)
        .await?;
    if let Some(deleted) = &deleted {
        let event = AuditEvent::new(
            deleted.owner.org(),
            actor,
            "revoke",
            &deleted.owner.describe(),
            Some(&deleted.token_id),
        );
        audit::record(store, event).await;
    }
    Ok(deleted)
}

/// Why a requested expiry cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpiryError {
    #[error("`expired-at` must be in the future")]
    InThePast,
    #[error("`expired-at` is later than the organization allows for {kind} tokens: at most {max} from now")]
    PastMaximum { kind: &'static str, max: String },
}

/// The expiry of a new token of `kind`: the requested one (which must be
/// in the future and within the organization's maximum lifetime for the
/// kind), else the configured default lifetime (`None`: never), shortened
/// to the maximum.
pub fn expiry_for(
    kind: TokenType,
    requested: Option<Timestamp>,
    default_lifetime_ms: Option<u64>,
    settings: &TokenSettings,
    now: Timestamp,
) -> Result<Option<Timestamp>, ExpiryError> {
    let max = settings.max_ttl_ms.get(kind);
    let latest = max.map(|max| now.plus_millis(max));
    match requested {
        Some(at) if at <= now => Err(ExpiryError::InThePast),
        Some(at) if latest.is_some_and(|latest| at > latest) => Err(ExpiryError::PastMaximum {
            kind: kind.as_str(),
            max: describe_millis(max.unwrap_or_default()),
        }),
        Some(at) => Ok(Some(at)),
        None => {
            let default = default_lifetime_ms.map(|ms| now.plus_millis(ms));
            Ok(match (default, latest) {
                (Some(default), Some(latest)) => Some(default.min(latest)),
                (default, latest) => default.or(latest),
            })
        }
    }
}

/// `30 days`, `12 hours`, `1500 ms`: a lifetime in words.
pub fn describe_millis(ms: u64) -> String {
    const DAY: u64 = 86_400_000;
    const HOUR: u64 = 3_600_000;
    if ms.is_multiple_of(DAY) {
        format!("{} days", ms / DAY)
    } else if ms.is_multiple_of(HOUR) {
        format!("{} hours", ms / HOUR)
    } else {
        format!("{ms} ms")
    }
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
    /// Recorded as `created-by` on new tokens: `user-…`, `team-…` (a team
    /// token made it) or `org:NAME` (an organization token made it).
    pub created_by: Option<String>,
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
    let issued = issue(store, owner.clone(), hashing, actor.created_by, expired_at).await?;
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
