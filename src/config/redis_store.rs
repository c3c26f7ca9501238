//! Validation of `store.redis`: exactly one of `url`, `sentinel` and
//! `cluster`; the ACL user; the password from a file or an environment
//! variable (never inline); TLS files for `rediss://`; timeouts and
//! `wait_replicas`. Every problem names its key and the fix.

use super::raw::{RawRedis, RawRedisTls, RawSentinel};
use super::validate::Problems;
use crate::store::redis::{RedisOptions, Secret, TlsMaterial, Topology};
use redis::IntoConnectionInfo;
use std::path::Path;
use std::time::Duration;

const FIX_PASSWORD: &str = "put it in a file named by store.redis.password_file (or an environment variable named by store.redis.password_env)";

/// Checks `store.redis`; `None` when a problem was found.
pub fn validate_redis(
    raw: RawRedis,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<RedisOptions> {
    let before = problems.len();
    let timeout_ms = problems.in_range(
        "store.redis.timeout_ms",
        raw.timeout_ms.unwrap_or(250),
        1,
        60_000,
    );
    let wait_replicas = problems.in_range(
        "store.redis.wait_replicas",
        raw.wait_replicas.unwrap_or(0),
        0,
        64,
    );
    let wait_timeout_ms = problems.in_range(
        "store.redis.wait_timeout_ms",
        raw.wait_timeout_ms.unwrap_or(timeout_ms),
        1,
        60_000,
    );
    let idle_check_ms = problems.in_range(
        "store.redis.idle_check_ms",
        raw.idle_check_ms
            .unwrap_or(crate::store::redis::options::DEFAULT_IDLE_CHECK.as_millis() as u64),
        10,
        3_600_000,
    );
    if raw.password.is_some() {
        problems.push(
            "store.redis.password",
            format!("inline passwords are not accepted; {FIX_PASSWORD}"),
        );
    }
    let password = secret(
        "store.redis",
        raw.password_file.as_deref(),
        raw.password_env.as_deref(),
        base_dir,
        problems,
    );

    let chosen: Vec<&str> = [
        raw.url.as_ref().map(|_| "url"),
        raw.sentinel.as_ref().map(|_| "sentinel"),
        raw.cluster.as_ref().map(|_| "cluster"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if chosen.len() != 1 {
        let what = if chosen.is_empty() {
            "sets none of url, sentinel and cluster".to_owned()
        } else {
            format!("sets {} together", chosen.join(" and "))
        };
        problems.push(
            "store.redis",
            format!("{what}; keep exactly one: url (one node, e.g. redis://127.0.0.1:6379), sentinel ({{ master_name, urls }}) or cluster ({{ urls }})"),
        );
        return None;
    }

    let mut username = raw.username.clone();
    if username.as_deref() == Some("") {
        problems.push(
            "store.redis.username",
            "is empty; give the ACL user or remove the key",
        );
    }
    let (topology, data_urls): (Topology, Vec<String>) = if let Some(url) = raw.url {
        let user = check_url("store.redis.url", &url, true, problems);
        merge_user(&mut username, user, "store.redis.url", problems);
        (Topology::Single { url: url.clone() }, vec![url])
    } else if let Some(sentinel) = raw.sentinel {
        let topology = validate_sentinel(sentinel, base_dir, problems)?;
        let Topology::Sentinel { urls, .. } = &topology else {
            unreachable!("validate_sentinel returns a sentinel topology")
        };
        let urls = urls.clone();
        (topology, urls)
    } else {
        let urls = raw.cluster.and_then(|c| c.urls).unwrap_or_default();
        if urls.is_empty() {
            problems.push(
                "store.redis.cluster.urls",
                "is missing or empty; list some nodes of the cluster, e.g. [redis://10.0.0.1:7000, redis://10.0.0.2:7000]",
            );
        }
        for (i, url) in urls.iter().enumerate() {
            let key = format!("store.redis.cluster.urls[{i}]");
            let user = check_url(&key, url, false, problems);
            merge_user(&mut username, user, &key, problems);
        }
        (Topology::Cluster { urls: urls.clone() }, urls)
    };

    let tls_urls = data_urls
        .iter()
        .filter(|u| u.starts_with("rediss://"))
        .count();
    if tls_urls != 0 && tls_urls != data_urls.len() {
        problems.push(
            urls_key(&topology),
            "mixes redis:// and rediss://; use one scheme for every node",
        );
    }
    let tls = match raw.tls {
        Some(tls) => {
            if tls_urls == 0 {
                problems.push(
                    "store.redis.tls",
                    format!(
                        "is set but {} does not use rediss://; use rediss:// URLs or remove tls",
                        urls_key(&topology)
                    ),
                );
            }
            validate_tls(tls, base_dir, problems)
        }
        None => TlsMaterial::default(),
    };

    if problems.len() > before {
        return None;
    }
    let options = RedisOptions {
        topology,
        username,
        password,
        tls,
        timeout: Duration::from_millis(timeout_ms),
        wait_replicas,
        wait_timeout: Duration::from_millis(wait_timeout_ms),
        idle_check: Duration::from_millis(idle_check_ms),
    };
    if let Err(reason) = options.check() {
        problems.push(
            "store.redis",
            format!("cannot be used: {reason}; fix the URL or the TLS files"),
        );
        return None;
    }
    Some(options)
}

/// The key that holds the data nodes' URLs.
fn urls_key(topology: &Topology) -> &'static str {
    match topology {
        Topology::Single { .. } => "store.redis.url",
        Topology::Sentinel { .. } => "store.redis.sentinel.urls",
        Topology::Cluster { .. } => "store.redis.cluster.urls",
    }
}

fn validate_sentinel(
    raw: RawSentinel,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<Topology> {
    let master_name = match raw.master_name {
        Some(name) if !name.trim().is_empty() => name,
        _ => {
            problems.push(
                "store.redis.sentinel.master_name",
                "is missing; give the name the sentinels monitor, e.g. mymaster",
            );
            String::new()
        }
    };
    let urls = raw.urls.unwrap_or_default();
    if urls.is_empty() {
        problems.push(
            "store.redis.sentinel.urls",
            "is missing or empty; list the sentinels, e.g. [redis://10.0.0.1:26379, redis://10.0.0.2:26379, redis://10.0.0.3:26379]",
        );
    }
    for (i, url) in urls.iter().enumerate() {
        check_url(
            &format!("store.redis.sentinel.urls[{i}]"),
            url,
            false,
            problems,
        );
    }
    if raw.password.is_some() {
        problems.push(
            "store.redis.sentinel.password",
            "inline passwords are not accepted; put it in a file named by store.redis.sentinel.password_file (or an environment variable named by store.redis.sentinel.password_env)",
        );
    }
    let password = secret(
        "store.redis.sentinel",
        raw.password_file.as_deref(),
        raw.password_env.as_deref(),
        base_dir,
        problems,
    );
    let check_interval_ms = problems.in_range(
        "store.redis.sentinel.check_interval_ms",
        raw.check_interval_ms.unwrap_or(1_000),
        50,
        60_000,
    );
    Some(Topology::Sentinel {
        master_name,
        urls,
        password,
        check_interval: Duration::from_millis(check_interval_ms),
    })
}

/// Checks one Redis URL; returns its ACL user, if any.
fn check_url(key: &str, url: &str, unix_allowed: bool, problems: &mut Problems) -> Option<String> {
    let schemes = if unix_allowed {
        "redis://, rediss:// or unix://"
    } else {
        "redis:// or rediss://"
    };
    let scheme_ok = url.starts_with("redis://")
        || url.starts_with("rediss://")
        || (unix_allowed && url.starts_with("unix://"));
    if !scheme_ok {
        problems.push(key, format!("`{url}` must start with {schemes}"));
        return None;
    }
    let info = match url.into_connection_info() {
        Ok(info) => info,
        Err(err) => {
            problems.push(
                key,
                format!(
                    "is not a valid Redis URL ({err}); e.g. rediss://tokengate@redis.internal:6380"
                ),
            );
            return None;
        }
    };
    if info.redis_settings().password().is_some() {
        problems.push(
            key,
            format!("contains a password; remove it from the URL and {FIX_PASSWORD}"),
        );
    }
    if url.contains('#') {
        problems.push(
            key,
            "has a `#` fragment (such as #insecure); certificates are always verified, remove it",
        );
    }
    info.redis_settings().username().map(str::to_owned)
}

/// Records the ACL user found in a URL, unless it contradicts another one.
fn merge_user(
    username: &mut Option<String>,
    from_url: Option<String>,
    key: &str,
    problems: &mut Problems,
) {
    let Some(from_url) = from_url else { return };
    match username {
        Some(existing) if *existing != from_url => problems.push(
            key,
            format!("names ACL user `{from_url}` but another key names `{existing}`; use one user"),
        ),
        Some(_) => {}
        None => *username = Some(from_url),
    }
}

fn validate_tls(raw: RawRedisTls, base_dir: &Path, problems: &mut Problems) -> TlsMaterial {
    let mut read = |key: &str, file: Option<String>| -> Option<Vec<u8>> {
        let file = file?;
        let path = base_dir.join(&file);
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                problems.push(
                    format!("store.redis.tls.{key}"),
                    format!(
                        "cannot read {} ({err}); give a readable PEM file (relative to the config file)",
                        path.display()
                    ),
                );
                None
            }
        }
    };
    let ca_pem = read("ca_file", raw.ca_file);
    let has_cert = raw.client_cert_file.is_some();
    let has_key = raw.client_key_file.is_some();
    let client_cert_pem = read("client_cert_file", raw.client_cert_file);
    let client_key_pem = read("client_key_file", raw.client_key_file)
        .map(|key| Secret::new(String::from_utf8_lossy(&key).into_owned()));
    if has_cert != has_key {
        problems.push(
            "store.redis.tls",
            "sets only one of client_cert_file and client_key_file; give both (for tls-auth-clients) or neither",
        );
    }
    TlsMaterial {
        ca_pem,
        client_cert_pem,
        client_key_pem,
    }
}

/// A password from `PREFIX.password_file` or `PREFIX.password_env`.
fn secret(
    prefix: &str,
    file: Option<&str>,
    env: Option<&str>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<Secret> {
    match (file, env) {
        (Some(_), Some(_)) => {
            problems.push(
                format!("{prefix}.password_env"),
                format!("is set together with {prefix}.password_file; keep one of them"),
            );
            None
        }
        (Some(file), None) => {
            let key = format!("{prefix}.password_file");
            let path = base_dir.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let password = text.trim_end_matches(['\r', '\n']);
                    if password.is_empty() {
                        problems.push(
                            key,
                            format!("{} is empty; write the password into it", path.display()),
                        );
                        None
                    } else {
                        Some(Secret::new(password))
                    }
                }
                Err(err) => {
                    problems.push(
                        key,
                        format!(
                            "cannot read {} ({err}); give a readable file holding the password (relative to the config file)",
                            path.display()
                        ),
                    );
                    None
                }
            }
        }
        (None, Some(name)) => match std::env::var(name) {
            Ok(value) if !value.is_empty() => Some(Secret::new(value)),
            _ => {
                problems.push(
                    format!("{prefix}.password_env"),
                    format!("the environment variable `{name}` is not set or empty; set it, or use {prefix}.password_file"),
                );
                None
            }
        },
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigProblem, StoreConfig};
    use crate::store::redis::Topology;
    use std::path::Path;

    fn load(redis: &str, dir: &Path) -> Result<Config, Vec<ConfigProblem>> {
        Config::from_yaml(
            &format!(
                "upstream: {{ url: http://127.0.0.1:1 }}\npolicy: {{ file: p.yaml }}\nstore:\n  redis:\n{redis}\n"
            ),
            dir,
        )
    }

    fn problems(redis: &str) -> Vec<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        load(redis, dir.path())
            .expect_err(redis)
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    }

    #[test]
    fn exactly_one_of_url_sentinel_and_cluster() {
        for redis in [
            "    timeout_ms: 250",
            "    url: redis://127.0.0.1\n    cluster: { urls: [redis://127.0.0.1:7000] }",
            "    url: redis://127.0.0.1\n    sentinel: { master_name: m, urls: [redis://127.0.0.1:26379] }",
        ] {
            let found = problems(redis);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, "store.redis");
            assert!(found[0].1.contains("keep exactly one"), "{found:?}");
            assert!(found[0].1.contains("sentinel ({ master_name, urls })"), "{found:?}");
        }
    }

    #[test]
    fn passwords_are_never_inline() {
        let found = problems("    url: redis://user:hunter2@127.0.0.1:6379");
        assert_eq!(found[0].0, "store.redis.url");
        assert!(found[0].1.contains("password_file"), "{found:?}");
        assert!(!found[0].1.contains("hunter2"), "{found:?}");
        let found = problems("    url: redis://127.0.0.1\n    password: hunter2");
        assert_eq!(found[0].0, "store.redis.password");
        let found = problems(
            "    sentinel: { master_name: m, urls: [redis://127.0.0.1:26379], password: x }",
        );
        assert_eq!(found[0].0, "store.redis.sentinel.password");
    }

    #[test]
    fn the_password_comes_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let config = load(
            "    url: rediss://tokengate@127.0.0.1:6380\n    password_file: pw\n    wait_replicas: 1",
            dir.path(),
        )
        .unwrap();
        let StoreConfig::Redis(options) = &config.store else {
            panic!("not redis")
        };
        assert_eq!(options.password.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(options.username.as_deref(), Some("tokengate"));
        assert_eq!(options.wait_replicas, 1);
        assert_eq!(options.wait_timeout, options.timeout);
        assert!(!format!("{config:?}").contains("s3cret"));

        std::env::set_var("TOKENGATE_TEST_REDIS_PW", "from-env");
        let config = load(
            "    url: redis://127.0.0.1\n    password_env: TOKENGATE_TEST_REDIS_PW",
            dir.path(),
        )
        .unwrap();
        let StoreConfig::Redis(options) = &config.store else {
            panic!("not redis")
        };
        assert_eq!(options.password.as_ref().unwrap().expose(), "from-env");

        let found = problems("    url: redis://127.0.0.1\n    password_file: missing");
        assert_eq!(found[0].0, "store.redis.password_file");
        let found =
            problems("    url: redis://127.0.0.1\n    password_env: TOKENGATE_TEST_NOT_SET");
        assert_eq!(found[0].0, "store.redis.password_env");
        assert!(found[0].1.contains("not set"), "{found:?}");
        let found = problems(
            "    url: redis://127.0.0.1\n    password_file: a\n    password_env: TOKENGATE_TEST_REDIS_PW",
        );
        assert!(
            found.iter().any(|(k, _)| k == "store.redis.password_env"),
            "{found:?}"
        );
    }

    #[test]
    fn tls_needs_rediss_and_readable_files() {
        let found = problems("    url: redis://127.0.0.1\n    tls: { ca_file: ca.pem }");
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"store.redis.tls"), "{found:?}");
        assert!(keys.contains(&"store.redis.tls.ca_file"), "{found:?}");
        let found = problems("    url: rediss://127.0.0.1\n    tls: { client_cert_file: c.pem }");
        assert!(
            found
                .iter()
                .any(|(k, m)| k == "store.redis.tls" && m.contains("client_key_file")),
            "{found:?}"
        );
        let found = problems("    url: rediss://127.0.0.1/#insecure");
        assert!(found[0].1.contains("always verified"), "{found:?}");
    }

    #[test]
    fn sentinel_and_cluster_name_their_keys() {
        let found = problems("    sentinel: { urls: [] }");
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "store.redis.sentinel.master_name",
                "store.redis.sentinel.urls"
            ]
        );
        let found =
            problems("    cluster: { urls: [redis://127.0.0.1:7000, rediss://127.0.0.1:7001] }");
        assert!(
            found
                .iter()
                .any(|(k, m)| k == "store.redis.cluster.urls" && m.contains("one scheme")),
            "{found:?}"
        );
        let found = problems("    cluster: { urls: [http://127.0.0.1:7000] }");
        assert_eq!(found[0].0, "store.redis.cluster.urls[0]");

        let dir = tempfile::tempdir().unwrap();
        let config = load(
            "    sentinel: { master_name: mymaster, urls: [redis://10.0.0.1:26379, redis://10.0.0.2:26379] }\n    username: tokengate",
            dir.path(),
        )
        .unwrap();
        let StoreConfig::Redis(options) = &config.store else {
            panic!("not redis")
        };
        assert!(matches!(
            &options.topology,
            Topology::Sentinel { master_name, urls, .. } if master_name == "mymaster" && urls.len() == 2
        ));
        let found =
            problems("    cluster: { urls: [redis://alice@127.0.0.1:7000] }\n    username: bob");
        assert!(found[0].1.contains("use one user"), "{found:?}");
    }
}
