//! The command line: `serve`, `check`, and bootstrap and `access` commands
//! that print one JSON object on stdout; `policy test|explain|lint`, which print reports for
//! people. Errors surface in `main` as one line on stderr.

mod access;
mod args;
mod policy;
mod serve;

use crate::config::Config;
use crate::gateway::open_store;
use crate::policy::Policy;
use crate::store::{Owner, Store};
use crate::token::lifecycle;
use anyhow::{bail, Context, Result};
pub use args::*;
use serde_json::json;
use std::sync::Arc;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(ServeArgs {
            dev: true, listen, ..
        }) => serve::serve_dev(listen).await,
        Command::Serve(ServeArgs {
            config: Some(config),
            listen,
            ..
        }) => serve::serve(&config, listen).await,
        Command::Serve(_) => bail!("give --config PATH or --dev"),
        Command::Check(args) => check(&args.config),
        Command::Org(OrgCommand::Create { config, name }) => {
            let (store, _) = open(&config)?;
            let org = store.create_org(&name).await.map_err(naming_argument)?;
            print(json!({"name": org.name, "owners_team_id": org.owners_team_id}))
        }
        Command::Team(TeamCommand::Create { config, org, name }) => {
            let (store, _) = open(&config)?;
            let team = store
                .create_team(&org, &name)
                .await
                .map_err(naming_argument)?;
            print(json!({"id": team.id, "name": team.name, "organization": team.organization}))
        }
        Command::Team(TeamCommand::Set {
            config,
            team,
            allow_member_token_management,
            manage_teams,
        }) => {
            let (store, _) = open(&config)?;
            let mut found = store
                .team(&team)
                .await?
                .ok_or_else(|| anyhow::anyhow!("--team: team `{team}` not found"))?;
            if let Some(allowed) = allow_member_token_management {
                found = store
                    .set_member_token_management(&team, allowed)
                    .await
                    .map_err(|e| anyhow::anyhow!("--team: {e}"))?;
            }
            if let Some(manage_teams) = manage_teams {
                let access = crate::store::OrganizationAccess {
                    manage_teams,
                    ..found.organization_access
                };
                found = store
                    .set_organization_access(&team, access)
                    .await
                    .map_err(|e| anyhow::anyhow!("--team: {e}"))?;
            }
            print(
                json!({"id": found.id, "name": found.name, "organization": found.organization,
                "allow_member_token_management": found.allow_member_token_management,
                "manage_teams": found.organization_access.manage_teams}),
            )
        }
        Command::Org(OrgCommand::Set {
            config,
            name,
            user_tokens_enabled,
        }) => {
            let (store, _) = open(&config)?;
            for _ in 0..8 {
                let org = store
                    .org(&name)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("NAME: organization `{name}` not found"))?;
                let new = crate::store::TokenSettings {
                    user_tokens_enabled,
                    ..org.token_settings.clone()
                };
                if store
                    .replace_token_settings(&name, &org.token_settings, &new)
                    .await?
                {
                    return print(
                        json!({"name": name, "user_tokens_enabled": user_tokens_enabled}),
                    );
                }
            }
            bail!("the organization's settings kept changing; try again")
        }
        Command::Audit {
            config,
            org,
            since,
            limit,
        } => {
            let (store, _) = open(&config)?;
            for event in store.audit_events(since, limit).await? {
                if org.as_deref().is_none_or(|o| o == event.org) {
                    print(serde_json::to_value(&event)?)?;
                }
            }
            Ok(())
        }
        Command::User(UserCommand::Create {
            config,
            org,
            teams,
            name,
        }) => {
            let (store, config) = open(&config)?;
            let user = store
                .create_user(&org, &name, &teams)
                .await
                .map_err(naming_argument)?;
            let owner = Owner::User {
                org: user.organization.clone(),
                user_id: user.id.clone(),
            };
            let issued = lifecycle::issue(
                store.as_ref(),
                owner,
                config.hashing,
                Some(user.id.clone()),
                default_expiry(&config),
            )
            .await?;
            print(json!({
                "id": user.id,
                "name": user.name,
                "organization": user.organization,
                "teams": user.team_ids,
                "token_id": issued.credential.token_id,
                "token": issued.token.secret_token,
            }))
        }
        Command::User(UserCommand::SetPassword { config, org, name }) => {
            let (store, config) = open(&config)?;
            let user = user_named(store.as_ref(), &name, org.as_deref()).await?;
            let password = read_password()?;
            let ended =
                crate::ui::password::set(store.as_ref(), &user, password, config.hashing.argon2)
                    .await
                    .map_err(|err| match err {
                        crate::ui::password::PasswordError::Store(
                            crate::store::StoreError::AlreadyExists(what),
                        ) => {
                            anyhow::anyhow!("NAME: {what} already exists; rename one of the users")
                        }
                        crate::ui::password::PasswordError::Store(err) => err.into(),
                        other => anyhow::anyhow!("standard input: {other}"),
                    })?;
            print(json!({
                "id": user.id,
                "name": user.name,
                "organization": user.organization,
                "sign_in_name": user.name.to_ascii_lowercase(),
                "sessions_ended": ended,
            }))
        }
        Command::Token(TokenCommand::Create { config, owner }) => {
            let (store, config) = open(&config)?;
            let owner = resolve_owner(store.as_ref(), &owner).await?;
            let actor = lifecycle::Actor {
                id: "cli",
                created_by: None,
            };
            let issued = lifecycle::generate_audited(
                store.as_ref(),
                owner,
                config.hashing,
                actor,
                default_expiry(&config),
            )
            .await?;
            print(json!({"id": issued.credential.token_id, "token": issued.token.secret_token}))
        }
        Command::Token(TokenCommand::Revoke { config, owner }) => {
            let (store, _) = open(&config)?;
            let owner = resolve_owner(store.as_ref(), &owner).await?;
            match lifecycle::revoke_audited(store.as_ref(), &owner, "cli").await? {
                Some(revoked) => print(json!({"revoked": true, "id": revoked.token_id})),
                None => print(json!({"revoked": false, "id": null})),
            }
        }
        Command::Policy(command) => policy::policy_command(command),
        Command::Access(command) => access::access_command(command).await,
    }
}

/// The expiry of a token the CLI creates: `token_api.default_expiry`.
fn default_expiry(config: &Config) -> Option<crate::store::Timestamp> {
    config
        .token_default_expiry_ms
        .map(|ms| crate::store::Timestamp::now().plus_millis(ms))
}

/// Prefixes a bootstrap command's store error with the argument it is
/// about (`--org`, `--team`, `NAME`), when it is about one.
fn naming_argument(err: crate::store::StoreError) -> anyhow::Error {
    use crate::store::StoreError;
    let argument = match &err {
        StoreError::NotFound(what) | StoreError::Invalid(what)
            if what.starts_with("organization `") =>
        {
            Some("--org")
        }
        StoreError::NotFound(what) | StoreError::Invalid(what) if what.starts_with("team `") => {
            Some("--team")
        }
        StoreError::Invalid(what) if what.contains(" name `") => Some("NAME"),
        StoreError::AlreadyExists(_) => Some("NAME"),
        _ => None,
    };
    match argument {
        Some(argument) => anyhow::anyhow!("{argument}: {err}"),
        None => err.into(),
    }
}

/// Prints one JSON line; a closed stdout is an error, not a panic.
fn print(value: serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

fn load_config(path: &std::path::Path) -> Result<Config> {
    Ok(Config::load(path)?)
}

fn open(args: &ConfigArg) -> Result<(Arc<dyn Store>, Config)> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    Ok((store, config))
}

async fn resolve_owner(store: &dyn Store, owner: &TokenOwner) -> Result<Owner> {
    match (&owner.team, &owner.org) {
        (Some(team_id), None) => {
            let team = store
                .team(team_id)
                .await?
                .with_context(|| format!("--team: team `{team_id}` not found"))?;
            Ok(Owner::Team {
                org: team.organization,
                team_id: team.id,
            })
        }
        (None, Some(org)) => {
            let org = store
                .org(org)
                .await?
                .with_context(|| format!("--org: organization `{org}` not found"))?;
            Ok(Owner::Org { org: org.name })
        }
        _ => bail!("give exactly one of --team or --org"),
    }
}

/// The user `name` (or the id `user-…`), of `org` when given.
async fn user_named(
    store: &dyn Store,
    name: &str,
    org: Option<&str>,
) -> Result<crate::store::User> {
    if name.starts_with("user-") {
        return store
            .user(name)
            .await?
            .filter(|u| org.is_none_or(|o| o == u.organization))
            .with_context(|| format!("NAME: user `{name}` not found"));
    }
    let mut users = store.users_named(name).await?;
    if let Some(org) = org {
        users.retain(|u| u.organization == org);
    }
    match users.len() {
        0 => bail!(
            "NAME: no user named `{name}`{} (create one with `tokengate user create`)",
            org.map(|o| format!(" in organization `{o}`"))
                .unwrap_or_default()
        ),
        1 => Ok(users.remove(0)),
        n => {
            let orgs: Vec<&str> = users.iter().map(|u| u.organization.as_str()).collect();
            bail!(
                "NAME: {n} users are named `{name}` (organizations: {}); give --org or the user's id",
                orgs.join(", ")
            )
        }
    }
}

/// The new password from standard input: typed twice (not echoed) at a
/// terminal, else the first line of what is piped in.
fn read_password() -> Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password("New password: ")
            .context("standard input: cannot read the password")?;
        let second = rpassword::prompt_password("Repeat it: ")
            .context("standard input: cannot read the password")?;
        if first != second {
            bail!("standard input: the two passwords differ; nothing was changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("standard input: cannot read the password")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("standard input: no password given; pipe it in (e.g. from a secret manager) or type it at a terminal");
    }
    Ok(password)
}

fn check(path: &std::path::Path) -> Result<()> {
    let config = load_config(path)?;
    let policy = Policy::load(&config.policy_file)?;
    print(json!({
        "valid": true,
        "config": path.display().to_string(),
        "policy": config.policy_file.display().to_string(),
        "rules": policy.rules.len(),
        "policy_sha256": policy.source_hash,
    }))
}
