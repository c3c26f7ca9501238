//! The config file exactly as written: serde structs with every field optional.
//!
//! Nothing here is trusted. `super::validate` turns a [`RawConfig`] into a
//! validated [`super::Config`], collecting every problem with its key path.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub listen: Option<String>,
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
    pub ui: Option<RawUi>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub forward_authorization: Option<bool>,
    pub connect_timeout_ms: Option<u64>,
    pub response_timeout_ms: Option<u64>,
    pub pool_idle_timeout_ms: Option<u64>,
    pub pool_max_idle_per_host: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub redis: Option<RawRedis>,
    pub embedded: Option<RawEmbedded>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRedis {
    pub url: Option<String>,
    pub timeout_ms: Option<u64>,
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
