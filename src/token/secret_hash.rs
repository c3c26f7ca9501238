//! How token secrets are kept at rest: argon2id hashes (PHC strings).
//! CPU-heavy: call from blocking threads.

use crate::config::Argon2Params;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, PasswordVerifier, Version};

/// Why hashing failed (only bad parameters can cause it).
#[derive(Debug, thiserror::Error)]
#[error("argon2 failed: {0}")]
pub struct HashError(String);

fn hasher(params: Argon2Params) -> Result<Argon2<'static>, HashError> {
    let params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a whole token into an argon2id PHC string with a random salt.
pub fn hash_token(token: &str, params: Argon2Params) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher(params)?
        .hash_password(token.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// True when `token` matches the PHC string. The PHC string carries its own
/// parameters, so tokens hashed under older settings keep verifying.
/// A malformed PHC string never verifies.
pub fn verify_token(token: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    Argon2::default()
        .verify_password(token.as_bytes(), &parsed)
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

    #[test]
    fn a_hash_verifies_only_its_own_token() {
        let phc = hash_token("token-a", CHEAP).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_token("token-a", &phc));
        assert!(!verify_token("token-b", &phc));
        assert!(!verify_token("token-a", "not a phc string"));
    }

    #[test]
    fn the_hash_never_contains_the_token() {
        let phc = hash_token("very-secret-token", CHEAP).unwrap();
        assert!(!phc.contains("very-secret-token"));
    }
}
