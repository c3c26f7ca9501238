//! The records the store keeps, shared by every backend.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Timestamp((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// RFC 3339 with milliseconds, as Terraform Enterprise prints times:
    /// `2030-01-01T00:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&format).ok())
            .unwrap_or_else(|| "invalid-time".to_owned())
    }

    /// Parses an RFC 3339 time with an offset.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .ok()?;
        Some(Timestamp(
            (parsed.unix_timestamp_nanos() / 1_000_000) as i64,
        ))
    }
}

/// The three kinds of caller tokengate tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A team service account: acts with its team's access.
    Team,
    /// An organization service account: all CRUD in its organization, never an apply.
    Org,
    /// A person's own token: interactive.
    User,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Team => "team",
            PrincipalKind::Org => "org",
            PrincipalKind::User => "user",
        }
    }
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Owner {
    Team { org: String, team_id: String },
    Org { org: String },
    User { org: String, user_id: String },
}

impl Owner {
    pub fn kind(&self) -> PrincipalKind {
        match self {
            Owner::Team { .. } => PrincipalKind::Team,
            Owner::Org { .. } => PrincipalKind::Org,
            Owner::User { .. } => PrincipalKind::User,
        }
    }

    pub fn org(&self) -> &str {
        match self {
            Owner::Team { org, .. } | Owner::Org { org } | Owner::User { org, .. } => org,
        }
    }

    /// A stable description for logs and audit records: `team:team-…`, `org:acme`, `user:user-…`.
    pub fn describe(&self) -> String {
        match self {
            Owner::Team { team_id, .. } => format!("team:{team_id}"),
            Owner::Org { org } => format!("org:{org}"),
            Owner::User { user_id, .. } => format!("user:{user_id}"),
        }
    }
}

/// The one current token of an owner, as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Public id, `at-<14 chars>`.
    pub token_id: String,
    /// The slot (store key) this credential lives in.
    pub slot: String,
    /// Changes on every regenerate; compared before any hash work.
    pub generation: String,
    pub owner: Owner,
    /// The hash of the whole token, naming its scheme (`$sha256$…` or an
    /// argon2id PHC string; see [`crate::token::secret_hash`]). Older
    /// records call it `phc`.
    #[serde(alias = "phc")]
    pub secret_hash: String,
    pub created_at: Timestamp,
    /// `user-…`, `team-…` or `org:…` that generated it, when known.
    pub created_by: Option<String>,
    pub expired_at: Option<Timestamp>,
    pub description: Option<String>,
}

impl Credential {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expired_at.is_some_and(|at| at <= now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub name: String,
    pub owners_team_id: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub organization: String,
    /// When false only the organization's owners manage this team's token.
    pub allow_member_token_management: bool,
    pub created_at: Timestamp,
    /// The team's organization-level permissions, as Terraform Enterprise's
    /// `organization-access` (all false by default; the owners team may do
    /// everything in its organization whatever these say).
    #[serde(default)]
    pub organization_access: OrganizationAccess,
}

/// Organization-level permissions of a team (Terraform Enterprise's
/// `organization-access` attribute of a team, every flag false by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct OrganizationAccess {
    /// Admin on every workspace of the organization; create workspaces.
    pub manage_workspaces: bool,
    /// Everything of `manage_workspaces`, plus projects.
    pub manage_projects: bool,
    /// Read on every workspace.
    pub read_workspaces: bool,
    pub read_projects: bool,
    /// Create, update and delete teams; generate and revoke team tokens.
    pub manage_teams: bool,
    /// Invite and remove users; add users to visible teams.
    pub manage_membership: bool,
    /// Edit any visible team's organization access.
    pub manage_organization_access: bool,
    pub manage_policies: bool,
    pub manage_policy_overrides: bool,
    pub manage_run_tasks: bool,
    pub manage_vcs_settings: bool,
    pub manage_agent_pools: bool,
    pub manage_providers: bool,
    pub manage_modules: bool,
    pub access_secret_teams: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub organization: String,
    pub team_ids: Vec<String>,
    pub created_at: Timestamp,
}

/// One entry of the audit trail: who did what to which token. Never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub time: Timestamp,
    pub org: String,
    /// `user-…`, or the `at-…` id of the service-account token that acted, or `cli`.
    pub actor: String,
    /// `generate`, `regenerate`, `revoke`, `access_add`, `access_update`,
    /// `access_remove`, or one of them with `_refused`.
    pub action: String,
    /// `team:team-…` or `org:NAME`.
    pub target: String,
    pub token_id: Option<String>,
    /// What changed, for events that are not about a token (team access:
    /// `workspace ws-… access write`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
