//! The state that changes while the gateway serves: the policy and the live
//! part of the config (`admin`), and how a reload replaces them. What
//! triggers a reload (file change, `SIGHUP`) is in
//! `runtime::reload`; `POST /_tokengate/reload` is an admin endpoint.
//!
//! A reload builds and validates the new state on the side and swaps it in
//! atomically; a request keeps the policy snapshot it started with. A file
//! that does not load leaves the old policy serving, and its problems are
//! logged with their key paths and kept for `/_tokengate/status`. Config keys
//! that cannot change live are reported as needing a restart.

use crate::config::{AdminConfig, Config, ConfigError, ConfigProblem};
use crate::observe::Metrics;
use crate::policy::{Policy, PolicyError};
use crate::store::Timestamp;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Why a reload was refused (the old state keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl ReloadError {
    /// Every problem with its key path (one entry for an unreadable file).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            ReloadError::Config(ConfigError::Invalid { problems, .. })
            | ReloadError::Policy(PolicyError::Invalid { problems, .. }) => problems.clone(),
            other => vec![ConfigProblem {
                key: "(file)".into(),
                message: other.to_string(),
            }],
        }
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// False when the policy file's bytes did not change (nothing swapped).
    pub changed: bool,
    pub sha256: String,
    pub previous_sha256: String,
    pub rules: usize,
    /// Config keys that changed but take effect only after a restart.
    pub restart_required: Vec<&'static str>,
    /// `tokengate policy lint` warnings about the new policy.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct LastError {
    at: String,
    message: String,
    problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
struct Problem {
    key: String,
    message: String,
}

#[derive(Debug, Clone, Serialize)]
struct Status {
    file: String,
    sha256: String,
    rules: usize,
    loaded_at: String,
    reloads_succeeded: u64,
    reloads_failed: u64,
    last_attempt_at: Option<String>,
    last_result: Option<&'static str>,
    last_error: Option<LastError>,
    restart_required: Vec<&'static str>,
}

/// The reloadable state: the policy, the admin settings, the status shown
/// at `/_tokengate/status`, the lock that keeps reloads from racing each
/// other, and whether the gateway is draining (shutting down).
pub struct LiveState {
    policy: ArcSwap<Policy>,
    admin: ArcSwap<AdminConfig>,
    status: Mutex<Status>,
    serial: Mutex<()>,
    draining: AtomicBool,
}

impl LiveState {
    pub fn new(config: &Config, policy: Policy) -> Self {
        LiveState {
            admin: ArcSwap::from_pointee(config.admin.clone()),
            status: Mutex::new(Status {
                file: config.policy_file.display().to_string(),
                sha256: policy.source_hash.clone(),
                rules: policy.rules.len(),
                loaded_at: Timestamp::now().to_rfc3339(),
                reloads_succeeded: 0,
                reloads_failed: 0,
                last_attempt_at: None,
                last_result: None,
                last_error: None,
                restart_required: Vec::new(),
            }),
            serial: Mutex::new(()),
            draining: AtomicBool::new(false),
            policy: ArcSwap::from_pointee(policy),
        }
    }

    /// From now on `/_tokengate/ready` answers 503, so that load balancers
    /// stop sending new requests here (requests are still served).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True once [`LiveState::start_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The policy in force; a request keeps the one it started with.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// The admin settings in force.
    pub fn admin(&self) -> Arc<AdminConfig> {
        self.admin.load_full()
    }

    /// The `/_tokengate/status` document.
    pub fn status_json(&self) -> serde_json::Value {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        serde_json::json!({ "policy": &*status })
    }
}

impl LiveState {
    /// Reloads the config file (when `config` was loaded from one) and the
    /// policy file, and swaps them in. Reloads are serialized.
    pub fn reload(&self, config: &Config, metrics: &Metrics) -> Result<ReloadReport, ReloadError> {
        let live = self;
        let _serial = live.serial.lock().unwrap_or_else(PoisonError::into_inner);
        let attempt = Timestamp::now().to_rfc3339();
        let result = self
            .build_next(config)
            .map(|(policy, admin, restart_required)| {
                let previous = live.policy.load_full();
                let report = ReloadReport {
                    changed: previous.source_hash != policy.source_hash,
                    sha256: policy.source_hash.clone(),
                    previous_sha256: previous.source_hash.clone(),
                    rules: policy.rules.len(),
                    restart_required,
                    warnings: policy.lint().iter().map(ToString::to_string).collect(),
                };
                if report.changed {
                    live.policy.store(Arc::new(policy));
                }
                live.admin.store(Arc::new(admin));
                report
            });
        let mut status = live.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.last_attempt_at = Some(attempt.clone());
        metrics.reload(result.is_ok());
        match &result {
            Ok(report) => {
                status.reloads_succeeded += 1;
                status.last_result = Some("success");
                status.restart_required = report.restart_required.clone();
                if report.changed {
                    status.sha256 = report.sha256.clone();
                    status.rules = report.rules;
                    status.loaded_at = attempt;
                }
                tracing::info!(
                    changed = report.changed,
                    sha256 = %report.sha256,
                    rules = report.rules,
                    "policy reloaded"
                );
                for warning in &report.warnings {
                    tracing::warn!(warning = %warning, "policy lint");
                }
                for key in &report.restart_required {
                    tracing::warn!(key, "config key changed; it takes effect after a restart");
                }
            }
            Err(err) => {
                let problems = err.problems();
                status.reloads_failed += 1;
                status.last_result = Some("failure");
                status.last_error = Some(LastError {
                    at: attempt,
                    message: err.to_string(),
                    problems: problems
                        .iter()
                        .map(|p| Problem {
                            key: p.key.clone(),
                            message: p.message.clone(),
                        })
                        .collect(),
                });
                tracing::error!("reload refused; the previous policy keeps serving");
                for problem in &problems {
                    tracing::error!(key = %problem.key, problem = %problem.message, "reload problem");
                }
            }
        }
        result
    }

    /// The next policy and admin settings, built aside from the running ones.
    fn build_next(&self, config: &Config) -> Result<Next, ReloadError> {
        let (admin, restart_required) = match &config.source {
            Some(path) => {
                let newer = Config::load(path)?;
                let restart = config.restart_required(&newer);
                (newer.admin, restart)
            }
            None => ((*self.admin()).clone(), Vec::new()),
        };
        let policy = Policy::load(&config.policy_file)?;
        Ok((policy, admin, restart_required))
    }
}

type Next = (Policy, AdminConfig, Vec<&'static str>);
