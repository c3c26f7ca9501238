//! [`ServerTls`]: the rustls server configuration of the listener, with a
//! certificate that [`ServerTls::reload`] replaces while serving.
//!
//! * Protocol versions: TLS 1.3 and TLS 1.2 only (rustls has nothing older).
//! * Cipher suites: rustls's defaults with the `ring` provider, all AEAD
//!   with forward secrecy: TLS 1.3 `AES_256_GCM_SHA384`,
//!   `AES_128_GCM_SHA256`, `CHACHA20_POLY1305_SHA256`; TLS 1.2
//!   `ECDHE_{ECDSA,RSA}_WITH_{AES_256_GCM,AES_128_GCM,CHACHA20_POLY1305}`.
//! * ALPN: `h2` then `http/1.1` when HTTP/2 is on, else `http/1.1` only. A
//!   client that offers neither gets no ALPN answer and speaks HTTP/1.1.
//! * Client certificates are not asked for.
//!
//! The certificate is picked per handshake from a swappable slot: a reload
//! that succeeds swaps the slot, and every handshake that starts afterwards
//! gets the new certificate; connections already open are not touched. A
//! reload that fails leaves the slot as it was.

use super::certificate::{self, CertificateError, CertificateInfo, Loaded};
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The listener's TLS: its rustls configuration and current certificate.
pub struct ServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: Arc<CurrentCertificate>,
    acceptor: tokio_rustls::TlsAcceptor,
    /// One reload at a time (a file change and a SIGHUP at once).
    reloading: Mutex<()>,
}

/// What a successful [`ServerTls::reload`] did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// False when the files' bytes had not changed (nothing swapped).
    pub changed: bool,
    /// The certificate serving now.
    pub info: CertificateInfo,
}

impl ServerTls {
    /// Reads and checks the certificate and key, and builds the server
    /// configuration; `http2` offers `h2` with ALPN.
    pub fn load(cert_file: &Path, key_file: &Path, http2: bool) -> Result<Self, CertificateError> {
        let loaded = certificate::load(cert_file, key_file)?;
        let current = Arc::new(CurrentCertificate {
            loaded: ArcSwap::from_pointee(loaded),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = if http2 {
            vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
        } else {
            vec![ALPN_HTTP11.to_vec()]
        };
        Ok(ServerTls {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            reloading: Mutex::new(()),
        })
    }

    /// Accepts TLS connections with the current certificate.
    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// The certificate and key files.
    pub fn files(&self) -> [&Path; 2] {
        [&self.cert_file, &self.key_file]
    }

    /// The certificate serving now.
    pub fn certificate(&self) -> CertificateInfo {
        self.current.loaded.load().info.clone()
    }

    /// Reads the files again; when they load and differ from the serving
    /// ones, new handshakes use them from now on. On an error nothing
    /// changes. Reads files: call it off the async threads.
    pub fn reload(&self) -> Result<Reloaded, CertificateError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let loaded = certificate::load(&self.cert_file, &self.key_file)?;
        let changed = loaded.files_digest != self.current.loaded.load().files_digest;
        let info = loaded.info.clone();
        if changed {
            self.current.loaded.store(Arc::new(loaded));
        }
        Ok(Reloaded { changed, info })
    }
}

/// The slot the handshakes take their certificate from.
struct CurrentCertificate {
    loaded: ArcSwap<Loaded>,
}

impl std::fmt::Debug for CurrentCertificate {
    /// The certificate's facts only: never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentCertificate")
            .field("info", &self.loaded.load().info)
            .finish()
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.loaded.load().key.clone())
    }
}
