//! Tokens: their format and shape check ([`format`]), how their secrets are
//! kept at rest ([`secret_hash`]), and their life — generate, regenerate,
//! revoke, with the audit trail ([`lifecycle`]).

pub mod format;
pub mod lifecycle;
pub mod secret_hash;
