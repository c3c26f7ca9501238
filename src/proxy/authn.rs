//! Stage 3: who is calling. The request's `Authorization` header becomes the
//! context's principal (none for an anonymous request); a bad or unknown
//! token is refused (401), a store failure fails closed (503).

use crate::context::RequestContext;
use crate::gateway::Gateway;
use crate::rejection::Rejection;
use http::HeaderMap;

/// Authenticates the request by its headers and puts the principal into `ctx`.
pub async fn authenticate(
    gateway: &Gateway,
    headers: &HeaderMap,
    ctx: &mut RequestContext,
) -> Result<(), Rejection> {
    match gateway.authenticator.authenticate_headers(headers).await {
        Ok(principal) => {
            ctx.facts.principal = principal;
            Ok(())
        }
        Err(err) => {
            ctx.record.auth_failure = Some(err.failure());
            Err(err.into())
        }
    }
}
