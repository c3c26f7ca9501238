//! Validated gateway configuration, loaded from a YAML file.
//!
//! Loading happens in two layers: the file is deserialized into the
//! all-optional structs of [`raw`], then [`validate`] checks every key and
//! reports **all** problems at once, each with its key path and the fix.

mod allowed_hosts;
mod listener;
pub mod raw;
mod redis_store;
mod upstream_tls;
mod validate;

pub use upstream_tls::UpstreamTls;

pub use allowed_hosts::AllowedHosts;
use std::net::{IpAddr, SocketAddr};
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
    #[error("{}", render_problems("config file", path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
    },
}

/// `<what> <path> has N problem(s):` and one indented line per problem.
pub fn render_problems(what: &str, path: &Path, problems: &[ConfigProblem]) -> String {
    let mut out = format!(
        "{what} {} has {} problem(s):",
        path.display(),
        problems.len()
    );
    for problem in problems {
        out.push_str(&format!("\n  - {}: {}", problem.key, problem.message));
    }
    out
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Bind the listening sockets with `SO_REUSEPORT` (`listen_reuse_port`,
    /// default false), so that a new process can bind the same port while
    /// the old one drains: a restart without downtime. On Linux each worker
    /// then has its own socket (see `runtime::workers`).
    pub listen_reuse_port: bool,
    /// The hosts requests may name in `Host` (`allowed_hosts`: names, IP
    /// addresses, `*.example.com`; default any): any other is refused with
    /// 400, so it never reaches the upstream as `X-Forwarded-Host`. The
    /// gateway's own endpoints (`/_tokengate/health`, …) answer any host.
    pub allowed_hosts: AllowedHosts,
    /// Threads serving requests, each with its own event loop (`workers`,
    /// default one per CPU); see [`crate::workers`].
    pub workers: usize,
    pub upstream: UpstreamConfig,
    pub store: StoreConfig,
    pub policy_file: PathBuf,
    /// Reload the policy when its file changes (`policy.watch`, default true).
    pub policy_watch: bool,
    /// How token secrets are stored (`hashing.scheme`, default `sha256`)
    /// and the argon2id parameters (for that scheme and for passwords).
    pub hashing: HashingConfig,
    pub limits: Limits,
    pub shutdown: ShutdownConfig,
    pub verify_cache: VerifyCacheConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    /// Whether an organization token may generate and revoke the team
    /// tokens of its organization (`token_api.org_tokens_manage_team_tokens`,
    /// default false: a minted team token could apply, and organization
    /// tokens never apply; Terraform Enterprise allows it).
    pub org_tokens_manage_team_tokens: bool,
    /// How the resolver asks the upstream about ids (`resolver`).
    pub resolver: ResolverConfig,
    /// How long a token created without `expired-at` lives, in milliseconds
    /// (`token_api.default_expiry`: `never`, the default as in Terraform
    /// Enterprise 1.1, or a duration such as `90d` or `2y`).
    pub token_default_expiry_ms: Option<u64>,
    /// The web UI at `/_tokengate/ui/` (`ui`).
    pub ui: UiConfig,
    /// Listener TLS (`tls`); `None`: plain HTTP, for a gateway behind a
    /// TLS-terminating load balancer.
    pub tls: Option<TlsConfig>,
    /// HTTP/2 over TLS, negotiated with ALPN (`http2`; default true when
    /// `tls` is set).
    pub http2: bool,
    /// HTTP/2 without TLS, with prior knowledge (`http2_cleartext`, default
    /// false; only on a listener without `tls`).
    pub http2_cleartext: bool,
    /// Spans exported over OTLP (`tracing`); off by default.
    pub tracing: TracingConfig,
    /// The file this config was loaded from (`None` when built from text);
    /// a reload reads it again.
    pub source: Option<PathBuf>,
}

/// The web UI (`ui`): whether it is served and how long its sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UiConfig {
    /// Serve the UI at `/_tokengate/ui/` (`ui.enabled`, default true).
    pub enabled: bool,
    /// A session unused this long ends (`ui.session_idle_timeout_s`,
    /// default 30 minutes).
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however busy
    /// (`ui.session_max_age_s`, default 12 hours).
    pub max_age: Duration,
    /// Session cookies are always `Secure` (`ui.secure_cookies`, default
    /// false: only on connections the listener serves over TLS). Set it
    /// when TLS ends in front of the gateway.
    pub secure_cookies: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            idle_timeout: Duration::from_secs(30 * 60),
            max_age: Duration::from_secs(12 * 3600),
            secure_cookies: false,
        }
    }
}

/// The listener's certificate (`tls`). The files are checked when the
/// config is loaded; their contents reload while serving, their paths need
/// a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM: the server's certificate, then its intermediates (`tls.cert_file`).
    pub cert_file: PathBuf,
    /// PEM: its private key (`tls.key_file`).
    pub key_file: PathBuf,
    /// Reload when either file changes (`tls.watch`, default true); `SIGHUP`
    /// reloads them too.
    pub watch: bool,
}

/// Who may use the admin endpoints (`status`, `metrics`, `reload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Peer addresses allowed; loopback only by default. Empty: nobody.
    pub allow_from: Vec<IpNetwork>,
    /// When either list is non-empty, a bearer token of a listed team or
    /// user is required as well.
    pub teams: Vec<String>,
    pub users: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            allow_from: vec![
                IpNetwork::new(IpAddr::from([127, 0, 0, 1]), 32).expect("valid"),
                IpNetwork::new(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), 128).expect("valid"),
            ],
            teams: Vec::new(),
            users: Vec::new(),
        }
    }
}

impl AdminConfig {
    /// True when `peer` is inside one of the allowed networks.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.allow_from.iter().any(|net| net.contains(peer))
    }

    /// True when admin requests must carry a listed team's or user's token.
    pub fn requires_token(&self) -> bool {
        !self.teams.is_empty() || !self.users.is_empty()
    }
}

/// An IP network in CIDR notation, e.g. `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// `None` when the prefix is too long for the address family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Parses `ADDR/PREFIX` or a bare address (a single host). The error
    /// says what is wrong, including host bits set below the prefix.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0..={max}"))?,
        };
        let net = Self { addr, prefix };
        let masked = net.network();
        if masked != addr {
            return Err(format!(
                "`{text}` has host bits set; did you mean {masked}/{prefix}?"
            ));
        }
        Ok(net)
    }

    fn mask(&self, bits: u32) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            (u128::MAX << (bits - u32::from(self.prefix))) & (u128::MAX >> (128 - bits))
        }
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(v4) => IpAddr::from(std::net::Ipv4Addr::from(
                (u128::from(u32::from(v4)) & self.mask(32)) as u32,
            )),
            IpAddr::V6(v6) => {
                IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) & self.mask(128)))
            }
        }
    }

    /// True when `addr` (of the same family) lies inside this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let m = self.mask(32);
                u128::from(u32::from(net)) & m == u128::from(u32::from(a)) & m
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let m = self.mask(128);
                u128::from(net) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// `http://host:port` or `https://host:port`, plus an optional path
    /// prefix (no trailing slash).
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    pub path_prefix: String,
    pub forward_authorization: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// An upstream connection idle this long is not used again
    /// (`upstream.pool_idle_timeout_ms`, default 4 s: below the upstream's
    /// own keep-alive timeout).
    pub pool_idle_timeout: Duration,
    /// Idle upstream connections kept, per worker
    /// (`upstream.pool_max_idle_per_host`, default 256).
    pub pool_max_idle_per_host: usize,
    /// TLS to the upstream: `Some` exactly when the URL is `https://`
    /// (`upstream.tls`, optional: the system's roots and no client
    /// certificate by default).
    pub tls: Option<UpstreamTls>,
    /// The upstream's object storage on its own host (`upstream.object_storage`).
    pub object_storage: ObjectStorage,
}

/// The upstream's object storage served under the gateway's host (Terraform
/// Enterprise's "archivist": configuration and state uploads, log and state
/// downloads at `/_archivist/v1/object/<signed key>`). Its URLs are signed
/// capabilities the upstream hands out in API answers; clients use them
/// without a token. See `docs/SECURITY.md` ("Object storage").
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectStorage {
    /// Where its URLs start (`upstream.object_storage.path_prefix`, default
    /// `/_archivist/`); `None` when set to `""`: no path is treated as one.
    pub path_prefix: Option<String>,
    /// How long an upload URL the upstream issued through the gateway may be
    /// used (`upstream.object_storage.upload_grant_ttl_ms`, default 1 h).
    pub upload_grant_ttl: Duration,
    /// The largest upload forwarded (`upstream.object_storage.max_upload_bytes`,
    /// default 1 GiB). An upload with a `Content-Length` is streamed to the
    /// upstream as it arrives, so this bounds its size, not memory.
    pub max_upload_bytes: u64,
}

/// The default of `upstream.object_storage.max_upload_bytes`: 1 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1 << 30;

impl ObjectStorage {
    /// The default: TFE's archivist, upload URLs usable for an hour.
    pub fn tfe_default() -> ObjectStorage {
        ObjectStorage {
            path_prefix: Some(DEFAULT_OBJECT_STORAGE_PREFIX.to_owned()),
            upload_grant_ttl: Duration::from_secs(3600),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        }
    }

    /// Whether `path` (canonical) is in the object storage: under its
    /// prefix, or the prefix itself with or without its last `/` or with a
    /// format extension (`/_archivist.json`). ASCII case is ignored, as the
    /// policy's path templates ignore it: every path a rule about
    /// `/_archivist/**` matches is held here, so an upload spelled
    /// `/_ARCHIVIST/…` needs a grant like any other.
    pub fn holds(&self, path: &str) -> bool {
        self.path_prefix.as_deref().is_some_and(|prefix| {
            let dir = prefix.trim_end_matches('/').as_bytes();
            let path = path.as_bytes();
            path.len() >= dir.len()
                && path[..dir.len()].eq_ignore_ascii_case(dir)
                && matches!(path.get(dir.len()), None | Some(b'/' | b'.'))
        })
    }
}

/// Terraform Enterprise's object storage path.
pub const DEFAULT_OBJECT_STORAGE_PREFIX: &str = "/_archivist/";

/// The resolver: lookups of which workspace and organization an id belongs
/// to, sent to the upstream (see `docs/ACCESS.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolverConfig {
    /// The `Authorization` header value of every lookup
    /// (`resolver.authorization`, read from a file or an environment
    /// variable); none when unset. Marked sensitive: never printed.
    pub authorization: Option<http::HeaderValue>,
    /// Where it came from (`file /run/secrets/x`, `env NAME`), for messages.
    pub authorization_source: Option<String>,
    /// How long one lookup may take, fetch and body (`resolver.timeout_ms`).
    pub timeout: Duration,
    /// How many immutable relations are kept (`resolver.cache_capacity`).
    pub cache_capacity: u64,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            authorization: None,
            authorization_source: None,
            timeout: Duration::from_millis(2_000),
            cache_capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// `store.redis`: how to reach Redis (secrets inside print as `<redacted>`).
    Redis(Box<crate::store::redis::RedisOptions>),
    Embedded {
        path: PathBuf,
    },
}

/// How token secrets are kept at rest: see `token::secret_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingConfig {
    pub scheme: SecretScheme,
    pub argon2: Argon2Params,
}

impl Default for HashingConfig {
    fn default() -> Self {
        HashingConfig {
            scheme: SecretScheme::Sha256,
            argon2: Argon2Params::default(),
        }
    }
}

/// A scheme for storing token secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretScheme {
    /// `$sha256$…`: a SHA-256 digest, checked in constant time (default).
    Sha256,
    /// An argon2id PHC string: slow on purpose.
    Argon2id,
}

impl SecretScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretScheme::Sha256 => "sha256",
            SecretScheme::Argon2id => "argon2id",
        }
    }
}

/// argon2id cost parameters (token secrets in the `argon2id` scheme, passwords).
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

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_body_bytes: u64,
    /// The request head, request line to the final CRLF, at most this many
    /// bytes (431).
    pub max_header_bytes: usize,
    /// At most this many header lines (431).
    pub max_header_count: usize,
    /// From the first byte of a request head to its end (408); also how
    /// long a new connection may take to send its first byte.
    pub header_read_timeout: Duration,
    /// How long a connection may be idle between requests.
    pub keep_alive_timeout: Duration,
    /// From the end of the head to the end of the body (408).
    pub body_read_timeout: Duration,
    /// Between two reads of body bytes (408).
    pub body_idle_timeout: Duration,
    /// How long a write to a client may make no progress before the
    /// connection is closed.
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// HTTP/2 connections (`limits.http2`).
    pub http2: Http2Limits,
}

/// What one HTTP/2 connection may do (`limits.http2`). Bodies, timeouts
/// between requests and write timeouts are the ones of [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams open at once (`max_concurrent_streams`, default 100).
    pub max_concurrent_streams: u32,
    /// Decoded header list, names + values + 32 bytes per field
    /// (`max_header_list_bytes`, default `limits.max_header_bytes`): 431
    /// past it, and the connection is closed well past it.
    pub max_header_list_bytes: u32,
    /// Streams the client may reset before the gateway accepted them
    /// (`max_pending_accept_reset_streams`, default 20): more is a rapid
    /// reset attack (CVE-2023-44487), answered with GOAWAY.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the gateway may reset for the client's errors
    /// (`max_local_error_reset_streams`, default 1024): more is answered
    /// with GOAWAY (CVE-2025-8671, "MadeYouReset").
    pub max_local_error_reset_streams: usize,
    /// How often an idle or busy connection is pinged
    /// (`keep_alive_interval_ms`, default 30000; 0: never).
    pub keep_alive_interval: Option<Duration>,
    /// A ping not answered within this closes the connection
    /// (`keep_alive_timeout_ms`, default 20000).
    pub keep_alive_timeout: Duration,
}

impl Http2Limits {
    /// The defaults, with a header list as large as `max_header_bytes`.
    pub fn defaults(max_header_bytes: usize) -> Self {
        Http2Limits {
            max_concurrent_streams: 100,
            max_header_list_bytes: u32::try_from(max_header_bytes).unwrap_or(u32::MAX),
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            keep_alive_interval: Some(Duration::from_secs(30)),
            keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// How `SIGTERM` stops the gateway (`shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// After `SIGTERM`, `/_tokengate/ready` answers 503 and serving goes on
    /// this long (so load balancers stop sending) before the listener
    /// closes (`shutdown.drain_delay_ms`, default 0).
    pub drain_delay: Duration,
    /// The process exits within this long of `SIGTERM`; connections still
    /// open then are closed (`shutdown.grace_period_ms`, default 30000).
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_delay: Duration::ZERO,
            grace_period: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VerifyCacheConfig {
    pub capacity: u64,
    pub ttl: Duration,
    pub max_concurrent_verifies: usize,
}

#[derive(Debug, Clone, PartialEq)]
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

/// Traces (`tracing`): the stages of each request as OpenTelemetry spans,
/// exported over OTLP/HTTP. Off (no span is even created) unless
/// `otlp_endpoint` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's traces URL (`…/v1/traces`); `None`: tracing is off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (default `tokengate`).
    pub service_name: String,
    /// Share of new traces recorded, 0.0..=1.0 (default 1.0); a request
    /// that arrives with a `traceparent` follows its caller's decision.
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            service_name: "tokengate".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

impl Config {
    /// Top-level keys whose new value in `newer` takes effect only after a
    /// restart (everything but the policy file's contents and `admin`).
    pub fn restart_required(&self, newer: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut differs = |key: &'static str, changed: bool| {
            if changed {
                keys.push(key);
            }
        };
        differs(
            "listen",
            self.listen != newer.listen || self.listen_reuse_port != newer.listen_reuse_port,
        );
        differs("workers", self.workers != newer.workers);
        differs("allowed_hosts", self.allowed_hosts != newer.allowed_hosts);
        differs("upstream", self.upstream != newer.upstream);
        differs("store", self.store != newer.store);
        differs(
            "policy",
            self.policy_file != newer.policy_file || self.policy_watch != newer.policy_watch,
        );
        differs("hashing", self.hashing != newer.hashing);
        differs("limits", self.limits != newer.limits);
        differs("shutdown", self.shutdown != newer.shutdown);
        differs("verify_cache", self.verify_cache != newer.verify_cache);
        differs("log", self.log != newer.log);
        differs(
            "token_api",
            self.org_tokens_manage_team_tokens != newer.org_tokens_manage_team_tokens
                || self.token_default_expiry_ms != newer.token_default_expiry_ms,
        );
        differs("ui", self.ui != newer.ui);
        // The certificate's contents reload by themselves; its paths do not.
        differs("tls", self.tls != newer.tls);
        differs(
            "http2",
            self.http2 != newer.http2 || self.http2_cleartext != newer.http2_cleartext,
        );
        differs("resolver", self.resolver != newer.resolver);
        differs("tracing", self.tracing != newer.tracing);
        keys
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let mut config =
            Self::from_yaml(&text, base_dir).map_err(|problems| ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates YAML text; relative paths resolve against `base_dir`.
    pub fn from_yaml(text: &str, base_dir: &Path) -> Result<Config, Vec<ConfigProblem>> {
        let raw = parse_yaml::<raw::RawConfig>(text)?;
        validate(raw.value, raw.unknown_keys, base_dir)
    }
}

/// A deserialized document together with the keys nobody asked for.
pub struct Parsed<T> {
    pub value: T,
    pub unknown_keys: Vec<String>,
}

/// Rewrites a `serde_ignored` path (`rules.?.0.colour`) in the style of the
/// other problems (`rules[0].colour`).
fn key_path(ignored: &str) -> String {
    let mut out = String::new();
    for segment in ignored.split('.').filter(|s| !s.is_empty() && *s != "?") {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
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
            unknown_keys.push(key_path(&path.to_string()))
        })
    };
    match result {
        Ok(value) => Ok(Parsed {
            value,
            unknown_keys,
        }),
        Err(err) => {
            let key = key_path(&track.path().to_string());
            let key = if key.is_empty() {
                "(document)".to_owned()
            } else {
                key
            };
            // serde_yaml starts its message with the same key path.
            let text = err.to_string();
            let text = text
                .strip_prefix(&format!("{key}: "))
                .unwrap_or(&text)
                .to_owned();
            Err(vec![ConfigProblem {
                key,
                message: format!("{text}; fix the value's type or YAML syntax"),
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_contain_and_refuse_host_bits() {
        let net = IpNetwork::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(IpNetwork::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNetwork::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpNetwork::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        let err = IpNetwork::parse("10.1.2.3/8").unwrap_err();
        assert!(err.contains("did you mean 10.0.0.0/8"), "{err}");
        for bad in ["10.0.0.0/33", "::/129", "localhost", "10.0.0.0/x", ""] {
            assert!(IpNetwork::parse(bad).is_err(), "{bad}");
        }
        let admin = AdminConfig::default();
        assert!(admin.allows("127.0.0.1".parse().unwrap()));
        assert!(
            admin.allows("::ffff:127.0.0.1".parse().unwrap()),
            "IPv4-mapped loopback"
        );
        assert!(admin.allows("::1".parse().unwrap()));
        assert!(!admin.allows("127.0.0.2".parse().unwrap()));
        assert!(!admin.allows("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn unknown_keys_are_named_like_other_problems() {
        let problems = Config::from_yaml(
            "upstream: { url: http://127.0.0.1:1, urll: x }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\nadmin: { allow_from: [10.0.0.1/8, \"::1\"], token: x }\n",
            Path::new("."),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["upstream.urll", "admin.token", "admin.allow_from[0]"],
            "{problems:?}"
        );
        assert!(problems[2].message.contains("did you mean 10.0.0.0/8"));
    }

    #[test]
    fn allowed_hosts_that_are_not_host_names_are_named_with_the_fix() {
        let problems = Config::from_yaml(
            "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\nallowed_hosts: [tfe.example.com, \"tfe.example.com:443\", \"a b\"]\n",
            Path::new("."),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["allowed_hosts[1]", "allowed_hosts[2]"],
            "{problems:?}"
        );
        assert!(
            problems[0].message.contains("without a port"),
            "{problems:?}"
        );
        let config = Config::from_yaml(
            "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\nallowed_hosts: [tfe.example.com]\n",
            Path::new("."),
        )
        .unwrap();
        assert!(config.allowed_hosts.allows("tfe.example.com:443"));
        assert!(!config.allowed_hosts.allows("evil.example"));
    }

    #[test]
    fn the_object_storage_prefix_is_a_plain_path_of_its_own_or_off() {
        let with = |storage: &str| {
            Config::from_yaml(
                &format!("upstream: {{ url: http://127.0.0.1:1, object_storage: {storage} }}\nstore: {{ redis: {{ url: redis://127.0.0.1 }} }}\npolicy: {{ file: p.yaml }}\n"),
                Path::new("."),
            )
        };
        let default = with("{}").unwrap().upstream.object_storage;
        assert_eq!(default, ObjectStorage::tfe_default());
        assert!(default.holds("/_archivist/v1/object/x"));
        assert!(default.holds("/_ARCHIVIST/v1/object/x") && default.holds("/_archivist.json"));
        assert!(!default.holds("/_archivistx/v1") && !default.holds("/_archiv"));
        let off = with("{ path_prefix: \"\" }")
            .unwrap()
            .upstream
            .object_storage;
        assert_eq!(off.path_prefix, None);
        assert!(!off.holds("/_archivist/v1/object/x"));
        let own =
            with("{ path_prefix: /objects/, upload_grant_ttl_ms: 60000, max_upload_bytes: 4096 }")
                .unwrap()
                .upstream
                .object_storage;
        assert!(own.holds("/objects/k") && !own.holds("/_archivist/k"));
        assert_eq!(own.upload_grant_ttl, Duration::from_secs(60));
        assert_eq!(own.max_upload_bytes, 4096);
        for (storage, key, says) in [
            (
                "{ path_prefix: objects/ }",
                "upstream.object_storage.path_prefix",
                "starts and ends",
            ),
            (
                "{ path_prefix: /objects }",
                "upstream.object_storage.path_prefix",
                "starts and ends",
            ),
            (
                "{ path_prefix: \"/a b/\" }",
                "upstream.object_storage.path_prefix",
                "plain path",
            ),
            (
                "{ path_prefix: /../ }",
                "upstream.object_storage.path_prefix",
                "plain path",
            ),
            (
                "{ path_prefix: /api/ }",
                "upstream.object_storage.path_prefix",
                "overlaps the API",
            ),
            (
                "{ path_prefix: /_tokengate/x/ }",
                "upstream.object_storage.path_prefix",
                "overlaps",
            ),
            (
                "{ upload_grant_ttl_ms: 5 }",
                "upstream.object_storage.upload_grant_ttl_ms",
                "out of range",
            ),
            (
                "{ max_upload_bytes: 0 }",
                "upstream.object_storage.max_upload_bytes",
                "out of range",
            ),
        ] {
            let problems = with(storage).expect_err(storage);
            assert_eq!(problems.len(), 1, "{storage}: {problems:?}");
            assert_eq!(problems[0].key, key, "{storage}");
            assert!(
                problems[0].message.contains(says),
                "{storage}: {problems:?}"
            );
        }
    }

    #[test]
    fn upstream_url_with_a_bad_port_empty_host_or_userinfo_is_refused() {
        for url in [
            "http://127.0.0.1:99999",
            "http://127.0.0.1:90x",
            "http://:9000",
            "http://user:secret@127.0.0.1:9000",
        ] {
            let problems = Config::from_yaml(
                &format!("upstream: {{ url: \"{url}\" }}\nstore: {{ redis: {{ url: redis://127.0.0.1 }} }}\npolicy: {{ file: p.yaml }}\n"),
                Path::new("."),
            )
            .expect_err(url);
            assert!(
                problems.iter().any(|p| p.key == "upstream.url"),
                "{url}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_reload_that_changes_token_api_says_it_needs_a_restart() {
        let base = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";
        let running = Config::from_yaml(base, Path::new(".")).unwrap();
        let newer = Config::from_yaml(
            &format!("{base}token_api: {{ org_tokens_manage_team_tokens: true }}\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(running.restart_required(&newer), ["token_api"]);
    }

    #[test]
    fn default_expiry_is_never_or_a_duration() {
        let base = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";
        let running = Config::from_yaml(base, Path::new(".")).unwrap();
        assert_eq!(running.token_default_expiry_ms, None);
        for (text, ms) in [
            ("never", None),
            ("90d", Some(90 * 86_400_000)),
            ("2y", Some(2 * 365 * 86_400_000)),
            ("12h", Some(12 * 3_600_000)),
            ("4w", Some(28 * 86_400_000)),
        ] {
            let config = Config::from_yaml(
                &format!("{base}token_api: {{ default_expiry: \"{text}\" }}\n"),
                Path::new("."),
            )
            .unwrap();
            assert_eq!(config.token_default_expiry_ms, ms, "{text}");
        }
        for bad in ["0d", "soon", "-1d", "10", "999999y"] {
            let problems = Config::from_yaml(
                &format!("{base}token_api: {{ default_expiry: \"{bad}\" }}\n"),
                Path::new("."),
            )
            .expect_err(bad);
            assert_eq!(problems[0].key, "token_api.default_expiry", "{problems:?}");
            assert!(problems[0].message.contains("never"), "{problems:?}");
        }
    }

    #[test]
    fn workers_default_to_one_per_cpu_and_are_bounded() {
        let base = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";
        let running = Config::from_yaml(base, Path::new(".")).unwrap();
        assert_eq!(running.workers, crate::per_worker::default_count());
        for bad in ["0", "257"] {
            let problems = Config::from_yaml(&format!("{base}workers: {bad}\n"), Path::new("."))
                .expect_err(bad);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].key, "workers");
            assert!(problems[0].message.contains("1..=256"), "{problems:?}");
        }
        let four = Config::from_yaml(&format!("{base}workers: 4\n"), Path::new(".")).unwrap();
        assert_eq!(four.workers, 4);
        assert_eq!(running.restart_required(&four), ["workers"]);
    }

    #[test]
    fn the_resolver_authorization_comes_from_a_file_or_the_environment_never_inline() {
        let base = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("auth"), "Bearer s3cret\n").unwrap();
        let config = Config::from_yaml(
            &format!("{base}resolver: {{ authorization: {{ file: auth }}, timeout_ms: 500 }}\n"),
            dir.path(),
        )
        .unwrap();
        let header = config.resolver.authorization.as_ref().unwrap();
        assert_eq!(header, "Bearer s3cret");
        assert!(header.is_sensitive());
        assert!(!format!("{config:?}").contains("s3cret"), "never printed");
        assert_eq!(config.resolver.timeout, Duration::from_millis(500));
        let problems = |resolver: &str| {
            let problems = Config::from_yaml(&format!("{base}resolver: {resolver}\n"), dir.path())
                .expect_err(resolver);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(!problems[0].message.contains("s3cret"), "{problems:?}");
            (problems[0].key.clone(), problems[0].message.clone())
        };
        let (key, message) = problems("{ authorization: \"Bearer inline\" }");
        assert_eq!(key, "resolver.authorization");
        assert!(
            message.contains("must not be written in the config file"),
            "{message}"
        );
        let (key, message) = problems("{ authorization: { file: missing } }");
        assert_eq!(key, "resolver.authorization.file");
        assert!(message.contains("cannot read"), "{message}");
        let (key, message) =
            problems("{ authorization: { env: TOKENGATE_TEST_NOT_SET_ANYWHERE } }");
        assert_eq!(key, "resolver.authorization.env");
        assert!(message.contains("is not set"), "{message}");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let (key, message) = problems("{ authorization: { file: empty } }");
        assert_eq!(key, "resolver.authorization.file");
        assert!(message.contains("is empty"), "{message}");
        std::fs::write(dir.path().join("two-lines"), "Bearer a\nx: y\n").unwrap();
        let (_, message) = problems("{ authorization: { file: two-lines } }");
        assert!(message.contains("on one line"), "{message}");
        let (key, _) = problems("{ timeout_ms: 0 }");
        assert_eq!(key, "resolver.timeout_ms");
    }

    #[test]
    fn the_ui_section_has_defaults_bounds_and_needs_a_restart() {
        let base = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";
        let running = Config::from_yaml(base, Path::new(".")).unwrap();
        assert_eq!(running.ui, UiConfig::default());
        assert!(running.ui.enabled && !running.ui.secure_cookies);
        let custom = Config::from_yaml(
            &format!("{base}ui: {{ enabled: false, session_idle_timeout_s: 600, session_max_age_s: 3600, secure_cookies: true }}\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            custom.ui,
            UiConfig {
                enabled: false,
                idle_timeout: Duration::from_secs(600),
                max_age: Duration::from_secs(3600),
                secure_cookies: true,
            }
        );
        assert_eq!(running.restart_required(&custom), ["ui"]);
        for (bad, key) in [
            ("session_idle_timeout_s: 5", "ui.session_idle_timeout_s"),
            ("session_max_age_s: 99999999", "ui.session_max_age_s"),
            (
                "session_idle_timeout_s: 7200, session_max_age_s: 3600",
                "ui.session_idle_timeout_s",
            ),
        ] {
            let problems = Config::from_yaml(&format!("{base}ui: {{ {bad} }}\n"), Path::new("."))
                .expect_err(bad);
            assert_eq!(problems[0].key, key, "{problems:?}");
        }
        let problems = Config::from_yaml(&format!("{base}ui: {{ sessions: 1 }}\n"), Path::new("."))
            .unwrap_err();
        assert_eq!(problems[0].key, "ui.sessions", "{problems:?}");
    }

    #[test]
    fn idle_upstream_connections_are_let_go_before_common_upstreams_close_them() {
        let base = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";
        let config = Config::from_yaml(base, Path::new(".")).unwrap();
        // Node closes idle keep-alive connections after 5 s, Puma after 20 s,
        // nginx after 75 s.
        assert!(config.upstream.pool_idle_timeout < Duration::from_secs(5));
    }

    #[test]
    fn connection_limits_and_shutdown_have_defaults_ranges_and_fixes() {
        let base = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";
        let running = Config::from_yaml(base, Path::new(".")).unwrap();
        let limits = &running.limits;
        assert_eq!(limits.max_header_count, 100);
        assert_eq!(limits.keep_alive_timeout, Duration::from_secs(60));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(30));
        assert_eq!(limits.body_idle_timeout, Duration::from_secs(10));
        assert_eq!(limits.write_timeout, Duration::from_secs(30));
        assert_eq!(running.shutdown, ShutdownConfig::default());
        assert!(!running.listen_reuse_port);
        let tuned = Config::from_yaml(
            &format!("{base}listen_reuse_port: true\nlimits: {{ max_header_count: 20, keep_alive_timeout_ms: 500, body_read_timeout_ms: 300, body_idle_timeout_ms: 200, write_timeout_ms: 400 }}\nshutdown: {{ drain_delay_ms: 100, grace_period_ms: 2000 }}\n"),
            Path::new("."),
        )
        .unwrap();
        assert!(tuned.listen_reuse_port);
        assert_eq!(tuned.limits.max_header_count, 20);
        assert_eq!(tuned.limits.keep_alive_timeout, Duration::from_millis(500));
        assert_eq!(tuned.limits.body_read_timeout, Duration::from_millis(300));
        assert_eq!(tuned.limits.body_idle_timeout, Duration::from_millis(200));
        assert_eq!(tuned.limits.write_timeout, Duration::from_millis(400));
        assert_eq!(tuned.shutdown.drain_delay, Duration::from_millis(100));
        assert_eq!(tuned.shutdown.grace_period, Duration::from_millis(2000));
        assert_eq!(
            running.restart_required(&tuned),
            ["listen", "limits", "shutdown"]
        );
        let problems = Config::from_yaml(
            &format!("{base}limits: {{ max_header_count: 0, keep_alive_timeout_ms: 1, body_read_timeout_ms: 0, body_idle_timeout_ms: 0, write_timeout_ms: 0 }}\nshutdown: {{ drain_delay_ms: 5000, grace_period_ms: 5000 }}\n"),
            Path::new("."),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "limits.max_header_count",
                "limits.keep_alive_timeout_ms",
                "limits.body_read_timeout_ms",
                "limits.body_idle_timeout_ms",
                "limits.write_timeout_ms",
                "shutdown.drain_delay_ms",
            ],
            "{problems:?}"
        );
        assert!(
            problems[5].message.contains("shutdown.grace_period_ms"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_type_error_names_its_key_once() {
        let problems = Config::from_yaml(
            "upstream: { url: http://127.0.0.1:1, connect_timeout_ms: -1 }\n",
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "upstream.connect_timeout_ms");
        assert!(
            problems[0]
                .message
                .starts_with("invalid type: integer `-1`"),
            "{problems:?}"
        );
    }

    #[test]
    fn tracing_is_off_by_default_and_its_endpoint_becomes_the_traces_url() {
        let base = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";
        let off = Config::from_yaml(base, Path::new(".")).unwrap();
        assert_eq!(off.tracing, TracingConfig::default());
        assert_eq!(off.tracing.otlp_endpoint, None);
        let url = |endpoint: &str| {
            Config::from_yaml(
                &format!("{base}tracing: {{ otlp_endpoint: \"{endpoint}\", service_name: gw, sample_ratio: 0.25 }}\n"),
                Path::new("."),
            )
            .unwrap()
            .tracing
        };
        let on = url("http://127.0.0.1:4318");
        assert_eq!(
            on.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!((on.service_name.as_str(), on.sample_ratio), ("gw", 0.25));
        assert_eq!(
            url("http://collector:4318/").otlp_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            url("http://collector:4318/custom/traces")
                .otlp_endpoint
                .as_deref(),
            Some("http://collector:4318/custom/traces")
        );
        assert_eq!(
            off.restart_required(
                &Config::from_yaml(
                    &format!("{base}tracing: {{ otlp_endpoint: http://c:4318 }}\n"),
                    Path::new(".")
                )
                .unwrap()
            ),
            ["tracing"]
        );
    }

    #[test]
    fn tracing_problems_name_the_key_and_the_fix() {
        let base = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";
        for (tracing, key, hint) in [
            (
                "{ otlp_endpoint: \"https://collector:4318\" }",
                "tracing.otlp_endpoint",
                "only http://",
            ),
            (
                "{ otlp_endpoint: \"collector:4318\" }",
                "tracing.otlp_endpoint",
                "needs a scheme and host",
            ),
            (
                "{ otlp_endpoint: \"http://u:p@collector:4318\" }",
                "tracing.otlp_endpoint",
                "no user info",
            ),
            (
                "{ otlp_endpoint: \"http://c:4318\", sample_ratio: 1.5 }",
                "tracing.sample_ratio",
                "0.0..=1.0",
            ),
            (
                "{ otlp_endpoint: \"http://c:4318\", service_name: \"\" }",
                "tracing.service_name",
                "non-empty",
            ),
            (
                "{ sample_ratio: 0.5 }",
                "tracing.otlp_endpoint",
                "e.g. http://127.0.0.1:4318",
            ),
            (
                "{ otlp_endpiont: \"http://c:4318\" }",
                "tracing.otlp_endpiont",
                "unknown key",
            ),
        ] {
            let problems =
                Config::from_yaml(&format!("{base}tracing: {tracing}\n"), Path::new("."))
                    .expect_err(tracing);
            assert_eq!(problems.len(), 1, "{tracing}: {problems:?}");
            assert_eq!(problems[0].key, key, "{tracing}: {problems:?}");
            assert!(
                problems[0].message.contains(hint),
                "{tracing}: {problems:?}"
            );
        }
    }
}
