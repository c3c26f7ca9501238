//! Who is calling: a bearer token → a [`Principal`].
//!
//! `Authorization: Bearer <token>` is parsed strictly and shape-checked
//! before any store access. Then the token's credential is read from the
//! store (every request: revocation and regeneration take effect at once on
//! every replica; concurrent reads are shared only when sent after every
//! sharer started, see [`CoalescedReads`]), its generation and expiry are
//! compared, and the secret is checked against the stored hash
//! ([`CachedVerifier`]: constant-time SHA-256 by default). A wrong secret
//! for the generation the last read of its slot returned is refused before
//! any read ([`KnownSecrets`]); nothing is ever accepted without one.
//!
//! A request whose path names a workspace has the caller's team access to
//! it read in the same store round trip ([`Authenticated::team_access`]),
//! as fresh as the credential, for the access check later on.

mod coalesced_reads;
mod known_secrets;
mod verifier;

pub use coalesced_reads::CoalescedReads;
pub use known_secrets::{KnownSecrets, PreCheck};
pub use verifier::{CachedVerifier, Verification};

use crate::config::{HashingConfig, VerifyCacheConfig};
use crate::store::{Credential, CredentialRead, TeamFacts};
use crate::store::{Owner, PrincipalKind, Store, StoreError, Timestamp};
use crate::token::lifecycle::hash_off_thread;
use crate::token::secret_hash;
use crate::token_format::{PresentedToken, ShapeError};
use http::{header, HeaderMap, HeaderValue};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub org: String,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    /// Public token id `at-…`; safe to log.
    pub token_id: String,
}

impl Principal {
    fn from_owner(owner: &Owner, token_id: String) -> Self {
        let (team_id, user_id) = match owner {
            Owner::Team { team_id, .. } => (Some(team_id.clone()), None),
            Owner::User { user_id, .. } => (None, Some(user_id.clone())),
            Owner::Org { .. } => (None, None),
        };
        Principal {
            kind: owner.kind(),
            org: owner.org().to_owned(),
            team_id,
            user_id,
            token_id,
        }
    }
}

/// A caller that authenticated, and what was read with its credential.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    /// For a team token on a request about a workspace: the team's access
    /// to it, read together with the credential.
    pub team_access: Option<TeamAccessRead>,
}

/// One team's facts for one workspace, read with its token's credential
/// (so after the request started: as fresh as a read of their own).
#[derive(Debug, Clone)]
pub struct TeamAccessRead {
    workspace: String,
    read: Arc<CredentialRead>,
}

impl TeamAccessRead {
    /// The facts, when they are `team`'s for `workspace`.
    pub fn facts_for(&self, team: &str, workspace: &str) -> Option<&[TeamFacts]> {
        let facts = self.read.team_facts.as_deref()?;
        let owner = match &self.read.credential.as_ref()?.owner {
            Owner::Team { team_id, .. } => team_id,
            _ => return None,
        };
        (owner == team && self.workspace == workspace).then_some(facts)
    }
}

/// Why authentication failed. `MultipleHeaders` is a 400, `Store` a 503;
/// every other variant is a 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("send exactly one Authorization header")]
    MultipleHeaders,
    #[error("the Authorization header is not `Bearer <token>`")]
    MalformedHeader,
    #[error("the token is malformed: {0}")]
    MalformedToken(ShapeError),
    #[error("the token is unknown or was revoked")]
    Unknown,
    #[error("the token was replaced by a newer one")]
    Replaced,
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    BadSecret,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why authentication failed, as a label for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    MultipleAuthorizationHeaders,
    MalformedHeader,
    MalformedToken,
    UnknownToken,
    ReplacedToken,
    ExpiredToken,
    BadSecret,
    StoreError,
}

impl AuthFailure {
    /// A short, stable label (`unknown_token`, `store_error`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::MultipleAuthorizationHeaders => "multiple_authorization_headers",
            AuthFailure::MalformedHeader => "malformed_header",
            AuthFailure::MalformedToken => "malformed_token",
            AuthFailure::UnknownToken => "unknown_token",
            AuthFailure::ReplacedToken => "replaced_token",
            AuthFailure::ExpiredToken => "expired_token",
            AuthFailure::BadSecret => "bad_secret",
            AuthFailure::StoreError => "store_error",
        }
    }
}

impl AuthError {
    /// The label of this failure for logs and metrics.
    pub fn failure(&self) -> AuthFailure {
        match self {
            AuthError::MultipleHeaders => AuthFailure::MultipleAuthorizationHeaders,
            AuthError::MalformedHeader => AuthFailure::MalformedHeader,
            AuthError::MalformedToken(_) => AuthFailure::MalformedToken,
            AuthError::Unknown => AuthFailure::UnknownToken,
            AuthError::Replaced => AuthFailure::ReplacedToken,
            AuthError::Expired => AuthFailure::ExpiredToken,
            AuthError::BadSecret => AuthFailure::BadSecret,
            AuthError::Store(_) => AuthFailure::StoreError,
        }
    }
}

/// Extracts the token from an `Authorization` header value.
pub fn bearer_token(value: &HeaderValue) -> Result<&str, AuthError> {
    let text = value.to_str().map_err(|_| AuthError::MalformedHeader)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthError::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token)
}

/// Authenticates tokens against the store.
pub struct Authenticator {
    reads: CoalescedReads,
    known: KnownSecrets,
    verifier: CachedVerifier,
    last_used: LastUsedRecorder,
    rehash: Rehasher,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, cache: &VerifyCacheConfig, hashing: HashingConfig) -> Self {
        Authenticator {
            verifier: CachedVerifier::new(cache),
            known: KnownSecrets::default(),
            last_used: LastUsedRecorder::new(store.clone(), Duration::from_secs(60)),
            rehash: Rehasher::new(store.clone(), hashing),
            reads: CoalescedReads::new(store),
        }
    }

    /// Authenticates a request by its `Authorization` header: `None` when
    /// it has none, an error when it has several or a bad one. With a
    /// `workspace`, a team token's access to it is read with the credential.
    pub async fn authenticate_headers(
        &self,
        headers: &HeaderMap,
        workspace: Option<&str>,
    ) -> Result<Option<Authenticated>, AuthError> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(AuthError::MultipleHeaders);
        }
        self.authenticate(value, workspace).await.map(Some)
    }

    /// Authenticates the `Authorization` header value of a request.
    pub async fn authenticate(
        &self,
        header: &HeaderValue,
        workspace: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        let raw = bearer_token(header)?;
        let token = PresentedToken::parse(raw).map_err(AuthError::MalformedToken)?;
        // A wrong secret for the generation the last read of this slot
        // returned is refused without a read (see [`KnownSecrets`]).
        let pre_check = self.known.check(token);
        if let PreCheck::WrongSecret = pre_check {
            return Err(AuthError::BadSecret);
        }
        let read = {
            // Pinned where it is built, so that the span's `Instrumented`
            // wraps a reference instead of a copy of the read's future.
            let read = std::pin::pin!(self.reads.read(token.slot(), workspace));
            // A span for traces (`observe::trace::TARGET`; none when they are off).
            read.instrument(tracing::info_span!(target: "tokengate::trace", "store.read"))
                .await?
        };
        let credential = read.credential.as_ref().ok_or(AuthError::Unknown)?;
        let already_matched = match &pre_check {
            PreCheck::Matches(record) => record.has_hash(&credential.secret_hash),
            _ => false,
        };
        if !already_matched {
            self.known.remember(credential);
        }
        if credential.generation != token.generation() {
            return Err(AuthError::Replaced);
        }
        // The clock is read only for a token that can expire.
        if credential.expired_at.is_some() && credential.is_expired(Timestamp::now()) {
            return Err(AuthError::Expired);
        }
        if !already_matched {
            match self.verifier.verify(token, &credential.secret_hash).await {
                Verification::Valid => {}
                Verification::Invalid => return Err(AuthError::BadSecret),
            }
        }
        self.last_used
            .record(&credential.slot, &credential.token_id);
        self.rehash.if_needed(credential, token.expose_secret());
        let principal = Principal::from_owner(&credential.owner, credential.token_id.clone());
        let team_access = match (workspace, &read.team_facts) {
            (Some(workspace), Some(_)) => Some(TeamAccessRead {
                workspace: workspace.to_owned(),
                read: read.clone(),
            }),
            _ => None,
        };
        Ok(Authenticated {
            principal,
            team_access,
        })
    }
}

/// Re-hashes, off the request path, a record whose secret hash is in
/// another scheme than the configured one, after its token was verified
/// (once per token: the next request reads the new record).
struct Rehasher {
    store: Arc<dyn Store>,
    hashing: HashingConfig,
    started: moka::sync::Cache<String, ()>,
}

impl Rehasher {
    fn new(store: Arc<dyn Store>, hashing: HashingConfig) -> Self {
        Rehasher {
            store,
            hashing,
            started: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    fn if_needed(&self, credential: &Credential, token: &str) {
        if secret_hash::scheme_of(&credential.secret_hash) == Some(self.hashing.scheme)
            || self.started.contains_key(&credential.token_id)
        {
            return;
        }
        self.started.insert(credential.token_id.clone(), ());
        let store = self.store.clone();
        let hashing = self.hashing;
        let credential = credential.clone();
        let token = token.to_owned();
        tokio::spawn(async move {
            let outcome = match hash_off_thread(&token, hashing).await {
                Ok(new_hash) => store
                    .replace_secret_hash(&credential, &new_hash)
                    .await
                    .map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            match outcome {
                Ok(replaced) => tracing::info!(
                    token_id = %credential.token_id,
                    scheme = hashing.scheme.as_str(),
                    replaced,
                    "token secret re-hashed"
                ),
                Err(error) => tracing::warn!(
                    token_id = %credential.token_id,
                    error,
                    "could not re-hash a token secret"
                ),
            }
        });
    }
}

/// Records last-used times off the request path, at most once per interval
/// per token, so a busy token does not add a store write to every request.
struct LastUsedRecorder {
    store: Arc<dyn Store>,
    recently_recorded: moka::sync::Cache<String, ()>,
}

impl LastUsedRecorder {
    fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        LastUsedRecorder {
            store,
            recently_recorded: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(interval)
                .build(),
        }
    }

    fn record(&self, slot: &str, token_id: &str) {
        if self.recently_recorded.contains_key(token_id) {
            return;
        }
        self.recently_recorded.insert(token_id.to_owned(), ());
        let store = self.store.clone();
        let slot = slot.to_owned();
        let token_id = token_id.to_owned();
        tokio::spawn(async move {
            if let Err(err) = store
                .touch_last_used(&slot, &token_id, Timestamp::now())
                .await
            {
                tracing::debug!(token_id, error = %err, "could not record last use");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_parsed_strictly() {
        let ok = |s: &str| {
            bearer_token(&HeaderValue::from_str(s).unwrap())
                .ok()
                .map(str::to_owned)
        };
        assert_eq!(ok("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(ok("bearer abc").as_deref(), Some("abc"));
        assert_eq!(ok("Bearer  abc"), None);
        assert_eq!(ok("Bearer abc def"), None);
        assert_eq!(ok("Basic abc"), None);
        assert_eq!(ok("Bearer"), None);
        assert_eq!(ok("Bearer "), None);
        assert_eq!(ok("abc"), None);
    }
}
