//! Reading the listener's certificate chain and private key from PEM files
//! and checking that they go together.
//!
//! * The certificate file holds the server's own certificate first, then
//!   its intermediates (what `cert-manager`, `certbot`'s `fullchain.pem`
//!   and a `kubernetes.io/tls` Secret's `tls.crt` hold).
//! * The key file holds one private key: PKCS#8 (`BEGIN PRIVATE KEY`),
//!   PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`); RSA,
//!   ECDSA P-256/P-384 and Ed25519 keys are supported.
//! * The key must be the first certificate's key.
//!
//! Errors name the file and what is wrong; they never quote the key file's
//! contents.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;

/// Which of the two files a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Certificate,
    Key,
}

impl TlsFile {
    /// The config key that names this file.
    pub fn config_key(self) -> &'static str {
        match self {
            TlsFile::Certificate => "tls.cert_file",
            TlsFile::Key => "tls.key_file",
        }
    }
}

/// Why a certificate and key could not be used. The old ones (if any) keep
/// serving.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot read {} ({source})", path.display())]
    Read {
        file: TlsFile,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid PEM; give the certificate chain as -----BEGIN CERTIFICATE----- blocks", path.display())]
    CertificateNotPem { path: PathBuf },
    #[error("{} holds no certificate; give the server's certificate (-----BEGIN CERTIFICATE-----), then its intermediates", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no private key in PEM form; give one PKCS#8 (BEGIN PRIVATE KEY), PKCS#1 (BEGIN RSA PRIVATE KEY) or SEC1 (BEGIN EC PRIVATE KEY) key", path.display())]
    NoKey { path: PathBuf },
    #[error("the private key in {} cannot be used for TLS; use an RSA (2048 bits or more), ECDSA P-256 or P-384, or Ed25519 key", path.display())]
    UnsupportedKey { path: PathBuf },
    #[error("the first certificate in {} cannot be read ({reason})", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("the private key in {} is not the key of the first certificate in {}; the certificate file must start with the server's own certificate", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

impl CertificateError {
    /// The config key whose file is at fault (`tls.cert_file` or
    /// `tls.key_file`; `tls` when they do not go together).
    pub fn config_key(&self) -> &'static str {
        match self {
            CertificateError::Read { file, .. } => file.config_key(),
            CertificateError::CertificateNotPem { .. }
            | CertificateError::NoCertificate { .. }
            | CertificateError::BadCertificate { .. } => TlsFile::Certificate.config_key(),
            CertificateError::NoKey { .. } | CertificateError::UnsupportedKey { .. } => {
                TlsFile::Key.config_key()
            }
            CertificateError::Mismatch { .. } => "tls",
        }
    }
}

/// What is known about a loaded certificate; safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// SHA-256 of the server's certificate (DER), lower-case hex: what
    /// `openssl x509 -noout -fingerprint -sha256` prints, without colons.
    pub sha256: String,
    /// Certificates in the chain, the server's own included.
    pub chain_length: usize,
    /// The server certificate's validity, when it could be read.
    pub not_before: Option<OffsetDateTime>,
    pub not_after: Option<OffsetDateTime>,
}

impl CertificateInfo {
    /// True when `now` is outside the certificate's validity: clients that
    /// verify will refuse it.
    pub fn is_outside_validity(&self, now: OffsetDateTime) -> bool {
        self.not_before.is_some_and(|t| now < t) || self.not_after.is_some_and(|t| now > t)
    }

    /// `not_after` as RFC 3339, or `unknown`.
    pub fn not_after_text(&self) -> String {
        self.not_after
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// A certificate chain with its key, ready for rustls, and what is known
/// about it.
#[derive(Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub info: CertificateInfo,
    /// SHA-256 over both files' bytes: tells whether a reload changed them.
    pub(crate) files_digest: [u8; 32],
}

impl std::fmt::Debug for Loaded {
    /// The certificate's facts only: never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("info", &self.info).finish()
    }
}

/// Reads `cert_file` and `key_file` and checks them (see the module docs).
pub fn load(cert_file: &Path, key_file: &Path) -> Result<Loaded, CertificateError> {
    let read = |file: TlsFile, path: &Path| {
        std::fs::read(path).map_err(|source| CertificateError::Read {
            file,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(TlsFile::Certificate, cert_file)?;
    let key_pem = read(TlsFile::Key, key_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CertificateError::CertificateNotPem {
            path: cert_file.to_owned(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertificateError::NoCertificate {
            path: cert_file.to_owned(),
        });
    };
    let info = CertificateInfo {
        sha256: hex(&Sha256::digest(leaf.as_ref())),
        chain_length: chain.len(),
        not_before: validity(leaf.as_ref()).map(|(from, _)| from),
        not_after: validity(leaf.as_ref()).map(|(_, until)| until),
    };
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        // Every PEM error is reported the same way: its text could quote
        // a line of the key file.
        Err(_) => {
            return Err(CertificateError::NoKey {
                path: key_file.to_owned(),
            })
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider.key_provider.load_private_key(key).map_err(|_| {
        CertificateError::UnsupportedKey {
            path: key_file.to_owned(),
        }
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(CertificateError::Mismatch {
                cert: cert_file.to_owned(),
                key: key_file.to_owned(),
            })
        }
        // rustls cannot tell for this kind of key: the handshake will.
        Err(rustls::Error::InconsistentKeys(_)) => {}
        Err(err) => {
            return Err(CertificateError::BadCertificate {
                path: cert_file.to_owned(),
                reason: err.to_string(),
            })
        }
    }
    let mut digest = Sha256::new();
    digest.update(&cert_pem);
    digest.update(&key_pem);
    Ok(Loaded {
        key: Arc::new(certified),
        info,
        files_digest: digest.finalize().into(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `notBefore` and `notAfter` of a DER X.509 certificate, read with a
/// minimal DER walk (`Certificate → tbsCertificate → validity`); `None`
/// when the certificate does not have that shape.
fn validity(der: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let (tag, certificate, _) = tlv(der)?;
    expect(tag, 0x30)?;
    let (tag, tbs, _) = tlv(certificate)?;
    expect(tag, 0x30)?;
    let mut rest = tbs;
    // version: [0] EXPLICIT, optional.
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xA0 {
        rest = after;
    }
    // serialNumber, signature, issuer.
    for wanted in [0x02, 0x30, 0x30] {
        let (tag, _, after) = tlv(rest)?;
        expect(tag, wanted)?;
        rest = after;
    }
    let (tag, validity, _) = tlv(rest)?;
    expect(tag, 0x30)?;
    let (from_tag, from, after) = tlv(validity)?;
    let (until_tag, until, _) = tlv(after)?;
    Some((asn1_time(from_tag, from)?, asn1_time(until_tag, until)?))
}

fn expect(tag: u8, wanted: u8) -> Option<()> {
    (tag == wanted).then_some(())
}

/// One DER tag-length-value: (tag, value, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (value, rest) = rest.split_at(length);
    Some((tag, value, rest))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn asn1_time(tag: u8, bytes: &[u8]) -> Option<OffsetDateTime> {
    if !bytes
        .iter()
        .take(bytes.len().saturating_sub(1))
        .all(u8::is_ascii_digit)
    {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let (year, rest) = match tag {
        0x17 => {
            let short: i32 = text.get(0..2)?.parse().ok()?;
            (
                if short >= 50 {
                    1900 + short
                } else {
                    2000 + short
                },
                text.get(2..)?,
            )
        }
        0x18 => (text.get(0..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    if rest.len() != 11 || !rest.ends_with('Z') {
        return None;
    }
    let number = |at: usize| rest.get(at..at + 2)?.parse::<u8>().ok();
    let month = time::Month::try_from(number(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, number(2)?).ok()?;
    let clock = time::Time::from_hms(number(4)?, number(6)?, number(8)?).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.path(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    /// A self-signed certificate for `localhost` valid from 2020 to 2040,
    /// and its key, as PEM.
    fn self_signed() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2040, 3, 4);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    #[test]
    fn a_certificate_and_its_key_load_with_their_facts() {
        let files = files();
        let (cert, key) = self_signed();
        let loaded = load(&files.write("c.pem", &cert), &files.write("k.pem", &key)).unwrap();
        assert_eq!(loaded.info.chain_length, 1);
        assert_eq!(loaded.info.sha256.len(), 64);
        let year = |t: Option<OffsetDateTime>| t.unwrap().year();
        assert_eq!(year(loaded.info.not_before), 2020);
        assert_eq!(year(loaded.info.not_after), 2040);
        assert_eq!(loaded.info.not_after_text(), "2040-03-04T00:00:00Z");
        assert!(!loaded
            .info
            .is_outside_validity(time::macros::datetime!(2030-01-01 0:00 UTC)));
        assert!(loaded
            .info
            .is_outside_validity(time::macros::datetime!(2041-01-01 0:00 UTC)));
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[test]
    fn each_bad_file_is_named_with_its_key_and_the_key_is_never_quoted() {
        let files = files();
        let (cert, key) = self_signed();
        let (other_cert, _) = self_signed();
        let cert_path = files.write("c.pem", &cert);
        let key_path = files.write("k.pem", &key);
        let cases: Vec<(PathBuf, PathBuf, &str)> = vec![
            (files.path("missing.pem"), key_path.clone(), "tls.cert_file"),
            (cert_path.clone(), files.path("missing.key"), "tls.key_file"),
            (
                files.write("empty.pem", ""),
                key_path.clone(),
                "tls.cert_file",
            ),
            (
                files.write(
                    "garbage.pem",
                    "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                ),
                key_path.clone(),
                "tls.cert_file",
            ),
            (
                cert_path.clone(),
                files.write("nokey.pem", &cert),
                "tls.key_file",
            ),
            (
                cert_path.clone(),
                files.write(
                    "badkey.pem",
                    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                ),
                "tls.key_file",
            ),
            (
                files.write("other.pem", &other_cert),
                key_path.clone(),
                "tls",
            ),
        ];
        for (cert_file, key_file, wanted) in cases {
            let err = load(&cert_file, &key_file).expect_err(wanted);
            assert_eq!(err.config_key(), wanted, "{err}");
            let text = err.to_string();
            assert!(!text.contains(key.lines().nth(1).unwrap()), "{text}");
        }
    }

    #[test]
    fn der_times_are_read_in_both_forms_and_garbage_is_none() {
        assert_eq!(
            asn1_time(0x17, b"491231235959Z"),
            Some(time::macros::datetime!(2049-12-31 23:59:59 UTC))
        );
        assert_eq!(
            asn1_time(0x17, b"500101000000Z"),
            Some(time::macros::datetime!(1950-01-01 0:00 UTC))
        );
        assert_eq!(
            asn1_time(0x18, b"21000101000000Z"),
            Some(time::macros::datetime!(2100-01-01 0:00 UTC))
        );
        for bad in [&b"4912312359Z"[..], b"491331235959Z", b"49123123595+Z", b""] {
            assert_eq!(asn1_time(0x17, bad), None, "{bad:?}");
        }
        assert_eq!(validity(b"\x30\x82\xff"), None);
        assert_eq!(validity(b""), None);
    }
}
