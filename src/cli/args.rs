//! The command line's arguments (clap): every command, flag and its help.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// Manage teams' access to workspaces (Terraform Enterprise's team access).
    #[command(subcommand)]
    Access(AccessCommand),
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Give a team access to a workspace, or change the access it has.
    Set {
        #[command(flatten)]
        config: ConfigArg,
        /// The team (`team-…`).
        #[arg(long, value_name = "TEAM_ID")]
        team: String,
        /// The workspace (`ws-…`); it must exist upstream.
        #[arg(long, value_name = "WORKSPACE_ID")]
        workspace: String,
        /// read, plan, write, admin, or custom (then the permissions below).
        #[arg(long, value_name = "LEVEL")]
        access: String,
        /// Custom only: read, plan or apply (default read).
        #[arg(long, value_name = "LEVEL")]
        runs: Option<String>,
        /// Custom only: none, read or write (default none).
        #[arg(long, value_name = "LEVEL")]
        variables: Option<String>,
        /// Custom only: none, read-outputs, read or write (default none).
        #[arg(long, value_name = "LEVEL")]
        state_versions: Option<String>,
        /// Custom only: none or read (default none).
        #[arg(long, value_name = "LEVEL")]
        sentinel_mocks: Option<String>,
        /// Custom only: lock and unlock the workspace by hand.
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        workspace_locking: Option<bool>,
        /// Custom only: manage the workspace's run tasks.
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        run_tasks: Option<bool>,
        /// Custom only: override policy checks.
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        policy_overrides: Option<bool>,
    },
    /// List the access of a team, or to a workspace.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        of: AccessOf,
    },
    /// Take a team's access to a workspace away.
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        /// The team (`team-…`).
        #[arg(long, value_name = "TEAM_ID")]
        team: String,
        /// The workspace (`ws-…`).
        #[arg(long, value_name = "WORKSPACE_ID")]
        workspace: String,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct AccessOf {
    /// Every workspace access of this team (`team-…`).
    #[arg(long, value_name = "TEAM_ID")]
    pub team: Option<String>,
    /// Every team's access to this workspace (`ws-…`).
    #[arg(long, value_name = "WORKSPACE_ID")]
    pub workspace: Option<String>,
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
    /// Change an organization's token settings.
    Set {
        #[command(flatten)]
        config: ConfigArg,
        /// The organization.
        name: String,
        /// Whether user tokens may be used on the organization's resources
        /// (Terraform Enterprise's `user-tokens-enabled`).
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        user_tokens_enabled: bool,
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
        /// Whether team members (not only organization owners) may manage the team's tokens.
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, required_unless_present = "manage_teams")]
        allow_member_token_management: Option<bool>,
        /// The team's "manage teams" organization permission: its members
        /// (and its token) manage the tokens of every team but the owners
        /// team and admin teams.
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        manage_teams: Option<bool>,
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
    /// Set a user's password for the web UI (/_tokengate/ui/). The password
    /// is read from standard input, never from the command line: typed twice
    /// at a terminal, or the first line of a pipe. At least 12 characters.
    /// The user's open sessions end.
    SetPassword {
        #[command(flatten)]
        config: ConfigArg,
        /// The user's organization, when users of several organizations
        /// have this name.
        #[arg(long)]
        org: Option<String>,
        /// The user's name, which is also their sign-in name (any case), or
        /// their id (`user-…`). Sign-in names are unique across the gateway.
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
