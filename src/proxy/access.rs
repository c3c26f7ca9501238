//! Stage 6: does the caller have the access the allowing rule requires
//! (`requires:`) on what the request targets? The policy decided first (a
//! request it refuses never gets here); this stage finds each target's
//! workspace and organization ([`crate::access::Resolver`]), reads the
//! caller's access from the store and answers with a typed [`Granted`], or
//! refuses: 404 for another organization's or an invisible target, 403
//! naming the missing permission, 502/504 when the target cannot be
//! resolved. Nothing is forwarded after a refusal.
//!
//! A stage of its own rather than a part of authorization: the policy stays
//! a pure function (`policy test` and `policy explain` show the requirement
//! without any I/O), while this stage does the I/O (upstream lookups, a
//! store read) and records its outcome apart in the context.

use super::Permit;
use crate::access::{AccessError, Granted};
use crate::context::{AccessOutcome, AccessRecord, Decision, RequestContext};
use crate::gateway::Gateway;
use crate::rejection::Rejection;

/// Checks the permit's requirement, if it has one; records the outcome.
pub async fn check(
    gateway: &Gateway,
    permit: &mut Permit,
    ctx: &mut RequestContext,
) -> Result<Option<Granted>, Rejection> {
    let Some(need) = permit.need.take() else {
        return Ok(None);
    };
    let Some(principal) = ctx.principal() else {
        // A rule with `requires` never allows anonymous callers.
        return Err(Rejection::hidden());
    };
    let result = gateway
        .access
        .check(
            gateway.store.as_ref(),
            &gateway.forwarder,
            principal,
            &need,
            ctx.facts.team_access.as_ref(),
        )
        .await;
    let outcome = match &result {
        Ok(granted) => AccessOutcome::Granted(granted.via),
        Err(AccessError::Hidden { .. }) => AccessOutcome::Hidden,
        Err(AccessError::Forbidden { .. }) => AccessOutcome::Forbidden,
        Err(AccessError::Unresolved { .. }) => AccessOutcome::Unresolved,
        Err(AccessError::Store(_)) => AccessOutcome::StoreError,
    };
    let record = &mut ctx.record;
    if let Err(err) = &result {
        record.decision = Some(Decision::Deny);
        record.denial = Some(match err {
            AccessError::Hidden { target } => format!(
                "{target} is in another organization or not visible to the caller (answered 404)"
            ),
            other => other.to_string(),
        });
    }
    record.access = Some(AccessRecord { need, outcome });
    Ok(Some(result?))
}
