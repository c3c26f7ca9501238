//! The listener's TLS while serving: each connection's handshake (within
//! `limits.header_read_timeout_ms`), and what reloads the certificate — a
//! change of its files (polled like the policy file, [`watch_certificate`])
//! and `SIGHUP` ([`reload_on_sighup`]). A reload that fails is logged with
//! the config key of the file at fault, and the previous certificate keeps
//! serving; one that succeeds is used by every handshake from then on,
//! while open connections keep theirs. The certificate and the rustls
//! configuration themselves are [`crate::tls`].

use super::reload::{watch_paths, FileWatch};
use crate::tls::{CertificateError, CertificateInfo, Reloaded, ServerTls};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Why a connection's handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the TLS handshake did not finish within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the TLS handshake failed: {0}")]
    Failed(#[source] std::io::Error),
}

/// Completes the server side of a TLS handshake within `within`.
pub async fn handshake(
    tls: &ServerTls,
    stream: TcpStream,
    within: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    match tokio::time::timeout(within, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(HandshakeError::Failed(err)),
        Err(_) => Err(HandshakeError::Timeout(within)),
    }
}

/// Logs the certificate the listener serves (at start), with a warning
/// when it is outside its validity.
pub fn log_serving(info: &CertificateInfo) {
    tracing::info!(
        sha256 = %info.sha256,
        not_after = %info.not_after_text(),
        chain_length = info.chain_length,
        "TLS certificate loaded"
    );
    warn_if_invalid(info);
}

fn warn_if_invalid(info: &CertificateInfo) {
    if info.is_outside_validity(time::OffsetDateTime::now_utc()) {
        tracing::warn!(
            sha256 = %info.sha256,
            not_after = %info.not_after_text(),
            "the TLS certificate is expired or not yet valid: clients that verify it will refuse the connection"
        );
    }
}

/// Reads the certificate files again (on a blocking thread) and logs what
/// happened; on an error the previous certificate keeps serving.
pub async fn reload_certificate(tls: Arc<ServerTls>) -> Result<Reloaded, CertificateError> {
    let reloaded = match tokio::task::spawn_blocking(move || tls.reload()).await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    };
    match &reloaded {
        Ok(Reloaded {
            changed: true,
            info,
        }) => {
            tracing::info!(
                sha256 = %info.sha256,
                not_after = %info.not_after_text(),
                chain_length = info.chain_length,
                "TLS certificate reloaded; new handshakes use it"
            );
            warn_if_invalid(info);
        }
        Ok(Reloaded { changed: false, .. }) => {
            tracing::debug!("TLS certificate files unchanged");
        }
        Err(err) => tracing::error!(
            key = err.config_key(),
            error = %err,
            "TLS certificate not reloaded; the previous one keeps serving"
        ),
    }
    reloaded
}

/// Watches the certificate and key files and reloads them once their
/// changes have been quiet for `debounce` (a certificate and its key are
/// often written one after the other). Dropping it stops watching.
pub fn watch_certificate(
    tls: Arc<ServerTls>,
    debounce: Duration,
) -> Result<FileWatch, notify::Error> {
    let files: Vec<PathBuf> = tls.files().iter().map(|path| path.to_path_buf()).collect();
    watch_paths(&files, debounce, move || {
        let tls = tls.clone();
        async move {
            tracing::info!("TLS certificate or key file changed; reloading them");
            let _ = reload_certificate(tls).await;
        }
    })
}

/// Reloads the certificate on every `SIGHUP` until the process ends.
#[cfg(unix)]
pub fn reload_on_sighup(tls: Arc<ServerTls>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading the TLS certificate");
            let _ = reload_certificate(tls.clone()).await;
        }
    }))
}
