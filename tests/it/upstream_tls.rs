//! TLS to the upstream (`upstream.url: https://…`, `upstream.tls`): a test
//! CA made in the test, an HTTPS recording upstream (tokio-rustls), and the
//! gateway in front of it. A certificate that does not verify means a 502
//! and an upstream that saw no request; a verified one is kept alive like a
//! plain connection. Also: the scheme `X-Forwarded-Proto` tells the upstream
//! is the client connection's.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use std::net::SocketAddr;
use tokengate::upstream::headers::ClientProto;

/// What the TLS tests request: a path whose rule requires no workspace
/// access, so the gateway's only upstream traffic is the request itself.
const TARGET: &str = "/api/v2/widgets/widget-1";

/// Redis, a gateway in front of `url` with `tls_keys` (lines under
/// `upstream:`, e.g. `  tls: { ca_file: ca.pem }`), `files` written beside
/// the config (relative paths resolve there), and a team token.
struct Rig {
    _redis: RedisServer,
    gateway: TestGateway,
    token: String,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(url: &str, tls_keys: &str, files: &[(&str, &str)]) -> Rig {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        // A pool timeout long enough that nothing idles out during a test.
        let config = write_config_with_upstream(
            dir.path(),
            &format!("  url: {url}\n  pool_idle_timeout_ms: 600000\n{tls_keys}"),
            &redis.url(),
            "",
        );
        let token = team_token_for(&config).await;
        let gateway = TestGateway::start(&config).await;
        Rig {
            _redis: redis,
            gateway,
            token,
            _dir: dir,
        }
    }

    async fn get(&self, id: &str) -> Answered {
        KeepAliveClient::connect(self.gateway.addr)
            .await
            .send("GET", TARGET, &self.token, id, b"")
            .await
    }
}

/// A 502 whose JSON:API error says the upstream could not be reached.
fn assert_unreachable(answer: &Answered) {
    assert_eq!(answer.status, 502, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        json["errors"][0]["detail"], "the upstream cannot be reached",
        "{json}"
    );
}

#[tokio::test]
async fn an_https_upstream_verified_by_the_configured_ca_is_served_and_kept_alive() {
    let ca = CertAuthority::new("tokengate test CA");
    let upstream = TlsUpstream::start(&ca.server(&["localhost"]), None).await;
    let rig = Rig::start(
        &upstream.url("localhost"),
        "  tls: { ca_file: ca.pem }",
        &[("ca.pem", &ca.cert_pem)],
    )
    .await;
    let mut client = KeepAliveClient::connect(rig.gateway.addr).await;
    let target = TARGET;
    let answers = [
        client.send("GET", target, &rig.token, "one", b"").await,
        client
            .send(
                "POST",
                "/api/v2/widgets",
                &rig.token,
                "two",
                b"{\"data\":{}}",
            )
            .await,
        client.send("GET", target, &rig.token, "three", b"").await,
    ];
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, "{\"upstream\":true}");
    }
    let seen = upstream.requests();
    let summary: Vec<(&str, &str)> = seen
        .iter()
        .map(|r| (r.method.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", target),
            ("POST", "/api/v2/widgets"),
            ("GET", target)
        ]
    );
    assert_eq!(seen[1].body, b"{\"data\":{}}");
    assert_eq!(seen[0].header("x-request-id"), Some("one"));
    assert_eq!(seen[0].header("x-tokengate-kind"), Some("team"));
    assert_eq!(
        seen[0].header("host"),
        Some(format!("localhost:{}", upstream.addr.port()).as_str())
    );
    assert_eq!(
        seen[0].header("x-forwarded-proto"),
        Some("http"),
        "the client's connection is plain HTTP"
    );
    let handshakes = upstream.handshakes(1).await;
    assert_eq!(
        handshakes.len(),
        1,
        "one kept-alive connection: {handshakes:?}"
    );
    assert_eq!(handshakes[0].error, None);
    assert_eq!(handshakes[0].sni.as_deref(), Some("localhost"));
    assert_eq!(handshakes[0].client_cert, None);
}

#[tokio::test]
async fn an_https_upstream_whose_certificate_names_another_host_sees_no_request() {
    let ca = CertAuthority::new("tokengate test CA");
    let upstream = TlsUpstream::start(&ca.server(&["api.other.test"]), None).await;
    let rig = Rig::start(
        &upstream.url("localhost"),
        "  tls: { ca_file: ca.pem }",
        &[("ca.pem", &ca.cert_pem)],
    )
    .await;
    assert_unreachable(&rig.get("wrong-name").await);
    let handshakes = upstream.handshakes(1).await;
    assert!(!handshakes.is_empty(), "the gateway tried TLS");
    assert!(
        handshakes.iter().all(|h| h.error.is_some()),
        "the gateway refused every handshake: {handshakes:?}"
    );
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

#[tokio::test]
async fn an_https_upstream_addressed_by_ip_is_checked_against_that_ip() {
    let ca = CertAuthority::new("tokengate test CA");
    for (names, status) in [(&["127.0.0.1"][..], 200), (&["localhost"][..], 502)] {
        let upstream = TlsUpstream::start(&ca.server(names), None).await;
        let rig = Rig::start(
            &upstream.url("127.0.0.1"),
            "  tls: { ca_file: ca.pem }",
            &[("ca.pem", &ca.cert_pem)],
        )
        .await;
        let answer = rig.get("by-ip").await;
        assert_eq!(answer.status, status, "{names:?}: {}", answer.body);
        let handshakes = upstream.handshakes(1).await;
        assert_eq!(handshakes[0].sni, None, "no SNI for an IP address");
        assert_eq!(upstream.requests().len(), usize::from(status == 200));
    }
}

#[tokio::test]
async fn an_https_upstream_signed_by_an_unknown_ca_sees_no_request() {
    let ca = CertAuthority::new("tokengate test CA");
    let other = CertAuthority::new("some other CA");
    let upstream = TlsUpstream::start(&ca.server(&["localhost"]), None).await;
    // Another CA configured, and the system's roots (no upstream.tls).
    for (tls_keys, files) in [
        (
            "  tls: { ca_file: ca.pem }",
            vec![("ca.pem", other.cert_pem.as_str())],
        ),
        ("", vec![]),
    ] {
        let rig = Rig::start(&upstream.url("localhost"), tls_keys, &files).await;
        assert_unreachable(&rig.get("unknown-ca").await);
    }
    let handshakes = upstream.handshakes(2).await;
    assert!(handshakes.len() >= 2, "{handshakes:?}");
    assert!(
        handshakes.iter().all(|h| h.error.is_some()),
        "{handshakes:?}"
    );
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

#[tokio::test]
async fn an_mtls_upstream_sees_the_configured_client_certificate() {
    let ca = CertAuthority::new("tokengate test CA");
    let clients_ca = CertAuthority::new("upstream's client CA");
    let client = clients_ca.client("tokengate");
    let upstream = TlsUpstream::start(&ca.server(&["localhost"]), Some(&clients_ca)).await;
    let rig = Rig::start(
        &upstream.url("localhost"),
        "  tls: { ca_file: ca.pem, client_cert_file: client.pem, client_key_file: client.key }",
        &[
            ("ca.pem", &ca.cert_pem),
            ("client.pem", &client.cert_pem),
            ("client.key", &client.key_pem),
        ],
    )
    .await;
    let answer = rig.get("mtls").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let handshakes = upstream.handshakes(1).await;
    assert_eq!(handshakes[0].error, None);
    assert_eq!(
        handshakes[0].client_cert.as_deref(),
        Some(client.cert_der.as_slice()),
        "the upstream saw the configured client certificate"
    );
    assert_eq!(upstream.requests().len(), 1);

    // Without a client certificate the upstream lets nothing in.
    let without = Rig::start(
        &upstream.url("localhost"),
        "  tls: { ca_file: ca.pem }",
        &[("ca.pem", &ca.cert_pem)],
    )
    .await;
    assert_eq!(without.get("no-cert").await.status, 502);
    let handshakes = upstream.handshakes(2).await;
    assert!(
        handshakes[1..].iter().all(|h| h.error.is_some()),
        "{handshakes:?}"
    );
    assert_eq!(upstream.requests().len(), 1, "nothing more was let in");
}

/// `X-Forwarded-Proto` is the scheme of the client's connection, as the
/// listener marks it on the request ([`ClientProto`]); a client cannot set
/// it with a header.
#[tokio::test]
async fn x_forwarded_proto_is_the_scheme_the_listener_marks() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let gateway = &world.gateway.gateway;
    let lease = gateway.forwarder.lease();
    let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    for (mark, claimed, expected) in [
        (None, None, "http"),
        (Some(ClientProto::Https), None, "https"),
        (Some(ClientProto::Http), Some("https"), "http"),
        (None, Some("https"), "http"),
    ] {
        let mut request = http::Request::builder()
            .method("GET")
            .uri("/api/v2/workspaces/ws-1")
            .header("host", "gateway.test")
            .header("authorization", format!("Bearer {token}"));
        if let Some(claimed) = claimed {
            request = request.header("x-forwarded-proto", claimed);
        }
        let mut request = request.body(Full::new(Bytes::new())).unwrap();
        if let Some(mark) = mark {
            request.extensions_mut().insert(mark);
        }
        let response = gateway.handle(request, client, &lease).await;
        assert_eq!(response.status(), 200);
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
        let seen = world.upstream.last();
        assert_eq!(
            seen.header("x-forwarded-proto"),
            Some(expected),
            "{mark:?} {claimed:?}"
        );
    }
}
