//! `tokengate serve --dev`: a complete local setup with nothing installed and
//! no config. An embedded store in a temporary folder, the built-in mock
//! workspace API as the upstream (it answers the resolver's lookups too), an
//! organization with its owners team, a `dev` team with write access to the
//! workspace `app` and a `readers` team with read access to it, a user,
//! their tokens, and ready-to-paste `curl` commands; the web UI's address
//! with two people's passwords (an owner, and a member of `dev` only).

pub mod mock_api;

use crate::access_model::{AccessLevel, Permissions};
use crate::config::{Config, ConfigProblem};
use crate::gateway::{open_store, BuildError, Gateway};
use crate::store::{Owner, StoreError, TeamAccess};
use crate::token::lifecycle::{self, IssueError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The default policy, built into the binary.
pub const DEFAULT_POLICY: &str = include_str!("../../config/policy.yaml");

/// Why dev mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot prepare the dev folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("dev config is invalid: {0:?}")]
    Config(Vec<ConfigProblem>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot set a dev password: {0}")]
    Password(#[from] crate::ui::password::PasswordError),
}

/// A ready dev environment: the gateway and what to tell the user.
pub struct DevEnvironment {
    pub gateway: Arc<Gateway>,
    pub folder: tempfile::TempDir,
    pub upstream: SocketAddr,
    pub org: String,
    pub owners_team_id: String,
    pub team_id: String,
    /// The `readers` team: read access to the `app` workspace.
    pub reader_team_id: String,
    pub user_id: String,
    /// alice's password for the web UI (an owner).
    pub owner_password: String,
    /// bob's password for the web UI (a member of `dev` only).
    pub member_password: String,
    pub team_token: String,
    pub reader_token: String,
    pub org_token: String,
    pub user_token: String,
}

/// Builds the dev environment (does not listen yet).
pub async fn prepare() -> Result<DevEnvironment, DevError> {
    let folder = tempfile::Builder::new()
        .prefix("tokengate-dev-")
        .tempdir()?;
    let org = "acme".to_owned();
    let upstream = mock_api::start(&org).await?;
    std::fs::write(folder.path().join("policy.yaml"), DEFAULT_POLICY)?;
    let yaml = format!(
        "listen: 127.0.0.1:8080\nupstream:\n  url: http://{upstream}\nstore:\n  embedded:\n    path: tokengate.db\npolicy:\n  file: policy.yaml\n"
    );
    std::fs::write(folder.path().join("tokengate.yaml"), &yaml)?;
    let config = Config::from_yaml(&yaml, folder.path()).map_err(DevError::Config)?;
    let store = open_store(&config)?;

    let organization = store.create_org(&org).await?;
    let team = store.create_team(&org, "dev").await?;
    let readers = store.create_team(&org, "readers").await?;
    for (team_id, level) in [
        (&team.id, AccessLevel::Write),
        (&readers.id, AccessLevel::Read),
    ] {
        let access = TeamAccess::new(
            team_id,
            mock_api::APP_WORKSPACE,
            &org,
            level,
            Permissions::CUSTOM_DEFAULT,
        );
        store.add_team_access(&access).await?;
    }
    let user = store
        .create_user(
            &org,
            "alice",
            &[organization.owners_team_id.clone(), team.id.clone()],
        )
        .await?;
    let member = store
        .create_user(&org, "bob", std::slice::from_ref(&team.id))
        .await?;
    let owner_password = crate::token_format::random_string(16);
    let member_password = crate::token_format::random_string(16);
    for (person, password) in [(&user, &owner_password), (&member, &member_password)] {
        crate::ui::password::set(
            store.as_ref(),
            person,
            password.clone(),
            config.hashing.argon2,
        )
        .await?;
    }
    let hashing = config.hashing;
    let issue = |owner: Owner| {
        let store = store.clone();
        let actor = lifecycle::Actor {
            id: "dev-mode",
            created_by: None,
        };
        async move { lifecycle::generate_audited(store.as_ref(), owner, hashing, actor, None).await }
    };
    let team_token = issue(Owner::Team {
        org: org.clone(),
        team_id: team.id.clone(),
    })
    .await?;
    let reader_token = issue(Owner::Team {
        org: org.clone(),
        team_id: readers.id.clone(),
    })
    .await?;
    let org_token = issue(Owner::Org { org: org.clone() }).await?;
    let user_token = issue(Owner::User {
        org: org.clone(),
        user_id: user.id.clone(),
    })
    .await?;
    let gateway = Gateway::build_with_store(config, store)?;
    Ok(DevEnvironment {
        gateway,
        folder,
        upstream,
        org,
        owners_team_id: organization.owners_team_id,
        team_id: team.id,
        reader_team_id: readers.id,
        user_id: user.id,
        owner_password,
        member_password,
        team_token: team_token.token.secret_token,
        reader_token: reader_token.token.secret_token,
        org_token: org_token.token.secret_token,
        user_token: user_token.token.secret_token,
    })
}

impl DevEnvironment {
    /// Where the dev data lives (removed when the process exits).
    pub fn data_folder(&self) -> PathBuf {
        self.folder.path().to_owned()
    }

    /// The text printed at start: tokens and commands to paste.
    pub fn banner(&self, gateway: SocketAddr) -> String {
        let url = format!("http://{gateway}");
        let run = mock_api::APP_RUN;
        format!(
            r#"tokengate dev mode: embedded store in {folder} (deleted on exit)
  gateway      {url}
  mock API     http://{upstream}  (the upstream; never call it directly)
  organization {org} (owners team {owners})
  workspaces   demo (ws-000001), {app_name} ({app}); run {run} of {app_name} is ready to apply
  team         readers ({readers}): read access to {app_name}
  team         dev ({team}): write access to {app_name}
  user         alice ({user}), member of owners and dev
  web UI       {url}/_tokengate/ui/
               sign in as alice / {owner_password}  (an owner)
               or bob / {member_password}  (a member of dev only)

Paste these into a shell:

export TG={url}
export TEAM_TOKEN={team_token}
export READER_TOKEN={reader_token}
export ORG_TOKEN={org_token}
export USER_TOKEN={user_token}

# The dev team (write access to {app_name}) applies a run: forwarded, 202
curl -s -X POST -H "Authorization: Bearer $TEAM_TOKEN" $TG/api/v2/runs/{run}/actions/apply
# The readers team (read access) may read the run, not apply it: 403 naming runs:apply, never forwarded
curl -s -H "Authorization: Bearer $READER_TOKEN" $TG/api/v2/runs/{run}
curl -s -X POST -H "Authorization: Bearer $READER_TOKEN" $TG/api/v2/runs/{run}/actions/apply
# Neither team has access to workspace demo: 404, as Terraform Enterprise hides it
curl -s -H "Authorization: Bearer $READER_TOKEN" $TG/api/v2/workspaces/ws-000001
# An organization token may not apply: 403, never forwarded
curl -s -X POST -H "Authorization: Bearer $ORG_TOKEN" $TG/api/v2/runs/{run}/actions/apply
# ...but may read and change workspaces
curl -s -H "Authorization: Bearer $ORG_TOKEN" $TG/api/v2/organizations/{org}/workspaces
# ...and resources by id of its own organization only: its project 200, {other_org}'s 404, never forwarded
curl -s -H "Authorization: Bearer $ORG_TOKEN" $TG/api/v2/projects/{own_project}
curl -s -H "Authorization: Bearer $ORG_TOKEN" $TG/api/v2/projects/{other_project}
# No token: 401
curl -s $TG/api/v2/organizations/{org}/workspaces
# Who has access to {app_name} (as alice, an owner; TFE's team access API)
curl -s -H "Authorization: Bearer $USER_TOKEN" "$TG/api/v2/team-workspaces?filter%5Bworkspace%5D%5Bid%5D={app}"
# Regenerate the team token as alice (shown once; the old one stops working at once)
curl -s -X POST -H "Authorization: Bearer $USER_TOKEN" $TG/api/v2/teams/{team}/authentication-token
"#,
            folder = self.folder.path().display(),
            upstream = self.upstream,
            org = self.org,
            owners = self.owners_team_id,
            team = self.team_id,
            readers = self.reader_team_id,
            user = self.user_id,
            app = mock_api::APP_WORKSPACE,
            app_name = mock_api::APP_WORKSPACE_NAME,
            own_project = mock_api::OWN_PROJECT,
            other_project = mock_api::OTHER_PROJECT,
            other_org = mock_api::OTHER_ORGANIZATION,
            owner_password = self.owner_password,
            member_password = self.member_password,
            team_token = self.team_token,
            reader_token = self.reader_token,
            org_token = self.org_token,
            user_token = self.user_token,
        )
    }
}
