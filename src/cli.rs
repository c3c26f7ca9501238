//! The command line: `serve`, `check`, and bootstrap commands that print one
//! JSON object on stdout; `policy test|explain|lint`, which print reports for
//! people. Errors surface in `main` as one line on stderr.

use crate::config::Config;
use crate::gateway::{open_store, Gateway};
use crate::policy::cases::{CaseRequest, CaseSet, RequestFields};
use crate::policy::Policy;
use crate::store::{Owner, Store};
use crate::{logging, reload, server, tokens};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "tokengate",
    version,
    about = "Authorization reverse-proxy gateway for Terraform-Enterprise-style APIs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// Path of the gateway config file (YAML).
    #[arg(long, value_name = "PATH", env = "TOKENGATE_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Path of the gateway config file (YAML).
    #[arg(long, value_name = "PATH", env = "TOKENGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Run a complete local setup with nothing installed: embedded store in a
    /// temporary folder, a built-in mock workspace API, ready-made tokens.
    #[arg(long, conflicts_with = "config")]
    pub dev: bool,
    /// Listen on this address instead of the config's `listen` (e.g. 0.0.0.0:8080 in a container).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Validate the config and policy files without serving (exit 0 when valid).
    Check(ConfigArg),
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage teams.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage team and organization tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the token audit trail as JSON lines, oldest first.
    Audit {
        #[command(flatten)]
        config: ConfigArg,
        /// Only events of this organization.
        #[arg(long)]
        org: Option<String>,
        /// Only events at or after this time (RFC 3339, e.g. 2026-01-01T00:00:00Z).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<crate::store::Timestamp>,
        /// At most this many events.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
    /// Test, explain and lint a policy without serving.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// Which policy a `policy` command reads.
#[derive(Debug, Args)]
pub struct PolicySource {
    /// The policy file.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    pub policy: Option<PathBuf>,
    /// A gateway config file; its `policy.file` is used.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run a table of cases (see docs/POLICY.md); exit 1 when any fails.
    Test {
        /// The cases file (YAML). Its `policy:` key is used unless
        /// --policy or --config is given.
        cases: PathBuf,
        #[command(flatten)]
        source: PolicySource,
    },
    /// Show how the policy decides one request, rule by rule.
    Explain {
        #[command(flatten)]
        source: PolicySource,
        /// The caller: team, org, user or anonymous.
        #[arg(long)]
        kind: String,
        /// HTTP method, e.g. POST.
        #[arg(long)]
        method: String,
        /// Request path as a client would send it (it is canonicalized).
        #[arg(long)]
        path: String,
        /// The caller's organization.
        #[arg(long)]
        org: Option<String>,
        /// The team id of a team token.
        #[arg(long)]
        team: Option<String>,
        /// The user id of a user token.
        #[arg(long)]
        user: Option<String>,
        /// The request body (JSON).
        #[arg(long)]
        body: Option<String>,
    },
    /// Validate the policy and warn about rules that can never be reached.
    Lint {
        #[command(flatten)]
        source: PolicySource,
        /// Exit 1 when there are warnings.
        #[arg(long)]
        strict: bool,
    },
}

fn parse_time(text: &str) -> Result<crate::store::Timestamp, String> {
    crate::store::Timestamp::parse_rfc3339(text)
        .ok_or_else(|| format!("`{text}` is not an RFC 3339 time such as 2026-01-01T00:00:00Z"))
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization (and its `owners` team).
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// Organization name: letters, digits, `-`, `_`.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Change a team's settings.
    Set {
        #[command(flatten)]
        config: ConfigArg,
        /// The team (`team-…`).
        #[arg(long, value_name = "TEAM_ID")]
        team: String,
        /// Whether team members (not only organization owners) may manage the team's token.
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        allow_member_token_management: bool,
    },
    /// Create a team in an organization.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// Organization the team belongs to.
        #[arg(long)]
        org: String,
        /// Team name: letters, digits, `-`, `_`.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with their own (interactive) token.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// Organization the user belongs to.
        #[arg(long)]
        org: String,
        /// Team the user is a member of (repeat for several).
        #[arg(long = "team", value_name = "TEAM_ID")]
        teams: Vec<String>,
        /// User name: letters, digits, `-`, `_`.
        name: String,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TokenOwner {
    /// The team whose token to manage (`team-…`).
    #[arg(long, value_name = "TEAM_ID")]
    pub team: Option<String>,
    /// The organization whose token to manage.
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Generate a token, replacing (and invalidating) the current one.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        owner: TokenOwner,
    },
    /// Revoke the current token.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        owner: TokenOwner,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(ServeArgs {
            dev: true, listen, ..
        }) => serve_dev(listen).await,
        Command::Serve(ServeArgs {
            config: Some(config),
            listen,
            ..
        }) => serve(&config, listen).await,
        Command::Serve(_) => bail!("give --config PATH or --dev"),
        Command::Check(args) => check(&args.config),
        Command::Org(OrgCommand::Create { config, name }) => {
            let (store, _) = open(&config)?;
            let org = store.create_org(&name).await?;
            print(json!({"name": org.name, "owners_team_id": org.owners_team_id}))
        }
        Command::Team(TeamCommand::Create { config, org, name }) => {
            let (store, _) = open(&config)?;
            let team = store.create_team(&org, &name).await?;
            print(json!({"id": team.id, "name": team.name, "organization": team.organization}))
        }
        Command::Team(TeamCommand::Set {
            config,
            team,
            allow_member_token_management,
        }) => {
            let (store, _) = open(&config)?;
            let team = store
                .set_member_token_management(&team, allow_member_token_management)
                .await
                .map_err(|e| anyhow::anyhow!("--team: {e}"))?;
            print(
                json!({"id": team.id, "name": team.name, "organization": team.organization,
                "allow_member_token_management": team.allow_member_token_management}),
            )
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
            let user = store.create_user(&org, &name, &teams).await?;
            let owner = Owner::User {
                org: user.organization.clone(),
                user_id: user.id.clone(),
            };
            let issued = tokens::issue(
                store.as_ref(),
                owner,
                config.hashing,
                Some(user.id.clone()),
                None,
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
        Command::Token(TokenCommand::Create { config, owner }) => {
            let (store, config) = open(&config)?;
            let owner = resolve_owner(store.as_ref(), &owner).await?;
            let actor = tokens::Actor {
                id: "cli",
                is_principal: false,
            };
            let issued =
                tokens::generate_audited(store.as_ref(), owner, config.hashing, actor, None)
                    .await?;
            print(json!({"id": issued.credential.token_id, "token": issued.token.secret_token}))
        }
        Command::Token(TokenCommand::Revoke { config, owner }) => {
            let (store, _) = open(&config)?;
            let owner = resolve_owner(store.as_ref(), &owner).await?;
            match tokens::revoke_audited(store.as_ref(), &owner, "cli").await? {
                Some(revoked) => print(json!({"revoked": true, "id": revoked.token_id})),
                None => print(json!({"revoked": false, "id": null})),
            }
        }
        Command::Policy(command) => policy_command(command),
    }
}

/// Resolves the policy file: --policy, else --config's `policy.file`, else
/// `named` (a cases file's `policy:`), else $TOKENGATE_CONFIG's, else
/// `config/policy.yaml` when it exists.
fn policy_path(source: &PolicySource, named: Option<PathBuf>) -> Result<PathBuf> {
    let env_config = std::env::var_os("TOKENGATE_CONFIG").map(PathBuf::from);
    let default = PathBuf::from("config/policy.yaml");
    match (&source.policy, source.config.as_ref(), named) {
        (Some(policy), _, _) => Ok(policy.clone()),
        (None, Some(config), _) => Ok(load_config(config)?.policy_file),
        (None, None, Some(named)) => Ok(named),
        (None, None, None) => match env_config {
            Some(config) => Ok(load_config(&config)?.policy_file),
            None if default.is_file() => Ok(default),
            None => bail!("give --policy PATH or --config PATH (or set TOKENGATE_CONFIG)"),
        },
    }
}

fn policy_command(command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Test { cases, source } => {
            let set = CaseSet::load(&cases)?;
            let path = policy_path(&source, set.policy.clone())?;
            let policy = Policy::load(&path)?;
            let report = set.run(&policy);
            for failure in &report.failures {
                println!("{failure}\n");
            }
            println!(
                "policy {} (sha256 {}): {} passed, {} failed",
                path.display(),
                &policy.source_hash[..12],
                report.passed,
                report.failures.len()
            );
            if !report.failures.is_empty() {
                bail!(
                    "{} of {} policy cases failed",
                    report.failures.len(),
                    set.cases.len()
                );
            }
            Ok(())
        }
        PolicyCommand::Explain {
            source,
            kind,
            method,
            path,
            org,
            team,
            user,
            body,
        } => {
            let policy_file = policy_path(&source, None)?;
            let policy = Policy::load(&policy_file)?;
            let fields = RequestFields {
                kind: Some(kind),
                org,
                team,
                user,
                method: Some(method),
                path: Some(path),
                body: body.map(String::into_bytes).unwrap_or_default(),
            };
            let request = CaseRequest::parse(fields, "--").map_err(|problems| {
                let lines: Vec<String> = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.key, p.message))
                    .collect();
                anyhow::anyhow!("{}", lines.join("; "))
            })?;
            println!(
                "policy:    {} (sha256 {})",
                policy_file.display(),
                &policy.source_hash[..12]
            );
            println!("request:   {request}");
            match request.explain(&policy) {
                Ok((canonical, explanation)) => {
                    println!("canonical: {canonical}");
                    println!("{explanation}");
                }
                Err(err) => println!("decision: bad_request (400) before any rule: {err}"),
            }
            Ok(())
        }
        PolicyCommand::Lint { source, strict } => {
            let path = policy_path(&source, None)?;
            let policy = Policy::load(&path)?;
            let warnings = policy.lint();
            for warning in &warnings {
                println!("warning: {warning}");
            }
            println!(
                "policy {}: {} rules, {} warning(s)",
                path.display(),
                policy.rules.len(),
                warnings.len()
            );
            if strict && !warnings.is_empty() {
                bail!("{} lint warning(s) (--strict)", warnings.len());
            }
            Ok(())
        }
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

async fn serve(path: &std::path::Path, listen: Option<std::net::SocketAddr>) -> Result<()> {
    let mut config = load_config(path)?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let _log_guard = logging::init(&config.log);
    let listen = config.listen;
    let gateway = Gateway::build(config)?;
    let _watch = if gateway.config.policy_watch {
        reload::watch_files(gateway.clone(), Duration::from_millis(250))
            .inspect_err(|err| {
                tracing::error!(error = %err, "cannot watch the policy file; reload with SIGHUP or POST /_tokengate/reload")
            })
            .ok()
    } else {
        None
    };
    #[cfg(unix)]
    let _hangup = reload::reload_on_sighup(gateway.clone()).context("cannot handle SIGHUP")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen: cannot bind {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "tokengate listening");
    server::serve(
        listener,
        gateway,
        shutdown_signal(),
        Duration::from_secs(30),
    )
    .await;
    tracing::info!("tokengate stopped");
    Ok(())
}

async fn serve_dev(listen: Option<std::net::SocketAddr>) -> Result<()> {
    let _log_guard = logging::init(&crate::config::LogConfig {
        level: "info".into(),
        format: crate::config::LogFormat::Text,
    });
    let dev = crate::dev::prepare().await.context("--dev")?;
    let wanted = listen.unwrap_or(dev.gateway.config.listen);
    let listener = match tokio::net::TcpListener::bind(wanted).await {
        Ok(listener) => listener,
        // Without an explicit --listen, a busy default port is not fatal in dev mode.
        Err(err) if listen.is_none() => {
            tracing::warn!(address = %wanted, error = %err, "default port busy; using a free one");
            tokio::net::TcpListener::bind("127.0.0.1:0").await?
        }
        Err(err) => return Err(err).with_context(|| format!("--listen: cannot bind {wanted}")),
    };
    let address = listener.local_addr()?;
    // A closed stdout (e.g. piped into `head`) must not stop the gateway.
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(dev.banner(address).as_bytes());
        let _ = stdout.flush();
    }
    tracing::info!(%address, "tokengate (dev mode) listening");
    server::serve(
        listener,
        dev.gateway.clone(),
        shutdown_signal(),
        Duration::from_secs(5),
    )
    .await;
    drop(dev);
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; draining connections");
}
