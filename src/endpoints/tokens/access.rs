//! Who may manage which token, following Terraform Enterprise's API
//! reference (docs/TOKENS.md has the table):
//!
//! * **owners** — a user in the organization's `owners` team, or the owners
//!   team's token — manage every token of the organization and its token
//!   settings;
//! * a user, or a team token, of a team with the **manage-teams**
//!   organization permission (or manage-organization-access) manages the
//!   tokens of every team but the owners team and the teams in
//!   `admin.teams`;
//! * a user who is a **member** of a team manages that team's tokens while
//!   the team allows member token management;
//! * the **organization token** regenerates and deletes itself; it manages
//!   team tokens only with `token_api.org_tokens_manage_team_tokens`, never
//!   an admin team's;
//! * a **user** manages their own user tokens, with a user token, and
//!   nobody else does.

use crate::auth::Principal;
use crate::store::{Organization, PrincipalKind, Store, StoreError, Team, User};

/// The caller of a token endpoint, with what decides their rights.
pub struct Caller<'a> {
    pub principal: &'a Principal,
    /// The user, for a user token.
    pub user: Option<User>,
    /// The user's teams, or the team of a team token.
    pub teams: Vec<Team>,
}

/// What the gateway's config says about service accounts.
pub struct Rights<'a> {
    pub org_tokens_manage_team_tokens: bool,
    pub admin_teams: &'a [String],
}

impl<'a> Caller<'a> {
    /// Reads what the caller's rights depend on.
    pub async fn load(store: &dyn Store, principal: &'a Principal) -> Result<Self, StoreError> {
        let mut caller = Caller {
            principal,
            user: None,
            teams: Vec::new(),
        };
        let team_ids = match principal.kind {
            PrincipalKind::User => {
                let Some(user_id) = &principal.user_id else {
                    return Ok(caller);
                };
                caller.user = store.user(user_id).await?;
                caller
                    .user
                    .as_ref()
                    .map(|u| u.team_ids.clone())
                    .unwrap_or_default()
            }
            PrincipalKind::Team => principal.team_id.iter().cloned().collect(),
            PrincipalKind::Org => Vec::new(),
        };
        for team_id in team_ids {
            if let Some(team) = store.team(&team_id).await? {
                if team.organization == principal.org {
                    caller.teams.push(team);
                }
            }
        }
        Ok(caller)
    }

    /// A user of this organization, or a service account of it.
    pub fn in_org(&self, org: &str) -> bool {
        self.principal.org == org
    }

    /// A member of the owners team, or the owners team's token.
    pub fn is_owner(&self, org: &Organization) -> bool {
        self.in_org(&org.name)
            && self.principal.kind != PrincipalKind::Org
            && self.teams.iter().any(|t| t.id == org.owners_team_id)
    }

    fn manages_teams(&self) -> bool {
        self.principal.kind != PrincipalKind::Org
            && self.teams.iter().any(|t| {
                t.organization_access.manage_teams
                    || t.organization_access.manage_organization_access
            })
    }

    /// The organization token of `org`.
    pub fn is_org_token(&self, org: &str) -> bool {
        self.principal.kind == PrincipalKind::Org && self.in_org(org)
    }

    /// True when the caller may create, read and delete `team`'s tokens.
    pub fn may_manage_team(&self, org: &Organization, team: &Team, rights: &Rights<'_>) -> bool {
        if !self.in_org(&org.name) || team.organization != org.name {
            return false;
        }
        if self.is_owner(org) {
            return true;
        }
        let admin_team = rights.admin_teams.contains(&team.id);
        let owners_team = team.id == org.owners_team_id;
        match self.principal.kind {
            PrincipalKind::Org => rights.org_tokens_manage_team_tokens && !admin_team,
            PrincipalKind::Team => self.manages_teams() && !admin_team && !owners_team,
            PrincipalKind::User => {
                (self.manages_teams() && !admin_team && !owners_team)
                    || (team.allow_member_token_management
                        && self.teams.iter().any(|t| t.id == team.id))
            }
        }
    }

    /// True when the caller may turn `team`'s member token management on or
    /// off: owners, and manage-teams for teams other than the owners team
    /// and admin teams.
    pub fn may_change_member_token_management(
        &self,
        org: &Organization,
        team: &Team,
        rights: &Rights<'_>,
    ) -> bool {
        self.in_org(&org.name)
            && team.organization == org.name
            && (self.is_owner(org)
                || (self.manages_teams()
                    && team.id != org.owners_team_id
                    && !rights.admin_teams.contains(&team.id)))
    }

    /// True when the caller may regenerate and delete the organization token.
    pub fn may_manage_org_token(&self, org: &Organization) -> bool {
        self.is_owner(org) || self.is_org_token(&org.name)
    }

    /// True when the caller may manage team tokens at all in `org` (the
    /// organization-wide list and bulk delete answer 403 otherwise).
    pub fn manages_some_team_tokens(&self, org: &Organization, rights: &Rights<'_>) -> bool {
        self.in_org(&org.name)
            && (self.is_owner(org)
                || self.manages_teams()
                || (self.principal.kind == PrincipalKind::Org
                    && rights.org_tokens_manage_team_tokens)
                || (self.principal.kind == PrincipalKind::User
                    && self.teams.iter().any(|t| t.allow_member_token_management)))
    }

    /// The user `user_id` calling with one of their own tokens.
    pub fn is_user(&self, user_id: &str) -> bool {
        self.principal.kind == PrincipalKind::User
            && self.principal.user_id.as_deref() == Some(user_id)
    }

    /// What `created-by` records for a token this caller creates: `user-…`,
    /// `team-…` or `org:NAME`.
    pub fn creator(&self) -> String {
        match self.principal.kind {
            PrincipalKind::User => self.principal.user_id.clone().unwrap_or_default(),
            PrincipalKind::Team => self.principal.team_id.clone().unwrap_or_default(),
            PrincipalKind::Org => format!("org:{}", self.principal.org),
        }
    }

    /// The audit trail's actor: a user id, or a service account's token id.
    pub fn actor(&self) -> String {
        self.principal
            .user_id
            .clone()
            .unwrap_or_else(|| self.principal.token_id.clone())
    }
}
