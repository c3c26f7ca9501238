//! The token operations and their permission checks, without HTTP: what
//! the token API ([`super::manage`], [`super::lists`]) and the web UI
//! (`ui`) both call, so that there is one copy of who may do what
//! and of what each change does (the expiry a new token gets, the audit
//! event, the shortening to the organization's current maximum).
//!
//! Every check answers [`OpError::Hidden`] for what the caller may not
//! manage, whether or not it exists (404 in the API, "not found" in the
//! UI), and records a refused attempt to change something in the audit
//! trail. The API turns an [`OpError`] into its JSON:API error with
//! `From`; the UI into a message on the page.

use super::access::{Caller, Rights};
use super::bodies::{self, ExpiryStatus, SortKey};
use super::documents::Page;
use crate::config::HashingConfig;
use crate::rejection::Rejection;
use crate::store::audit::{self, AuditEvent};
use crate::store::{
    Credential, Organization, Owner, Store, StoreError, StoredToken, Team, Timestamp, TokenType,
};
use crate::token::lifecycle::{self, Actor, ExpiryError, IssueError, Issued};
use http::StatusCode;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Why an operation was not done.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The caller may not manage it, or it does not exist (not told apart).
    #[error("not found")]
    Hidden,
    /// The caller belongs to the organization but lacks the right (the
    /// API reference answers 403 for these).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The requested expiry is not allowed.
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
    /// Another token of the team has this description.
    #[error("Validation failed: Description has already been taken")]
    DescriptionTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Issue(#[from] IssueError),
}

impl From<OpError> for Rejection {
    fn from(err: OpError) -> Self {
        match err {
            OpError::Hidden => Rejection::hidden(),
            OpError::Forbidden(detail) => Rejection::Denied {
                status: StatusCode::FORBIDDEN,
                detail: detail.to_owned(),
            },
            OpError::Expiry(err) => {
                bodies::unprocessable(err.to_string(), "/data/attributes/expired-at")
            }
            OpError::DescriptionTaken => {
                bodies::unprocessable(err.to_string(), "/data/attributes/description")
            }
            OpError::Store(err) => err.into(),
            OpError::Issue(err) => err.into(),
        }
    }
}

/// What the caller asks to do with a token, for the audit trail's record
/// of refused attempts (reads are not recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Read,
    Generate,
    Revoke,
}

/// How new tokens are made: the gateway's config.
#[derive(Debug, Clone, Copy)]
pub struct Issuing {
    pub hashing: HashingConfig,
    /// `token_api.default_expiry`, in milliseconds (`None`: never).
    pub default_expiry_ms: Option<u64>,
}

/// One caller's operations on the tokens of the store.
pub struct Operator<'a> {
    pub store: &'a dyn Store,
    pub caller: &'a Caller<'a>,
    pub rights: &'a Rights<'a>,
    pub issuing: Issuing,
}

/// What the organization-wide list of team tokens is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub page: Page,
    pub sort: SortKey,
    pub descending: bool,
    /// Listed when any holds; every token when empty.
    pub statuses: Vec<ExpiryStatus>,
    /// Part of a team name (any case); `None`: every team.
    pub team_name: Option<String>,
}

impl ListQuery {
    /// The API's query parameters (and the UI's, which uses the same
    /// names): `page[number]`, `page[size]`, `sort`, `filter[status]`
    /// (or `filter[expiry_status]`), `q`.
    pub fn parse(params: &[(String, String)]) -> Result<ListQuery, Rejection> {
        let page = bodies::page(params)?.unwrap_or(Page::DEFAULT);
        let (sort, descending) = bodies::sort(params)?;
        let statuses = bodies::status_filter(params)?;
        let team_name = params
            .iter()
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v.trim().to_lowercase())
            .filter(|q| !q.is_empty());
        Ok(ListQuery {
            page,
            sort,
            descending,
            statuses,
            team_name,
        })
    }
}

/// Orders two optional values, `None` after every value.
fn nones_last<T: Ord>(a: &Option<T>, b: &Option<T>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

impl Operator<'_> {
    /// Records a refused attempt to change a token (reads are not recorded).
    pub async fn refused(&self, intent: Intent, target: &str) {
        let action = match intent {
            Intent::Generate => "generate_refused",
            Intent::Revoke => "revoke_refused",
            Intent::Read => return,
        };
        let event = AuditEvent::new(
            &self.caller.principal.org,
            &self.caller.actor(),
            action,
            target,
            None,
        );
        audit::record(self.store, event).await;
    }

    /// A team and its organization, when both exist.
    async fn team_and_org(
        &self,
        team_id: &str,
    ) -> Result<Option<(Team, Organization)>, StoreError> {
        let Some(team) = self.store.team(team_id).await? else {
            return Ok(None);
        };
        let Some(org) = self.store.org(&team.organization).await? else {
            return Ok(None);
        };
        Ok(Some((team, org)))
    }

    /// The team `team_id` and its organization, when the caller may manage
    /// the team's tokens.
    pub async fn team(
        &self,
        team_id: &str,
        intent: Intent,
    ) -> Result<(Team, Organization), OpError> {
        match self.team_and_org(team_id).await? {
            Some((team, org)) if self.caller.may_manage_team(&org, &team, self.rights) => {
                Ok((team, org))
            }
            _ => {
                self.refused(intent, &format!("team:{team_id}")).await;
                Err(OpError::Hidden)
            }
        }
    }

    /// The organization `name`, when the caller may manage its token.
    pub async fn org(&self, name: &str, intent: Intent) -> Result<Organization, OpError> {
        match self.store.org(name).await? {
            Some(org) if self.caller.may_manage_org_token(&org) => Ok(org),
            _ => {
                self.refused(intent, &format!("org:{name}")).await;
                Err(OpError::Hidden)
            }
        }
    }

    /// The organization `name`, when the caller belongs to it.
    pub async fn own_org(&self, name: &str) -> Result<Organization, OpError> {
        self.store
            .org(name)
            .await?
            .filter(|org| self.caller.in_org(&org.name))
            .ok_or(OpError::Hidden)
    }

    /// The legacy token of `owner` (a team's or the organization's), with
    /// its last use; `None` when it has none.
    pub async fn legacy_token(&self, owner: &Owner) -> Result<Option<StoredToken>, OpError> {
        let Some(credential) = lifecycle::current(self.store, owner).await? else {
            return Ok(None);
        };
        let last_used = self.store.last_used(&credential.slot).await?;
        Ok(Some(StoredToken {
            credential,
            last_used,
        }))
    }

    /// The expiry of a new token of `kind` in `org`.
    fn expiry(
        &self,
        org: &Organization,
        kind: TokenType,
        requested: Option<Timestamp>,
    ) -> Result<Option<Timestamp>, OpError> {
        Ok(lifecycle::expiry_for(
            kind,
            requested,
            self.issuing.default_expiry_ms,
            &org.token_settings,
            Timestamp::now(),
        )?)
    }

    fn actor<'b>(&self, id: &'b str) -> Actor<'b> {
        Actor {
            id,
            created_by: Some(self.caller.creator()),
        }
    }

    /// Generates the legacy token of `owner` (checked with [`Self::team`] or
    /// [`Self::org`]), replacing the current one at once; audited.
    pub async fn generate_legacy(
        &self,
        owner: Owner,
        org: &Organization,
        requested_expiry: Option<Timestamp>,
    ) -> Result<Issued, OpError> {
        let expired_at = self.expiry(org, TokenType::of(&owner), requested_expiry)?;
        let actor_id = self.caller.actor();
        let issued = lifecycle::generate_audited(
            self.store,
            owner,
            self.issuing.hashing,
            self.actor(&actor_id),
            expired_at,
        )
        .await?;
        self.within_current_ttl(issued).await
    }

    /// Revokes the legacy token of `owner`; audited. `Hidden` when it has
    /// none.
    pub async fn revoke_legacy(&self, owner: &Owner) -> Result<Credential, OpError> {
        lifecycle::revoke_audited(self.store, owner, &self.caller.actor())
            .await?
            .ok_or(OpError::Hidden)
    }

    /// Every current token of `org` whose owner passes `keep`, oldest first.
    pub async fn tokens_of(
        &self,
        org: &str,
        keep: impl Fn(&Owner) -> bool,
    ) -> Result<Vec<StoredToken>, StoreError> {
        let mut tokens: Vec<StoredToken> = self
            .store
            .org_tokens(org)
            .await?
            .into_iter()
            .filter(|t| keep(&t.credential.owner))
            .collect();
        tokens.sort_by(|a, b| {
            (a.credential.created_at, &a.credential.token_id)
                .cmp(&(b.credential.created_at, &b.credential.token_id))
        });
        Ok(tokens)
    }

    /// Creates a described token of `team` (checked with [`Self::team`]);
    /// the team's other tokens stay valid. Audited.
    pub async fn create_described(
        &self,
        team: &Team,
        org: &Organization,
        description: String,
        requested_expiry: Option<Timestamp>,
    ) -> Result<Issued, OpError> {
        let expired_at = self.expiry(org, TokenType::Team, requested_expiry)?;
        let actor_id = self.caller.actor();
        let owner = Owner::Team {
            org: org.name.clone(),
            team_id: team.id.clone(),
        };
        let issued = lifecycle::issue_own_audited(
            self.store,
            owner,
            self.issuing.hashing,
            self.actor(&actor_id),
            expired_at,
            Some(description),
        )
        .await
        .map_err(|err| match err {
            IssueError::Store(StoreError::AlreadyExists(_)) => OpError::DescriptionTaken,
            other => other.into(),
        })?;
        self.within_current_ttl(issued).await
    }

    /// Creates a token of the caller's own (a user token) in `org`. Audited.
    pub async fn create_user_token(
        &self,
        owner: Owner,
        org: &Organization,
        description: Option<String>,
        requested_expiry: Option<Timestamp>,
    ) -> Result<Issued, OpError> {
        let expired_at = self.expiry(org, TokenType::User, requested_expiry)?;
        let actor_id = self.caller.actor();
        let issued = lifecycle::issue_own_audited(
            self.store,
            owner,
            self.issuing.hashing,
            self.actor(&actor_id),
            expired_at,
            description,
        )
        .await?;
        self.within_current_ttl(issued).await
    }

    /// After a token was written: if the organization's maximum lifetime
    /// for its type shrank meanwhile (a TTL change that read the token
    /// list before this token was in it), shortens the token to it.
    async fn within_current_ttl(&self, mut issued: Issued) -> Result<Issued, OpError> {
        let credential = &issued.credential;
        let Some(org) = self.store.org(credential.owner.org()).await? else {
            return Ok(issued);
        };
        let Some(max) = org
            .token_settings
            .max_ttl_ms
            .get(TokenType::of(&credential.owner))
        else {
            return Ok(issued);
        };
        let latest = credential.created_at.plus_millis(max);
        if credential.expired_at.is_none_or(|at| at > latest)
            && self.store.clamp_expiry(credential, latest).await?
        {
            issued.credential.expired_at = Some(latest);
        }
        Ok(issued)
    }

    /// True when the caller may read and delete `credential`: a team's
    /// token as [`Caller::may_manage_team`], the organization token as
    /// [`Caller::may_manage_org_token`], a user token only its user.
    pub async fn may_manage(&self, credential: &Credential) -> Result<bool, StoreError> {
        Ok(match &credential.owner {
            Owner::Team { team_id, .. } => match self.team_and_org(team_id).await? {
                Some((team, org)) => self.caller.may_manage_team(&org, &team, self.rights),
                None => false,
            },
            Owner::Org { org } => match self.store.org(org).await? {
                Some(org) => self.caller.may_manage_org_token(&org),
                None => false,
            },
            Owner::User { user_id, .. } => self.caller.is_user(user_id),
        })
    }

    /// The token `token_id` (`at-…`), when it exists and the caller may
    /// manage it.
    pub async fn token(&self, token_id: &str, intent: Intent) -> Result<Credential, OpError> {
        let credential = lifecycle::find(self.store, token_id).await?;
        match credential {
            Some(credential) if self.may_manage(&credential).await? => Ok(credential),
            other => {
                let target =
                    other.map_or_else(|| format!("token:{token_id}"), |c| c.owner.describe());
                self.refused(intent, &target).await;
                Err(OpError::Hidden)
            }
        }
    }

    /// Deletes a token (checked with [`Self::token`]) if it is still
    /// current; audited. `Hidden` when it was already gone.
    pub async fn delete(&self, credential: &Credential) -> Result<Credential, OpError> {
        lifecycle::delete_audited(self.store, credential, &self.caller.actor())
            .await?
            .ok_or(OpError::Hidden)
    }

    /// The team tokens of `org` the caller may manage, each with its team.
    async fn visible_team_tokens(
        &self,
        org: &Organization,
    ) -> Result<Vec<(StoredToken, Team)>, StoreError> {
        let tokens = self
            .tokens_of(&org.name, |o| matches!(o, Owner::Team { .. }))
            .await?;
        let mut teams: HashMap<String, Option<Team>> = HashMap::new();
        let mut visible = Vec::new();
        for token in tokens {
            let Owner::Team { team_id, .. } = &token.credential.owner else {
                continue;
            };
            if !teams.contains_key(team_id) {
                let team = self.store.team(team_id).await?;
                teams.insert(team_id.clone(), team);
            }
            if let Some(Some(team)) = teams.get(team_id) {
                if self.caller.may_manage_team(org, team, self.rights) {
                    visible.push((token, team.clone()));
                }
            }
        }
        Ok(visible)
    }

    /// The organization's team tokens the caller may manage, searched,
    /// filtered and sorted as `query` asks (every match: the caller pages).
    /// `Hidden` for an organization the caller does not belong to.
    pub async fn team_token_list(
        &self,
        org_name: &str,
        query: &ListQuery,
    ) -> Result<Vec<(StoredToken, Team)>, OpError> {
        let org = self.own_org(org_name).await?;
        let now = Timestamp::now();
        let mut tokens = self.visible_team_tokens(&org).await?;
        tokens.retain(|(token, team)| {
            query
                .team_name
                .as_ref()
                .is_none_or(|q| team.name.to_lowercase().contains(q))
                && (query.statuses.is_empty()
                    || query
                        .statuses
                        .iter()
                        .any(|s| s.holds(token.credential.expired_at, now)))
        });
        tokens.sort_by(|(a, team_a), (b, team_b)| {
            let (ca, cb) = (&a.credential, &b.credential);
            let primary = match query.sort {
                SortKey::CreatedAt => ca.created_at.cmp(&cb.created_at),
                SortKey::CreatedBy => nones_last(&ca.created_by, &cb.created_by),
                SortKey::ExpiredAt => nones_last(&ca.expired_at, &cb.expired_at),
                SortKey::LastUsedAt => nones_last(&a.last_used, &b.last_used),
                SortKey::TeamName => team_a.name.cmp(&team_b.name),
            };
            let primary = if query.descending {
                primary.reverse()
            } else {
                primary
            };
            primary
                .then(ca.created_at.cmp(&cb.created_at))
                .then(ca.token_id.cmp(&cb.token_id))
        });
        Ok(tokens)
    }

    /// The team `team_id` and its organization, when the caller may turn
    /// its member token management on or off
    /// ([`Caller::may_change_member_token_management`]: owners, and
    /// manage-teams for teams other than the owners team and admin teams).
    /// A refused attempt is audited (`member_token_management_refused`).
    pub async fn team_settings(&self, team_id: &str) -> Result<(Team, Organization), OpError> {
        match self.team_and_org(team_id).await? {
            Some((team, org))
                if self
                    .caller
                    .may_change_member_token_management(&org, &team, self.rights) =>
            {
                Ok((team, org))
            }
            _ => {
                let event = AuditEvent::new(
                    &self.caller.principal.org,
                    &self.caller.actor(),
                    "member_token_management_refused",
                    &format!("team:{team_id}"),
                    None,
                );
                audit::record(self.store, event).await;
                Err(OpError::Hidden)
            }
        }
    }

    /// Sets whether the members of `team` (checked with
    /// [`Self::team_settings`]) manage its tokens. Audited
    /// (`member_token_management_on` / `_off`).
    pub async fn set_member_token_management(
        &self,
        team: &Team,
        allowed: bool,
    ) -> Result<Team, OpError> {
        let team = self
            .store
            .set_member_token_management(&team.id, allowed)
            .await?;
        let action = if allowed {
            "member_token_management_on"
        } else {
            "member_token_management_off"
        };
        let event = AuditEvent::new(
            &team.organization,
            &self.caller.actor(),
            action,
            &format!("team:{}", team.id),
            None,
        );
        audit::record(self.store, event).await;
        Ok(team)
    }
}
