//! The store: organizations, teams, users, memberships and token credentials.
//!
//! [`Store`] is the one interface both backends implement (Redis for
//! production, an embedded file for a single node). The request path calls
//! [`Store::credential`], one read per request, or, when it can tell the
//! workspace a request is about before authenticating,
//! [`Store::credential_with_access`]: the credential and its team's access
//! to that workspace, one round trip on Redis.
//!
//! Credentials are kept one per *slot*. A legacy token (a team's
//! description-less token, the organization token) lives in its owner's
//! slot, assigned once: replacing it is one atomic write of that key, so two
//! legacy tokens of one owner can never be valid at the same time, on one
//! Redis or on Redis Cluster (the slot is the key's hash tag). Described team
//! tokens and user tokens get a slot of their own each ([`Store::insert_token`]),
//! indexed under their organization; deleting one deletes only that slot's
//! credential ([`Store::delete_token`]).

pub mod access;
pub mod audit;
pub mod embedded;
pub mod model;
pub mod redis;
pub mod ui;

use crate::token_format as token;
pub use access::{TeamAccess, TeamFacts};
use async_trait::async_trait;
pub use model::*;
pub use ui::{Login, UiSession};

/// Why a store operation failed. Callers map `Unavailable` to 503 and the
/// others to client errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached, timed out or failed internally.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The named thing already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A request the store refuses, e.g. a team of another organization.
    #[error("{0}")]
    Invalid(String),
    /// A record in the store could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// What [`Store::credential_with_access`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRead {
    pub credential: Option<Credential>,
    /// For a team's credential: the team's facts for the workspace asked
    /// about (empty when the team no longer exists); `None` for any other
    /// credential, or when the store could not read them with it.
    pub team_facts: Option<Vec<TeamFacts>>,
}

/// [`Store::credential_with_access`] as two reads: the credential, then
/// its team's facts.
pub async fn credential_then_access<S: Store + ?Sized>(
    store: &S,
    slot: &str,
    workspace_id: &str,
) -> Result<CredentialRead, StoreError> {
    let credential = store.credential(slot).await?;
    let team_facts = match credential.as_ref().map(|c| &c.owner) {
        Some(Owner::Team { team_id, .. }) => Some(
            store
                .access_facts(std::slice::from_ref(team_id), Some(workspace_id))
                .await?,
        ),
        _ => None,
    };
    Ok(CredentialRead {
        credential,
        team_facts,
    })
}

/// Everything tokengate keeps. Implemented by every backend; both pass the
/// same contract tests.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The credential stored in `slot`, if any. Called once per request.
    async fn credential(&self, slot: &str) -> Result<Option<Credential>, StoreError>;

    /// Checks the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates an organization and its `owners` team.
    async fn create_org(&self, name: &str) -> Result<Organization, StoreError>;
    async fn org(&self, name: &str) -> Result<Option<Organization>, StoreError>;

    /// Creates a team in an existing organization; team names are unique per organization.
    async fn create_team(&self, org: &str, name: &str) -> Result<Team, StoreError>;
    async fn team(&self, team_id: &str) -> Result<Option<Team>, StoreError>;

    /// Creates a user in an organization, member of the given teams of that organization.
    async fn create_user(
        &self,
        org: &str,
        name: &str,
        team_ids: &[String],
    ) -> Result<User, StoreError>;
    async fn user(&self, user_id: &str) -> Result<Option<User>, StoreError>;

    /// The owner's slot, assigning a fresh one atomically when it has none.
    /// Two concurrent callers always get the same slot.
    async fn ensure_slot(&self, owner: &Owner) -> Result<String, StoreError>;

    /// The owner's slot, if it has ever had one.
    async fn slot_of(&self, owner: &Owner) -> Result<Option<String>, StoreError>;

    /// Atomically replaces whatever credential is in `credential.slot` with
    /// this one and forgets its last-used time. The previous token stops
    /// working with this single write.
    async fn put_credential(&self, credential: &Credential) -> Result<(), StoreError>;

    /// Replaces the secret hash of the credential in `slot` with `new_hash`,
    /// only if that credential is still exactly `current` (the same token,
    /// the same hash): a re-hash never undoes a regenerate or a revoke.
    /// True when it was replaced.
    async fn replace_secret_hash(
        &self,
        current: &Credential,
        new_hash: &str,
    ) -> Result<bool, StoreError>;

    /// Atomically deletes the credential in `slot`; returns what was deleted.
    async fn delete_credential(&self, slot: &str) -> Result<Option<Credential>, StoreError>;

    /// Records that the token `token_id` in `slot` was used at `at`, unless
    /// the slot now holds another token.
    async fn touch_last_used(
        &self,
        slot: &str,
        token_id: &str,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// When the token currently in `slot` was last used, if ever.
    async fn last_used(&self, slot: &str) -> Result<Option<Timestamp>, StoreError>;

    /// Changes whether team members (not only owners) manage the team's token.
    async fn set_member_token_management(
        &self,
        team_id: &str,
        allowed: bool,
    ) -> Result<Team, StoreError>;

    /// Appends an event to the durable audit trail.
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// Audit events at or after `since`, oldest first, at most `limit`.
    async fn audit_events(
        &self,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    // --- Team workspace access (docs/ACCESS.md) -------------------------
    // Terraform Enterprise's `team-workspaces`: one access record per team
    // and workspace. The request path calls only `access_facts`, once.

    /// Adds a team's access to a workspace; `AlreadyExists` when the team
    /// already has access to that workspace.
    async fn add_team_access(&self, access: &TeamAccess) -> Result<(), StoreError>;

    /// Replaces the stored access with `access.id` (its team and workspace
    /// never change); `NotFound` when it was removed meanwhile.
    async fn update_team_access(&self, access: &TeamAccess) -> Result<(), StoreError>;

    /// The access `tws-…`, if it exists.
    async fn team_access(&self, id: &str) -> Result<Option<TeamAccess>, StoreError>;

    /// Removes the access `tws-…`; returns what was removed. The team loses
    /// it with this call, on every replica.
    async fn remove_team_access(&self, id: &str) -> Result<Option<TeamAccess>, StoreError>;

    /// Every team's access to one workspace, ordered by team id.
    async fn workspace_team_accesses(
        &self,
        workspace_id: &str,
    ) -> Result<Vec<TeamAccess>, StoreError>;

    /// Every workspace access of one team, ordered by workspace id.
    async fn team_accesses(&self, team_id: &str) -> Result<Vec<TeamAccess>, StoreError>;

    /// The request path's read: for each of `team_ids` that exists, its
    /// record (organization-level permissions) and its access to
    /// `workspace_id` (none asked when `None`). One round trip.
    async fn access_facts(
        &self,
        team_ids: &[String],
        workspace_id: Option<&str>,
    ) -> Result<Vec<TeamFacts>, StoreError>;

    /// The credential in `slot` and, when it is a team's, that team's
    /// [`TeamFacts`] for `workspace_id`, read at the same moment: what the
    /// request path would read with [`Store::credential`] and then
    /// [`Store::access_facts`]. This default makes those two reads; the
    /// Redis store makes one round trip.
    async fn credential_with_access(
        &self,
        slot: &str,
        workspace_id: &str,
    ) -> Result<CredentialRead, StoreError> {
        credential_then_access(self, slot, workspace_id).await
    }

    // ------------------------------------------------------------------
    // Token API (issue 12): tokens with a slot of their own (described team
    // tokens, user tokens), listing an organization's tokens, organization
    // token settings, a team's organization access. Every token is still
    // one credential under one slot key, read once per request, so
    // deleting one fails it on the next request on every replica.
    // ------------------------------------------------------------------

    /// Stores a token that has a slot of its own (`credential.own_slot`):
    /// claims the (new) slot, indexes the token under its organization and,
    /// for a described team token, claims its description within the team
    /// (`AlreadyExists` naming the description when another live token of
    /// the team has it; nothing is stored then). A slot that is already
    /// claimed is `Invalid`. The token is valid once this returns.
    async fn insert_token(&self, credential: &Credential) -> Result<(), StoreError>;

    /// Deletes the token `token_id` from `slot` if the slot still holds
    /// exactly that token (compare and delete, one atomic step), with its
    /// last-used time; a token with its own slot also leaves the indexes
    /// and frees its description. Returns what was deleted.
    async fn delete_token(
        &self,
        slot: &str,
        token_id: &str,
    ) -> Result<Option<Credential>, StoreError>;

    /// Every current token of an organization, with its last use: the
    /// organization token, each team's legacy token and every token with a
    /// slot of its own (user tokens issued before slots of their own
    /// existed are found through [`Store::slot_of`] of their user).
    async fn org_tokens(&self, org: &str) -> Result<Vec<StoredToken>, StoreError>;

    /// Sets the expiry of the token `current` to `at` if the slot still
    /// holds exactly `current` and it would otherwise expire later (or
    /// never). True when it was shortened.
    async fn clamp_expiry(&self, current: &Credential, at: Timestamp) -> Result<bool, StoreError>;

    /// Replaces the organization's token settings with `new` if they are
    /// still `current` (compare and set). True when replaced; `NotFound`
    /// for an unknown organization.
    async fn replace_token_settings(
        &self,
        org: &str,
        current: &TokenSettings,
        new: &TokenSettings,
    ) -> Result<bool, StoreError>;

    /// Sets a team's organization-level permissions (`manage-teams`, …).
    async fn set_organization_access(
        &self,
        team_id: &str,
        access: OrganizationAccess,
    ) -> Result<Team, StoreError>;

    // ------------------------------------------------------------------
    // Web UI (issue 14): what its pages list (an organization's teams, a
    // team's members), people's sign-ins (sign-in name and password hash,
    // see [`ui`]), their sessions and a session's shown-once value. None
    // of these is called on the proxy's request path.
    // ------------------------------------------------------------------

    /// Every team of an organization, ordered by name; empty for an
    /// unknown organization.
    async fn org_teams(&self, org: &str) -> Result<Vec<Team>, StoreError>;

    /// Every member of a team, ordered by name; empty for an unknown team.
    async fn team_members(&self, team_id: &str) -> Result<Vec<User>, StoreError>;

    /// Every user whose name is `name` (compared without case), in any
    /// organization, ordered by organization and id.
    async fn users_named(&self, name: &str) -> Result<Vec<User>, StoreError>;

    /// Stores `login`: claims its sign-in name for its user, or replaces
    /// the password hash of a name the user already has.
    /// `AlreadyExists` when another user has that sign-in name.
    async fn set_login(&self, login: &Login) -> Result<(), StoreError>;

    /// The sign-in named `name` (any case), if any.
    async fn login(&self, name: &str) -> Result<Option<Login>, StoreError>;

    /// Stores (or replaces) the session under `key` (the digest of its id,
    /// [`ui::validate_session_key`]) until `session.expires_at`.
    async fn put_ui_session(&self, key: &str, session: &UiSession) -> Result<(), StoreError>;

    /// The session under `key`, unless it is missing or expired.
    async fn ui_session(&self, key: &str) -> Result<Option<UiSession>, StoreError>;

    /// Ends the session under `key` (and drops its flash); true when it
    /// existed. On every replica: the next request with it is signed out.
    async fn delete_ui_session(&self, key: &str) -> Result<bool, StoreError>;

    /// Ends every session of a user; how many there were.
    async fn delete_user_ui_sessions(&self, user_id: &str) -> Result<usize, StoreError>;

    /// Keeps `value` for the session under `key` until `expires_at`,
    /// replacing any value kept before.
    async fn put_ui_flash(
        &self,
        key: &str,
        value: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Takes the session's kept value: returns it and deletes it in one
    /// atomic step, so only one caller ever gets it.
    async fn take_ui_flash(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Keeps the upload grant `key` (the digest of an upload URL the
    /// upstream issued through the gateway, [`validate_grant_key`]) until
    /// `expires_at`; on every replica.
    async fn put_upload_grant(&self, key: &str, expires_at: Timestamp) -> Result<(), StoreError>;

    /// Whether the upload grant `key` is kept and has not expired.
    async fn upload_granted(&self, key: &str) -> Result<bool, StoreError>;

    /// Ends the upload grant `key` (its upload was taken); on every replica.
    async fn end_upload_grant(&self, key: &str) -> Result<(), StoreError>;
}

/// An upload grant's key: the lowercase hex SHA-256 of the upload URL's path.
pub fn validate_grant_key(key: &str) -> Result<(), StoreError> {
    if key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::Invalid("malformed upload grant key".into()))
    }
}

/// How long an unfinished claim on a team token's description blocks it:
/// a claim whose token never appeared (a crash between the two writes of
/// the Redis store) is taken over after this.
pub const DESCRIPTION_CLAIM_MS: i64 = 30_000;

/// Checks a credential given to [`Store::insert_token`].
pub(crate) fn check_own_slot(credential: &Credential) -> Result<(), StoreError> {
    validate_slot(&credential.slot)?;
    if !credential.own_slot || matches!(credential.owner, Owner::Org { .. }) {
        return Err(StoreError::Invalid(
            "only described team tokens and user tokens have a slot of their own".into(),
        ));
    }
    Ok(())
}

/// The description of a team token, which must be unique within its team.
pub(crate) fn team_description(credential: &Credential) -> Option<(&str, &str)> {
    match (&credential.owner, &credential.description) {
        (Owner::Team { team_id, .. }, Some(description)) => Some((team_id, description)),
        _ => None,
    }
}

pub(crate) fn description_taken(description: &str) -> StoreError {
    StoreError::AlreadyExists(format!("a token with description `{description}`"))
}

pub(crate) fn slot_taken(slot: &str) -> StoreError {
    StoreError::Invalid(format!("slot `{slot}` is already claimed"))
}

/// `current` with its expiry brought forward to `at`, unless it already
/// expires earlier.
pub(crate) fn clamped(current: &Credential, at: Timestamp) -> Option<Credential> {
    if current.expired_at.is_some_and(|e| e <= at) {
        return None;
    }
    Some(Credential {
        expired_at: Some(at),
        ..current.clone()
    })
}

/// Validates an organization, team or user name; the error says the rule.
pub fn validate_name(what: &str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} name `{name}` is invalid: use 1 to 64 letters, digits, `-` or `_`"
        )))
    }
}

/// Validates an id such as `team-…` or `user-…` before it becomes part of a key.
pub fn validate_id(prefix: &str, id: &str) -> Result<(), StoreError> {
    let ok = id.len() <= 64
        && id.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("{prefix}… id `{id}`")))
    }
}

/// A slot name becomes part of a key: only the base62 shape tokens use.
pub fn validate_slot(slot: &str) -> Result<(), StoreError> {
    if slot.len() == token::SLOT_LEN && slot.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("malformed slot `{slot}`")))
    }
}

// Records and errors built the same way by every backend, so that both
// answer alike (the contract tests compare them).

/// A stored record: JSON, in every backend.
pub(crate) fn encode_record<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("store records always serialize")
}

/// Decodes a stored record; `key` names it in the error.
pub(crate) fn decode_record<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// A new organization and its `owners` team, not stored yet; `name` is
/// already validated.
pub(crate) fn new_org(name: &str) -> (Organization, Team) {
    let org = Organization {
        name: name.to_owned(),
        owners_team_id: new_id("team-"),
        created_at: Timestamp::now(),
        token_settings: TokenSettings::default(),
    };
    let owners = Team {
        id: org.owners_team_id.clone(),
        name: "owners".to_owned(),
        organization: name.to_owned(),
        allow_member_token_management: true,
        created_at: org.created_at,
        organization_access: OrganizationAccess::default(),
    };
    (org, owners)
}

/// A new team, not stored yet; `name` is already validated.
pub(crate) fn new_team(org: &str, name: &str) -> Team {
    Team {
        id: new_id("team-"),
        name: name.to_owned(),
        organization: org.to_owned(),
        allow_member_token_management: true,
        created_at: Timestamp::now(),
        organization_access: OrganizationAccess::default(),
    }
}

/// A new user, member of each of `team_ids` once; not stored yet. The
/// name and the teams are already checked.
pub(crate) fn new_user(org: &str, name: &str, team_ids: &[String]) -> User {
    let mut unique_teams = team_ids.to_vec();
    unique_teams.sort();
    unique_teams.dedup();
    User {
        id: new_id("user-"),
        name: name.to_owned(),
        organization: org.to_owned(),
        team_ids: unique_teams,
        created_at: Timestamp::now(),
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", token::random_string(16))
}

/// Checks that a user of `org` may join `team_id`, given what the store
/// holds under that id.
pub(crate) fn check_member_team(
    org: &str,
    team_id: &str,
    team: Option<&Team>,
) -> Result<(), StoreError> {
    match team {
        Some(team) if team.organization == org => Ok(()),
        Some(_) => Err(StoreError::Invalid(format!(
            "team `{team_id}` belongs to another organization"
        ))),
        None => Err(StoreError::NotFound(format!("team `{team_id}`"))),
    }
}

pub(crate) fn org_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("organization `{name}`"))
}

pub(crate) fn org_exists(name: &str) -> StoreError {
    StoreError::AlreadyExists(format!("organization `{name}`"))
}

pub(crate) fn team_exists(team: &Team) -> StoreError {
    StoreError::AlreadyExists(format!(
        "team `{}` in organization `{}`",
        team.name, team.organization
    ))
}
