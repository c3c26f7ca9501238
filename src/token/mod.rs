//! Tokens: their format and shape check ([`format`]), how their secrets are
//! kept at rest ([`secret_hash`]), and their life — generate, regenerate,
//! revoke, with the audit trail ([`lifecycle`]).

/// The format lives low in the layer order (the store parses ids with it):
/// [`crate::token_format`], re-exported here.
pub use crate::token_format as format;
pub mod lifecycle;
pub mod secret_hash;
