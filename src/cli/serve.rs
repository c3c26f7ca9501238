//! `tokengate serve`: the gateway with a config file, or `--dev` with
//! nothing installed; reload on file change and SIGHUP (the policy, and the
//! listener's certificate when `tls` is set); graceful drain on SIGTERM
//! (see [`drain_on`]).

use super::load_config;
use crate::gateway::Gateway;
use crate::observe::log_writer;
use crate::observe::trace::SpanExport;
use crate::runtime::{listener, reload, tls, workers};
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
    // The certificate was checked with the config; read it again now.
    let protocols = listener::Protocols::load(&gateway.config)
        .map_err(|err| anyhow::anyhow!("{}: {err}", err.config_key()))?;
    let _certificate_reloads = match protocols.tls() {
        Some(server_tls) => Some(certificate_reloads(server_tls, &gateway.config)?),
        None => None,
    };
    let reuse_port = gateway.config.listen_reuse_port;
    let listeners = listener::bind_workers(listen, reuse_port, gateway.config.workers).with_context(|| {
        format!(
            "listen: cannot bind {listen}{}",
            if reuse_port {
                ""
            } else {
                " (to start a new tokengate while the old one drains, set listen_reuse_port: true in both)"
            }
        )
    })?;
    let scheme = if protocols.tls().is_some() {
        "https"
    } else {
        "http"
    };
    let http2 = gateway.config.http2 || gateway.config.http2_cleartext;
    let address = match listeners.first() {
        Some(first) => first.local_addr()?,
        None => anyhow::bail!("listen: no socket bound on {listen}"),
    };
    tracing::info!(%address, scheme, http2, workers = gateway.config.workers, reuse_port, sockets = listeners.len(), "tokengate listening");
    let (drained, grace) = drain_on(shutdown, &gateway);
    workers::serve(listeners, gateway, Arc::new(protocols), drained, grace).await?;
    tracing::info!("tokengate stopped");
    Ok(())
}

/// What reloads the listener's certificate; dropping it stops the watch.
struct CertificateReloads {
    _watch: Option<reload::FileWatch>,
    #[cfg(unix)]
    _hangup: tokio::task::JoinHandle<()>,
}

/// Logs the certificate the listener serves and starts what reloads it:
/// `SIGHUP`, and a change of its files unless `tls.watch` is false.
fn certificate_reloads(
    server_tls: &Arc<crate::tls::ServerTls>,
    config: &crate::config::Config,
) -> Result<CertificateReloads> {
    tls::log_serving(&server_tls.certificate());
    #[cfg(unix)]
    let hangup = tls::reload_on_sighup(server_tls.clone()).context("cannot handle SIGHUP")?;
    let watch = if config.tls.as_ref().is_some_and(|files| files.watch) {
        tls::watch_certificate(server_tls.clone(), reload::WATCH_DEBOUNCE)
            .inspect_err(|err| {
                tracing::error!(error = %err, "cannot watch the TLS certificate files; reload them with SIGHUP")
            })
            .ok()
    } else {
        None
    };
    Ok(CertificateReloads {
        _watch: watch,
        #[cfg(unix)]
        _hangup: hangup,
    })
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
    let protocols = Arc::new(listener::Protocols::new(&dev.gateway.config, None));
    let served = workers::serve(
        vec![listener.into_std()?],
        dev.gateway.clone(),
        protocols,
        drained,
        grace,
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
