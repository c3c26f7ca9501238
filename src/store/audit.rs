//! The audit trail of token management: every generate, regenerate, revoke
//! and every refused attempt, with time, actor, action, target and token id
//! (never the token), appended to the store (a Redis stream, or a table of
//! the embedded file).

pub use super::AuditEvent;
use super::{Store, Timestamp};

impl AuditEvent {
    pub fn new(org: &str, actor: &str, action: &str, target: &str, token_id: Option<&str>) -> Self {
        AuditEvent {
            time: Timestamp::now(),
            org: org.to_owned(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            token_id: token_id.map(str::to_owned),
        }
    }
}

/// Appends an event. The token operation it describes has already happened,
/// so a store failure here is logged (with the whole event) rather than
/// turned into a failed request.
pub async fn record(store: &dyn Store, event: AuditEvent) {
    if let Err(err) = store.append_audit(&event).await {
        tracing::error!(
            error = %err,
            org = %event.org,
            actor = %event.actor,
            action = %event.action,
            target = %event.target,
            token_id = ?event.token_id,
            "could not append to the audit trail"
        );
    }
}
