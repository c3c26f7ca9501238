//! How the Redis store reaches Redis: one node, a primary found through
//! Sentinel, or a Cluster; the ACL user, the password, TLS material, and the
//! time limits. Built by `config` from the `store.redis` keys; turned
//! into the `redis` crate's clients here.
//!
//! Secrets (the passwords and the TLS client key) are kept in [`Secret`],
//! whose `Debug` never shows them, so a config printed for a diagnosis or an
//! error message cannot leak them.

use redis::{Client, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, TlsCertificates};
use std::time::Duration;

/// The default of `store.redis.idle_check_ms`: below the idle timeouts of
/// common NATs and load balancers (AWS NLB 350 s, Azure LB 4 min), and
/// frequent enough that a connection dropped without a word is found
/// before it fails a request.
pub const DEFAULT_IDLE_CHECK: Duration = Duration::from_secs(5);

/// Everything the Redis store needs to connect.
#[derive(Clone, PartialEq, Debug)]
pub struct RedisOptions {
    pub topology: Topology,
    /// ACL user of the data nodes (`store.redis.username`, or the user in
    /// `store.redis.url`).
    pub username: Option<String>,
    /// Password of that user, or of `requirepass` (from a file or the
    /// environment, never inline).
    pub password: Option<Secret>,
    /// CA and client certificate for `rediss://` nodes.
    pub tls: TlsMaterial,
    /// Every store call answers within this time, or fails closed (503).
    pub timeout: Duration,
    /// Replicas that must confirm each credential write (`WAIT`); 0: none.
    pub wait_replicas: u32,
    /// How long `WAIT` may wait for them.
    pub wait_timeout: Duration,
    /// A connection idle this long is checked (`PING`) before it serves.
    pub idle_check: Duration,
}

/// Which Redis deployment the store talks to.
#[derive(Clone, PartialEq, Debug)]
pub enum Topology {
    /// One node (`redis://`, `rediss://` or `unix://`).
    Single { url: String },
    /// The primary of `master_name`, as the sentinels at `urls` report it.
    Sentinel {
        master_name: String,
        urls: Vec<String>,
        /// The sentinels' own password (their ACL user is in their URLs).
        password: Option<Secret>,
        /// How often a connection's primary is confirmed with the sentinels
        /// and `ROLE` before it serves again.
        check_interval: Duration,
    },
    /// A Redis Cluster reached through any of `urls`.
    Cluster { urls: Vec<String> },
}

/// A password or private key: compared, cloned and used, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// PEM material for TLS connections (the contents of the `*_file` keys).
#[derive(Clone, PartialEq, Debug, Default)]
pub struct TlsMaterial {
    /// CA certificates to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain and key, for Redis's `tls-auth-clients`.
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Secret>,
}

impl TlsMaterial {
    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: match (&self.client_cert_pem, &self.client_key_pem) {
                (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.expose().as_bytes().to_vec(),
                }),
                _ => None,
            },
            root_cert: self.ca_pem.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        self.ca_pem.is_none() && self.client_cert_pem.is_none()
    }
}

impl RedisOptions {
    /// One node at `url`, no password, no TLS material, no `WAIT`.
    pub fn single(url: &str, timeout: Duration) -> Self {
        RedisOptions {
            topology: Topology::Single {
                url: url.to_owned(),
            },
            username: None,
            password: None,
            tls: TlsMaterial::default(),
            timeout,
            wait_replicas: 0,
            wait_timeout: timeout,
            idle_check: DEFAULT_IDLE_CHECK,
        }
    }

    /// The client of one data node at `url` (a configured URL, or one made
    /// from an address a sentinel reported), with this user, password, TLS
    /// material and RESP3 (needed to learn at once that a connection died).
    pub(crate) fn node_client(&self, url: &str) -> redis::RedisResult<Client> {
        let info = self.node_info(url)?;
        if url.starts_with("rediss://") && !self.tls.is_empty() {
            Client::build_with_tls(info, self.tls.certificates())
        } else {
            Client::open(info)
        }
    }

    fn node_info(&self, url: &str) -> redis::RedisResult<ConnectionInfo> {
        let info = url.into_connection_info()?;
        let mut settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.expose());
        }
        Ok(info.set_redis_settings(settings))
    }

    /// The client of one sentinel at `url`, with the sentinels' password.
    pub(crate) fn sentinel_client(
        &self,
        url: &str,
        password: Option<&Secret>,
    ) -> redis::RedisResult<Client> {
        let info = url.into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(password) = password {
            settings = settings.set_password(password.expose());
        }
        let info = info.set_redis_settings(settings);
        if url.starts_with("rediss://") && !self.tls.is_empty() {
            Client::build_with_tls(info, self.tls.certificates())
        } else {
            Client::open(info)
        }
    }

    /// The cluster client for `urls`: commands are never retried by the
    /// crate (the store decides what may be retried), replicas are never
    /// read from.
    pub(crate) fn cluster_client(
        &self,
        urls: &[String],
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let nodes = urls
            .iter()
            .map(|url| self.node_info(url))
            .collect::<redis::RedisResult<Vec<_>>>()?;
        let mut builder = redis::cluster::ClusterClient::builder(nodes)
            .use_protocol(ProtocolVersion::RESP3)
            .retries(0)
            .connection_timeout(self.connect_timeout())
            .response_timeout(self.timeout.max(self.wait_timeout) * 4);
        if urls.iter().all(|url| url.starts_with("rediss://")) && !self.tls.is_empty() {
            builder = builder.certs(self.tls.certificates());
        }
        builder.build()
    }

    /// The limit of one connection attempt (TCP, TLS, HELLO).
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.timeout.max(Duration::from_millis(100))
    }

    /// Builds every client once, so that a URL, certificate or key that
    /// cannot be used is reported when the config is loaded.
    pub fn check(&self) -> Result<(), String> {
        install_crypto_provider();
        match &self.topology {
            Topology::Single { url } => self.node_client(url).map(drop),
            Topology::Sentinel { urls, password, .. } => urls
                .iter()
                .try_for_each(|url| self.sentinel_client(url, password.as_ref()).map(drop)),
            Topology::Cluster { urls } => self.cluster_client(urls).map(drop),
        }
        .map_err(|e| e.to_string())?;
        if let Some(ca) = &self.tls.ca_pem {
            check_pem_certificates(ca).map_err(|e| format!("CA file: {e}"))?;
        }
        if let Some(cert) = &self.tls.client_cert_pem {
            check_pem_certificates(cert).map_err(|e| format!("client certificate file: {e}"))?;
        }
        if let Some(key) = &self.tls.client_key_pem {
            use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
            PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                .map_err(|e| format!("client key file: no private key in PEM form ({e})"))?;
        }
        Ok(())
    }
}

fn check_pem_certificates(pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".to_owned());
    }
    Ok(())
}

/// rustls needs one process-wide crypto provider; `ring` is the one this
/// crate is built with. Installing it again (or after another part of the
/// process did) changes nothing.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
