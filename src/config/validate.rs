//! Turns a [`RawConfig`] into a [`Config`], reporting every problem at once.

use super::listener::{validate_http2_limits, validate_protocols};
use super::raw::RawConfig;
use super::{
    AdminConfig, AllowedHosts, Argon2Params, Config, ConfigProblem, HashingConfig, IpNetwork,
    Limits, LogConfig, LogFormat, ResolverConfig, SecretScheme, ShutdownConfig, StoreConfig,
    TracingConfig, UiConfig, UpstreamConfig, VerifyCacheConfig,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Collects problems while validation goes on.
#[derive(Default)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// Problems found so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Checks that `value` lies in `min..=max`, naming the key otherwise.
    pub(super) fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
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

    let upstream = validate_upstream(raw.upstream.unwrap_or_default(), base_dir, &mut problems);
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
    let max_header_bytes = problems.in_range(
        "limits.max_header_bytes",
        raw_limits.max_header_bytes.unwrap_or(64 * 1024),
        8192,
        1024 * 1024,
    );
    let limits = Limits {
        max_body_bytes: problems.in_range(
            "limits.max_body_bytes",
            raw_limits.max_body_bytes.unwrap_or(10 * 1024 * 1024),
            0,
            1 << 40,
        ),
        max_header_bytes,
        max_header_count: problems.in_range(
            "limits.max_header_count",
            raw_limits.max_header_count.unwrap_or(100),
            1,
            10_000,
        ),
        header_read_timeout: Duration::from_millis(problems.in_range(
            "limits.header_read_timeout_ms",
            raw_limits.header_read_timeout_ms.unwrap_or(10_000),
            100,
            600_000,
        )),
        keep_alive_timeout: Duration::from_millis(problems.in_range(
            "limits.keep_alive_timeout_ms",
            raw_limits.keep_alive_timeout_ms.unwrap_or(60_000),
            100,
            3_600_000,
        )),
        body_read_timeout: Duration::from_millis(problems.in_range(
            "limits.body_read_timeout_ms",
            raw_limits.body_read_timeout_ms.unwrap_or(30_000),
            100,
            3_600_000,
        )),
        body_idle_timeout: Duration::from_millis(problems.in_range(
            "limits.body_idle_timeout_ms",
            raw_limits.body_idle_timeout_ms.unwrap_or(10_000),
            100,
            3_600_000,
        )),
        write_timeout: Duration::from_millis(problems.in_range(
            "limits.write_timeout_ms",
            raw_limits.write_timeout_ms.unwrap_or(30_000),
            100,
            3_600_000,
        )),
        max_connections: problems.in_range(
            "limits.max_connections",
            raw_limits.max_connections.unwrap_or(10_000),
            1,
            1_000_000,
        ),
        http2: validate_http2_limits(raw_limits.http2, max_header_bytes, &mut problems),
    };
    let protocols = validate_protocols(
        raw.tls,
        raw.http2,
        raw.http2_cleartext,
        base_dir,
        &mut problems,
    );

    let raw_shutdown = raw.shutdown.unwrap_or_default();
    let defaults = ShutdownConfig::default();
    let shutdown = ShutdownConfig {
        drain_delay: Duration::from_millis(
            problems.in_range(
                "shutdown.drain_delay_ms",
                raw_shutdown
                    .drain_delay_ms
                    .unwrap_or(defaults.drain_delay.as_millis() as u64),
                0,
                3_600_000,
            ),
        ),
        grace_period: Duration::from_millis(
            problems.in_range(
                "shutdown.grace_period_ms",
                raw_shutdown
                    .grace_period_ms
                    .unwrap_or(defaults.grace_period.as_millis() as u64),
                100,
                3_600_000,
            ),
        ),
    };
    if shutdown.drain_delay >= shutdown.grace_period {
        problems.push(
            "shutdown.drain_delay_ms",
            format!(
                "{} ms is not shorter than shutdown.grace_period_ms ({} ms); the process must exit within the grace period, so shorten the delay or lengthen the grace period",
                shutdown.drain_delay.as_millis(),
                shutdown.grace_period.as_millis()
            ),
        );
    }

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
    let raw_token_api = raw.token_api.unwrap_or_default();
    let org_tokens_manage_team_tokens =
        raw_token_api.org_tokens_manage_team_tokens.unwrap_or(false);
    let token_default_expiry_ms = match raw_token_api.default_expiry.as_deref() {
        None | Some("never") => None,
        Some(text) => parse_lifetime(text).map(Some).unwrap_or_else(|| {
            problems.push(
                "token_api.default_expiry",
                format!("`{text}` is not a lifetime; use never (the default) or a number with h, d, w or y, e.g. 90d or 2y (at most 100y)"),
            );
            None
        }),
    };

    let allowed_hosts = validate_allowed_hosts(raw.allowed_hosts, &mut problems);
    let ui = validate_ui(raw.ui, &mut problems);
    let tracing = validate_tracing(raw.tracing, &mut problems);
    let resolver = validate_resolver(raw.resolver, base_dir, &mut problems);

    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    Ok(Config {
        listen,
        listen_reuse_port: raw.listen_reuse_port.unwrap_or(false),
        allowed_hosts,
        workers,
        upstream: upstream.expect("upstream is valid when there are no problems"),
        store: store.expect("store is valid when there are no problems"),
        policy_file,
        policy_watch,
        hashing,
        limits,
        shutdown,
        verify_cache,
        log: LogConfig { level, format },
        admin,
        org_tokens_manage_team_tokens,
        resolver,
        token_default_expiry_ms,
        ui,
        tls: protocols.tls,
        http2: protocols.http2,
        http2_cleartext: protocols.http2_cleartext,
        tracing,
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

/// `tracing`: off unless `otlp_endpoint` is set; the endpoint becomes the
/// full OTLP/HTTP traces URL.
fn validate_tracing(raw: Option<super::raw::RawTracing>, problems: &mut Problems) -> TracingConfig {
    let raw = raw.unwrap_or_default();
    let mut config = TracingConfig::default();
    if let Some(name) = raw.service_name {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            problems.push(
                "tracing.service_name",
                "must be a non-empty name without control characters, e.g. tokengate",
            );
        }
        config.service_name = name;
    }
    if let Some(ratio) = raw.sample_ratio {
        if !(0.0..=1.0).contains(&ratio) {
            problems.push(
                "tracing.sample_ratio",
                format!("{ratio} is out of range; use 0.0..=1.0 (1.0 records every new trace)"),
            );
        }
        config.sample_ratio = ratio;
    }
    match raw.otlp_endpoint {
        Some(endpoint) => config.otlp_endpoint = otlp_traces_url(&endpoint, problems),
        None if raw_tracing_set(&config) => problems.push(
            "tracing.otlp_endpoint",
            "is missing, so no span is exported and the other tracing keys do nothing; add the collector's OTLP/HTTP address, e.g. http://127.0.0.1:4318, or remove the tracing section",
        ),
        None => {}
    }
    config
}

/// True when some `tracing` key other than the endpoint differs from its default.
fn raw_tracing_set(config: &TracingConfig) -> bool {
    *config != TracingConfig::default()
}

/// The traces URL for an OTLP/HTTP endpoint: a base address gets
/// `/v1/traces` (as `OTEL_EXPORTER_OTLP_ENDPOINT` does); a URL with a path is
/// used as it is.
fn otlp_traces_url(endpoint: &str, problems: &mut Problems) -> Option<String> {
    const KEY: &str = "tracing.otlp_endpoint";
    let uri: http::Uri = match endpoint.parse() {
        Ok(uri) => uri,
        Err(err) => {
            problems.push(
                KEY,
                format!("`{endpoint}` is not a URL ({err}); use e.g. http://127.0.0.1:4318"),
            );
            return None;
        }
    };
    let (Some(_), Some(authority)) = (uri.scheme(), uri.authority()) else {
        problems.push(
            KEY,
            format!("`{endpoint}` needs a scheme and host, e.g. http://127.0.0.1:4318"),
        );
        return None;
    };
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        problems.push(
            KEY,
            format!("`{endpoint}`: only http:// is supported; send spans to an OpenTelemetry Collector on the node or in the cluster (http://…:4318) and let it forward over TLS"),
        );
        return None;
    }
    if authority.host().is_empty() || authority.as_str().contains('@') || uri.query().is_some() {
        problems.push(
            KEY,
            format!(
                "`{endpoint}` needs a host, no user info and no query, e.g. http://127.0.0.1:4318"
            ),
        );
        return None;
    }
    let base = endpoint.trim_end_matches('/');
    Some(match uri.path() {
        "" | "/" => format!("{base}/v1/traces"),
        _ => endpoint.to_owned(),
    })
}

/// `12h`, `90d`, `4w`, `2y` (365 days) → milliseconds; `None` for
/// anything else, zero, or more than 100 years.
pub fn parse_lifetime(text: &str) -> Option<u64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let unit_ms: u64 = match unit {
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "y" => 365 * 86_400_000,
        _ => return None,
    };
    number
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= 100 * 365 * 86_400_000)
}

fn validate_ui(raw: Option<super::raw::RawUi>, problems: &mut Problems) -> UiConfig {
    let raw = raw.unwrap_or_default();
    let default = UiConfig::default();
    let idle = problems.in_range(
        "ui.session_idle_timeout_s",
        raw.session_idle_timeout_s
            .unwrap_or(default.idle_timeout.as_secs()),
        60,
        7 * 86_400,
    );
    let max_age = problems.in_range(
        "ui.session_max_age_s",
        raw.session_max_age_s.unwrap_or(default.max_age.as_secs()),
        60,
        30 * 86_400,
    );
    if idle > max_age {
        problems.push(
            "ui.session_idle_timeout_s",
            format!("{idle} is longer than ui.session_max_age_s ({max_age}); make it at most that"),
        );
    }
    UiConfig {
        enabled: raw.enabled.unwrap_or(default.enabled),
        idle_timeout: Duration::from_secs(idle),
        max_age: Duration::from_secs(max_age),
        secure_cookies: raw.secure_cookies.unwrap_or(default.secure_cookies),
    }
}

fn validate_allowed_hosts(raw: Option<Vec<String>>, problems: &mut Problems) -> AllowedHosts {
    let entries = raw.unwrap_or_default();
    for (i, entry) in entries.iter().enumerate() {
        if AllowedHosts::parse([entry.as_str()]).is_err() {
            problems.push(
                format!("allowed_hosts[{i}]"),
                format!("`{entry}` is not a host name; use a name without a port such as tfe.example.com, an IP address, or *.example.com for its subdomains"),
            );
        }
    }
    AllowedHosts::parse(entries.iter().map(String::as_str)).unwrap_or_default()
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
    base_dir: &Path,
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
    let https = scheme == http::uri::Scheme::HTTPS;
    if scheme != http::uri::Scheme::HTTP && !https {
        problems.push(
            "upstream.url",
            format!("scheme `{scheme}` is not supported; use http:// or https://"),
        );
    }
    // The connector dials `host:port` (port 80 or 443 when none is given): a port
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
    let tls = match (https, raw.tls) {
        (true, tls) => {
            let before = problems.0.len();
            let tls = super::upstream_tls::validate(
                tls.unwrap_or_default(),
                authority.host(),
                base_dir,
                problems,
            );
            if tls.is_none() && problems.0.len() == before {
                problems.push("upstream.tls", "cannot be used; check its files");
            }
            tls
        }
        (false, Some(_)) => {
            problems.push(
                "upstream.tls",
                format!("is set but upstream.url `{url}` is not https://; use an https:// URL or remove upstream.tls"),
            );
            None
        }
        (false, None) => None,
    };
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
        // Below the shortest common upstream keep-alive timeout (Node's 5 s;
        // Puma 20 s, nginx 75 s), so the gateway stops using a connection
        // before the upstream closes it under a request.
        pool_idle_timeout: timeout(
            "upstream.pool_idle_timeout_ms",
            raw.pool_idle_timeout_ms,
            4_000,
            problems,
        ),
        pool_max_idle_per_host: raw.pool_max_idle_per_host.unwrap_or(256),
        tls,
        object_storage: validate_object_storage(raw.object_storage.unwrap_or_default(), problems),
    })
}

fn validate_object_storage(
    raw: super::raw::RawObjectStorage,
    problems: &mut Problems,
) -> super::ObjectStorage {
    let key = "upstream.object_storage.path_prefix";
    let path_prefix = match raw.path_prefix {
        None => Some(super::DEFAULT_OBJECT_STORAGE_PREFIX.to_owned()),
        Some(prefix) if prefix.is_empty() => None,
        Some(prefix) => {
            let plain = prefix.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b'~')
            });
            let reserved = ["/api/", "/_tokengate/", "/.well-known/"]
                .iter()
                .any(|taken| prefix.starts_with(taken) || taken.starts_with(prefix.as_str()));
            if !plain
                || !prefix.starts_with('/')
                || !prefix.ends_with('/')
                || prefix.len() < 3
                || prefix.contains("//")
                || prefix.split('/').any(|s| s == "." || s == "..")
            {
                problems.push(
                    key,
                    format!("`{prefix}` must be a plain path that starts and ends with `/`, e.g. /_archivist/ (or \"\" to turn it off)"),
                );
            } else if reserved {
                problems.push(
                    key,
                    format!("`{prefix}` overlaps the API, the gateway's own paths or discovery; use the object storage's own prefix, e.g. /_archivist/"),
                );
            }
            Some(prefix)
        }
    };
    let ttl_ms = problems.in_range(
        "upstream.object_storage.upload_grant_ttl_ms",
        raw.upload_grant_ttl_ms.unwrap_or(3_600_000),
        1_000,
        86_400_000,
    );
    let max_upload_bytes = problems.in_range(
        "upstream.object_storage.max_upload_bytes",
        raw.max_upload_bytes
            .unwrap_or(super::DEFAULT_MAX_UPLOAD_BYTES),
        1,
        1 << 40,
    );
    super::ObjectStorage {
        path_prefix,
        upload_grant_ttl: Duration::from_millis(ttl_ms),
        max_upload_bytes,
    }
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
        (Some(redis), None) => super::redis_store::validate_redis(redis, base_dir, problems)
            .map(|options| StoreConfig::Redis(Box::new(options))),
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
