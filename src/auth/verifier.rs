//! Checking a presented token's secret against its stored hash.
//!
//! A SHA-256 hash (the default scheme) is checked at once, in constant
//! time: about a microsecond, no cache needed. An argon2id hash (a
//! configured scheme, or an older record) costs tens of milliseconds of CPU,
//! so its results are cached in process — keyed by a SHA-256 of the token
//! *and* the stored hash, so a cached result can never outlive the record it
//! was computed against — concurrent checks of the same pair are coalesced
//! into one, and at most `verify_cache.max_concurrent_verifies` run at once,
//! on blocking threads.
//!
//! There is no lock-out: a token's public id is not secret, and refusing
//! a slot after failed guesses would let anyone who knows the id lock its
//! owner out. Wrong guesses against a SHA-256 record cost at most what a
//! right one costs (once the record was read, nothing but a SHA-256: see
//! `known_secrets`); against argon2id they queue behind the concurrency
//! bound, and the genuine token, once verified, is served from the cache.

use crate::config::VerifyCacheConfig;
use crate::token::secret_hash;
use crate::token_format::PresentedToken;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Checks secrets; caches the results of slow (argon2id) checks.
pub struct CachedVerifier {
    verified: moka::future::Cache<[u8; 32], bool>,
    verify_slots: Arc<Semaphore>,
}

/// The result of checking a token's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Valid,
    Invalid,
}

impl From<bool> for Verification {
    fn from(valid: bool) -> Self {
        if valid {
            Verification::Valid
        } else {
            Verification::Invalid
        }
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
        }
    }

    /// Whether the token matches the stored hash.
    pub async fn verify(&self, token: PresentedToken<'_>, stored: &str) -> Verification {
        if let Some(matches) = secret_hash::verify_fast(token.expose_secret(), stored) {
            return matches.into();
        }
        let mut digest = Sha256::new();
        digest.update(token.expose_secret().as_bytes());
        digest.update([0u8]);
        digest.update(stored.as_bytes());
        let key: [u8; 32] = digest.finalize().into();
        let secret = token.expose_secret().to_owned();
        let stored = stored.to_owned();
        let slots = self.verify_slots.clone();
        // `get_with` coalesces concurrent callers with the same key into one
        // computation.
        self.verified
            .get_with(key, async move {
                let Ok(_permit) = slots.acquire_owned().await else {
                    return false;
                };
                tokio::task::spawn_blocking(move || secret_hash::verify_token(&secret, &stored))
                    .await
                    .unwrap_or(false)
            })
            .await
            .into()
    }
}
