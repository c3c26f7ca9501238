//! TLS to an `https://` upstream (`upstream.tls`): which certificate
//! authorities are trusted, and the client certificate for mTLS. The files
//! are read and checked here, when the config loads, so a bad file is a
//! config problem naming its key and the fix, and the gateway never starts
//! with TLS it cannot use.
//!
//! Trust: the operating system's store (`rustls-native-certs`: the same
//! roots as curl and the system's OpenSSL, updated with the OS, honouring
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`), or, when `ca_file` is set, only the CA
//! certificates of that PEM bundle. A private upstream is usually signed by
//! a private CA; trusting the public web PKI as well would only widen who
//! could impersonate it.
//!
//! Nothing here prints a key: errors name the file, never its contents, and
//! [`UpstreamTls`]'s `Debug` shows paths only.

use super::raw::RawUpstreamTls;
use super::validate::Problems;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Validated TLS settings of an `https://` upstream, with the rustls client
/// config built from them.
#[derive(Clone)]
pub struct UpstreamTls {
    /// `upstream.tls.ca_file`; `None`: the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// `upstream.tls.client_cert_file` and `client_key_file`, for mTLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Sent as SNI (a DNS name) and checked against the certificate.
    server_name: ServerName<'static>,
    /// SHA-256 of the files read, so that a reload notices changed files.
    files_digest: [u8; 32],
    client_config: Arc<ClientConfig>,
}

impl UpstreamTls {
    /// The rustls client config: TLS 1.2 and 1.3, ALPN `http/1.1`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client_config.clone()
    }

    /// The name the certificate must be valid for: the URL's host.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.ca_file == other.ca_file
            && self.client_cert_file == other.client_cert_file
            && self.client_key_file == other.client_key_file
            && self.server_name == other.server_name
            && self.files_digest == other.files_digest
    }
}

/// The `upstream.tls` section for an upstream at `host`; `None` (with the
/// problems recorded) when it cannot be used. Relative paths resolve
/// against `base_dir`.
pub(super) fn validate(
    raw: RawUpstreamTls,
    host: &str,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<UpstreamTls> {
    let mut files = Files {
        base_dir,
        digest: Sha256::new(),
        unusable: false,
    };
    let cert_given = raw.client_cert_file.is_some();
    let key_given = raw.client_key_file.is_some();
    let ca = files.read("upstream.tls.ca_file", raw.ca_file, problems);
    let cert = files.read(
        "upstream.tls.client_cert_file",
        raw.client_cert_file,
        problems,
    );
    let key = files.read(
        "upstream.tls.client_key_file",
        raw.client_key_file,
        problems,
    );
    match (cert_given, key_given) {
        (true, false) => problems.push(
            "upstream.tls.client_key_file",
            "is missing; client_cert_file needs the private key it was issued for (PEM)",
        ),
        (false, true) => problems.push(
            "upstream.tls.client_cert_file",
            "is missing; client_key_file needs its certificate (PEM), or remove client_key_file",
        ),
        _ => {}
    }
    let server_name = server_name(host, problems);
    let roots = match &ca {
        Some(ca) => ca_roots(ca, problems),
        None if files.unusable => None,
        None => system_roots(problems),
    };
    let identity = match (&cert, &key) {
        (Some(cert), Some(key)) => client_identity(cert, key, problems),
        _ if !cert_given && !key_given => Some(None),
        _ => None,
    };
    let (Some(server_name), Some(roots), Some(identity)) = (server_name, roots, identity) else {
        return None;
    };
    if files.unusable {
        return None;
    }
    let client_config = client_config(roots, identity, problems)?;
    Some(UpstreamTls {
        ca_file: ca.map(|file| file.path),
        client_cert_file: cert.map(|file| file.path),
        client_key_file: key.map(|file| file.path),
        server_name,
        files_digest: files.digest.finalize().into(),
        client_config: Arc::new(client_config),
    })
}

/// A file named by a key, read whole.
struct File {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// Reads the files of `upstream.tls`, digesting what it reads.
struct Files<'a> {
    base_dir: &'a Path,
    digest: Sha256,
    /// A key named a file that could not be read.
    unusable: bool,
}

impl Files<'_> {
    fn read(&mut self, key: &str, file: Option<String>, problems: &mut Problems) -> Option<File> {
        let file = file?;
        if file.trim().is_empty() {
            problems.push(
                key,
                "is empty; give the path of a PEM file, or remove the key",
            );
            self.unusable = true;
            return None;
        }
        let path = self.base_dir.join(file);
        match std::fs::read(&path) {
            Ok(bytes) => {
                self.digest.update(&bytes);
                Some(File { path, bytes })
            }
            Err(err) => {
                problems.push(
                    key,
                    format!(
                        "cannot read {} ({err}); give a readable PEM file (a relative path is relative to this config file)",
                        path.display()
                    ),
                );
                self.unusable = true;
                None
            }
        }
    }
}

/// The crypto rustls uses for the upstream: ring, named explicitly so that
/// no process-wide default has to be installed (or can be ambiguous).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_name(host: &str, problems: &mut Problems) -> Option<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match ServerName::try_from(bare.to_owned()) {
        Ok(name) => Some(name),
        Err(_) => {
            problems.push(
                "upstream.url",
                format!("`{host}` is neither a DNS name nor an IP address a certificate can be checked against; use the name the upstream's certificate is issued for"),
            );
            None
        }
    }
}

/// The certificates of a PEM file; `None` when it holds none or is not PEM.
fn certificates(file: &File) -> Option<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(&file.bytes)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|certs| !certs.is_empty())
}

fn ca_roots(ca: &File, problems: &mut Problems) -> Option<RootCertStore> {
    let key = "upstream.tls.ca_file";
    let Some(certs) = certificates(ca) else {
        problems.push(
            key,
            format!("{} holds no PEM certificate; give the CA certificates that sign the upstream's certificate, each as -----BEGIN CERTIFICATE-----", ca.path.display()),
        );
        return None;
    };
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        if let Err(err) = roots.add(cert) {
            problems.push(
                key,
                format!(
                    "certificate {} in {} cannot be a trusted root ({err}); give CA certificates in PEM",
                    i + 1,
                    ca.path.display()
                ),
            );
            return None;
        }
    }
    Some(roots)
}

fn system_roots(problems: &mut Problems) -> Option<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|err| format!(" ({err})"))
            .unwrap_or_default();
        problems.push(
            "upstream.tls.ca_file",
            format!("is not set and the system has no trusted CA certificates{why}; install them (e.g. the ca-certificates package) or set upstream.tls.ca_file to a PEM bundle"),
        );
        return None;
    }
    Some(roots)
}

/// A client certificate chain and its key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// `Some(Some(..))` when both files parse; `None` (with a problem) otherwise.
fn client_identity(cert: &File, key: &File, problems: &mut Problems) -> Option<Option<Identity>> {
    let chain = certificates(cert);
    if chain.is_none() {
        problems.push(
            "upstream.tls.client_cert_file",
            format!("{} holds no PEM certificate; give the client certificate (then its intermediates), each as -----BEGIN CERTIFICATE-----", cert.path.display()),
        );
    }
    // The parse error itself is not shown: it could quote the key file.
    let private_key = PrivateKeyDer::from_pem_slice(&key.bytes).ok();
    if private_key.is_none() {
        problems.push(
            "upstream.tls.client_key_file",
            format!("{} holds no PEM private key; give the key of client_cert_file as -----BEGIN PRIVATE KEY----- (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY", key.path.display()),
        );
    }
    Some(Some((chain?, private_key?)))
}

fn client_config(
    roots: RootCertStore,
    identity: Option<Identity>,
    problems: &mut Problems,
) -> Option<ClientConfig> {
    let builder = match ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots),
        Err(err) => {
            problems.push("upstream.url", format!("TLS cannot be set up ({err})"));
            return None;
        }
    };
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => match builder.with_client_auth_cert(chain, key) {
            Ok(config) => config,
            Err(rustls::Error::InconsistentKeys(_)) => {
                problems.push(
                    "upstream.tls.client_key_file",
                    "is not the key of the certificate in client_cert_file; give the key that certificate was issued for",
                );
                return None;
            }
            Err(err) => {
                problems.push(
                    "upstream.tls.client_key_file",
                    format!("cannot be used ({err}); give an RSA, ECDSA or Ed25519 key in PEM"),
                );
                return None;
            }
        },
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(config)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigProblem};

    /// A CA, a server certificate for `localhost`, a client certificate and
    /// key, and a key of another client, as PEM files in a temp dir.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
            let dir = tempfile::tempdir().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_key = KeyPair::generate().unwrap();
            let ca = params.self_signed(&ca_key).unwrap();
            let issuer = Issuer::new(params, ca_key);
            let client_key = KeyPair::generate().unwrap();
            let client = CertificateParams::new(vec!["tokengate".to_owned()])
                .unwrap()
                .signed_by(&client_key, &issuer)
                .unwrap();
            let write =
                |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
            write("ca.pem", &ca.pem());
            write("client.pem", &client.pem());
            write("client.key", &client_key.serialize_pem());
            write("other.key", &KeyPair::generate().unwrap().serialize_pem());
            write(
                "secret.key",
                "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL!!\n-----END PRIVATE KEY-----\n",
            );
            write("empty.pem", "no certificates here\n");
            Files { dir }
        }

        fn load(&self, upstream: &str) -> Result<Config, Vec<ConfigProblem>> {
            let text = format!(
                "upstream: {upstream}\nstore: {{ redis: {{ url: redis://127.0.0.1 }} }}\npolicy: {{ file: p.yaml }}\n"
            );
            Config::from_yaml(&text, self.dir.path())
        }

        /// The problems of a config that must not load.
        fn problems(&self, upstream: &str) -> Vec<ConfigProblem> {
            self.load(upstream).expect_err(upstream)
        }
    }

    fn only(problems: &[ConfigProblem], key: &str, says: &str) {
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, key, "{problems:?}");
        assert!(problems[0].message.contains(says), "{problems:?}");
    }

    #[test]
    fn an_https_upstream_loads_its_ca_and_client_certificate() {
        let files = Files::new();
        let config = files
            .load("{ url: \"https://localhost:8443/tfe\", tls: { ca_file: ca.pem, client_cert_file: client.pem, client_key_file: client.key } }")
            .unwrap();
        let tls = config.upstream.tls.as_ref().expect("https has TLS");
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(files.dir.path().join("ca.pem").as_path())
        );
        assert_eq!(tls.server_name().to_str(), "localhost");
        assert_eq!(tls.client_config().alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(tls.client_config().client_auth_cert_resolver.has_certs());
        let debug = format!("{config:?}");
        assert!(
            debug.contains("client.key") && !debug.contains("PRIVATE KEY"),
            "{debug}"
        );
    }

    #[test]
    fn an_https_upstream_without_a_tls_section_trusts_the_system_roots() {
        let files = Files::new();
        let config = files.load("{ url: \"https://[::1]\" }").unwrap();
        let tls = config.upstream.tls.as_ref().unwrap();
        assert_eq!(tls.ca_file, None);
        assert_eq!(tls.server_name().to_str(), "::1");
        assert!(!tls.client_config().client_auth_cert_resolver.has_certs());
        let plain = files.load("{ url: \"http://localhost\" }").unwrap();
        assert!(plain.upstream.tls.is_none());
    }

    #[test]
    fn tls_files_that_cannot_be_used_are_named_with_the_fix() {
        let files = Files::new();
        only(
            &files.problems("{ url: \"https://localhost\", tls: { ca_file: missing.pem } }"),
            "upstream.tls.ca_file",
            "cannot read",
        );
        only(
            &files.problems("{ url: \"https://localhost\", tls: { ca_file: empty.pem } }"),
            "upstream.tls.ca_file",
            "holds no PEM certificate",
        );
        only(
            &files
                .problems("{ url: \"https://localhost\", tls: { client_cert_file: client.pem } }"),
            "upstream.tls.client_key_file",
            "is missing",
        );
        only(
            &files.problems("{ url: \"https://localhost\", tls: { client_key_file: client.key } }"),
            "upstream.tls.client_cert_file",
            "is missing",
        );
        only(
            &files.problems("{ url: \"https://localhost\", tls: { client_cert_file: client.pem, client_key_file: other.key } }"),
            "upstream.tls.client_key_file",
            "is not the key of the certificate",
        );
        only(
            &files.problems("{ url: \"https://localhost\", tls: { client_cert_file: ca.key, client_key_file: client.key } }"),
            "upstream.tls.client_cert_file",
            "cannot read",
        );
        only(
            &files.problems("{ url: \"http://localhost\", tls: { ca_file: ca.pem } }"),
            "upstream.tls",
            "use an https:// URL or remove upstream.tls",
        );
        only(
            &files.problems("{ url: \"ftp://localhost\" }"),
            "upstream.url",
            "use http:// or https://",
        );
    }

    #[test]
    fn a_key_file_is_never_quoted() {
        let files = Files::new();
        let problems = files.problems(
            "{ url: \"https://localhost\", tls: { client_cert_file: client.pem, client_key_file: secret.key } }",
        );
        only(
            &problems,
            "upstream.tls.client_key_file",
            "holds no PEM private key",
        );
        let text = format!("{problems:?}");
        assert!(!text.contains("TOPSECRET"), "{text}");
    }

    #[test]
    fn changed_tls_files_need_a_restart() {
        let files = Files::new();
        let upstream = "{ url: \"https://localhost\", tls: { ca_file: ca.pem } }";
        let running = files.load(upstream).unwrap();
        assert!(running
            .restart_required(&files.load(upstream).unwrap())
            .is_empty());
        let ca = files.dir.path().join("ca.pem");
        let mut text = std::fs::read_to_string(&ca).unwrap();
        text.push_str(&std::fs::read_to_string(&ca).unwrap());
        std::fs::write(&ca, text).unwrap();
        assert_eq!(
            running.restart_required(&files.load(upstream).unwrap()),
            ["upstream"]
        );
    }
}
