//! The workspace access model of Terraform Enterprise, as data: the access
//! levels a team can have on a workspace (`read`, `plan`, `write`, `admin`,
//! `custom`), the fine-grained permissions each level stands for, the
//! permissions a request can require (`runs:apply`, `variables:write`, …),
//! the organization-level permissions, and the kinds of things a request can
//! target. Pure: no I/O, nothing of the crate below it (the store's records
//! and the policy's `requires:` are built on it).
//!
//! The table follows HashiCorp's "Workspace permissions" page (the
//! "Workspace roles and permissions" table) and the team access API
//! reference; `docs/ACCESS.md` cites both.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A team's access level on one workspace (`access` of TFE's
/// `team-workspaces`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    Read,
    Plan,
    Write,
    Admin,
    Custom,
}

impl AccessLevel {
    pub const ALL: [AccessLevel; 5] = [
        AccessLevel::Read,
        AccessLevel::Plan,
        AccessLevel::Write,
        AccessLevel::Admin,
        AccessLevel::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::Read => "read",
            AccessLevel::Plan => "plan",
            AccessLevel::Write => "write",
            AccessLevel::Admin => "admin",
            AccessLevel::Custom => "custom",
        }
    }

    pub fn parse(text: &str) -> Option<AccessLevel> {
        AccessLevel::ALL.into_iter().find(|l| l.as_str() == text)
    }

    /// The fine-grained permissions a fixed level stands for (TFE's table);
    /// `None` for `custom`, whose permissions are set one by one.
    pub fn fixed_permissions(self) -> Option<Permissions> {
        let read = Permissions {
            runs: Runs::Read,
            variables: Variables::Read,
            state_versions: StateVersions::Read,
            sentinel_mocks: SentinelMocks::None,
            workspace_locking: false,
            run_tasks: false,
            policy_overrides: false,
        };
        match self {
            AccessLevel::Read => Some(read),
            AccessLevel::Plan => Some(Permissions {
                runs: Runs::Plan,
                ..read
            }),
            AccessLevel::Write => Some(Permissions {
                runs: Runs::Apply,
                variables: Variables::Write,
                state_versions: StateVersions::Write,
                sentinel_mocks: SentinelMocks::Read,
                workspace_locking: true,
                run_tasks: false,
                policy_overrides: false,
            }),
            AccessLevel::Admin => Some(Permissions::ALL),
            AccessLevel::Custom => None,
        }
    }

    /// True for `admin`: the admin-only actions (settings, team access,
    /// notifications, run triggers, deletion, force-unlock, force-cancel).
    pub fn is_admin(self) -> bool {
        self == AccessLevel::Admin
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defines an ordered permission dimension: its values from lowest to
/// highest, each implying the ones below it, and their TFE spellings.
macro_rules! dimension {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, lowest first.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == text)
            }

            /// The spellings, for error messages: `read, plan or apply`.
            pub fn choices() -> String {
                one_of(&$name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

dimension! {
    /// Runs: read < plan (queue plans, comment) < apply (approve plans).
    Runs { Read = "read", Plan = "plan", Apply = "apply" }
}
dimension! {
    /// Workspace variables: none < read < write.
    Variables { None = "none", Read = "read", Write = "write" }
}
dimension! {
    /// State versions: none < read-outputs < read (whole state) < write.
    StateVersions { None = "none", ReadOutputs = "read-outputs", Read = "read", Write = "write" }
}
dimension! {
    /// Sentinel mocks (unredacted plan data): none < read.
    SentinelMocks { None = "none", Read = "read" }
}

/// `a, b or c`.
pub fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The fine-grained permissions on one workspace (the attributes of TFE's
/// `team-workspaces` besides `access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Permissions {
    pub runs: Runs,
    pub variables: Variables,
    pub state_versions: StateVersions,
    pub sentinel_mocks: SentinelMocks,
    pub workspace_locking: bool,
    pub run_tasks: bool,
    /// Override policy checks on this workspace (TFE beta, 2026; only with
    /// the organization's `delegate-policy-overrides`). Off in every fixed level.
    #[serde(default)]
    pub policy_overrides: bool,
}

impl Permissions {
    /// Every fine-grained permission (what `admin` carries).
    pub const ALL: Permissions = Permissions {
        runs: Runs::Apply,
        variables: Variables::Write,
        state_versions: StateVersions::Write,
        sentinel_mocks: SentinelMocks::Read,
        workspace_locking: true,
        run_tasks: true,
        policy_overrides: false,
    };

    /// The defaults of a `custom` grant whose attributes are not given
    /// (TFE's "Default" column): read runs, nothing else. Runs are never
    /// below `read`: a team with less has no access at all.
    pub const CUSTOM_DEFAULT: Permissions = Permissions {
        runs: Runs::Read,
        variables: Variables::None,
        state_versions: StateVersions::None,
        sentinel_mocks: SentinelMocks::None,
        workspace_locking: false,
        run_tasks: false,
        policy_overrides: false,
    };

    /// The highest of each dimension: permissions are additive (TFE's
    /// "Effective permissions").
    pub fn union(self, other: Permissions) -> Permissions {
        Permissions {
            runs: self.runs.max(other.runs),
            variables: self.variables.max(other.variables),
            state_versions: self.state_versions.max(other.state_versions),
            sentinel_mocks: self.sentinel_mocks.max(other.sentinel_mocks),
            workspace_locking: self.workspace_locking || other.workspace_locking,
            run_tasks: self.run_tasks || other.run_tasks,
            policy_overrides: self.policy_overrides || other.policy_overrides,
        }
    }

    /// `runs:apply, variables:write, …`: what these permissions allow.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("runs:{}", self.runs)];
        if self.variables != Variables::None {
            parts.push(format!("variables:{}", self.variables));
        }
        if self.state_versions != StateVersions::None {
            parts.push(format!("state-versions:{}", self.state_versions));
        }
        if self.sentinel_mocks != SentinelMocks::None {
            parts.push(format!("sentinel-mocks:{}", self.sentinel_mocks));
        }
        for (on, name) in [
            (self.workspace_locking, "workspace-locking"),
            (self.run_tasks, "run-tasks"),
            (self.policy_overrides, "policy-overrides"),
        ] {
            if on {
                parts.push(name.to_owned());
            }
        }
        parts.join(", ")
    }
}

/// What a caller may do on one workspace, from every source together
/// (workspace grants of their teams, the teams' organization permissions,
/// the owners team, the organization token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub permissions: Permissions,
    /// The admin-only actions.
    pub admin: bool,
}

impl Effective {
    /// Admin on the workspace: every permission.
    pub const ADMIN: Effective = Effective {
        permissions: Permissions::ALL,
        admin: true,
    };

    /// Everything, policy overrides included: the owners team and the
    /// organization token in their own organization.
    pub const OWNER: Effective = Effective {
        permissions: Permissions {
            policy_overrides: true,
            ..Permissions::ALL
        },
        admin: true,
    };

    /// What a grant of `level` (with `permissions` for `custom`) gives.
    pub fn of_grant(level: AccessLevel, permissions: Permissions) -> Effective {
        Effective {
            permissions: level.fixed_permissions().unwrap_or(permissions),
            admin: level.is_admin(),
        }
    }

    /// Read access (the `read` level): what `read-workspaces` gives.
    pub fn read() -> Effective {
        Effective::of_grant(AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
    }

    /// The union of two sources.
    pub fn union(self, other: Effective) -> Effective {
        Effective {
            permissions: self.permissions.union(other.permissions),
            admin: self.admin || other.admin,
        }
    }

    /// True when `permission` is allowed.
    pub fn allows(&self, permission: WorkspacePermission) -> bool {
        let p = &self.permissions;
        match permission {
            WorkspacePermission::Runs(level) => p.runs >= level,
            WorkspacePermission::Variables(level) => p.variables >= level,
            WorkspacePermission::StateVersions(level) => p.state_versions >= level,
            WorkspacePermission::SentinelMocks => p.sentinel_mocks >= SentinelMocks::Read,
            WorkspacePermission::WorkspaceLocking => p.workspace_locking,
            WorkspacePermission::RunTasks => p.run_tasks,
            WorkspacePermission::PolicyOverrides => p.policy_overrides,
            WorkspacePermission::Admin => self.admin,
        }
    }

    /// `admin` or the permissions, for messages.
    pub fn describe(&self) -> String {
        if self.admin {
            "admin".to_owned()
        } else {
            self.permissions.describe()
        }
    }
}

/// A permission on one workspace that a request can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkspacePermission {
    Runs(Runs),
    /// `read` or `write` (never `none`).
    Variables(Variables),
    /// `read-outputs`, `read` or `write` (never `none`).
    StateVersions(StateVersions),
    SentinelMocks,
    WorkspaceLocking,
    RunTasks,
    PolicyOverrides,
    /// The admin-only actions.
    Admin,
}

/// Organization-level permissions of a team (TFE's `organization-access`),
/// by their attribute names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrgFlag {
    ManageWorkspaces,
    ManageProjects,
    ReadWorkspaces,
    ReadProjects,
    ManageTeams,
    ManageMembership,
    ManageOrganizationAccess,
    ManagePolicies,
    ManagePolicyOverrides,
    ManageRunTasks,
    ManageVcsSettings,
    ManageAgentPools,
    ManageProviders,
    ManageModules,
    AccessSecretTeams,
}

impl OrgFlag {
    pub const ALL: [OrgFlag; 15] = [
        OrgFlag::ManageWorkspaces,
        OrgFlag::ManageProjects,
        OrgFlag::ReadWorkspaces,
        OrgFlag::ReadProjects,
        OrgFlag::ManageTeams,
        OrgFlag::ManageMembership,
        OrgFlag::ManageOrganizationAccess,
        OrgFlag::ManagePolicies,
        OrgFlag::ManagePolicyOverrides,
        OrgFlag::ManageRunTasks,
        OrgFlag::ManageVcsSettings,
        OrgFlag::ManageAgentPools,
        OrgFlag::ManageProviders,
        OrgFlag::ManageModules,
        OrgFlag::AccessSecretTeams,
    ];

    /// TFE's attribute name: `manage-workspaces`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgFlag::ManageWorkspaces => "manage-workspaces",
            OrgFlag::ManageProjects => "manage-projects",
            OrgFlag::ReadWorkspaces => "read-workspaces",
            OrgFlag::ReadProjects => "read-projects",
            OrgFlag::ManageTeams => "manage-teams",
            OrgFlag::ManageMembership => "manage-membership",
            OrgFlag::ManageOrganizationAccess => "manage-organization-access",
            OrgFlag::ManagePolicies => "manage-policies",
            OrgFlag::ManagePolicyOverrides => "manage-policy-overrides",
            OrgFlag::ManageRunTasks => "manage-run-tasks",
            OrgFlag::ManageVcsSettings => "manage-vcs-settings",
            OrgFlag::ManageAgentPools => "manage-agent-pools",
            OrgFlag::ManageProviders => "manage-providers",
            OrgFlag::ManageModules => "manage-modules",
            OrgFlag::AccessSecretTeams => "access-secret-teams",
        }
    }

    pub fn parse(text: &str) -> Option<OrgFlag> {
        OrgFlag::ALL.into_iter().find(|f| f.as_str() == text)
    }

    /// True when a team with this flag meets a requirement of `required`:
    /// the flag itself, or a flag that gives more on every workspace of the
    /// organization (manage-workspaces and manage-projects give admin on
    /// every workspace, so they meet read-workspaces; manage-projects is
    /// everything of manage-workspaces plus projects, so it meets
    /// manage-workspaces and read-projects).
    pub fn meets(self, required: OrgFlag) -> bool {
        self == required
            || matches!(
                (self, required),
                (
                    OrgFlag::ManageWorkspaces | OrgFlag::ManageProjects,
                    OrgFlag::ReadWorkspaces
                ) | (
                    OrgFlag::ManageProjects,
                    OrgFlag::ReadProjects | OrgFlag::ManageWorkspaces
                )
            )
    }

    /// What this flag gives on every workspace of the organization (PO,
    /// PERM): manage-workspaces/-projects admin; read-workspaces and
    /// manage-agent-pools read; manage-policies and manage-policy-overrides
    /// read runs (and overrides, for the latter).
    pub fn workspace_effect(self) -> Option<Effective> {
        let read_runs = Effective::of_grant(AccessLevel::Custom, Permissions::CUSTOM_DEFAULT);
        match self {
            OrgFlag::ManageWorkspaces | OrgFlag::ManageProjects => Some(Effective::ADMIN),
            OrgFlag::ReadWorkspaces | OrgFlag::ManageAgentPools => Some(Effective::read()),
            OrgFlag::ManagePolicies => Some(read_runs),
            OrgFlag::ManagePolicyOverrides => Some(Effective {
                permissions: Permissions {
                    policy_overrides: true,
                    ..Permissions::CUSTOM_DEFAULT
                },
                admin: false,
            }),
            _ => None,
        }
    }
}

/// What a rule's `requires:` asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// A permission on the target workspace(s).
    Workspace(WorkspacePermission),
    /// The target's organization must be the caller's.
    OrganizationMember,
    /// The organization's owners (or its organization token).
    OrganizationOwners,
    /// An organization-level permission (or owners, or the organization token).
    OrganizationFlag(OrgFlag),
}

impl Requirement {
    /// Parses `runs:apply`, `admin`, `organization:manage-workspaces`, …;
    /// the error lists what is possible.
    pub fn parse(text: &str) -> Result<Requirement, String> {
        use WorkspacePermission as W;
        let found = match text {
            "admin" => Some(Requirement::Workspace(W::Admin)),
            "workspace-locking" => Some(Requirement::Workspace(W::WorkspaceLocking)),
            "run-tasks" => Some(Requirement::Workspace(W::RunTasks)),
            "policy-overrides" => Some(Requirement::Workspace(W::PolicyOverrides)),
            "sentinel-mocks:read" => Some(Requirement::Workspace(W::SentinelMocks)),
            "organization:member" => Some(Requirement::OrganizationMember),
            "organization:owners" => Some(Requirement::OrganizationOwners),
            _ => match text.split_once(':') {
                Some(("runs", level)) => {
                    Runs::parse(level).map(W::Runs).map(Requirement::Workspace)
                }
                Some(("variables", level)) => Variables::parse(level)
                    .filter(|l| *l != Variables::None)
                    .map(W::Variables)
                    .map(Requirement::Workspace),
                Some(("state-versions", level)) => StateVersions::parse(level)
                    .filter(|l| *l != StateVersions::None)
                    .map(W::StateVersions)
                    .map(Requirement::Workspace),
                Some(("organization", flag)) => {
                    OrgFlag::parse(flag).map(Requirement::OrganizationFlag)
                }
                _ => None,
            },
        };
        found.ok_or_else(|| {
            format!(
                "`{text}` is not a permission; use runs:read|plan|apply, variables:read|write, \
                 state-versions:read-outputs|read|write, sentinel-mocks:read, workspace-locking, \
                 run-tasks, policy-overrides, admin, organization:member, organization:owners or \
                 organization:<flag> (manage-workspaces, read-workspaces, manage-teams, …; see docs/ACCESS.md)"
            )
        })
    }

    /// True when the requirement is about a workspace (its targets must
    /// lead to one).
    pub fn is_workspace(&self) -> bool {
        matches!(self, Requirement::Workspace(_))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use WorkspacePermission as W;
        match self {
            Requirement::Workspace(W::Runs(level)) => write!(f, "runs:{level}"),
            Requirement::Workspace(W::Variables(level)) => write!(f, "variables:{level}"),
            Requirement::Workspace(W::StateVersions(level)) => write!(f, "state-versions:{level}"),
            Requirement::Workspace(W::SentinelMocks) => f.write_str("sentinel-mocks:read"),
            Requirement::Workspace(W::WorkspaceLocking) => f.write_str("workspace-locking"),
            Requirement::Workspace(W::RunTasks) => f.write_str("run-tasks"),
            Requirement::Workspace(W::PolicyOverrides) => f.write_str("policy-overrides"),
            Requirement::Workspace(W::Admin) => f.write_str("admin"),
            Requirement::OrganizationMember => f.write_str("organization:member"),
            Requirement::OrganizationOwners => f.write_str("organization:owners"),
            Requirement::OrganizationFlag(flag) => write!(f, "organization:{}", flag.as_str()),
        }
    }
}

/// What an id in a request names, by the name of the path-template segment
/// (or `target:` key) it is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// `{workspace_id}`: a workspace, directly.
    Workspace,
    /// `{workspace_name}`: a workspace by name; needs `{organization}`.
    WorkspaceName,
    /// `{organization}`: an organization by name.
    Organization,
    /// `{team_id}`: a team (looked up in the store).
    Team,
    /// A workspace's resource, looked up upstream to find its workspace.
    Resource(ResourceKind),
    /// An organization's resource addressed by its own id (a project, a
    /// variable set, …), looked up upstream to find its organization.
    OrgResource(OrgResourceKind),
}

/// Resources that belong to one workspace, found through the resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Run,
    Plan,
    Apply,
    ConfigurationVersion,
    StateVersion,
    Variable,
    NotificationConfiguration,
    RunTrigger,
    PolicyCheck,
    TaskStage,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 10] = [
        ResourceKind::Run,
        ResourceKind::Plan,
        ResourceKind::Apply,
        ResourceKind::ConfigurationVersion,
        ResourceKind::StateVersion,
        ResourceKind::Variable,
        ResourceKind::NotificationConfiguration,
        ResourceKind::RunTrigger,
        ResourceKind::PolicyCheck,
        ResourceKind::TaskStage,
    ];

    /// The placeholder name: `run_id`.
    pub fn placeholder(self) -> &'static str {
        match self {
            ResourceKind::Run => "run_id",
            ResourceKind::Plan => "plan_id",
            ResourceKind::Apply => "apply_id",
            ResourceKind::ConfigurationVersion => "configuration_version_id",
            ResourceKind::StateVersion => "state_version_id",
            ResourceKind::Variable => "var_id",
            ResourceKind::NotificationConfiguration => "notification_configuration_id",
            ResourceKind::RunTrigger => "run_trigger_id",
            ResourceKind::PolicyCheck => "policy_check_id",
            ResourceKind::TaskStage => "task_stage_id",
        }
    }

    /// The collection of TFE's API the resource is shown at:
    /// `GET /api/v2/{collection}/{id}`.
    pub fn collection(self) -> &'static str {
        match self {
            ResourceKind::Run => "runs",
            ResourceKind::Plan => "plans",
            ResourceKind::Apply => "applies",
            ResourceKind::ConfigurationVersion => "configuration-versions",
            ResourceKind::StateVersion => "state-versions",
            ResourceKind::Variable => "vars",
            ResourceKind::NotificationConfiguration => "notification-configurations",
            ResourceKind::RunTrigger => "run-triggers",
            ResourceKind::PolicyCheck => "policy-checks",
            ResourceKind::TaskStage => "task-stages",
        }
    }

    /// For messages: `run`, `configuration version`.
    pub fn noun(self) -> &'static str {
        match self {
            ResourceKind::Run => "run",
            ResourceKind::Plan => "plan",
            ResourceKind::Apply => "apply",
            ResourceKind::ConfigurationVersion => "configuration version",
            ResourceKind::StateVersion => "state version",
            ResourceKind::Variable => "variable",
            ResourceKind::NotificationConfiguration => "notification configuration",
            ResourceKind::RunTrigger => "run trigger",
            ResourceKind::PolicyCheck => "policy check",
            ResourceKind::TaskStage => "task stage",
        }
    }

    /// The relationships of the resource's JSON:API document that lead to
    /// its workspace, in the order they are tried: `(relationship, the kind
    /// it points at)`; `None` for a workspace.
    pub fn parents(self) -> &'static [(&'static str, Option<ResourceKind>)] {
        const WORKSPACE: (&str, Option<ResourceKind>) = ("workspace", None);
        const RUN: (&str, Option<ResourceKind>) = ("run", Some(ResourceKind::Run));
        match self {
            ResourceKind::Run | ResourceKind::RunTrigger => &[WORKSPACE],
            // TFE's plan, apply and configuration-version documents name
            // neither; a run's document names them (see the resolver).
            ResourceKind::Plan | ResourceKind::Apply | ResourceKind::ConfigurationVersion => {
                &[RUN, WORKSPACE]
            }
            ResourceKind::StateVersion => &[WORKSPACE, RUN],
            ResourceKind::Variable => &[("configurable", None), WORKSPACE],
            ResourceKind::NotificationConfiguration => &[("subscribable", None)],
            ResourceKind::PolicyCheck | ResourceKind::TaskStage => &[RUN],
        }
    }
}

/// Resources that belong to one organization (not to a workspace),
/// addressed by their own id and found through the resolver: their
/// organization is read from their JSON:API document, or from the
/// document of the resource they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrgResourceKind {
    Project,
    Varset,
    PolicySet,
    Policy,
    AgentPool,
    OauthClient,
    OauthToken,
    RunTask,
    OrganizationMembership,
    TeamProject,
    Stack,
    StackConfiguration,
    PolicySetVersion,
}

/// Where an organization resource's document says its organization is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrgParent {
    /// `data.relationships.organization` names it (type `organizations`).
    Organization,
    /// `data.relationships.{relationship}` names the resource it belongs
    /// to, whose organization is its own.
    Resource(&'static str, OrgResourceKind),
}

impl OrgResourceKind {
    pub const ALL: [OrgResourceKind; 13] = [
        OrgResourceKind::Project,
        OrgResourceKind::Varset,
        OrgResourceKind::PolicySet,
        OrgResourceKind::Policy,
        OrgResourceKind::AgentPool,
        OrgResourceKind::OauthClient,
        OrgResourceKind::OauthToken,
        OrgResourceKind::RunTask,
        OrgResourceKind::OrganizationMembership,
        OrgResourceKind::TeamProject,
        OrgResourceKind::Stack,
        OrgResourceKind::StackConfiguration,
        OrgResourceKind::PolicySetVersion,
    ];

    /// The placeholder name: `project_id`.
    pub fn placeholder(self) -> &'static str {
        match self {
            OrgResourceKind::Project => "project_id",
            OrgResourceKind::Varset => "varset_id",
            OrgResourceKind::PolicySet => "policy_set_id",
            OrgResourceKind::Policy => "policy_id",
            OrgResourceKind::AgentPool => "agent_pool_id",
            OrgResourceKind::OauthClient => "oauth_client_id",
            OrgResourceKind::OauthToken => "oauth_token_id",
            OrgResourceKind::RunTask => "run_task_id",
            OrgResourceKind::OrganizationMembership => "organization_membership_id",
            OrgResourceKind::TeamProject => "team_project_id",
            OrgResourceKind::Stack => "stack_id",
            OrgResourceKind::StackConfiguration => "stack_configuration_id",
            OrgResourceKind::PolicySetVersion => "policy_set_version_id",
        }
    }

    /// The collection of TFE's API the resource is shown at:
    /// `GET /api/v2/{collection}/{id}`.
    pub fn collection(self) -> &'static str {
        match self {
            OrgResourceKind::Project => "projects",
            OrgResourceKind::Varset => "varsets",
            OrgResourceKind::PolicySet => "policy-sets",
            OrgResourceKind::Policy => "policies",
            OrgResourceKind::AgentPool => "agent-pools",
            OrgResourceKind::OauthClient => "oauth-clients",
            OrgResourceKind::OauthToken => "oauth-tokens",
            OrgResourceKind::RunTask => "tasks",
            OrgResourceKind::OrganizationMembership => "organization-memberships",
            OrgResourceKind::TeamProject => "team-projects",
            OrgResourceKind::Stack => "stacks",
            OrgResourceKind::StackConfiguration => "stack-configurations",
            OrgResourceKind::PolicySetVersion => "policy-set-versions",
        }
    }

    /// For messages: `project`, `variable set`.
    pub fn noun(self) -> &'static str {
        match self {
            OrgResourceKind::Project => "project",
            OrgResourceKind::Varset => "variable set",
            OrgResourceKind::PolicySet => "policy set",
            OrgResourceKind::Policy => "policy",
            OrgResourceKind::AgentPool => "agent pool",
            OrgResourceKind::OauthClient => "OAuth client",
            OrgResourceKind::OauthToken => "OAuth token",
            OrgResourceKind::RunTask => "run task",
            OrgResourceKind::OrganizationMembership => "organization membership",
            OrgResourceKind::TeamProject => "project team access",
            OrgResourceKind::Stack => "Stack",
            OrgResourceKind::StackConfiguration => "Stack configuration",
            OrgResourceKind::PolicySetVersion => "policy set version",
        }
    }

    /// Where the resource's document names its organization (TFE's API
    /// reference): directly, or through the project (project team access,
    /// Stack), Stack (Stack configuration), OAuth client (OAuth token) or
    /// policy set (policy set version) it belongs to.
    pub fn parent(self) -> OrgParent {
        match self {
            OrgResourceKind::TeamProject | OrgResourceKind::Stack => {
                OrgParent::Resource("project", OrgResourceKind::Project)
            }
            OrgResourceKind::StackConfiguration => {
                OrgParent::Resource("stack", OrgResourceKind::Stack)
            }
            OrgResourceKind::PolicySetVersion => {
                OrgParent::Resource("policy-set", OrgResourceKind::PolicySet)
            }
            OrgResourceKind::OauthToken => {
                OrgParent::Resource("oauth-client", OrgResourceKind::OauthClient)
            }
            _ => OrgParent::Organization,
        }
    }
}

impl TargetKind {
    /// Every kind, with its placeholder name.
    pub fn all() -> impl Iterator<Item = TargetKind> {
        [
            TargetKind::Workspace,
            TargetKind::WorkspaceName,
            TargetKind::Organization,
            TargetKind::Team,
        ]
        .into_iter()
        .chain(ResourceKind::ALL.into_iter().map(TargetKind::Resource))
        .chain(
            OrgResourceKind::ALL
                .into_iter()
                .map(TargetKind::OrgResource),
        )
    }

    /// The path-template placeholder (and `target:` key) naming this kind.
    pub fn placeholder(self) -> &'static str {
        match self {
            TargetKind::Workspace => "workspace_id",
            TargetKind::WorkspaceName => "workspace_name",
            TargetKind::Organization => "organization",
            TargetKind::Team => "team_id",
            TargetKind::Resource(kind) => kind.placeholder(),
            TargetKind::OrgResource(kind) => kind.placeholder(),
        }
    }

    pub fn from_placeholder(name: &str) -> Option<TargetKind> {
        TargetKind::all().find(|k| k.placeholder() == name)
    }

    /// True when an id of this kind leads to a workspace (alone, or for a
    /// name together with `{organization}`).
    pub fn leads_to_workspace(self) -> bool {
        !matches!(
            self,
            TargetKind::Organization | TargetKind::Team | TargetKind::OrgResource(_)
        )
    }

    /// The placeholder names, for messages.
    pub fn placeholders() -> String {
        TargetKind::all()
            .map(|k| format!("{{{}}}", k.placeholder()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_levels_follow_the_tfe_table() {
        let read = AccessLevel::Read.fixed_permissions().unwrap();
        assert_eq!(
            read.describe(),
            "runs:read, variables:read, state-versions:read"
        );
        let plan = AccessLevel::Plan.fixed_permissions().unwrap();
        assert_eq!(plan.runs, Runs::Plan);
        assert!(!plan.workspace_locking);
        let write = AccessLevel::Write.fixed_permissions().unwrap();
        assert_eq!(
            write.describe(),
            "runs:apply, variables:write, state-versions:write, sentinel-mocks:read, workspace-locking"
        );
        assert!(!write.run_tasks, "write has no run tasks");
        let admin = Effective::of_grant(AccessLevel::Admin, Permissions::CUSTOM_DEFAULT);
        assert!(admin.admin && admin.permissions.run_tasks);
        assert_eq!(AccessLevel::Custom.fixed_permissions(), None);
    }

    #[test]
    fn effective_access_is_the_highest_of_every_source() {
        let custom = Effective::of_grant(
            AccessLevel::Custom,
            Permissions {
                state_versions: StateVersions::ReadOutputs,
                run_tasks: true,
                ..Permissions::CUSTOM_DEFAULT
            },
        );
        let both = custom.union(Effective::of_grant(
            AccessLevel::Plan,
            Permissions::CUSTOM_DEFAULT,
        ));
        assert_eq!(both.permissions.runs, Runs::Plan);
        assert_eq!(both.permissions.state_versions, StateVersions::Read);
        assert!(both.permissions.run_tasks);
        assert!(both.allows(WorkspacePermission::Runs(Runs::Plan)));
        assert!(!both.allows(WorkspacePermission::Runs(Runs::Apply)));
        assert!(both.allows(WorkspacePermission::RunTasks));
        assert!(!both.allows(WorkspacePermission::Admin));
        assert!(!Effective::ADMIN.allows(WorkspacePermission::PolicyOverrides));
        assert!(Effective::OWNER.allows(WorkspacePermission::PolicyOverrides));
    }

    #[test]
    fn requirements_parse_and_print_alike() {
        for text in [
            "runs:read",
            "runs:plan",
            "runs:apply",
            "variables:read",
            "variables:write",
            "state-versions:read-outputs",
            "state-versions:read",
            "state-versions:write",
            "sentinel-mocks:read",
            "workspace-locking",
            "run-tasks",
            "policy-overrides",
            "admin",
            "organization:member",
            "organization:owners",
            "organization:manage-workspaces",
            "organization:manage-teams",
        ] {
            assert_eq!(Requirement::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "runs",
            "runs:write",
            "variables:none",
            "state-versions:none",
            "org:member",
            "",
        ] {
            let err = Requirement::parse(bad).unwrap_err();
            assert!(err.contains("runs:read|plan|apply"), "{err}");
        }
    }

    #[test]
    fn placeholders_name_their_kinds() {
        for kind in TargetKind::all() {
            assert_eq!(TargetKind::from_placeholder(kind.placeholder()), Some(kind));
        }
        assert_eq!(TargetKind::from_placeholder("id"), None);
        assert!(TargetKind::Resource(ResourceKind::Plan).leads_to_workspace());
        assert!(!TargetKind::Team.leads_to_workspace());
        let project = TargetKind::OrgResource(OrgResourceKind::Project);
        assert!(!project.leads_to_workspace());
        assert_eq!(TargetKind::from_placeholder("project_id"), Some(project));
    }

    #[test]
    fn organization_resources_lead_to_an_organization_in_at_most_two_steps() {
        for kind in OrgResourceKind::ALL {
            let mut at = kind;
            let mut steps = 0;
            while let OrgParent::Resource(_, parent) = at.parent() {
                at = parent;
                steps += 1;
                assert!(steps <= 2, "{kind:?} leads nowhere");
            }
        }
    }
}
