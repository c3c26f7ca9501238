//! Turns a [`RawConfig`] into a [`Config`], reporting every problem at once.

use super::raw::RawConfig;
use super::{
    AdminConfig, Argon2Params, Config, ConfigProblem, HashingConfig, IpNetwork, Limits, LogConfig,
    LogFormat, ResolverConfig, SecretScheme, StoreConfig, UpstreamConfig, VerifyCacheConfig,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Collects problems while validation goes on.
#[derive(Default)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Checks that `value` lies in `min..=max`, naming the key otherwise.
    fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        key: &str,
        value: T,
        min: T,
        max: T,
    ) -> T {
        if value < min || value > max {
            self.push(key, format!("{value} is out of range; use {min}..={max}"));
        }
        value
    }
}

/// Validates every key; returns all problems when any is found.
pub fn validate(
    raw: RawConfig,
    unknown_keys: Vec<String>,
    base_dir: &Path,
) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    for key in unknown_keys {
        problems.push(
            key,
            "unknown key; remove it or check its spelling (see config/tokengate.yaml)",
        );
    }

    let listen = match raw.listen.as_deref() {
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(text) => text.parse().unwrap_or_else(|_| {
            problems.push(
                "listen",
                format!("`{text}` is not an address; use IP:PORT, e.g. 127.0.0.1:8080"),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        }),
    };

    let workers = problems.in_range(
        "workers",
        raw.workers.unwrap_or_else(crate::per_worker::default_count),
        1,
        crate::per_worker::MAX_WORKERS,
    );

    let upstream = validate_upstream(raw.upstream.unwrap_or_default(), &mut problems);
    let store = validate_store(raw.store, base_dir, &mut problems);

    let raw_policy = raw.policy.unwrap_or_default();
    let policy_watch = raw_policy.watch.unwrap_or(true);
    let policy_file = match raw_policy.file {
        Some(file) if !file.trim().is_empty() => base_dir.join(file),
        Some(_) => {
            problems.push(
                "policy.file",
                "is empty; give the path of a policy YAML file",
            );
            PathBuf::new()
        }
        None => {
            problems.push(
                "policy.file",
                "is missing; add `policy: { file: policy.yaml }` (relative to this config file)",
            );
            PathBuf::new()
        }
    };

    let raw_hashing = raw.hashing.unwrap_or_default();
    let scheme = match raw_hashing.scheme.as_deref() {
        None | Some("sha256") => SecretScheme::Sha256,
        Some("argon2id") => SecretScheme::Argon2id,
        Some(other) => {
            problems.push(
                "hashing.scheme",
                format!("`{other}` is not a scheme; use sha256 (default) or argon2id"),
            );
            SecretScheme::Sha256
        }
    };
    let argon2 = raw_hashing.argon2.unwrap_or_default();
    let default_params = Argon2Params::default();
    let argon2 = Argon2Params {
        memory_kib: problems.in_range(
            "hashing.argon2.memory_kib",
            argon2.memory_kib.unwrap_or(default_params.memory_kib),
            8,
            4 * 1024 * 1024,
        ),
        iterations: problems.in_range(
            "hashing.argon2.iterations",
            argon2.iterations.unwrap_or(default_params.iterations),
            1,
            100,
        ),
        parallelism: problems.in_range(
            "hashing.argon2.parallelism",
            argon2.parallelism.unwrap_or(default_params.parallelism),
            1,
            64,
        ),
    };
    if argon2.memory_kib < 8 * argon2.parallelism {
        problems.push(
            "hashing.argon2.memory_kib",
            "must be at least 8 × parallelism (argon2 requirement)",
        );
    }
    let hashing = HashingConfig { scheme, argon2 };

    let raw_limits = raw.limits.unwrap_or_default();
    let limits = Limits {
        max_body_bytes: problems.in_range(
            "limits.max_body_bytes",
            raw_limits.max_body_bytes.unwrap_or(10 * 1024 * 1024),
            0,
            1 << 40,
        ),
        max_header_bytes: problems.in_range(
            "limits.max_header_bytes",
            raw_limits.max_header_bytes.unwrap_or(64 * 1024),
            8192,
            1024 * 1024,
        ),
        header_read_timeout: Duration::from_millis(problems.in_range(
            "limits.header_read_timeout_ms",
            raw_limits.header_read_timeout_ms.unwrap_or(10_000),
            100,
            600_000,
        )),
        max_connections: problems.in_range(
            "limits.max_connections",
            raw_limits.max_connections.unwrap_or(10_000),
            1,
            1_000_000,
        ),
    };

    let raw_cache = raw.verify_cache.unwrap_or_default();
    let verify_cache = VerifyCacheConfig {
        capacity: problems.in_range(
            "verify_cache.capacity",
            raw_cache.capacity.unwrap_or(100_000),
            1,
            100_000_000,
        ),
        ttl: Duration::from_secs(problems.in_range(
            "verify_cache.ttl_s",
            raw_cache.ttl_s.unwrap_or(600),
            1,
            86_400,
        )),
        max_concurrent_verifies: problems.in_range(
            "verify_cache.max_concurrent_verifies",
            raw_cache
                .max_concurrent_verifies
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            1,
            1024,
        ),
    };

    let raw_log = raw.log.unwrap_or_default();
    let level = raw_log.level.unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        problems.push(
            "log.level",
            format!("`{level}` is not a log filter; use error, warn, info, debug or trace"),
        );
    }
    let format = match raw_log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.push(
                "log.format",
                format!("`{other}` is unknown; use text or json"),
            );
            LogFormat::Text
        }
    };

    let admin = validate_admin(raw.admin, &mut problems);
    let org_tokens_manage_team_tokens = raw
        .token_api
        .and_then(|t| t.org_tokens_manage_team_tokens)
        .unwrap_or(false);
    let resolver = validate_resolver(raw.resolver, base_dir, &mut problems);

    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    Ok(Config {
        listen,
        workers,
        upstream: upstream.expect("upstream is valid when there are no problems"),
        store: store.expect("store is valid when there are no problems"),
        policy_file,
        policy_watch,
        hashing,
        limits,
        verify_cache,
        log: LogConfig { level, format },
        admin,
        org_tokens_manage_team_tokens,
        resolver,
        source: None,
    })
}

/// `resolver:`. The authorization header value comes from a file or an
/// environment variable, never from the config file itself; errors name
/// where it was looked for, never what was found.
fn validate_resolver(
    raw: Option<super::raw::RawResolver>,
    base_dir: &Path,
    problems: &mut Problems,
) -> ResolverConfig {
    let raw = raw.unwrap_or_default();
    let defaults = ResolverConfig::default();
    let (authorization, authorization_source) = match raw.authorization {
        None | Some(serde_yaml::Value::Null) => (None, None),
        Some(value) => match read_authorization(&value, base_dir) {
            Ok((value, source)) => (Some(value), Some(source)),
            Err((key, message)) => {
                problems.push(key, message);
                (None, None)
            }
        },
    };
    ResolverConfig {
        authorization,
        authorization_source,
        timeout: Duration::from_millis(
            problems.in_range(
                "resolver.timeout_ms",
                raw.timeout_ms
                    .unwrap_or(defaults.timeout.as_millis() as u64),
                1,
                60_000,
            ),
        ),
        cache_capacity: problems.in_range(
            "resolver.cache_capacity",
            raw.cache_capacity.unwrap_or(defaults.cache_capacity),
            1,
            100_000_000,
        ),
    }
}

/// Reads `resolver.authorization` (`{ file: PATH }` or `{ env: NAME }`):
/// the header value and where it came from, or the key and the problem.
fn read_authorization(
    value: &serde_yaml::Value,
    base_dir: &Path,
) -> Result<(http::HeaderValue, String), (String, String)> {
    const KEY: &str = "resolver.authorization";
    let how = "give `{ file: PATH }` (a file holding the header value, e.g. `Bearer <token>`) or `{ env: NAME }` (an environment variable holding it)";
    let serde_yaml::Value::Mapping(map) = value else {
        return Err((
            KEY.into(),
            format!("must not be written in the config file; {how}"),
        ));
    };
    let entry = |name: &str| map.get(serde_yaml::Value::from(name));
    let (text, key, source) = match (entry("file"), entry("env"), map.len()) {
        (Some(serde_yaml::Value::String(file)), None, 1) => {
            let path = base_dir.join(file);
            let key = format!("{KEY}.file");
            let text = std::fs::read_to_string(&path).map_err(|err| {
                (
                    key.clone(),
                    format!(
                        "cannot read {}: {err}; create it holding the header value (e.g. `Bearer <token>`), readable by tokengate only",
                        path.display()
                    ),
                )
            })?;
            (text, key, format!("file {}", path.display()))
        }
        (None, Some(serde_yaml::Value::String(name)), 1) => {
            let key = format!("{KEY}.env");
            let text = std::env::var(name).map_err(|_| {
                (
                    key.clone(),
                    format!("the environment variable `{name}` is not set (or not UTF-8); export it holding the header value, e.g. `Bearer <token>`"),
                )
            })?;
            (text, key, format!("env {name}"))
        }
        _ => return Err((KEY.into(), format!("is not understood; {how}"))),
    };
    let trimmed = text.trim_end_matches(['\r', '\n']).trim();
    if trimmed.is_empty() {
        return Err((
            key,
            format!("{source} is empty; put the header value (e.g. `Bearer <token>`) in it"),
        ));
    }
    let mut header = http::HeaderValue::from_str(trimmed).map_err(|_| {
        (
            key.clone(),
            format!("{source} holds characters a header value cannot have (control characters or line breaks inside); put the header value on one line"),
        )
    })?;
    header.set_sensitive(true);
    Ok((header, source))
}

fn validate_admin(raw: Option<super::raw::RawAdmin>, problems: &mut Problems) -> AdminConfig {
    let raw = raw.unwrap_or_default();
    let mut admin = AdminConfig::default();
    if let Some(entries) = raw.allow_from {
        admin.allow_from = entries
            .iter()
            .enumerate()
            .filter_map(|(i, entry)| {
                IpNetwork::parse(entry)
                    .map_err(|reason| {
                        problems.push(
                            format!("admin.allow_from[{i}]"),
                            format!("{reason}; use e.g. 127.0.0.1/32, 10.0.0.0/8 or ::1/128"),
                        )
                    })
                    .ok()
            })
            .collect();
    }
    let mut ids = |key: &str, prefix: &str, given: Option<Vec<String>>| -> Vec<String> {
        let given = given.unwrap_or_default();
        for (i, id) in given.iter().enumerate() {
            if crate::store::validate_id(prefix, id).is_err() {
                problems.push(
                    format!("{key}[{i}]"),
                    format!(
                        "`{id}` is not a {prefix}… id; copy it from `tokengate {} create`",
                        &prefix[..prefix.len() - 1]
                    ),
                );
            }
        }
        given
    };
    admin.teams = ids("admin.teams", "team-", raw.teams);
    admin.users = ids("admin.users", "user-", raw.users);
    admin
}

fn validate_upstream(
    raw: super::raw::RawUpstream,
    problems: &mut Problems,
) -> Option<UpstreamConfig> {
    let Some(url) = raw.url else {
        problems.push(
            "upstream.url",
            "is missing; add the workspace API's address, e.g. http://127.0.0.1:9000",
        );
        return None;
    };
    let uri: http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(err) => {
            problems.push("upstream.url", format!("`{url}` is not a URL ({err})"));
            return None;
        }
    };
    let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
        problems.push(
            "upstream.url",
            format!("`{url}` needs a scheme and host, e.g. http://127.0.0.1:9000"),
        );
        return None;
    };
    if scheme != http::uri::Scheme::HTTP {
        problems.push(
            "upstream.url",
            format!("scheme `{scheme}` is not supported; use http:// (terminate TLS to the upstream with a sidecar)"),
        );
    }
    // The connector dials `host:port` (port 80 when none is given): a port
    // that is not a u16 would silently become 80, an empty host or userinfo
    // would fail on every request.
    if authority.host().is_empty() || authority.as_str().contains('@') {
        problems.push(
            "upstream.url",
            format!("`{url}` needs a host and no user info, e.g. http://127.0.0.1:9000"),
        );
    }
    let port_given = authority
        .as_str()
        .rsplit(']')
        .next()
        .is_some_and(|rest| rest.contains(':'));
    if port_given && authority.port_u16().is_none_or(|port| port == 0) {
        problems.push(
            "upstream.url",
            format!("`{url}` has an invalid port; use 1..=65535"),
        );
    }
    if uri.query().is_some() {
        problems.push("upstream.url", "must not have a query string");
    }
    let path_prefix = uri.path().trim_end_matches('/').to_owned();
    let timeout = |key: &str, value: Option<u64>, default: u64, problems: &mut Problems| {
        Duration::from_millis(problems.in_range(key, value.unwrap_or(default), 1, 3_600_000))
    };
    Some(UpstreamConfig {
        scheme,
        authority,
        path_prefix,
        forward_authorization: raw.forward_authorization.unwrap_or(false),
        connect_timeout: timeout(
            "upstream.connect_timeout_ms",
            raw.connect_timeout_ms,
            2_000,
            problems,
        ),
        response_timeout: timeout(
            "upstream.response_timeout_ms",
            raw.response_timeout_ms,
            60_000,
            problems,
        ),
        pool_idle_timeout: timeout(
            "upstream.pool_idle_timeout_ms",
            raw.pool_idle_timeout_ms,
            90_000,
            problems,
        ),
        pool_max_idle_per_host: raw.pool_max_idle_per_host.unwrap_or(256),
    })
}

fn validate_store(
    raw: Option<super::raw::RawStore>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<StoreConfig> {
    let hint = "add `store: { redis: { url: redis://127.0.0.1:6379 } }` or `store: { embedded: { path: ./data/tokengate.db } }`";
    let raw = raw.unwrap_or_default();
    match (raw.redis, raw.embedded) {
        (Some(_), Some(_)) => {
            problems.push("store", "sets both redis and embedded; keep exactly one");
            None
        }
        (None, None) => {
            problems.push("store", format!("is missing; {hint}"));
            None
        }
        (Some(redis), None) => {
            let Some(url) = redis.url else {
                problems.push("store.redis.url", "is missing; e.g. redis://127.0.0.1:6379");
                return None;
            };
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
            {
                problems.push(
                    "store.redis.url",
                    "must start with redis://, rediss:// or unix://",
                );
            } else if redis::Client::open(url.as_str()).is_err() {
                problems.push("store.redis.url", "is not a valid Redis URL");
            }
            let timeout_ms = problems.in_range(
                "store.redis.timeout_ms",
                redis.timeout_ms.unwrap_or(250),
                1,
                60_000,
            );
            Some(StoreConfig::Redis {
                url,
                timeout: Duration::from_millis(timeout_ms),
            })
        }
        (None, Some(embedded)) => match embedded.path {
            Some(path) if !path.trim().is_empty() => Some(StoreConfig::Embedded {
                path: base_dir.join(path),
            }),
            _ => {
                problems.push(
                    "store.embedded.path",
                    "is missing; e.g. ./data/tokengate.db (relative to this config file)",
                );
                None
            }
        },
    }
}
