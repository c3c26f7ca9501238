//! Team workspace access records: Terraform Enterprise's `team-workspaces`
//! (one team's access level on one workspace), kept the same way by every
//! backend, and the facts the request path reads in one store call.

use super::{StoreError, Team, Timestamp};
use crate::access_model::{AccessLevel, Effective, Permissions};
use crate::token_format as token;
use serde::{Deserialize, Serialize};

/// One team's access to one workspace (`tws-…`). A team has at most one
/// per workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamAccess {
    /// `tws-…`.
    pub id: String,
    pub team_id: String,
    pub workspace_id: String,
    /// The organization of both the team and the workspace.
    pub organization: String,
    pub access: AccessLevel,
    /// The fine-grained permissions: set one by one for `custom`, the
    /// level's own for the fixed levels.
    pub permissions: Permissions,
    pub created_at: Timestamp,
}

impl TeamAccess {
    /// A new access record (not stored yet) with a fresh id. For a fixed
    /// level the level's permissions are kept, whatever `permissions` says.
    pub fn new(
        team_id: &str,
        workspace_id: &str,
        organization: &str,
        access: AccessLevel,
        permissions: Permissions,
    ) -> TeamAccess {
        TeamAccess {
            id: format!("tws-{}", token::random_string(16)),
            team_id: team_id.to_owned(),
            workspace_id: workspace_id.to_owned(),
            organization: organization.to_owned(),
            access,
            permissions: access.fixed_permissions().unwrap_or(permissions),
            created_at: Timestamp::now(),
        }
    }

    /// What this access allows.
    pub fn effective(&self) -> Effective {
        Effective::of_grant(self.access, self.permissions)
    }
}

/// One team as the request path sees it: its record (organization-level
/// permissions) and its access to the workspace asked about, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamFacts {
    pub team: Team,
    pub access: Option<TeamAccess>,
}

/// A workspace id becomes part of a key: letters, digits, `-` and `_`,
/// at most 64 (every Terraform Enterprise id is `ws-` and 16 of them).
pub fn validate_workspace_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "workspace id `{id}` is invalid: use 1 to 64 letters, digits, `-` or `_`"
        )))
    }
}

/// Checks what an access record names before it becomes part of keys.
pub(crate) fn validate_access(access: &TeamAccess) -> Result<(), StoreError> {
    super::validate_id("tws-", &access.id)
        .map_err(|_| StoreError::Invalid(format!("access id `{}` is invalid", access.id)))?;
    super::validate_id("team-", &access.team_id)
        .map_err(|_| StoreError::Invalid(format!("team id `{}` is invalid", access.team_id)))?;
    validate_workspace_id(&access.workspace_id)
}

pub(crate) fn access_exists(access: &TeamAccess) -> StoreError {
    StoreError::AlreadyExists(format!(
        "access of team `{}` to workspace `{}`",
        access.team_id, access.workspace_id
    ))
}

pub(crate) fn access_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("team access `{id}`"))
}
