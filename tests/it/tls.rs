//! The TLS listener: HTTP/1.1 and HTTP/2 clients through it with
//! `X-Forwarded-Proto: https`, TLS 1.2 and 1.3 only, ALPN, handshakes that
//! stall or fail, a certificate swap picked up without dropping open
//! connections (file change and `SIGHUP`, on the real binary), a bad file
//! at start (a config error naming the key) or at reload (the old
//! certificate keeps serving), and expired or wrong certificates refused by
//! clients that verify.

use crate::harness::{
    metric, replace_file, tokengate_text, write_config, GatewayProcess, RawRequest,
    RecordingUpstream, RedisServer,
};
use crate::tls_harness::{
    client_config, peer_sha256, reqwest_client, sha256_hex, tls_connect, tls_section, Pki,
    ServerFiles, TlsWorld, Validity, H2, HOST, PATIENCE, TLS_12_AND_13,
};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokengate::store::Owner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://{HOST}:{}{path}", addr.port())
}

#[tokio::test]
async fn http1_and_h2_clients_are_served_through_the_tls_listener() {
    let world = TlsWorld::start("").await;
    let team = world.gateway.issue(world.team_owner()).await;
    let root = world.pki.root_pem();
    for (http1_only, version) in [
        (true, http::Version::HTTP_11),
        (false, http::Version::HTTP_2),
    ] {
        let client = reqwest_client(world.addr(), &root, http1_only);
        let response = client
            .get(url(world.addr(), "/api/v2/workspaces/ws-1"))
            .bearer_auth(&team)
            .header("X-Forwarded-Proto", "http")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{version:?}");
        assert_eq!(response.version(), version);
        let seen = world.upstream.last();
        assert_eq!(seen.target, "/api/v2/workspaces/ws-1");
        assert_eq!(
            seen.header("x-forwarded-proto"),
            Some("https"),
            "{version:?}"
        );
        assert_eq!(
            seen.header("x-tokengate-team"),
            Some(world.team_id.as_str())
        );
        assert_eq!(
            seen.header("x-forwarded-host"),
            Some(format!("{HOST}:{}", world.addr().port()).as_str())
        );
    }
    assert_eq!(world.upstream.count(), 2);

    // Plain HTTP to the TLS port is not HTTP's to answer: the handshake
    // fails and the connection closes.
    let mut plain = tokio::net::TcpStream::connect(world.addr()).await.unwrap();
    plain
        .write_all(b"GET /_tokengate/health HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut answer))
        .await
        .expect("the gateway kept a failed handshake open");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    assert_eq!(world.upstream.count(), 2);
    let metrics = world.metrics().await;
    assert!(
        metric(
            &metrics,
            "tokengate_http_errors_total{reason=\"tls_handshake\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

/// A TLS 1.1 ClientHello (no extensions, two TLS 1.0 cipher suites).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_spoken_and_alpn_chooses_the_protocol() {
    let world = TlsWorld::start("").await;
    let root = world.pki.root_pem();
    for (version, wanted) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(&root, &[], &[version]);
        let stream = tls_connect(world.addr(), config).await.unwrap();
        assert_eq!(stream.get_ref().1.protocol_version(), Some(wanted));
    }
    // Older versions get an alert, never a ServerHello.
    let mut old = tokio::net::TcpStream::connect(world.addr()).await.unwrap();
    old.write_all(&tls11_client_hello()).await.unwrap();
    let mut record = [0u8; 7];
    tokio::time::timeout(PATIENCE, old.read_exact(&mut record))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record[0], 0x15, "an alert record: {record:?}");
    assert_eq!(record[5], 2, "a fatal alert: {record:?}");

    let alpn = |offered: &'static [&'static [u8]]| {
        let root = root.clone();
        let addr = world.addr();
        async move {
            let config = client_config(&root, offered, TLS_12_AND_13);
            let stream = tls_connect(addr, config).await.unwrap();
            stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
        }
    };
    assert_eq!(alpn(&[b"h2", b"http/1.1"]).await, Some(b"h2".to_vec()));
    assert_eq!(alpn(&[b"http/1.1", b"h2"]).await, Some(b"h2".to_vec()));
    assert_eq!(alpn(&[b"http/1.1"]).await, Some(b"http/1.1".to_vec()));
    assert_eq!(alpn(&[]).await, None);
    // Without ALPN: HTTP/1.1.
    let response = world
        .http1(RawRequest::new("GET", "/_tokengate/health"))
        .await;
    assert_eq!(response.status, 200);

    // With http2: false, h2 is not offered.
    let http1_only = TlsWorld::start("http2: false").await;
    let config = client_config(
        &http1_only.pki.root_pem(),
        &[b"h2", b"http/1.1"],
        TLS_12_AND_13,
    );
    let stream = tls_connect(http1_only.addr(), config).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn tls_handshakes_that_stall_or_fail_are_cut_off_and_counted() {
    let world = TlsWorld::start("limits: { header_read_timeout_ms: 300 }").await;
    // Nothing sent: closed after the header read timeout.
    let mut silent = tokio::net::TcpStream::connect(world.addr()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(PATIENCE, silent.read_to_end(&mut buf))
        .await
        .expect("a silent connection was kept open");
    assert!(read.is_err() || buf.is_empty(), "{buf:?}");
    // Half a ClientHello, then nothing: closed too.
    let mut stalled = tokio::net::TcpStream::connect(world.addr()).await.unwrap();
    stalled
        .write_all(&tls11_client_hello()[..20])
        .await
        .unwrap();
    let _ = tokio::time::timeout(PATIENCE, stalled.read_to_end(&mut buf))
        .await
        .expect("a stalled handshake was kept open");
    let metrics = world.metrics().await;
    assert!(
        metric(&metrics, "tokengate_timeouts_total{kind=\"tls_handshake\"}") >= 2.0,
        "{metrics}"
    );
    // The listener serves on.
    let mut h2 = world.h2().await;
    let response = h2
        .request(crate::tls_harness::H2Request::new(
            "GET",
            "/_tokengate/health",
        ))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
}

/// What a client gets when it verifies the gateway's certificate: the
/// rustls error text, or `None` when the handshake succeeded.
async fn verification_error(addr: SocketAddr, root_pem: &str) -> Option<String> {
    let config = client_config(root_pem, &[b"http/1.1"], TLS_12_AND_13);
    tls_connect(addr, config)
        .await
        .err()
        .map(|err| err.to_string())
}

/// The whole chain of an error's sources, as text.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[tokio::test]
async fn expired_misnamed_and_unknown_certificates_are_refused_by_verifying_clients() {
    let expired = TlsWorld::start_with(Validity::Expired, &[HOST], "").await;
    let misnamed = TlsWorld::start_with(Validity::Current, &["other.test"], "").await;
    let good = TlsWorld::start("").await;
    let stranger = Pki::new("someone else");
    let cases: [(&TlsWorld, String, &str); 3] = [
        (&expired, expired.pki.root_pem(), "expired"),
        (&misnamed, misnamed.pki.root_pem(), "not valid for name"),
        (&good, stranger.root_pem(), "unknownissuer"),
    ];
    for (world, root, why) in cases {
        let err = verification_error(world.addr(), &root)
            .await
            .expect("the handshake succeeded");
        assert!(err.to_lowercase().contains(why), "{why}: {err}");
        let client = reqwest_client(world.addr(), &root, false);
        let refused = client
            .get(url(world.addr(), "/_tokengate/health"))
            .send()
            .await
            .expect_err(why);
        assert!(
            error_chain(&refused).to_lowercase().contains(why),
            "{why}: {refused:?}"
        );
        assert_eq!(world.upstream.count(), 0);
    }
    assert_eq!(
        verification_error(good.addr(), &good.pki.root_pem()).await,
        None
    );
}

// ---------------------------------------------------------------------------
// Certificate reloads, on the real binary
// ---------------------------------------------------------------------------

/// Redis, an upstream, a PKI, a certificate, `tokengate serve` with TLS and
/// a team token.
struct TlsProcess {
    _redis: RedisServer,
    upstream: RecordingUpstream,
    dir: tempfile::TempDir,
    pki: Pki,
    files: ServerFiles,
    process: GatewayProcess,
    team: String,
}

impl TlsProcess {
    async fn start(tls_extra: &str) -> TlsProcess {
        let redis = RedisServer::start();
        let upstream = RecordingUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new("tokengate test");
        let files = pki.issue(dir.path(), "server", &[HOST], Validity::Current);
        let section = format!(
            "tls: {{ cert_file: server.pem, key_file: server.key{tls_extra} }}\nlog: {{ level: info, format: json }}"
        );
        let config = write_config(dir.path(), &upstream.url(), &redis.url(), &section);
        let loaded = tokengate::config::Config::load(&config).unwrap();
        let store = tokengate::gateway::open_store(&loaded).unwrap();
        store.create_org("acme").await.unwrap();
        let team_id = store.create_team("acme", "dev").await.unwrap().id;
        let team = tokengate::token::lifecycle::issue(
            store.as_ref(),
            Owner::Team {
                org: "acme".into(),
                team_id,
            },
            loaded.hashing,
            None,
            None,
        )
        .await
        .unwrap()
        .token
        .secret_token;
        let process = GatewayProcess::start(&config);
        TlsProcess {
            _redis: redis,
            upstream,
            dir,
            pki,
            files,
            process,
            team,
        }
    }

    /// The certificate a new handshake gets.
    async fn presented(&self) -> String {
        let config = client_config(&self.pki.root_pem(), &[b"http/1.1"], TLS_12_AND_13);
        let stream = tls_connect(self.process.addr, config).await.unwrap();
        peer_sha256(&stream)
    }

    /// Waits (up to 20 s) until new handshakes get `sha256`.
    async fn presents(&self, sha256: &str) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.presented().await == sha256 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Issues a new certificate and writes it over the served files (the
    /// certificate first, then the key, each replaced as editors do).
    fn swap(&self, name: &str) -> ServerFiles {
        let next = self
            .pki
            .issue(self.dir.path(), name, &[HOST], Validity::Current);
        replace(&next.cert, &self.files.cert);
        replace(&next.key, &self.files.key);
        next
    }

    /// Log lines (JSON) whose message contains `text`, waiting up to 20 s
    /// for one.
    async fn logged(&self, text: &str) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found: Vec<serde_json::Value> = self
                .process
                .log_lines()
                .iter()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|line| {
                    line["message"]
                        .as_str()
                        .is_some_and(|message| message.contains(text))
                })
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn replace(from: &Path, to: &Path) {
    replace_file(to, &std::fs::read_to_string(from).unwrap());
}

/// An HTTP/1.1 keep-alive connection over TLS.
struct KeptConnection {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl KeptConnection {
    async fn open(addr: SocketAddr, root_pem: &str) -> KeptConnection {
        let config = client_config(root_pem, &[b"http/1.1"], TLS_12_AND_13);
        KeptConnection {
            stream: tls_connect(addr, config).await.unwrap(),
        }
    }

    /// One GET on this connection; its status.
    async fn get(&mut self, path: &str, token: &str) -> u16 {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n\r\n");
        self.stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tokio::time::timeout(PATIENCE, self.stream.read_exact(&mut byte))
                .await
                .expect("no response")
                .expect("the connection was closed");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await.unwrap();
        head.split(' ').nth(1).unwrap().parse().unwrap()
    }
}

#[tokio::test]
async fn a_certificate_swap_is_picked_up_without_dropping_open_connections() {
    let gateway = TlsProcess::start("").await;
    let root = gateway.pki.root_pem();
    let path = "/api/v2/workspaces/ws-1";
    assert_eq!(gateway.presented().await, gateway.files.sha256);
    let logged = gateway.logged("TLS certificate loaded").await;
    assert_eq!(logged[0]["sha256"], gateway.files.sha256.as_str());

    // Connections open before the swap.
    let mut h2 = H2::connect(gateway.process.addr, &root).await;
    assert_eq!(h2.peer_sha256, gateway.files.sha256);
    let request = crate::tls_harness::H2Request::new("GET", path).token(&gateway.team);
    assert_eq!(h2.request(request).await.unwrap().status, 200);
    let mut kept = KeptConnection::open(gateway.process.addr, &root).await;
    assert_eq!(kept.get(path, &gateway.team).await, 200);

    let next = gateway.swap("next");
    assert!(
        gateway.presents(&next.sha256).await,
        "new handshakes never got the new certificate: {:?}",
        gateway.process.log_lines()
    );
    let reloaded = gateway.logged("TLS certificate reloaded").await;
    assert_eq!(reloaded[0]["sha256"], next.sha256.as_str());

    // The connections made before the swap keep working.
    assert_eq!(h2.request(request).await.unwrap().status, 200);
    assert_eq!(kept.get(path, &gateway.team).await, 200);
    assert_eq!(gateway.upstream.count(), 4);
    for seen in gateway.upstream.requests() {
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        assert_eq!(seen.header("x-tokengate-kind"), Some("team"));
    }

    // A key that does not fit: logged with its key, the certificate in
    // service stays.
    let stray = gateway
        .pki
        .issue(gateway.dir.path(), "stray", &[HOST], Validity::Current);
    replace(&stray.key, &gateway.files.key);
    let refused = gateway.logged("TLS certificate not reloaded").await;
    assert_eq!(refused[0]["key"], "tls", "{refused:?}");
    assert_eq!(gateway.presented().await, next.sha256);
    assert!(
        !gateway
            .process
            .log_lines()
            .iter()
            .any(|line| line.contains("PRIVATE KEY")),
        "key material in the log"
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_bad_file_keeps_the_old_one() {
    let gateway = TlsProcess::start(", watch: false").await;
    let next = gateway.swap("next");
    gateway.process.signal("HUP");
    assert!(
        gateway.presents(&next.sha256).await,
        "SIGHUP did not reload the certificate: {:?}",
        gateway.process.log_lines()
    );
    // An unreadable certificate file at reload: the current one serves on.
    std::fs::write(&gateway.files.cert, "not a certificate").unwrap();
    gateway.process.signal("HUP");
    let refused = gateway.logged("TLS certificate not reloaded").await;
    assert_eq!(refused[0]["key"], "tls.cert_file", "{refused:?}");
    assert_eq!(gateway.presented().await, next.sha256);
    let response = crate::tls_harness::send_raw_tls(
        gateway.process.addr,
        &gateway.pki.root_pem(),
        RawRequest::new("GET", "/api/v2/workspaces/ws-1").token(&gateway.team),
    )
    .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn a_bad_certificate_or_key_at_start_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("tokengate test");
    let files = pki.issue(dir.path(), "server", &[HOST], Validity::Current);
    let other = pki.issue(dir.path(), "other", &[HOST], Validity::Current);
    let cases = [
        (
            ServerFiles {
                key: dir.path().join("missing.key"),
                ..files.clone()
            },
            "tls.key_file: cannot read",
        ),
        (
            ServerFiles {
                cert: files.key.clone(),
                ..files.clone()
            },
            "tls.cert_file:",
        ),
        (
            ServerFiles {
                key: other.key.clone(),
                ..files.clone()
            },
            "tls: the private key in",
        ),
    ];
    for (bad, says) in cases {
        let config = write_config(
            dir.path(),
            "http://127.0.0.1:1",
            "redis://127.0.0.1:1",
            &tls_section(&bad, ""),
        );
        let (ok, _, stderr) = tokengate_text(&["check", "--config", config.to_str().unwrap()]);
        assert!(!ok && stderr.contains(says), "check: {says}: {stderr}");
        let (ok, _, stderr) = tokengate_text(&["serve", "--config", config.to_str().unwrap()]);
        assert!(!ok && stderr.contains(says), "serve: {says}: {stderr}");
        assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    }
}

#[tokio::test]
async fn the_chain_is_served_with_its_intermediate() {
    let world = TlsWorld::start("").await;
    let config = client_config(&world.pki.root_pem(), &[], TLS_12_AND_13);
    let stream = tls_connect(world.addr(), config).await.unwrap();
    let chain = stream.get_ref().1.peer_certificates().unwrap();
    assert_eq!(
        chain.len(),
        2,
        "the server certificate and the intermediate"
    );
    assert_eq!(sha256_hex(chain[0].as_ref()), world.files.sha256);
}
