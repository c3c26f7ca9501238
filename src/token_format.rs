//! Token format: generation, strict parsing and the cheap shape check.
//!
//! A token looks like `<14-char id>.atlasv1.<70-char secret>`, the shape
//! Terraform Enterprise uses, so secret scanners recognise a leaked one.
//!
//! * The 14-char public id is `<8-char credential slot><6-char generation>`.
//!   The slot names the store key of the credential (the owner's slot for a
//!   legacy team or organization token, which never changes for that owner;
//!   a slot of its own for a described team token or a user token); the
//!   generation changes on every regenerate, so an old token is told apart
//!   from the current one before any hash work.
//! * The secret is 64 characters from the OS CSPRNG (alphabet of 62, ~381
//!   bits) followed by a 6-character CRC-32 checksum of everything before it,
//!   so a mistyped or made-up token is rejected before any store access.
//!
//! The public token id shown in APIs and logs is `at-<14-char id>`.

use rand::{rngs::OsRng, TryRngCore};
use std::fmt;

/// Characters used for ids and secrets (base62).
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of the credential slot part of the id.
pub const SLOT_LEN: usize = 8;
/// Length of the generation part of the id.
pub const GENERATION_LEN: usize = 6;
const ID_LEN: usize = SLOT_LEN + GENERATION_LEN;
const MARKER: &str = ".atlasv1.";
const RANDOM_LEN: usize = 64;
const CHECKSUM_LEN: usize = 6;
const SECRET_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// Exact length of every token tokengate issues.
pub const TOKEN_LEN: usize = ID_LEN + MARKER.len() + SECRET_LEN;
/// Prefix of the public token id (`at-…`), as in Terraform Enterprise.
pub const TOKEN_ID_PREFIX: &str = "at-";

/// Why a presented token was rejected before any store access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("token has the wrong length")]
    Length,
    #[error("token is not of the form <id>.atlasv1.<secret>")]
    Format,
    #[error("token contains characters outside its alphabet")]
    Alphabet,
    #[error("token checksum does not match")]
    Checksum,
}

/// A token that passed the shape check. Borrowed from the request header;
/// its `Debug` output never shows the secret.
#[derive(Clone, Copy)]
pub struct PresentedToken<'a> {
    full: &'a str,
}

impl<'a> PresentedToken<'a> {
    /// Checks length, layout, alphabet and checksum. Costs well under a microsecond.
    pub fn parse(raw: &'a str) -> Result<Self, ShapeError> {
        if raw.len() != TOKEN_LEN {
            return Err(ShapeError::Length);
        }
        let bytes = raw.as_bytes();
        if &bytes[ID_LEN..ID_LEN + MARKER.len()] != MARKER.as_bytes() {
            return Err(ShapeError::Format);
        }
        let id = &bytes[..ID_LEN];
        let secret = &bytes[ID_LEN + MARKER.len()..];
        if !id
            .iter()
            .chain(secret.iter())
            .all(u8::is_ascii_alphanumeric)
        {
            return Err(ShapeError::Alphabet);
        }
        let (random, checksum) = secret.split_at(RANDOM_LEN);
        if checksum != encode_checksum(id, random) {
            return Err(ShapeError::Checksum);
        }
        Ok(Self { full: raw })
    }

    /// The 8-character credential slot (store key part).
    pub fn slot(&self) -> &'a str {
        &self.full[..SLOT_LEN]
    }

    /// The 6-character generation of this token.
    pub fn generation(&self) -> &'a str {
        &self.full[SLOT_LEN..ID_LEN]
    }

    /// The public id, `at-<14 chars>`; safe to log.
    pub fn public_id(&self) -> String {
        format!("{TOKEN_ID_PREFIX}{}", &self.full[..ID_LEN])
    }

    /// The whole token; only for hashing and verification, never for logs.
    pub fn expose_secret(&self) -> &'a str {
        self.full
    }
}

impl fmt::Debug for PresentedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresentedToken({})", self.public_id())
    }
}

/// A freshly generated token: the secret is handed to the caller once.
pub struct NewToken {
    pub slot: String,
    pub generation: String,
    pub secret_token: String,
}

impl NewToken {
    /// Public id `at-…` of this token.
    pub fn public_id(&self) -> String {
        format!("{TOKEN_ID_PREFIX}{}{}", self.slot, self.generation)
    }
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewToken({})", self.public_id())
    }
}

/// Generates a token for an existing credential slot.
pub fn generate(slot: &str) -> NewToken {
    debug_assert_eq!(slot.len(), SLOT_LEN);
    let generation = random_string(GENERATION_LEN);
    let random = random_string(RANDOM_LEN);
    NewToken {
        slot: slot.to_owned(),
        secret_token: assemble(&format!("{slot}{generation}"), &random),
        generation,
    }
}

/// Puts a token together from its 14-character id and 64 random characters,
/// adding the checksum. (Tests use it to build shape-valid guesses.)
pub fn assemble(id: &str, random: &str) -> String {
    let checksum = encode_checksum(id.as_bytes(), random.as_bytes());
    let checksum = std::str::from_utf8(&checksum).expect("base62 is ASCII");
    format!("{id}{MARKER}{random}{checksum}")
}

/// A new random credential slot name.
pub fn new_slot() -> String {
    random_string(SLOT_LEN)
}

/// A random base62 string from the OS CSPRNG (rejection sampling, no bias).
pub fn random_string(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        OsRng
            .try_fill_bytes(&mut buf)
            .expect("the OS random number generator failed");
        for &b in &buf {
            // 248 = 4 * 62: bytes at or above it would bias the alphabet.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

fn encode_checksum(id: &[u8], random: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(id);
    hasher.update(random);
    let mut value = hasher.finalize();
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_pass_the_shape_check() {
        let slot = new_slot();
        let token = generate(&slot);
        let parsed = PresentedToken::parse(&token.secret_token).unwrap();
        assert_eq!(parsed.slot(), slot);
        assert_eq!(parsed.generation(), token.generation);
        assert_eq!(parsed.public_id(), token.public_id());
        assert_eq!(token.secret_token.len(), TOKEN_LEN);
    }

    #[test]
    fn one_flipped_character_fails_the_checksum() {
        let token = generate(&new_slot()).secret_token;
        let mut bytes = token.into_bytes();
        let i = TOKEN_LEN - 10;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            PresentedToken::parse(&tampered).unwrap_err(),
            ShapeError::Checksum
        );
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert_eq!(
            PresentedToken::parse("abc").unwrap_err(),
            ShapeError::Length
        );
        let wrong_marker = "a".repeat(TOKEN_LEN);
        assert_eq!(
            PresentedToken::parse(&wrong_marker).unwrap_err(),
            ShapeError::Format
        );
        let token = generate(&new_slot()).secret_token;
        let with_symbol = format!("{}-{}", &token[..3], &token[4..]);
        assert_eq!(
            PresentedToken::parse(&with_symbol).unwrap_err(),
            ShapeError::Alphabet
        );
        // Multi-byte characters must not panic on slicing.
        let unicode = format!("é{}", &token[2..]);
        assert!(PresentedToken::parse(&unicode).is_err());
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let token = generate(&new_slot());
        let parsed = PresentedToken::parse(&token.secret_token).unwrap();
        let printed = format!("{parsed:?} {token:?}");
        assert!(!printed.contains(&token.secret_token[23..]));
    }
}
