//! The access check: may this caller do what the policy rule requires
//! (`requires:`) on what the request targets? The answer follows Terraform
//! Enterprise:
//!
//! * a target in another organization, or a workspace the caller has no
//!   access to at all, is **hidden** (404, nothing said about it);
//! * a visible workspace where the caller has too little access is
//!   **forbidden** (403, naming the missing permission);
//! * an organization token may do everything in its own organization
//!   (what it may not do, such as applying, the policy refuses first);
//! * a team token acts with its team's access, a user token with the union
//!   of the user's teams; the owners team may do everything in its
//!   organization; organization-level permissions count
//!   (`manage-workspaces` is admin on every workspace, `read-workspaces`
//!   read); the effective access is the highest of all.
//!
//! The team's access is read from the store on every request (one read for
//! a team token, two for a user: the user's teams, then theirs), so a change
//! or a revocation holds from the next request on, on every replica. A team
//! token's access to the workspace its path names was usually read already,
//! with its credential ([`AccessControl::workspace_hint`],
//! [`TeamAccessRead`]): then the check makes no read of its own.

use super::fresh_reads::FreshReads;
use super::resolver::{ResolveError, Resolver};
use crate::access_model::{Effective, OrgFlag, Requirement, ResourceKind, WorkspacePermission};
use crate::auth::{Principal, TeamAccessRead};
use crate::canonical::CanonicalPath;
use crate::config::ResolverConfig;
use crate::per_worker::NearCache;
use crate::policy::{routed_id, Need, Policy, Target};
use crate::store::{OrganizationAccess, PrincipalKind, Store, StoreError, TeamFacts};
use crate::upstream::Forwarder;
use std::sync::Arc;

/// Why a request's access check refused it.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// 404: another organization's, or nothing the caller can see.
    #[error("not found")]
    Hidden { target: String },
    /// 403: visible, but the caller lacks `missing`.
    #[error("{detail}")]
    Forbidden {
        missing: Requirement,
        detail: String,
    },
    /// The target could not be resolved: refused (404, 502 or 504).
    #[error("the gateway could not check access to {target}: {source}")]
    Unresolved {
        target: String,
        #[source]
        source: ResolveError,
    },
    /// 503: the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who gave the caller what it needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// The organization token, in its own organization.
    OrganizationToken,
    /// The organization's owners team.
    Owners,
    /// The caller's teams (workspace access or organization permissions).
    Teams,
    /// Membership of the target's organization was all that was asked.
    Membership,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::OrganizationToken => "organization_token",
            Via::Owners => "owners",
            Via::Teams => "teams",
            Via::Membership => "membership",
        }
    }
}

/// A request that passed its access check: what was required, and who
/// gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub requirement: Requirement,
    pub via: Via,
}

/// What a caller may do on one workspace, and through whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerAccess {
    /// `None`: the workspace is not visible to the caller at all.
    pub effective: Option<Effective>,
    pub via: Via,
    /// The caller's teams in its organization (none for the organization token).
    pub teams: Vec<String>,
}

/// Where a target lives. The ids are the request's own or the resolver
/// cache's: a warm lookup copies no string.
struct Place<'t> {
    organization: Id<'t>,
    workspace: Option<Id<'t>>,
}

/// An id borrowed from the request, or shared with a cache.
#[derive(Debug)]
pub enum Id<'t> {
    Target(&'t str),
    Shared(Arc<str>),
}

impl std::ops::Deref for Id<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Id::Target(id) => id,
            Id::Shared(id) => id,
        }
    }
}

/// The access check and its resolver; one per gateway.
pub struct AccessControl {
    pub resolver: Resolver,
    /// Each organization's owners team (it never changes), kept by each
    /// worker.
    owners: NearCache<String, Arc<str>>,
    /// Concurrent reads of one caller's access to one workspace, shared
    /// only while unsent (each request sees what held when it started).
    reads: FreshReads<(Vec<String>, Option<String>), Vec<TeamFacts>>,
}

impl AccessControl {
    pub fn new(config: &ResolverConfig) -> AccessControl {
        AccessControl {
            resolver: Resolver::new(config),
            owners: NearCache::new(10_000),
            reads: FreshReads::default(),
        }
    }

    /// The workspace a request is most likely about, known before it is
    /// authenticated and judged, so that a team token's access to it can be
    /// read with its credential: the workspace id of
    /// `/api/v2/workspaces/{id}/…`, or the cached workspace of
    /// `/api/v2/{runs, plans, …}/{id}/…`. `None` under a policy without
    /// `requires:`. Only a hint: the access check uses what was read only
    /// when it asks about that same workspace.
    pub fn workspace_hint<'p>(&self, policy: &Policy, path: &'p CanonicalPath) -> Option<Id<'p>> {
        if !policy.requires_access() {
            return None;
        }
        let mut segments = path.segments();
        if (segments.next(), segments.next()) != (Some("api"), Some("v2")) {
            return None;
        }
        let (collection, id) = (segments.next()?, routed_id(segments.next()?)?);
        if collection == "workspaces" {
            return id.starts_with("ws-").then_some(Id::Target(id));
        }
        let kind = ResourceKind::ALL
            .into_iter()
            .find(|kind| kind.collection() == collection)?;
        self.resolver.cached_workspace_id(kind, id).map(Id::Shared)
    }

    /// Checks `need` for `principal`.
    pub async fn check(
        &self,
        store: &dyn Store,
        forwarder: &Forwarder,
        principal: &Principal,
        need: &Need,
        prefetched: Option<&TeamAccessRead>,
    ) -> Result<Granted, AccessError> {
        let mut granted = Granted {
            requirement: need.requirement,
            via: Via::Membership,
        };
        for target in &need.targets {
            let place = self.locate(store, forwarder, principal, target).await?;
            if *place.organization != *principal.org {
                return Err(hidden(target));
            }
            let via = match (need.requirement, &place.workspace) {
                (Requirement::Workspace(permission), Some(workspace)) => {
                    let access = self
                        .effective_access(store, principal, workspace, prefetched)
                        .await?;
                    Self::workspace_permission(access, workspace, permission, need, target)?
                }
                // A team or an organization named beside the workspace: it
                // must be of the caller's organization, which it is.
                (Requirement::Workspace(_), None) | (Requirement::OrganizationMember, _) => {
                    Via::Membership
                }
                (requirement, _) => {
                    self.organization_permission(store, principal, requirement, &place, need)
                        .await?
                }
            };
            if via != Via::Membership || granted.via == Via::Membership {
                granted.via = via;
            }
        }
        Ok(granted)
    }

    /// Finds a target's organization (and workspace). Another
    /// organization's workspace name is not even looked up; an
    /// organization resource (`{project_id}`, …) has no workspace.
    async fn locate<'t>(
        &self,
        store: &dyn Store,
        forwarder: &Forwarder,
        principal: &Principal,
        target: &'t Target,
    ) -> Result<Place<'t>, AccessError> {
        let unresolved = |source: ResolveError| match source {
            ResolveError::NotFound { .. } => hidden(target),
            source => AccessError::Unresolved {
                target: target.to_string(),
                source,
            },
        };
        let workspace = match target {
            Target::Organization(name) => {
                return Ok(Place {
                    organization: Id::Target(name),
                    workspace: None,
                })
            }
            Target::OrgResource(kind, id) => {
                let organization = self
                    .resolver
                    .organization_of_resource(forwarder, *kind, id)
                    .await
                    .map_err(unresolved)?;
                return Ok(Place {
                    organization: Id::Shared(organization),
                    workspace: None,
                });
            }
            Target::Team(id) => {
                let team = store.team(id).await?.ok_or_else(|| hidden(target))?;
                return Ok(Place {
                    organization: Id::Shared(team.organization.into()),
                    workspace: None,
                });
            }
            Target::WorkspaceName { organization, .. } if *organization != principal.org => {
                return Err(hidden(target))
            }
            Target::WorkspaceName { organization, name } => {
                let workspace = self
                    .resolver
                    .workspace_by_name(forwarder, organization, name)
                    .await
                    .map_err(unresolved)?;
                return Ok(Place {
                    organization: Id::Shared(workspace.organization.into()),
                    workspace: Some(Id::Shared(workspace.id.into())),
                });
            }
            Target::Workspace(id) => Id::Target(id),
            Target::Resource(kind, id) => Id::Shared(
                self.resolver
                    .workspace_id(forwarder, *kind, id)
                    .await
                    .map_err(unresolved)?,
            ),
        };
        let organization = self
            .resolver
            .organization_of(forwarder, &workspace)
            .await
            .map_err(unresolved)?;
        Ok(Place {
            organization: Id::Shared(organization),
            workspace: Some(workspace),
        })
    }

    /// The caller's teams, with their records and their access to
    /// `workspace` (one store read for a team, two for a user; none when
    /// a team token's were read with its credential).
    async fn team_facts<'r>(
        &self,
        store: &dyn Store,
        principal: &Principal,
        workspace: Option<&str>,
        prefetched: Option<&'r TeamAccessRead>,
    ) -> Result<TeamFactsRead<'r>, StoreError> {
        if let (Some(team), Some(workspace), Some(read)) =
            (&principal.team_id, workspace, prefetched)
        {
            if let Some(facts) = read.facts_for(team, workspace) {
                let own = facts.iter().all(|f| f.team.organization == principal.org);
                return Ok(TeamFactsRead::WithCredential(if own { facts } else { &[] }));
            }
        }
        let teams = match (&principal.team_id, &principal.user_id) {
            (Some(team), _) => vec![team.clone()],
            (None, Some(user)) => match store.user(user).await? {
                Some(user) => user.team_ids,
                None => return Ok(TeamFactsRead::Own(Arc::default())),
            },
            (None, None) => return Ok(TeamFactsRead::Own(Arc::default())),
        };
        let key = (teams, workspace.map(str::to_owned));
        let org = &principal.org;
        let facts = self
            .reads
            .read(&key, || async {
                let facts = store.access_facts(&key.0, workspace).await?;
                Ok(facts
                    .into_iter()
                    .filter(|f| f.team.organization == *org)
                    .collect())
            })
            .await?;
        Ok(TeamFactsRead::Own(facts))
    }

    /// The owners team of `organization`, if the organization exists.
    async fn owners_team(
        &self,
        store: &dyn Store,
        organization: &str,
    ) -> Result<Option<Arc<str>>, StoreError> {
        if let Some(owners) = self.owners.get(organization) {
            return Ok(Some(owners));
        }
        let Some(org) = store.org(organization).await? else {
            return Ok(None);
        };
        let owners: Arc<str> = Arc::from(org.owners_team_id);
        self.owners.insert(organization.to_owned(), owners.clone());
        Ok(Some(owners))
    }

    /// What `principal` may do on `workspace`, a workspace of the
    /// principal's own organization, and the principal's teams there: one
    /// store read for a team token, two for a user, none for the
    /// organization token.
    pub async fn caller_access(
        &self,
        store: &dyn Store,
        principal: &Principal,
        workspace: &str,
        prefetched: Option<&TeamAccessRead>,
    ) -> Result<CallerAccess, StoreError> {
        if principal.kind == PrincipalKind::Org {
            return Ok(CallerAccess {
                effective: Some(Effective::OWNER),
                via: Via::OrganizationToken,
                teams: Vec::new(),
            });
        }
        let facts = self
            .team_facts(store, principal, Some(workspace), prefetched)
            .await?;
        let (effective, via) = self
            .effective_of(store, principal, facts.as_slice())
            .await?;
        Ok(CallerAccess {
            effective,
            via,
            teams: facts.as_slice().iter().map(|f| f.team.id.clone()).collect(),
        })
    }

    /// [`Self::caller_access`] without the teams: what the request path
    /// asks.
    async fn effective_access(
        &self,
        store: &dyn Store,
        principal: &Principal,
        workspace: &str,
        prefetched: Option<&TeamAccessRead>,
    ) -> Result<(Option<Effective>, Via), StoreError> {
        if principal.kind == PrincipalKind::Org {
            return Ok((Some(Effective::OWNER), Via::OrganizationToken));
        }
        let facts = self
            .team_facts(store, principal, Some(workspace), prefetched)
            .await?;
        self.effective_of(store, principal, facts.as_slice()).await
    }

    /// The effective access the caller's teams (`facts`) give on one
    /// workspace: everything for the owners team, else the highest of the
    /// teams' workspace access and organization permissions (`None`: the
    /// workspace is not visible).
    async fn effective_of(
        &self,
        store: &dyn Store,
        principal: &Principal,
        facts: &[TeamFacts],
    ) -> Result<(Option<Effective>, Via), StoreError> {
        let owners = self.owners_team(store, &principal.org).await?;
        if facts.iter().any(|f| Some(&*f.team.id) == owners.as_deref()) {
            return Ok((Some(Effective::OWNER), Via::Owners));
        }
        let effective = facts
            .iter()
            .flat_map(|facts| {
                let flags = &facts.team.organization_access;
                OrgFlag::ALL
                    .into_iter()
                    .filter(|flag| has_flag(flags, *flag))
                    .filter_map(OrgFlag::workspace_effect)
                    .chain(facts.access.as_ref().map(|a| a.effective()))
            })
            .reduce(Effective::union);
        Ok((effective, Via::Teams))
    }

    /// Whether `access` (the caller's on `workspace`) allows `permission`.
    fn workspace_permission(
        (effective, via): (Option<Effective>, Via),
        workspace: &str,
        permission: WorkspacePermission,
        need: &Need,
        target: &Target,
    ) -> Result<Via, AccessError> {
        let Some(effective) = effective else {
            return Err(hidden(target));
        };
        if effective.allows(permission) {
            return Ok(via);
        }
        let described = match target {
            Target::Workspace(_) | Target::WorkspaceName { .. } => target.to_string(),
            other => format!("workspace {workspace} ({other})"),
        };
        Err(AccessError::Forbidden {
            missing: need.requirement,
            detail: format!(
                "this request needs {} on {described}, and the caller has {} there (policy rule `{}`)",
                need.requirement,
                effective.describe(),
                need.rule
            ),
        })
    }

    async fn organization_permission(
        &self,
        store: &dyn Store,
        principal: &Principal,
        requirement: Requirement,
        place: &Place<'_>,
        need: &Need,
    ) -> Result<Via, AccessError> {
        if principal.kind == PrincipalKind::Org {
            return Ok(Via::OrganizationToken);
        }
        let facts = self.team_facts(store, principal, None, None).await?;
        let facts = facts.as_slice();
        let owners = self.owners_team(store, &principal.org).await?;
        if facts.iter().any(|f| Some(&*f.team.id) == owners.as_deref()) {
            return Ok(Via::Owners);
        }
        if let Requirement::OrganizationFlag(flag) = requirement {
            let meets = |access: &OrganizationAccess| {
                OrgFlag::ALL
                    .into_iter()
                    .any(|own| own.meets(flag) && has_flag(access, own))
            };
            if facts.iter().any(|f| meets(&f.team.organization_access)) {
                return Ok(Via::Teams);
            }
        }
        Err(AccessError::Forbidden {
            missing: requirement,
            detail: format!(
                "this request needs {requirement} in organization {}, which the caller's teams do not have (policy rule `{}`)",
                &*place.organization, need.rule
            ),
        })
    }
}

/// A caller's team facts: read for the check, or with the credential.
enum TeamFactsRead<'r> {
    Own(Arc<Vec<TeamFacts>>),
    WithCredential(&'r [TeamFacts]),
}

impl TeamFactsRead<'_> {
    fn as_slice(&self) -> &[TeamFacts] {
        match self {
            TeamFactsRead::Own(facts) => facts,
            TeamFactsRead::WithCredential(facts) => facts,
        }
    }
}

fn hidden(target: &Target) -> AccessError {
    AccessError::Hidden {
        target: target.to_string(),
    }
}

/// Whether a team's organization-level permissions include `flag`.
pub fn has_flag(access: &OrganizationAccess, flag: OrgFlag) -> bool {
    match flag {
        OrgFlag::ManageWorkspaces => access.manage_workspaces,
        OrgFlag::ManageProjects => access.manage_projects,
        OrgFlag::ReadWorkspaces => access.read_workspaces,
        OrgFlag::ReadProjects => access.read_projects,
        OrgFlag::ManageTeams => access.manage_teams,
        OrgFlag::ManageMembership => access.manage_membership,
        OrgFlag::ManageOrganizationAccess => access.manage_organization_access,
        OrgFlag::ManagePolicies => access.manage_policies,
        OrgFlag::ManagePolicyOverrides => access.manage_policy_overrides,
        OrgFlag::ManageRunTasks => access.manage_run_tasks,
        OrgFlag::ManageVcsSettings => access.manage_vcs_settings,
        OrgFlag::ManageAgentPools => access.manage_agent_pools,
        OrgFlag::ManageProviders => access.manage_providers,
        OrgFlag::ManageModules => access.manage_modules,
        OrgFlag::AccessSecretTeams => access.access_secret_teams,
    }
}

/// Sets `flag` in a team's organization-level permissions.
pub fn set_flag(access: &mut OrganizationAccess, flag: OrgFlag, on: bool) {
    let field = match flag {
        OrgFlag::ManageWorkspaces => &mut access.manage_workspaces,
        OrgFlag::ManageProjects => &mut access.manage_projects,
        OrgFlag::ReadWorkspaces => &mut access.read_workspaces,
        OrgFlag::ReadProjects => &mut access.read_projects,
        OrgFlag::ManageTeams => &mut access.manage_teams,
        OrgFlag::ManageMembership => &mut access.manage_membership,
        OrgFlag::ManageOrganizationAccess => &mut access.manage_organization_access,
        OrgFlag::ManagePolicies => &mut access.manage_policies,
        OrgFlag::ManagePolicyOverrides => &mut access.manage_policy_overrides,
        OrgFlag::ManageRunTasks => &mut access.manage_run_tasks,
        OrgFlag::ManageVcsSettings => &mut access.manage_vcs_settings,
        OrgFlag::ManageAgentPools => &mut access.manage_agent_pools,
        OrgFlag::ManageProviders => &mut access.manage_providers,
        OrgFlag::ManageModules => &mut access.manage_modules,
        OrgFlag::AccessSecretTeams => &mut access.access_secret_teams,
    };
    *field = on;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_reads_and_writes_its_own_field() {
        for flag in OrgFlag::ALL {
            let mut access = OrganizationAccess::default();
            set_flag(&mut access, flag, true);
            for other in OrgFlag::ALL {
                assert_eq!(
                    has_flag(&access, other),
                    other == flag,
                    "{flag:?} {other:?}"
                );
            }
        }
    }

    #[test]
    fn managing_every_workspace_meets_reading_every_workspace() {
        for own in OrgFlag::ALL {
            assert!(own.meets(own), "{own:?}");
            assert_eq!(
                own.meets(OrgFlag::ReadWorkspaces),
                matches!(
                    own,
                    OrgFlag::ReadWorkspaces | OrgFlag::ManageWorkspaces | OrgFlag::ManageProjects
                ),
                "{own:?}"
            );
        }
        // Managing projects is everything of managing workspaces.
        assert!(OrgFlag::ManageProjects.meets(OrgFlag::ManageWorkspaces));
        // Nothing is met by less.
        assert!(!OrgFlag::ManageWorkspaces.meets(OrgFlag::ManageProjects));
        assert!(!OrgFlag::ReadWorkspaces.meets(OrgFlag::ManageWorkspaces));
        assert!(!OrgFlag::ReadProjects.meets(OrgFlag::ManageProjects));
    }
}
