//! Validated gateway configuration, loaded from a YAML file.
//!
//! Loading happens in two layers: the file is deserialized into the
//! all-optional structs of [`raw`], then [`validate`] checks every key and
//! reports **all** problems at once, each with its key path and the fix.

pub mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use validate::validate;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `store.redis.timeout_ms`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
    },
}

fn render_problems(path: &Path, problems: &[ConfigProblem]) -> String {
    let mut out = format!(
        "config file {} has {} problem(s):",
        path.display(),
        problems.len()
    );
    for problem in problems {
        out.push_str(&format!("\n  - {}: {}", problem.key, problem.message));
    }
    out
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub upstream: UpstreamConfig,
    pub store: StoreConfig,
    pub policy_file: PathBuf,
    pub hashing: Argon2Params,
    pub limits: Limits,
    pub verify_cache: VerifyCacheConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `http://host:port` plus an optional path prefix (no trailing slash).
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    pub path_prefix: String,
    pub forward_authorization: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

#[derive(Debug, Clone)]
pub enum StoreConfig {
    Redis { url: String, timeout: Duration },
    Embedded { path: PathBuf },
}

/// argon2id cost parameters for hashing token secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// The OWASP minimum for argon2id.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct VerifyCacheConfig {
    pub capacity: u64,
    pub ttl: Duration,
    pub max_concurrent_verifies: usize,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `info`.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml(&text, base_dir).map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    /// Parses and validates YAML text; relative paths resolve against `base_dir`.
    pub fn from_yaml(text: &str, base_dir: &Path) -> Result<Config, Vec<ConfigProblem>> {
        let raw = parse_yaml::<raw::RawConfig>(text)?;
        validate(raw.value, raw.unknown_keys, base_dir)
    }
}

/// `serde_ignored` writes `?` for every `Option` layer; operators want
/// `upstream.urll`, not `upstream.?.urll`.
fn clean_key_path(path: &str) -> String {
    path.split('.')
        .filter(|part| *part != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// A deserialized document together with the keys nobody asked for.
pub struct Parsed<T> {
    pub value: T,
    pub unknown_keys: Vec<String>,
}

/// Deserializes YAML, collecting every unknown key (instead of stopping at
/// the first) and naming the key path of a type error.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    text: &str,
) -> Result<Parsed<T>, Vec<ConfigProblem>> {
    if text.trim().is_empty() {
        return Ok(Parsed {
            value: T::default(),
            unknown_keys: Vec::new(),
        });
    }
    let mut unknown_keys = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let yaml = serde_yaml::Deserializer::from_str(text);
        let tracked = serde_path_to_error::Deserializer::new(yaml, &mut track);
        serde_ignored::deserialize(tracked, |path| {
            unknown_keys.push(clean_key_path(&path.to_string()))
        })
    };
    match result {
        Ok(value) => Ok(Parsed {
            value,
            unknown_keys,
        }),
        Err(err) => {
            let key = track.path().to_string();
            let key = if key == "." || key.is_empty() {
                "(document)".to_owned()
            } else {
                key
            };
            Err(vec![ConfigProblem {
                key,
                message: format!("{err}; fix the value's type or YAML syntax"),
            }])
        }
    }
}
