//! The canonical request: one spelling of every part of a request that the
//! gateway judges, or a refusal. What is judged is byte-for-byte what is
//! forwarded, read the way the upstream (a Rails/Rack application such as
//! Terraform Enterprise) will read it:
//!
//! * [`path`] — the request path (escapes, dot segments, delimiters);
//! * [`query`] — the query string (syntax; parameters a write may carry);
//! * [`headers`] — `Host`, `Connection`, content headers;
//! * [`json`] — JSON bodies with keys normalized as Rails reads them.

pub mod headers;
pub mod json;
pub mod path;
pub mod query;

pub use path::{canonicalize, CanonicalError, CanonicalPath};

use http::Method;
use query::QueryError;

/// Why a request target (path and query) was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Path(#[from] CanonicalError),
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// The canonical path of a request target, after checking its query for
/// `method` (`write_query_parameters`: what a write's query may carry).
/// The gateway and the policy tools judge targets with this one function.
pub fn canonical_target(
    method: &Method,
    path: &str,
    query: Option<&str>,
    write_query_parameters: &[String],
) -> Result<CanonicalPath, TargetError> {
    let path = canonicalize(path)?;
    query::check(query, method, write_query_parameters)?;
    Ok(path)
}
