//! `tokengate access set|list|remove`: teams' access to workspaces, from the
//! command line, with the same records, checks and audit trail as the team
//! access API (`/api/v2/team-workspaces`). `set` checks that the workspace
//! exists upstream (through the resolver) and is in the team's
//! organization. Each command prints one JSON object.

use super::args::{AccessCommand, AccessOf, ConfigArg};
use super::{open, print};
use crate::access::{ResolveError, Resolver};
use crate::access_model::{
    AccessLevel, Permissions, Runs, SentinelMocks, StateVersions, Variables,
};
use crate::store::audit::{self, AuditEvent};
use crate::store::{Store, TeamAccess};
use crate::upstream::Forwarder;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Who the audit trail names for CLI changes.
const ACTOR: &str = "cli";

pub(super) async fn access_command(command: AccessCommand) -> Result<()> {
    match command {
        AccessCommand::Set {
            config,
            team,
            workspace,
            access,
            runs,
            variables,
            state_versions,
            sentinel_mocks,
            workspace_locking,
            run_tasks,
            policy_overrides,
        } => {
            let level = AccessLevel::parse(&access).ok_or_else(|| {
                anyhow!("--access: `{access}` is not an access level; use read, plan, write, admin or custom")
            })?;
            let fine_grained = Fine {
                runs,
                variables,
                state_versions,
                sentinel_mocks,
                workspace_locking,
                run_tasks,
                policy_overrides,
            };
            set(&config, &team, &workspace, level, fine_grained).await
        }
        AccessCommand::List { config, of } => list(&config, &of).await,
        AccessCommand::Remove {
            config,
            team,
            workspace,
        } => remove(&config, &team, &workspace).await,
    }
}

/// The custom permissions given on the command line.
struct Fine {
    runs: Option<String>,
    variables: Option<String>,
    state_versions: Option<String>,
    sentinel_mocks: Option<String>,
    workspace_locking: Option<bool>,
    run_tasks: Option<bool>,
    policy_overrides: Option<bool>,
}

impl Fine {
    /// The permissions of a custom access, starting from `base`; an error
    /// names the flag when one is given for a fixed level or is not a value.
    fn permissions(&self, level: AccessLevel, base: Permissions) -> Result<Permissions> {
        let given: Vec<&str> = [
            ("--runs", self.runs.is_some()),
            ("--variables", self.variables.is_some()),
            ("--state-versions", self.state_versions.is_some()),
            ("--sentinel-mocks", self.sentinel_mocks.is_some()),
            ("--workspace-locking", self.workspace_locking.is_some()),
            ("--run-tasks", self.run_tasks.is_some()),
            ("--policy-overrides", self.policy_overrides.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if level != AccessLevel::Custom {
            if let Some(flag) = given.first() {
                bail!("{flag}: only with --access custom (a {level} access has the permissions of its level)");
            }
            return Ok(base);
        }
        fn value<T>(
            flag: &str,
            text: &Option<String>,
            parse: fn(&str) -> Option<T>,
            choices: String,
            current: T,
        ) -> Result<T> {
            match text {
                None => Ok(current),
                Some(text) => {
                    parse(text).ok_or_else(|| anyhow!("{flag}: `{text}` is not one of {choices}"))
                }
            }
        }
        Ok(Permissions {
            runs: value(
                "--runs",
                &self.runs,
                Runs::parse,
                Runs::choices(),
                base.runs,
            )?,
            variables: value(
                "--variables",
                &self.variables,
                Variables::parse,
                Variables::choices(),
                base.variables,
            )?,
            state_versions: value(
                "--state-versions",
                &self.state_versions,
                StateVersions::parse,
                StateVersions::choices(),
                base.state_versions,
            )?,
            sentinel_mocks: value(
                "--sentinel-mocks",
                &self.sentinel_mocks,
                SentinelMocks::parse,
                SentinelMocks::choices(),
                base.sentinel_mocks,
            )?,
            workspace_locking: self.workspace_locking.unwrap_or(base.workspace_locking),
            run_tasks: self.run_tasks.unwrap_or(base.run_tasks),
            policy_overrides: self.policy_overrides.unwrap_or(base.policy_overrides),
        })
    }
}

/// One access as the commands print it.
fn flat(access: &TeamAccess) -> Value {
    let p = access.effective().permissions;
    json!({
        "id": access.id,
        "team": access.team_id,
        "workspace": access.workspace_id,
        "organization": access.organization,
        "access": access.access.as_str(),
        "runs": p.runs.as_str(),
        "variables": p.variables.as_str(),
        "state-versions": p.state_versions.as_str(),
        "sentinel-mocks": p.sentinel_mocks.as_str(),
        "workspace-locking": p.workspace_locking,
        "run-tasks": p.run_tasks,
        "policy-overrides": p.policy_overrides,
    })
}

/// The team's existing access to the workspace, if any.
async fn existing(store: &dyn Store, team: &str, workspace: &str) -> Result<Option<TeamAccess>> {
    Ok(store
        .team_accesses(team)
        .await?
        .into_iter()
        .find(|a| a.workspace_id == workspace))
}

async fn set(
    config: &ConfigArg,
    team_id: &str,
    workspace_id: &str,
    level: AccessLevel,
    fine: Fine,
) -> Result<()> {
    let (store, config) = open(config)?;
    let team = store
        .team(team_id)
        .await?
        .with_context(|| format!("--team: team `{team_id}` not found"))?;
    let forwarder = Forwarder::new(config.upstream.clone());
    let resolver = Resolver::new(&config.resolver);
    let workspace = match resolver.workspace(&forwarder, workspace_id).await {
        Ok(workspace) => workspace,
        Err(ResolveError::NotFound { .. }) => bail!(
            "--workspace: workspace `{workspace_id}` was not found upstream (GET /api/v2/workspaces/{workspace_id} answered 404)"
        ),
        Err(err) => bail!("--workspace: cannot check workspace `{workspace_id}` upstream: {err}"),
    };
    if workspace.organization != team.organization {
        bail!(
            "--workspace: workspace `{workspace_id}` belongs to organization `{}`, team `{team_id}` to `{}`; a team can only have access to workspaces of its organization",
            workspace.organization,
            team.organization
        );
    }
    let current = existing(store.as_ref(), &team.id, &workspace.id).await?;
    let base = match &current {
        Some(current) => current.effective().permissions,
        None => Permissions::CUSTOM_DEFAULT,
    };
    let permissions = fine.permissions(level, base)?;
    let (access, action) = match current {
        Some(current) => {
            let updated = TeamAccess {
                access: level,
                permissions: level.fixed_permissions().unwrap_or(permissions),
                ..current
            };
            store.update_team_access(&updated).await?;
            (updated, "access_update")
        }
        None => {
            let added = TeamAccess::new(
                &team.id,
                &workspace.id,
                &workspace.organization,
                level,
                permissions,
            );
            store.add_team_access(&added).await?;
            (added, "access_add")
        }
    };
    let detail = format!("workspace {}: {}", access.workspace_id, describe(&access));
    let event = AuditEvent::new(
        &access.organization,
        ACTOR,
        action,
        &format!("team:{}", access.team_id),
        None,
    )
    .with_detail(detail);
    audit::record(store.as_ref(), event).await;
    let mut printed = flat(&access);
    printed["created"] = json!(action == "access_add");
    print(printed)
}

fn describe(access: &TeamAccess) -> String {
    match access.access {
        AccessLevel::Custom => format!("custom ({})", access.permissions.describe()),
        level => level.to_string(),
    }
}

async fn list(config: &ConfigArg, of: &AccessOf) -> Result<()> {
    let (store, _) = open(config)?;
    let accesses = match (&of.team, &of.workspace) {
        (Some(team), None) => {
            store
                .team(team)
                .await?
                .with_context(|| format!("--team: team `{team}` not found"))?;
            store.team_accesses(team).await?
        }
        (None, Some(workspace)) => store.workspace_team_accesses(workspace).await?,
        _ => bail!("give exactly one of --team or --workspace"),
    };
    print(json!({ "team_accesses": accesses.iter().map(flat).collect::<Vec<_>>() }))
}

async fn remove(config: &ConfigArg, team: &str, workspace: &str) -> Result<()> {
    let (store, _) = open(config)?;
    store
        .team(team)
        .await?
        .with_context(|| format!("--team: team `{team}` not found"))?;
    let Some(current) = existing(store.as_ref(), team, workspace).await? else {
        return print(json!({"removed": false, "id": null}));
    };
    let removed = store.remove_team_access(&current.id).await?;
    if let Some(removed) = &removed {
        let detail = format!("workspace {}: {}", removed.workspace_id, describe(removed));
        let event = AuditEvent::new(
            &removed.organization,
            ACTOR,
            "access_remove",
            &format!("team:{team}"),
            None,
        )
        .with_detail(detail);
        audit::record(store.as_ref(), event).await;
    }
    print(json!({"removed": removed.is_some(), "id": removed.map(|r| r.id)}))
}
