//! The audit trail of token and team access management: every generate,
//! regenerate, revoke, team access change and every refused attempt, with
//! time, actor, action, target, token id (never the token) and what
//! changed, appended to the store (a Redis stream, or a table of the
//! embedded file).

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
            detail: None,
        }
    }

    /// The event with a description of what changed.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
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
