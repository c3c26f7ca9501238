//! Refusing a wrong secret for a known token id without a store read.
//!
//! A token's public id (`<slot><generation>`) is not secret, and the
//! generation changes on every regenerate. So once a credential has been
//! read, a presented token with the *same* slot and generation whose secret
//! does not match that credential's hash can never be valid: the record may
//! since have been regenerated (another generation: refused anyway),
//! revoked (refused anyway), re-hashed to another scheme (same secret) or
//! had its settings changed (same secret). Such a guess is refused from
//! what the last read said, and costs a SHA-256 and a cache look-up instead
//! of a store round trip, so a flood of wrong secrets for a real id costs
//! the gateway and Redis almost nothing.
//!
//! Nothing is ever *accepted* from here: a matching secret still waits for
//! its fresh store read (revocation and regeneration take effect at once).
//! The entry only spares the second hash when the read brings the same
//! record. Only fast (SHA-256) records are remembered; an argon2id record
//! takes the normal path. Entries are made only from records the store
//! returned, so unknown ids cannot fill the cache, and each lives at most
//! [`KNOWN_FOR`]: a regenerate whose random generation happened to equal the
//! old one (one chance in 62⁶ ≈ 5.7·10¹⁰) would see its new secret refused
//! for at most that long by a process that remembered the old record.

use crate::config::SecretScheme;
use crate::store::Credential;
use crate::token::secret_hash;
use crate::token_format::{PresentedToken, GENERATION_LEN, SLOT_LEN};
use std::sync::Arc;
use std::time::Duration;

/// How long a remembered record may refuse guesses without a new read.
pub const KNOWN_FOR: Duration = Duration::from_secs(60);

/// At most this many slots are remembered (about 200 bytes each).
const CAPACITY: u64 = 100_000;

/// What the last read of one slot said: its generation and secret hash.
#[derive(Debug, PartialEq, Eq)]
struct KnownRecord {
    generation: [u8; GENERATION_LEN],
    secret_hash: Box<str>,
}

/// What checking a presented token against the remembered record found.
#[derive(Debug, Clone)]
pub enum PreCheck {
    /// Nothing remembered for this slot and generation (or a slow scheme):
    /// the store read decides.
    Unknown,
    /// The secret does not match the remembered record of its generation:
    /// refuse without reading.
    WrongSecret,
    /// The secret matches the remembered hash; a read that returns the same
    /// hash needs no second check.
    Matches(MatchedRecord),
}

/// A remembered record the presented secret matched.
#[derive(Debug, Clone)]
pub struct MatchedRecord(Arc<KnownRecord>);

impl MatchedRecord {
    /// True when `stored` (a fresh read's hash) is the hash that matched,
    /// so the secret needs no second check.
    pub fn has_hash(&self, stored: &str) -> bool {
        *self.0.secret_hash == *stored
    }
}

/// The last-read generation and secret hash of recently seen slots.
pub struct KnownSecrets {
    records: moka::sync::Cache<[u8; SLOT_LEN], Arc<KnownRecord>>,
}

impl Default for KnownSecrets {
    fn default() -> Self {
        KnownSecrets {
            records: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KNOWN_FOR)
                .build(),
        }
    }
}

impl KnownSecrets {
    /// Checks `token` against what the last read of its slot said.
    pub fn check(&self, token: PresentedToken<'_>) -> PreCheck {
        let Some(known) = self.records.get(&fixed::<SLOT_LEN>(token.slot())) else {
            return PreCheck::Unknown;
        };
        if known.generation != fixed::<GENERATION_LEN>(token.generation()) {
            return PreCheck::Unknown;
        }
        match secret_hash::verify_fast(token.expose_secret(), &known.secret_hash) {
            Some(true) => PreCheck::Matches(MatchedRecord(known)),
            Some(false) => PreCheck::WrongSecret,
            None => PreCheck::Unknown,
        }
    }

    /// Remembers what a store read returned for a slot (fast schemes only;
    /// nothing is written when the same record is already remembered).
    pub fn remember(&self, credential: &Credential) {
        if secret_hash::scheme_of(&credential.secret_hash) != Some(SecretScheme::Sha256)
            || credential.slot.len() != SLOT_LEN
            || credential.generation.len() != GENERATION_LEN
        {
            return;
        }
        let key = fixed::<SLOT_LEN>(&credential.slot);
        let generation = fixed::<GENERATION_LEN>(&credential.generation);
        if let Some(known) = self.records.get(&key) {
            if known.generation == generation && *known.secret_hash == *credential.secret_hash {
                return;
            }
        }
        self.records.insert(
            key,
            Arc::new(KnownRecord {
                generation,
                secret_hash: credential.secret_hash.as_str().into(),
            }),
        );
    }
}

/// `text` as a fixed-size key: a presented token's slot and generation are
/// always exactly `N` ASCII characters; a stored record's are checked
/// before [`KnownSecrets::remember`] uses them.
fn fixed<const N: usize>(text: &str) -> [u8; N] {
    let mut key = [0u8; N];
    let bytes = text.as_bytes();
    let n = bytes.len().min(N);
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Argon2Params, HashingConfig};
    use crate::store::{Owner, Timestamp};
    use crate::token_format::{assemble, generate, new_slot, random_string, NewToken};

    fn credential(token: &NewToken, slot: &str, scheme: SecretScheme) -> Credential {
        let hashing = HashingConfig {
            scheme,
            argon2: Argon2Params {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
        };
        Credential {
            token_id: token.public_id(),
            slot: slot.to_owned(),
            generation: token.generation.clone(),
            owner: Owner::Org { org: "acme".into() },
            secret_hash: secret_hash::hash_token(&token.secret_token, &hashing).unwrap(),
            created_at: Timestamp::now(),
            created_by: None,
            expired_at: None,
            description: None,
            own_slot: false,
        }
    }

    /// The same slot and generation with another (checksum-valid) secret.
    fn guess_at(token: &NewToken) -> String {
        let id = &token.secret_token[..SLOT_LEN + GENERATION_LEN];
        assemble(id, &random_string(64))
    }

    fn check(known: &KnownSecrets, token: &str) -> PreCheck {
        known.check(PresentedToken::parse(token).unwrap())
    }

    #[test]
    fn only_a_wrong_secret_for_the_remembered_generation_is_refused() {
        let known = KnownSecrets::default();
        let slot = new_slot();
        let token = generate(&slot);
        let guess = guess_at(&token);
        assert!(
            matches!(check(&known, &guess), PreCheck::Unknown),
            "nothing read yet"
        );
        let record = credential(&token, &slot, SecretScheme::Sha256);
        known.remember(&record);
        assert!(matches!(check(&known, &guess), PreCheck::WrongSecret));
        match check(&known, &token.secret_token) {
            PreCheck::Matches(matched) => {
                assert!(matched.has_hash(&record.secret_hash));
                assert!(!matched.has_hash("$sha256$00"), "another record's hash");
            }
            other => panic!("the right secret: {other:?}"),
        }
        // A newer generation in the same slot may exist: the store decides.
        let newer = generate(&slot);
        assert!(matches!(
            check(&known, &newer.secret_token),
            PreCheck::Unknown
        ));
        // Once the newer record is read, the old generation is the unknown one.
        known.remember(&credential(&newer, &slot, SecretScheme::Sha256));
        assert!(matches!(check(&known, &guess), PreCheck::Unknown));
        assert!(matches!(
            check(&known, &guess_at(&newer)),
            PreCheck::WrongSecret
        ));
    }

    #[test]
    fn slow_records_are_not_remembered() {
        let known = KnownSecrets::default();
        let slot = new_slot();
        let token = generate(&slot);
        known.remember(&credential(&token, &slot, SecretScheme::Argon2id));
        assert!(matches!(
            check(&known, &guess_at(&token)),
            PreCheck::Unknown
        ));
    }
}
