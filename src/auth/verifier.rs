//! Checking a presented token's secret against the stored hash: argon2id
//! once per (token, hash) pair, then from an in-process cache; a bound on
//! concurrent verifications; and a throttle on slots that keep failing.

use crate::config::VerifyCacheConfig;
use crate::token::format::PresentedToken;
use crate::token::secret_hash;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

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
                    tokio::task::spawn_blocking(move || secret_hash::verify_token(&secret, &phc))
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
