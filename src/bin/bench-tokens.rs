//! Token sets for the load benchmark (`benches/load.sh`), written straight
//! into the configured store through the library — creating 10,000 tokens
//! one CLI call at a time would take minutes.
//!
//! ```text
//! bench-tokens create --config CFG --org ORG --count N --out FILE
//! bench-tokens forge --count N --out FILE [--kind K]   < one valid token on stdin
//! ```
//!
//! `create` makes N teams (`bench-1` … `bench-N`, or `--prefix`) in an
//! existing organization and issues one token for each with
//! [`tokengate::token::lifecycle::issue`] (the configured hashing scheme;
//! no audit events). `forge` writes N tokens that pass the shape check and
//! fail authentication: alternately the given token's id with a wrong secret,
//! and an id the store does not know (`--kind mixed`, the default), or only
//! one of the two (`--kind wrong-secret`, `--kind unknown-id`). Both write one token per line to a new
//! file only this user can read, and print one JSON object on stdout.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokengate::config::Config;
use tokengate::store::{Owner, Store};
use tokengate::token::format::{self as token, PresentedToken};
use tokengate::token::lifecycle;

#[derive(Parser)]
#[command(about = "Token sets for benches/load.sh")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates COUNT teams in ORG and a token for each; writes the tokens to OUT.
    Create {
        /// The gateway's config file (its store is written to).
        #[arg(long)]
        config: PathBuf,
        /// An existing organization.
        #[arg(long)]
        org: String,
        #[arg(long)]
        count: usize,
        /// A new file: one token per line, mode 0600.
        #[arg(long)]
        out: PathBuf,
        /// Team names are PREFIX-1 … PREFIX-COUNT.
        #[arg(long, default_value = "bench")]
        prefix: String,
        /// Store calls in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Writes COUNT shape-valid tokens that fail authentication: the token
    /// read from stdin with wrong secrets, and unknown ids, alternately (or
    /// only one kind, with --kind).
    Forge {
        #[arg(long)]
        count: usize,
        /// A new file: one token per line, mode 0600.
        #[arg(long)]
        out: PathBuf,
        /// Which forged tokens: both kinds alternately, or only one.
        #[arg(long, value_enum, default_value_t = ForgeKind::Mixed)]
        kind: ForgeKind,
    },
}

/// The forged tokens `forge` writes.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ForgeKind {
    /// Wrong secrets and unknown ids, alternately.
    Mixed,
    /// The given token's id with wrong secrets.
    WrongSecret,
    /// Ids no credential has.
    UnknownId,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Create {
            config,
            org,
            count,
            out,
            prefix,
            concurrency,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|runtime| {
                runtime.block_on(create(&config, &org, count, &out, &prefix, concurrency))
            }),
        Command::Forge { count, out, kind } => forge(count, &out, kind),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "bench-tokens: error: {}",
                format!("{err:#}").replace('\n', " ")
            );
            std::process::ExitCode::FAILURE
        }
    }
}

async fn create(
    config_path: &Path,
    org: &str,
    count: usize,
    out: &Path,
    prefix: &str,
    concurrency: usize,
) -> Result<()> {
    if count == 0 || concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    let config =
        Config::load(config_path).with_context(|| format!("--config {}", config_path.display()))?;
    let store = tokengate::gateway::open_store(&config).context("cannot open the store")?;
    if store.org(org).await?.is_none() {
        bail!("--org: organization `{org}` not found (create it first)");
    }
    // Open the output first: a bad path fails before any store write.
    let mut file = new_private_file(out)?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (store, next) = (store.clone(), next.clone());
        let (org, prefix) = (org.to_owned(), prefix.to_owned());
        let hashing = config.hashing;
        tasks.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(made);
                }
                let name = format!("{prefix}-{}", i + 1);
                made.push((
                    i,
                    issue_team_token(store.as_ref(), &org, &name, hashing).await?,
                ));
            }
        });
    }
    let mut tokens = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        tokens.extend(joined.context("a creating task panicked")??);
    }
    tokens.sort_unstable_by_key(|(i, _)| *i);
    let mut text = String::with_capacity(count * (token::TOKEN_LEN + 1));
    for (_, token) in &tokens {
        text.push_str(token);
        text.push('\n');
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "created": tokens.len(),
            "org": org,
            "out": out.display().to_string(),
            "seconds": (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        })
    );
    Ok(())
}

/// Creates team `name` in `org` and issues its token; returns the token.
async fn issue_team_token(
    store: &dyn Store,
    org: &str,
    name: &str,
    hashing: tokengate::config::HashingConfig,
) -> Result<String> {
    let team = store
        .create_team(org, name)
        .await
        .with_context(|| format!("cannot create team {name}"))?;
    let owner = Owner::Team {
        org: team.organization,
        team_id: team.id,
    };
    let issued = lifecycle::issue(store, owner, hashing, None, None)
        .await
        .with_context(|| format!("cannot issue the token of team {name}"))?;
    Ok(issued.token.secret_token)
}

fn forge(count: usize, out: &Path, kind: ForgeKind) -> Result<()> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the token from stdin")?;
    let valid = line.trim();
    PresentedToken::parse(valid)
        .map_err(|e| anyhow::anyhow!("stdin: not a tokengate token ({e})"))?;
    let id = &valid[..token::SLOT_LEN + token::GENERATION_LEN];
    let mut file = new_private_file(out)?;
    let mut text = String::with_capacity(count * (token::TOKEN_LEN + 1));
    for i in 0..count {
        let wrong_secret = match kind {
            ForgeKind::Mixed => i % 2 == 0,
            ForgeKind::WrongSecret => true,
            ForgeKind::UnknownId => false,
        };
        let forged = if wrong_secret {
            // The real id, a wrong secret: one store read and a digest compare.
            token::assemble(id, &token::random_string(64))
        } else {
            // An id no credential has: one store read that finds nothing.
            let unknown = token::random_string(token::SLOT_LEN + token::GENERATION_LEN);
            token::assemble(&unknown, &token::random_string(64))
        };
        text.push_str(&forged);
        text.push('\n');
    }
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}",
        serde_json::json!({"forged": count, "out": out.display().to_string()})
    );
    Ok(())
}

/// A new file that only this user can read or write.
fn new_private_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "--out: cannot create {} (it must not exist)",
                path.display()
            )
        })
}
