//! The listener's TLS, without gateway types: the certificate chain and
//! private key read from PEM files and checked ([`certificate`]), and the
//! rustls server configuration that serves them ([`server`]) — TLS 1.2 and
//! 1.3 only, ALPN `h2` and `http/1.1`, and a certificate that can be
//! replaced while serving: new handshakes use the new one, open connections
//! keep the one they were made with.
//!
//! The config uses [`certificate::load`] to check the files that
//! `tls.cert_file` and `tls.key_file` name when a config is loaded; when
//! the files are read again (a change, `SIGHUP`) is decided by
//! `runtime::tls`. Key material is never logged or put in an error: errors
//! name the file and what is wrong with it.

pub mod certificate;
pub mod server;

pub use certificate::{CertificateError, CertificateInfo, TlsFile};
pub use server::{Reloaded, ServerTls};
