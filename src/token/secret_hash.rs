//! How token secrets are kept at rest, and checked.
//!
//! A stored secret hash names its scheme:
//!
//! * `$sha256$<64 hex digits>` — the default. Tokens carry ~381 bits from the
//!   OS CSPRNG, so a fast digest is as strong as a slow one against offline
//!   guessing (there is nothing to guess), and checking one costs about a
//!   microsecond: a flood of wrong secrets, or a restart with many tokens,
//!   costs no CPU to speak of. Compared in constant time. (Vault, GitHub and
//!   GitLab keep high-entropy tokens the same way.)
//! * an argon2id PHC string (`$argon2id$…`) — available as
//!   `hashing.scheme: argon2id`, and what older records hold. Checking one
//!   costs tens of milliseconds of CPU: call [`verify_token`] off the async
//!   threads. Records in a scheme other than the configured one are
//!   re-hashed after their first successful check.
//!
//! Human passwords (the UI) always use argon2id ([`hash_password`]).

use crate::config::{Argon2Params, HashingConfig, SecretScheme};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, PasswordVerifier, Version};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of a SHA-256 secret hash.
const SHA256_PREFIX: &str = "$sha256$";

/// Why hashing failed (only bad argon2 parameters can cause it).
#[derive(Debug, thiserror::Error)]
#[error("argon2 failed: {0}")]
pub struct HashError(String);

fn argon2(params: Argon2Params) -> Result<Argon2<'static>, HashError> {
    let params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn sha256_hash(token: &str) -> String {
    let hex = sha256_hex(token);
    let mut hash = String::with_capacity(SHA256_PREFIX.len() + hex.len());
    hash.push_str(SHA256_PREFIX);
    hash.extend(hex.iter().map(|&b| char::from(b)));
    hash
}

/// The SHA-256 digest of `token` in lowercase hex, on the stack (the
/// request path verifies with it without allocating).
fn sha256_hex(token: &str) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = [0u8; 64];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    hex
}

/// Hashes a whole token in the configured scheme. The SHA-256 scheme is
/// cheap; argon2id is not (call it off the async threads).
pub fn hash_token(token: &str, hashing: &HashingConfig) -> Result<String, HashError> {
    match hashing.scheme {
        SecretScheme::Sha256 => Ok(sha256_hash(token)),
        SecretScheme::Argon2id => hash_password(token, hashing.argon2),
    }
}

/// An argon2id PHC string of a password with a random salt. CPU-heavy.
pub fn hash_password(password: &str, params: Argon2Params) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2(params)?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// The scheme a stored hash is in; `None` for something unrecognized.
pub fn scheme_of(stored: &str) -> Option<SecretScheme> {
    if stored.starts_with(SHA256_PREFIX) {
        Some(SecretScheme::Sha256)
    } else if stored.starts_with("$argon2id$") {
        Some(SecretScheme::Argon2id)
    } else {
        None
    }
}

/// The cheap check: `Some(matches)` for a SHA-256 hash (constant time) or
/// an unrecognized one (never matches); `None` when the hash is argon2id and
/// needs [`verify_token`].
pub fn verify_fast(token: &str, stored: &str) -> Option<bool> {
    match scheme_of(stored) {
        Some(SecretScheme::Sha256) => {
            // `stored` starts with the prefix (that is its scheme): the rest
            // must be the digest's hex, compared in constant time (a length
            // mismatch is no match, as `ct_eq` of slices says).
            let digest_hex = &stored.as_bytes()[SHA256_PREFIX.len()..];
            Some(sha256_hex(token).as_slice().ct_eq(digest_hex).into())
        }
        Some(SecretScheme::Argon2id) => None,
        None => Some(false),
    }
}

/// True when `token` matches the stored hash, in any scheme. An argon2id
/// hash carries its own parameters, so tokens hashed under older settings
/// keep verifying. A malformed hash never verifies. CPU-heavy for argon2id.
pub fn verify_token(token: &str, stored: &str) -> bool {
    if let Some(matches) = verify_fast(token, stored) {
        return matches;
    }
    verify_password(token, stored)
}

/// True when `password` matches an argon2id PHC string. CPU-heavy.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Argon2Params = Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn config(scheme: SecretScheme) -> HashingConfig {
        HashingConfig {
            scheme,
            argon2: CHEAP,
        }
    }

    #[test]
    fn each_scheme_verifies_only_its_own_token() {
        for scheme in [SecretScheme::Sha256, SecretScheme::Argon2id] {
            let stored = hash_token("token-a", &config(scheme)).unwrap();
            assert_eq!(scheme_of(&stored), Some(scheme), "{stored}");
            assert!(verify_token("token-a", &stored), "{stored}");
            assert!(!verify_token("token-b", &stored), "{stored}");
        }
        assert!(!verify_token("token-a", "not a hash"));
        assert!(!verify_token("token-a", "$sha256$00"));
    }

    #[test]
    fn sha256_is_checked_fast_and_argon2_is_not() {
        let fast = hash_token("t", &config(SecretScheme::Sha256)).unwrap();
        assert_eq!(fast.len(), SHA256_PREFIX.len() + 64);
        assert_eq!(verify_fast("t", &fast), Some(true));
        assert_eq!(verify_fast("u", &fast), Some(false));
        // The digest of "t", as `sha256sum` writes it.
        assert_eq!(
            fast,
            "$sha256$e3b98a4da31a127d4bde6e43033f66ba274cab0eb7eb1c70ec41402bf6273dd8"
        );
        // A stored hash one character short, long or off never matches.
        assert_eq!(verify_fast("t", &fast[..fast.len() - 1]), Some(false));
        assert_eq!(verify_fast("t", &format!("{fast}0")), Some(false));
        assert_eq!(verify_fast("t", &fast.replace("dd8", "dd9")), Some(false));
        assert_eq!(verify_fast("t", "$sha256$"), Some(false));
        let slow = hash_token("t", &config(SecretScheme::Argon2id)).unwrap();
        assert_eq!(verify_fast("t", &slow), None);
    }

    #[test]
    fn the_hash_never_contains_the_token() {
        for scheme in [SecretScheme::Sha256, SecretScheme::Argon2id] {
            let stored = hash_token("very-secret-token", &config(scheme)).unwrap();
            assert!(!stored.contains("very-secret-token"));
        }
    }
}
