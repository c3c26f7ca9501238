//! Live reload of the policy and the live part of the config (`admin`):
//! on file change (watched with `notify`, debounced), on `SIGHUP` and on
//! `POST /_tokengate/reload`.
//!
//! A reload builds and validates the new state on the side and swaps it in
//! atomically; a request keeps the policy snapshot it started with. A file
//! that does not load leaves the old policy serving, and its problems are
//! logged with their key paths and kept for `/_tokengate/status`. Config keys
//! that cannot change live are reported as needing a restart.

use crate::config::{AdminConfig, Config, ConfigError, ConfigProblem};
use crate::gateway::Gateway;
use crate::policy::{Policy, PolicyError};
use crate::store::Timestamp;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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

/// The reloadable state next to [`Gateway::policy`]: the admin settings,
/// the status shown at `/_tokengate/status`, and the lock that keeps
/// reloads from racing each other.
pub struct LiveState {
    admin: ArcSwap<AdminConfig>,
    status: Mutex<Status>,
    serial: Mutex<()>,
}

impl LiveState {
    pub fn new(config: &Config, policy: &Policy) -> Self {
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
        }
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

/// Reloads the config file (when the gateway was built from one) and the
/// policy file, and swaps them in. Reloads are serialized.
pub fn reload(gateway: &Gateway) -> Result<ReloadReport, ReloadError> {
    let live = &gateway.live;
    let _serial = live.serial.lock().unwrap_or_else(PoisonError::into_inner);
    let attempt = Timestamp::now().to_rfc3339();
    let result = build_next(gateway).map(|(policy, admin, restart_required)| {
        let previous = gateway.policy.load_full();
        let report = ReloadReport {
            changed: previous.source_hash != policy.source_hash,
            sha256: policy.source_hash.clone(),
            previous_sha256: previous.source_hash.clone(),
            rules: policy.rules.len(),
            restart_required,
            warnings: policy.lint().iter().map(ToString::to_string).collect(),
        };
        if report.changed {
            gateway.policy.store(Arc::new(policy));
        }
        live.admin.store(Arc::new(admin));
        report
    });
    let mut status = live.status.lock().unwrap_or_else(PoisonError::into_inner);
    status.last_attempt_at = Some(attempt.clone());
    gateway.metrics.reload(result.is_ok());
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

type Next = (Policy, AdminConfig, Vec<&'static str>);

fn build_next(gateway: &Gateway) -> Result<Next, ReloadError> {
    let (admin, restart_required) = match &gateway.config.source {
        Some(path) => {
            let newer = Config::load(path)?;
            let restart = gateway.config.restart_required(&newer);
            (newer.admin, restart)
        }
        None => ((*gateway.live.admin()).clone(), Vec::new()),
    };
    let policy = Policy::load(&gateway.config.policy_file)?;
    Ok((policy, admin, restart_required))
}

/// Runs [`reload`] on a blocking thread (it reads files).
pub async fn reload_async(gateway: Arc<Gateway>) -> Result<ReloadReport, ReloadError> {
    match tokio::task::spawn_blocking(move || reload(&gateway)).await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Watches the policy file (and the config file) for changes. Dropping it
/// stops watching.
pub struct FileWatch {
    _watcher: notify::PollWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How often the watched files are checked for changes.
const WATCH_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long the files must stay unchanged before a reload: two polls. A
/// writer that is still writing when a poll sees the file changes it again
/// before the next poll, which postpones the reload; with a debounce shorter
/// than the poll interval, a half-written policy that happens to be valid
/// (truncated between two rules, say) could be loaded for a moment.
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(1000);

/// Starts watching the policy and config files and reloads once changes have
/// been quiet for `debounce`.
///
/// The files are polled (`stat` and a content hash every
/// [`WATCH_POLL_INTERVAL`]), not watched with inotify: an inotify watch must
/// be on the folder to survive editors and config managers that replace the
/// file, and then every write to any file in that folder (a log file next to
/// the config, say) wakes the watcher — once per request under load. A
/// path-based poll follows replacements and symlink swaps (a Kubernetes
/// ConfigMap's `..data`) and costs two `stat`s per interval.
pub fn watch_files(gateway: Arc<Gateway>, debounce: Duration) -> Result<FileWatch, notify::Error> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let mut files: Vec<PathBuf> = vec![gateway.config.policy_file.clone()];
    files.extend(gateway.config.source.clone());
    files.dedup();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let config = notify::Config::default()
        .with_poll_interval(WATCH_POLL_INTERVAL)
        .with_compare_contents(true);
    let mut watcher = notify::PollWatcher::new(
        move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            // A newer mtime, other contents, a file created or removed.
            if matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
            ) {
                let _ = tx.send(());
            }
        },
        config,
    )?;
    for file in &files {
        watcher.watch(file, RecursiveMode::NonRecursive)?;
    }
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            tracing::info!("policy or config file changed; reloading");
            let _ = reload_async(gateway.clone()).await;
        }
    });
    Ok(FileWatch {
        _watcher: watcher,
        task,
    })
}

/// Reloads on every `SIGHUP` until the process ends.
#[cfg(unix)]
pub fn reload_on_sighup(gateway: Arc<Gateway>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading");
            let _ = reload_async(gateway.clone()).await;
        }
    }))
}
