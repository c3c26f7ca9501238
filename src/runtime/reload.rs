//! What triggers a reload of the policy and config files while serving: a
//! change of either file (polled) and `SIGHUP`. The reload itself is
//! [`crate::live::LiveState::reload`]. The listener's certificate is
//! watched the same way ([`watch_paths`], used by [`super::tls`]).

use crate::gateway::Gateway;
use crate::live::{ReloadError, ReloadReport};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Runs [`Gateway::reload`] on a blocking thread (it reads files).
pub async fn reload_async(gateway: Arc<Gateway>) -> Result<ReloadReport, ReloadError> {
    match tokio::task::spawn_blocking(move || gateway.reload()).await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Watches files for changes (the policy and config files, the
/// certificate). Dropping it stops watching.
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
    let mut files: Vec<PathBuf> = vec![gateway.config.policy_file.clone()];
    files.extend(gateway.config.source.clone());
    files.dedup();
    watch_paths(&files, debounce, move || {
        let gateway = gateway.clone();
        async move {
            tracing::info!("policy or config file changed; reloading");
            let _ = reload_async(gateway).await;
        }
    })
}

/// Polls `files` (see [`watch_files`] for why polling) and runs
/// `on_change` once their changes have been quiet for `debounce`.
pub fn watch_paths<F, Fut>(
    files: &[PathBuf],
    debounce: Duration,
    on_change: F,
) -> Result<FileWatch, notify::Error>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use notify::{EventKind, RecursiveMode, Watcher};
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
    for file in files {
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
            on_change().await;
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
