//! The config file exactly as written: serde structs with every field optional.
//!
//! Nothing here is trusted. `super::validate` turns a [`RawConfig`] into a
//! validated [`super::Config`], collecting every problem with its key path.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub listen_reuse_port: Option<bool>,
    pub allowed_hosts: Option<Vec<String>>,
    pub workers: Option<usize>,
    pub upstream: Option<RawUpstream>,
    pub store: Option<RawStore>,
    pub policy: Option<RawPolicy>,
    pub hashing: Option<RawHashing>,
    pub limits: Option<RawLimits>,
    pub verify_cache: Option<RawVerifyCache>,
    pub log: Option<RawLog>,
    pub admin: Option<RawAdmin>,
    pub token_api: Option<RawTokenApi>,
    pub resolver: Option<RawResolver>,
    pub ui: Option<RawUi>,
    pub shutdown: Option<RawShutdown>,
    pub tracing: Option<RawTracing>,
    pub tls: Option<RawTls>,
    pub http2: Option<bool>,
    pub http2_cleartext: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub watch: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub forward_authorization: Option<bool>,
    pub connect_timeout_ms: Option<u64>,
    pub response_timeout_ms: Option<u64>,
    pub pool_idle_timeout_ms: Option<u64>,
    pub pool_max_idle_per_host: Option<usize>,
    pub tls: Option<RawUpstreamTls>,
    pub object_storage: Option<RawObjectStorage>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawObjectStorage {
    pub path_prefix: Option<String>,
    pub upload_grant_ttl_ms: Option<u64>,
    pub max_upload_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUpstreamTls {
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub redis: Option<RawRedis>,
    pub embedded: Option<RawEmbedded>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRedis {
    pub url: Option<String>,
    pub sentinel: Option<RawSentinel>,
    pub cluster: Option<RawCluster>,
    pub username: Option<String>,
    /// Only to refuse it with a clear message: passwords are never inline.
    pub password: Option<serde::de::IgnoredAny>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub tls: Option<RawRedisTls>,
    pub timeout_ms: Option<u64>,
    pub wait_replicas: Option<u32>,
    pub wait_timeout_ms: Option<u64>,
    pub idle_check_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSentinel {
    pub master_name: Option<String>,
    pub urls: Option<Vec<String>>,
    pub check_interval_ms: Option<u64>,
    pub password: Option<serde::de::IgnoredAny>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCluster {
    pub urls: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRedisTls {
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawEmbedded {
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPolicy {
    pub file: Option<String>,
    pub watch: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHashing {
    pub scheme: Option<String>,
    pub argon2: Option<RawArgon2>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawArgon2 {
    pub memory_kib: Option<u32>,
    pub iterations: Option<u32>,
    pub parallelism: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLimits {
    pub max_body_bytes: Option<u64>,
    pub max_header_bytes: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_header_count: Option<usize>,
    pub keep_alive_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub body_idle_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub http2: Option<RawHttp2Limits>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHttp2Limits {
    pub max_concurrent_streams: Option<u32>,
    pub max_header_list_bytes: Option<u32>,
    pub max_pending_accept_reset_streams: Option<usize>,
    pub max_local_error_reset_streams: Option<usize>,
    pub keep_alive_interval_ms: Option<u64>,
    pub keep_alive_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawShutdown {
    pub drain_delay_ms: Option<u64>,
    pub grace_period_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawVerifyCache {
    pub capacity: Option<u64>,
    pub ttl_s: Option<u64>,
    pub max_concurrent_verifies: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub allow_from: Option<Vec<String>>,
    pub teams: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawTokenApi {
    pub org_tokens_manage_team_tokens: Option<bool>,
    pub default_expiry: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUi {
    pub enabled: Option<bool>,
    pub session_idle_timeout_s: Option<u64>,
    pub session_max_age_s: Option<u64>,
    pub secure_cookies: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
}

/// `resolver:`: how the gateway asks the upstream which workspace and
/// organization an id belongs to.
#[derive(Debug, Default, Deserialize)]
pub struct RawResolver {
    /// `{ file: PATH }` or `{ env: NAME }`; anything else is refused (a
    /// secret is never written into the config file itself).
    pub authorization: Option<serde_yaml::Value>,
    pub timeout_ms: Option<u64>,
    pub cache_capacity: Option<u64>,
}
