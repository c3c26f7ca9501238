//! Test harness for the TLS listener and HTTP/2: a test PKI made with
//! rcgen (a root, an intermediate, server certificates valid or expired),
//! TLS clients that verify against it (tokio-rustls, reqwest), an HTTP/2
//! client (the `h2` crate, so that tests choose every `:path` byte and can
//! reset streams at will), and raw HTTP/2 frames for what well-behaved
//! clients refuse to send.

use crate::harness::{self, write_config, RawRequest, RawResponse, World};
use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The name the gateway's test certificates are for, and clients ask for.
pub const HOST: &str = "gateway.test";

/// How long a test waits for any one answer before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A test certificate authority: a root and an intermediate that signs the
/// server certificates.
pub struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// When a server certificate is valid.
#[derive(Clone, Copy)]
pub enum Validity {
    /// From a year ago to a year from now.
    Current,
    /// 2020 to 2021.
    Expired,
}

/// A server certificate's files and the SHA-256 of its DER (what the
/// gateway logs and clients can compare).
#[derive(Clone, Debug)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub sha256: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let ca_params = |common_name: String| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params
        };
        let root = CertifiedIssuer::self_signed(
            ca_params(format!("{name} root")),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(format!("{name} intermediate")),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Pki { root, intermediate }
    }

    /// The root certificate, PEM: what clients trust.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// Writes `NAME.pem` (a server certificate for `sans`, then the
    /// intermediate) and `NAME.key` in `dir`.
    pub fn issue(&self, dir: &Path, name: &str, sans: &[&str], validity: Validity) -> ServerFiles {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, sans[0]);
        let now = time::OffsetDateTime::now_utc();
        let (from, until) = match validity {
            Validity::Current => (
                now - time::Duration::days(365),
                now + time::Duration::days(365),
            ),
            Validity::Expired => (
                rcgen::date_time_ymd(2020, 1, 1),
                rcgen::date_time_ymd(2021, 1, 1),
            ),
        };
        params.not_before = from;
        params.not_after = until;
        let cert = params.signed_by(&key, &self.intermediate).unwrap();
        let files = ServerFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            sha256: sha256_hex(cert.der()),
        };
        std::fs::write(&files.cert, cert.pem() + &self.intermediate.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

pub fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `tls:` section for `files` (and what follows it in `extra`).
pub fn tls_section(files: &ServerFiles, extra: &str) -> String {
    format!(
        "tls: {{ cert_file: {}, key_file: {} }}\n{extra}",
        files.cert.display(),
        files.key.display()
    )
}

/// Redis, an upstream and an in-process gateway that listens with TLS
/// (a certificate for [`HOST`] from [`TlsWorld::pki`]).
pub struct TlsWorld {
    pub world: World,
    pub pki: Pki,
    pub files: ServerFiles,
}

impl std::ops::Deref for TlsWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl TlsWorld {
    /// `extra` is added to the config (after the `tls:` section).
    pub async fn start(extra: &str) -> TlsWorld {
        Self::start_with(Validity::Current, &[HOST, "127.0.0.1"], extra).await
    }

    /// With a server certificate for `sans`, valid as `validity` says.
    pub async fn start_with(validity: Validity, sans: &[&str], extra: &str) -> TlsWorld {
        let pki = Pki::new("tokengate test");
        let mut files = None;
        let world = World::with_config_file(|dir, upstream, redis| {
            let issued = pki.issue(dir, "server", sans, validity);
            let config = write_config(dir, upstream, redis, &tls_section(&issued, extra));
            files = Some(issued);
            config
        })
        .await;
        TlsWorld {
            world,
            pki,
            files: files.unwrap(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.world.gateway.addr
    }

    /// A new HTTP/2 connection that trusts this world's root.
    pub async fn h2(&self) -> H2 {
        H2::connect(self.addr(), &self.pki.root_pem()).await
    }

    /// One HTTP/1.1 request over a new TLS connection.
    pub async fn http1(&self, request: RawRequest<'_>) -> RawResponse {
        send_raw_tls(self.addr(), &self.pki.root_pem(), request).await
    }

    /// The gateway's metrics (admin endpoints answer 127.0.0.1).
    pub async fn metrics(&self) -> String {
        let response = self
            .http1(RawRequest::new("GET", "/_tokengate/metrics"))
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        response.body
    }
}

// --- TLS clients -----------------------------------------------------------

/// A client configuration that trusts `root_pem`, offers `alpn`, and speaks
/// the given TLS versions.
pub fn client_config(
    root_pem: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Both TLS versions the gateway speaks.
pub const TLS_12_AND_13: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A TLS connection to `addr`, for [`HOST`], verified with `config`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(
        PATIENCE,
        connector.connect(ServerName::try_from(HOST).unwrap(), tcp),
    )
    .await
    .expect("the TLS handshake did not end")
}

/// The SHA-256 of the certificate the server presented on `stream`.
pub fn peer_sha256(stream: &TlsStream<TcpStream>) -> String {
    let certs = stream.get_ref().1.peer_certificates().unwrap();
    sha256_hex(certs[0].as_ref())
}

/// One HTTP/1.1 request over a new TLS connection (ALPN `http/1.1`).
pub async fn send_raw_tls(
    addr: SocketAddr,
    root_pem: &str,
    request: RawRequest<'_>,
) -> RawResponse {
    let config = client_config(root_pem, &[b"http/1.1"], TLS_12_AND_13);
    let mut stream = tls_connect(addr, config).await.unwrap();
    stream
        .write_all(&harness::raw_bytes(request))
        .await
        .unwrap();
    let mut response = Vec::new();
    // A close without close_notify is an error to rustls; what was read counts.
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("the gateway did not answer");
    harness::parse_response(&response)
}

/// A reqwest client that trusts `root_pem` and reaches [`HOST`] at `addr`.
pub fn reqwest_client(addr: SocketAddr, root_pem: &str, http1_only: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .resolve(HOST, addr)
        .timeout(PATIENCE);
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().unwrap()
}

// --- HTTP/2 ------------------------------------------------------------------

/// One HTTP/2 connection (the `h2` crate's client).
pub struct H2 {
    pub send: h2::client::SendRequest<Bytes>,
    /// The connection's task: ends with the connection (`Err` on a GOAWAY
    /// with an error code, a reset, a protocol error).
    pub driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
    /// The certificate the server presented (empty without TLS).
    pub peer_sha256: String,
}

/// An HTTP/2 request, written as given: the same description as an
/// HTTP/1.1 [`RawRequest`] (its `target` becomes `:path`).
pub type H2Request<'a> = crate::harness::RawRequest<'a>;

#[derive(Debug)]
pub struct H2Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl H2Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

impl H2 {
    /// Connects with TLS (ALPN `h2` only), trusting `root_pem`.
    pub async fn connect(addr: SocketAddr, root_pem: &str) -> H2 {
        let config = client_config(root_pem, &[b"h2"], TLS_12_AND_13);
        let stream = tls_connect(addr, config).await.unwrap();
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "the gateway did not choose h2"
        );
        let sha = peer_sha256(&stream);
        let mut h2 = H2::handshake(stream, h2::client::Builder::new()).await;
        h2.peer_sha256 = sha;
        h2
    }

    /// HTTP/2 over any stream (h2c with prior knowledge over a plain one).
    pub async fn handshake<S>(io: S, builder: h2::client::Builder) -> H2
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = tokio::time::timeout(PATIENCE, builder.handshake(io))
            .await
            .expect("the HTTP/2 handshake did not end")
            .unwrap();
        H2 {
            send,
            driver: tokio::spawn(connection),
            peer_sha256: String::new(),
        }
    }

    /// Sends `request` and reads the whole response.
    pub async fn request(&mut self, request: H2Request<'_>) -> Result<H2Response, h2::Error> {
        let response = self.start(request).await?;
        read_response(response).await
    }

    /// Sends `request` (its body too) and returns the pending response.
    pub async fn start(
        &mut self,
        request: H2Request<'_>,
    ) -> Result<h2::client::ResponseFuture, h2::Error> {
        let mut builder = http::Request::builder()
            .method(request.method)
            .uri(format!("https://{HOST}{}", request.target));
        if let Some(token) = request.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let typed = request
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if !request.body.is_empty() && !typed {
            builder = builder.header("content-type", "application/vnd.api+json");
        }
        for (name, value) in request.headers {
            builder = builder.header(*name, *value);
        }
        let mut send = tokio::time::timeout(PATIENCE, self.send.clone().ready())
            .await
            .expect("no stream became available")?;
        let (response, mut body) =
            send.send_request(builder.body(()).unwrap(), request.body.is_empty())?;
        if !request.body.is_empty() {
            body.send_data(Bytes::copy_from_slice(request.body), true)?;
        }
        Ok(response)
    }
}

/// Reads a whole HTTP/2 response.
pub async fn read_response(response: h2::client::ResponseFuture) -> Result<H2Response, h2::Error> {
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("no HTTP/2 response")?;
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = tokio::time::timeout(PATIENCE, body.data())
        .await
        .expect("the HTTP/2 response body stalled")
    {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok(H2Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&data).into_owned(),
    })
}

// --- raw HTTP/2 frames -------------------------------------------------------

/// Frame types (RFC 9113 §6).
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
/// Error codes.
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut out = length.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with a `prefix`-bit prefix whose other bits are `first`.
fn hpack_integer(out: &mut Vec<u8>, first: u8, prefix: u32, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields without indexing (no Huffman, no
/// table), each written exactly as given.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_integer(&mut out, 0x00, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_integer(&mut out, 0x00, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// A request's HEADERS frame with `fields` (pseudo-headers first), ending
/// the stream.
pub fn request_frame(stream: u32, fields: &[(&str, &str)]) -> Vec<u8> {
    frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        stream,
        &header_block(fields),
    )
}

/// What the server did about a stream (or the whole connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameOutcome {
    /// Response HEADERS arrived on the stream.
    Answered,
    /// The stream was reset with this error code.
    Reset(u32),
    /// The connection was closed with GOAWAY and this error code.
    GoAway(u32),
    /// The connection closed with no GOAWAY.
    Closed,
}

/// An HTTP/2 connection driven frame by frame.
pub struct RawH2<S> {
    io: S,
    buffer: Vec<u8>,
}

impl RawH2<TlsStream<TcpStream>> {
    /// Connects with TLS (ALPN `h2`) and sends the preface and SETTINGS.
    pub async fn connect(addr: SocketAddr, root_pem: &str) -> Self {
        let config = client_config(root_pem, &[b"h2"], TLS_12_AND_13);
        RawH2::start(tls_connect(addr, config).await.unwrap()).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawH2<S> {
    pub async fn start(mut io: S) -> Self {
        io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        io.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        RawH2 {
            io,
            buffer: Vec::new(),
        }
    }

    /// Sends bytes (frames); false when the connection is gone.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.io.write_all(bytes).await.is_ok() && self.io.flush().await.is_ok()
    }

    /// The next frame: (type, flags, stream, payload); `None` when closed.
    async fn next_frame(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buffer.len() >= 9 {
                let length = u32::from_be_bytes([0, self.buffer[0], self.buffer[1], self.buffer[2]])
                    as usize;
                if self.buffer.len() >= 9 + length {
                    let head: Vec<u8> = self.buffer.drain(..9).collect();
                    let payload: Vec<u8> = self.buffer.drain(..length).collect();
                    let stream =
                        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    return Some((head[3], head[4], stream, payload));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout(PATIENCE, self.io.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("the server sent nothing for {PATIENCE:?}"),
            }
        }
    }

    /// Reads frames (acknowledging SETTINGS) until one says what became of
    /// `stream`, or of the connection.
    pub async fn outcome(&mut self, stream: u32) -> FrameOutcome {
        loop {
            let Some((kind, flags, id, payload)) = self.next_frame().await else {
                return FrameOutcome::Closed;
            };
            match kind {
                SETTINGS if flags & 0x1 == 0 => {
                    let _ = self.send(&frame(SETTINGS, 0x1, 0, &[])).await;
                }
                HEADERS if id == stream => return FrameOutcome::Answered,
                RST_STREAM if id == stream => {
                    return FrameOutcome::Reset(u32::from_be_bytes(
                        payload[..4].try_into().unwrap(),
                    ))
                }
                GOAWAY => {
                    return FrameOutcome::GoAway(u32::from_be_bytes(
                        payload[4..8].try_into().unwrap(),
                    ))
                }
                _ => {}
            }
        }
    }
}
