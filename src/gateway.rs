//! The gateway's shared state, built once from a config: the store, the
//! authenticator, the live policy, the forwarder, the metrics. What a
//! request goes through is in `proxy`.

use crate::access::AccessControl;
use crate::auth::Authenticator;
use crate::config::{Config, StoreConfig};
use crate::context::RequestContext;
use crate::live::{LiveState, ReloadError, ReloadReport};
use crate::observe::Metrics;
use crate::policy::{self, Policy};
use crate::store::{self, Store, StoreError};
use crate::upstream::Forwarder;
use http::Method;
use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// The gateway's shared state: built once from a config, cheap to share.
pub struct Gateway {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub authenticator: Authenticator,
    pub forwarder: Forwarder,
    pub metrics: Metrics,
    /// The policy and the admin settings, which reload while serving.
    pub live: LiveState,
    /// The resolver and the access check of rules with `requires:`.
    pub access: AccessControl,
    /// The web UI's state (its routes, sign-in throttles), made on its
    /// first request and kept for the gateway's life. Its type belongs to
    /// `ui`, a layer above this one.
    pub ui: OnceLock<Arc<dyn Any + Send + Sync>>,
}

/// Why a gateway could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the configured store backend.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    match &config.store {
        StoreConfig::Redis(options) => Ok(Arc::new(store::redis::RedisStore::open(
            (**options).clone(),
        )?)),
        StoreConfig::Embedded { path } => Ok(Arc::new(store::embedded::EmbeddedStore::open(path)?)),
    }
}

impl Gateway {
    /// Builds the gateway from a validated config (loads the policy, prepares
    /// the store connection and the upstream pool; does not listen).
    pub fn build(config: Config) -> Result<Arc<Gateway>, BuildError> {
        let store = open_store(&config)?;
        Self::build_with_store(config, store)
    }

    /// Like [`Gateway::build`] with an already opened store.
    pub fn build_with_store(
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Gateway>, BuildError> {
        let policy = Policy::load(&config.policy_file)?;
        Ok(Arc::new(Gateway {
            authenticator: Authenticator::new(store.clone(), &config.verify_cache, config.hashing),
            forwarder: Forwarder::new(config.upstream.clone()),
            metrics: Metrics::new(),
            live: LiveState::new(&config, policy),
            access: AccessControl::new(&config.resolver),
            ui: OnceLock::new(),
            store,
            config,
        }))
    }

    /// The context of a request that just arrived, judged by the policy in
    /// force now.
    pub fn new_ctx(&self, method: Method, client_addr: SocketAddr) -> RequestContext {
        RequestContext::new(method, client_addr, self.live.policy())
    }

    /// Reloads the policy and the live config; the old ones keep serving
    /// when the new ones do not load.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.live.reload(&self.config, &self.metrics)
    }
}
