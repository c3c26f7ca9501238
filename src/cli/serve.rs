//! `tokengate serve`: the gateway with a config file, or `--dev` with
//! nothing installed; reload on file change and SIGHUP; graceful shutdown.

use super::load_config;
use crate::gateway::Gateway;
use crate::observe::log_writer;
use crate::observe::trace::SpanExport;
use crate::runtime::{reload, workers};
use anyhow::{Context, Result};
use std::time::Duration;

pub(super) async fn serve(
    path: &std::path::Path,
    listen: Option<std::net::SocketAddr>,
) -> Result<()> {
    let mut config = load_config(path)?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let spans = SpanExport::start(&config.tracing)?;
    let _log_guard = log_writer::init(&config.log, spans);
    // Before anything listens: a SIGTERM from now on drains and exits cleanly.
    let shutdown = shutdown_signal().context("cannot handle SIGTERM and SIGINT")?;
    let listen = config.listen;
    let gateway = Gateway::build(config)?;
    let _watch = if gateway.config.policy_watch {
        reload::watch_files(gateway.clone(), reload::WATCH_DEBOUNCE)
            .inspect_err(|err| {
                tracing::error!(error = %err, "cannot watch the policy file; reload with SIGHUP or POST /_tokengate/reload")
            })
            .ok()
    } else {
        None
    };
    #[cfg(unix)]
    let _hangup = reload::reload_on_sighup(gateway.clone()).context("cannot handle SIGHUP")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen: cannot bind {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, workers = gateway.config.workers, "tokengate listening");
    workers::serve(
        listener.into_std()?,
        gateway,
        shutdown,
        Duration::from_secs(30),
    )
    .await?;
    tracing::info!("tokengate stopped");
    Ok(())
}

pub(super) async fn serve_dev(listen: Option<std::net::SocketAddr>) -> Result<()> {
    let _log_guard = log_writer::init(
        &crate::config::LogConfig {
            level: "info".into(),
            format: crate::config::LogFormat::Text,
        },
        None,
    );
    let shutdown = shutdown_signal().context("cannot handle SIGTERM and SIGINT")?;
    let dev = crate::dev::prepare().await.context("--dev")?;
    let wanted = listen.unwrap_or(dev.gateway.config.listen);
    let listener = match tokio::net::TcpListener::bind(wanted).await {
        Ok(listener) => listener,
        // Without an explicit --listen, a busy default port is not fatal in dev mode.
        Err(err) if listen.is_none() => {
            tracing::warn!(address = %wanted, error = %err, "default port busy; using a free one");
            tokio::net::TcpListener::bind("127.0.0.1:0").await?
        }
        Err(err) => return Err(err).with_context(|| format!("--listen: cannot bind {wanted}")),
    };
    let address = listener.local_addr()?;
    // A closed stdout (e.g. piped into `head`) must not stop the gateway.
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(dev.banner(address).as_bytes());
        let _ = stdout.flush();
    }
    tracing::info!(%address, workers = dev.gateway.config.workers, "tokengate (dev mode) listening");
    let served = workers::serve(
        listener.into_std()?,
        dev.gateway.clone(),
        shutdown,
        Duration::from_secs(5),
    )
    .await;
    drop(dev);
    Ok(served?)
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). The handlers are
/// installed now, not when the future is first polled, so a signal that
/// arrives while the listener and workers start is not fatal.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutdown requested; draining connections");
    })
}

/// A future that completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; draining connections");
    })
}
