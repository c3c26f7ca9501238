//! `tokengate serve`: the gateway with a config file, or `--dev` with
//! nothing installed; reload on file change and SIGHUP; graceful drain on
//! SIGTERM (see [`drain_on`]).

use super::load_config;
use crate::gateway::Gateway;
use crate::observe::log_writer;
use crate::observe::trace::SpanExport;
use crate::runtime::{listener, reload, workers};
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;

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
    let reuse_port = gateway.config.listen_reuse_port;
    let listener = listener::bind(listen, reuse_port).with_context(|| {
        format!(
            "listen: cannot bind {listen}{}",
            if reuse_port {
                ""
            } else {
                " (to start a new tokengate while the old one drains, set listen_reuse_port: true in both)"
            }
        )
    })?;
    tracing::info!(address = %listener.local_addr()?, workers = gateway.config.workers, reuse_port, "tokengate listening");
    let (drained, grace) = drain_on(shutdown, &gateway);
    workers::serve(listener, gateway, drained, grace).await?;
    tracing::info!("tokengate stopped");
    Ok(())
}

/// The graceful drain, as load balancers and Kubernetes expect: when
/// `signal` completes, `/_tokengate/ready` answers 503 at once and serving
/// goes on for `shutdown.drain_delay_ms`; then the returned future
/// completes, and the workers stop accepting and drain their connections
/// within the returned time, so that the process exits within
/// `shutdown.grace_period_ms` of the signal.
fn drain_on(
    signal: impl Future<Output = ()>,
    gateway: &Arc<Gateway>,
) -> (impl Future<Output = ()>, std::time::Duration) {
    let gateway = gateway.clone();
    let shutdown = gateway.config.shutdown;
    let drained = async move {
        signal.await;
        gateway.live.start_draining();
        if !shutdown.drain_delay.is_zero() {
            tracing::info!(
                drain_delay_ms = shutdown.drain_delay.as_millis() as u64,
                "draining: /_tokengate/ready answers 503; the listener closes after the drain delay"
            );
            tokio::time::sleep(shutdown.drain_delay).await;
        }
    };
    (
        drained,
        shutdown.grace_period.saturating_sub(shutdown.drain_delay),
    )
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
    let (drained, grace) = drain_on(shutdown, &dev.gateway);
    let served = workers::serve(listener.into_std()?, dev.gateway.clone(), drained, grace).await;
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
