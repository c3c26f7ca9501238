//! The records the store keeps, shared by every backend.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        // Milliseconds since the epoch straight from the clock (no calendar
        // arithmetic: the request path asks for it).
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis());
        Timestamp(i64::try_from(since_epoch).unwrap_or(i64::MAX))
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

    /// Parses an ISO 8601 time as Terraform Enterprise accepts it: RFC 3339
    /// with an offset, or a date and time without one, read as UTC (what
    /// the Python SDK sends for a naive `datetime`: `2027-01-01T00:00:00`,
    /// optionally with a fraction of a second).
    pub fn parse_iso8601(text: &str) -> Option<Self> {
        if let Some(at) = Self::parse_rfc3339(text) {
            return Some(at);
        }
        let format = time::macros::format_description!(
            version = 2,
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        let parsed = time::PrimitiveDateTime::parse(text, &format).ok()?;
        Some(Timestamp(
            (parsed.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64,
        ))
    }

    /// This time plus `millis`, saturating.
    pub fn plus_millis(self, millis: u64) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(millis).unwrap_or(i64::MAX)),
        )
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
    /// argon2id PHC string; see `token::secret_hash`). Older
    /// records call it `phc`.
    #[serde(alias = "phc")]
    pub secret_hash: String,
    pub created_at: Timestamp,
    /// `user-…`, `team-…` or `org:…` that generated it, when known.
    pub created_by: Option<String>,
    pub expired_at: Option<Timestamp>,
    pub description: Option<String>,
    /// True for a token with a slot of its own, never reused: a described
    /// team token or a user token (an owner may have many). False for the
    /// legacy one-per-owner token, whose slot the next token replaces.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_slot: bool,
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
    /// Who may use tokens in this organization, and for how long.
    #[serde(default)]
    pub token_settings: TokenSettings,
}

/// An organization's token settings (Terraform Enterprise's
/// `user-tokens-enabled` and token TTL policies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenSettings {
    /// When false, user tokens may not be used on the organization's
    /// resources (only to manage themselves and read the account).
    pub user_tokens_enabled: bool,
    /// The longest lifetime of a token of each type, in milliseconds;
    /// `None`: no maximum.
    pub max_ttl_ms: MaxTtl,
    /// When the TTL policies last changed.
    pub ttl_updated_at: Option<Timestamp>,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            user_tokens_enabled: true,
            max_ttl_ms: MaxTtl::default(),
            ttl_updated_at: None,
        }
    }
}

/// Maximum token lifetimes per token type, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaxTtl {
    pub organization: Option<u64>,
    pub team: Option<u64>,
    pub user: Option<u64>,
    pub audit_trails: Option<u64>,
}

impl MaxTtl {
    /// The maximum for one token type.
    pub fn get(&self, kind: TokenType) -> Option<u64> {
        match kind {
            TokenType::Organization => self.organization,
            TokenType::Team => self.team,
            TokenType::User => self.user,
            TokenType::AuditTrails => self.audit_trails,
        }
    }

    /// Sets the maximum for one token type.
    pub fn set(&mut self, kind: TokenType, millis: Option<u64>) {
        match kind {
            TokenType::Organization => self.organization = millis,
            TokenType::Team => self.team = millis,
            TokenType::User => self.user = millis,
            TokenType::AuditTrails => self.audit_trails = millis,
        }
    }
}

/// The token types of Terraform Enterprise's TTL policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    Organization,
    Team,
    User,
    /// HCP Terraform's audit-trail tokens; tokengate issues none, but keeps
    /// the policy so that clients can read back what they set.
    AuditTrails,
}

impl TokenType {
    pub const ALL: [TokenType; 4] = [
        TokenType::Organization,
        TokenType::Team,
        TokenType::User,
        TokenType::AuditTrails,
    ];

    /// The `token-type` value of the API (`audit_trails` with an underscore).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Organization => "organization",
            TokenType::Team => "team",
            TokenType::User => "user",
            TokenType::AuditTrails => "audit_trails",
        }
    }

    pub fn parse(text: &str) -> Option<TokenType> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The type of an owner's tokens.
    pub fn of(owner: &Owner) -> TokenType {
        match owner {
            Owner::Team { .. } => TokenType::Team,
            Owner::Org { .. } => TokenType::Organization,
            Owner::User { .. } => TokenType::User,
        }
    }
}

/// A token as listed: its record and when it was last used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub credential: Credential,
    pub last_used: Option<Timestamp>,
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
    /// `team:team-…`, `org:NAME`, `user:user-…`, or `token:at-…` for a
    /// refused attempt on an unknown token id.
    pub target: String,
    pub token_id: Option<String>,
    /// What changed, for events that are not about a token (team access:
    /// `workspace ws-… access write`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
