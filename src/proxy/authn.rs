//! Stage 3: who is calling. The request's `Authorization` header becomes the
//! context's principal (none for an anonymous request); a bad or unknown
//! token is refused (401), a store failure fails closed (503). When the
//! path names a workspace and the policy may check access, a team token's
//! access to it is read with the credential, in the same store round trip.

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
    let workspace = gateway.access.workspace_hint(&ctx.facts.policy, ctx.path());
    match gateway
        .authenticator
        .authenticate_headers(headers, workspace.as_deref())
        .await
    {
        Ok(Some(authenticated)) => {
            ctx.facts.principal = Some(authenticated.principal);
            ctx.facts.team_access = authenticated.team_access;
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(err) => {
            ctx.record.auth_failure = Some(err.failure());
            Err(err.into())
        }
    }
}
