//! Stage 2 of a request: who is calling.
//!
//! `Authorization: Bearer <token>` is parsed strictly and shape-checked
//! before any store access. Then the token's credential is read from the
//! store (every request: revocation and regeneration take effect at once on
//! every replica), its generation and expiry are compared, and the secret is
//! verified with argon2id — once: the result is cached in process, keyed by a
//! SHA-256 of the token *and* the stored hash, so a cache entry can never
//! outlive the credential it was computed against. Verification runs on
//! blocking threads behind a concurrency bound, and concurrent verifications
//! of the same token are coalesced into one.

use crate::config::VerifyCacheConfig;
use crate::credential_reads::CredentialReads;
use crate::hashing;
use crate::store::{Owner, PrincipalKind, Store, StoreError, Timestamp};
use crate::token::{PresentedToken, ShapeError};
use http::HeaderValue;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

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

/// Why authentication failed. Every variant but `Store` is a 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
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
    #[error("too many failed attempts with this token id; try again later")]
    Throttled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// A short, stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MalformedHeader => "malformed_header",
            AuthError::MalformedToken(_) => "malformed_token",
            AuthError::Unknown => "unknown_token",
            AuthError::Replaced => "replaced_token",
            AuthError::Expired => "expired_token",
            AuthError::BadSecret => "bad_secret",
            AuthError::Throttled => "throttled",
            AuthError::Store(_) => "store_error",
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

/// Authenticates tokens against the store, caching verified secrets.
pub struct Authenticator {
    reads: CredentialReads,
    verifier: CachedVerifier,
    last_used: LastUsedRecorder,
}

/// argon2id verification with an in-process cache of results, a bound on
/// concurrent verifications, coalescing of identical ones, and a throttle on
/// credential slots that keep failing.
///
/// The throttle exists because a token's public id is not secret: anyone who
/// knows it can send shape-valid tokens with made-up secrets, and each would
/// cost ~40 ms of argon2. After [`FAILURES_BEFORE_THROTTLE`] failed
/// verifications of one slot within [`THROTTLE_WINDOW`], further *uncached*
/// verifications of that slot are refused (429) until the window passes.
/// Verifications still running count against the limit too, so concurrent
/// guesses cannot outrun it. Tokens already verified stay served from the
/// cache.
pub struct CachedVerifier {
    verified: moka::future::Cache<[u8; 32], bool>,
    verify_slots: Arc<Semaphore>,
    failures: moka::sync::Cache<String, Arc<AtomicU32>>,
}

/// Failed verifications of one slot before it is throttled.
pub const FAILURES_BEFORE_THROTTLE: u32 = 20;
/// How long failures of a slot are remembered.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(60);

/// The result of checking a token's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Valid,
    Invalid,
    /// Too many recent failures for this slot; not checked.
    Throttled,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, config: &VerifyCacheConfig) -> Self {
        Authenticator {
            verifier: CachedVerifier::new(config),
            last_used: LastUsedRecorder::new(store.clone(), Duration::from_secs(60)),
            reads: CredentialReads::new(store),
        }
    }

    /// Authenticates the `Authorization` header value of a request.
    pub async fn authenticate(&self, header: &HeaderValue) -> Result<Principal, AuthError> {
        let raw = bearer_token(header)?;
        let token = PresentedToken::parse(raw).map_err(AuthError::MalformedToken)?;
        let credential = self
            .reads
            .credential(token.slot())
            .await?
            .ok_or(AuthError::Unknown)?;
        if credential.generation != token.generation() {
            return Err(AuthError::Replaced);
        }
        if credential.is_expired(Timestamp::now()) {
            return Err(AuthError::Expired);
        }
        match self.verifier.verify(token, &credential.phc).await {
            Verification::Valid => {}
            Verification::Invalid => return Err(AuthError::BadSecret),
            Verification::Throttled => return Err(AuthError::Throttled),
        }
        self.last_used
            .record(&credential.slot, &credential.token_id);
        Ok(Principal::from_owner(
            &credential.owner,
            credential.token_id.clone(),
        ))
    }
}

impl CachedVerifier {
    pub fn new(config: &VerifyCacheConfig) -> Self {
        CachedVerifier {
            verified: moka::future::Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .build(),
            verify_slots: Arc::new(Semaphore::new(config.max_concurrent_verifies)),
            failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(THROTTLE_WINDOW)
                .build(),
        }
    }

    /// True when the token matches the stored hash; argon2 runs at most once
    /// per (token, hash) pair while the result stays cached.
    pub async fn verify(&self, token: PresentedToken<'_>, phc: &str) -> Verification {
        let mut digest = Sha256::new();
        digest.update(token.expose_secret().as_bytes());
        digest.update([0u8]);
        digest.update(phc.as_bytes());
        let key: [u8; 32] = digest.finalize().into();
        if let Some(known) = self.verified.get(&key).await {
            return if known {
                Verification::Valid
            } else {
                Verification::Invalid
            };
        }
        let slot = token.slot();
        if self
            .failures
            .get(slot)
            .is_some_and(|count| count.load(Ordering::Relaxed) >= FAILURES_BEFORE_THROTTLE)
        {
            return Verification::Throttled;
        }
        let secret = token.expose_secret().to_owned();
        let phc = phc.to_owned();
        let slots = self.verify_slots.clone();
        let failures = self.failures.get_with(slot.to_owned(), Arc::default);
        // `optionally_get_with` coalesces concurrent callers with the same
        // key into one computation; `None` (throttled) is not cached.
        let outcome = self
            .verified
            .optionally_get_with(key, async move {
                // Reserve one of the slot's allowed failures *before*
                // verifying, so that guesses arriving together cannot all
                // pass the check above while none has failed yet.
                if failures.fetch_add(1, Ordering::AcqRel) >= FAILURES_BEFORE_THROTTLE {
                    failures.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
                let Ok(_permit) = slots.acquire_owned().await else {
                    return Some(false);
                };
                let valid =
                    tokio::task::spawn_blocking(move || hashing::verify_token(&secret, &phc))
                        .await
                        .unwrap_or(false);
                if valid {
                    failures.fetch_sub(1, Ordering::AcqRel);
                }
                Some(valid)
            })
            .await;
        match outcome {
            Some(true) => Verification::Valid,
            Some(false) => Verification::Invalid,
            None => Verification::Throttled,
        }
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
