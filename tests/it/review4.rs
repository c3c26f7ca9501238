//! Fourth review: header stripping in one pass (`forward.rs`, ca0c00b) and
//! the log writer thread (`logging.rs`, e5cfee8/efab663) with its wiring in
//! `serve` and `workers`.

use crate::harness::*;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------
// forward.rs: what reaches the upstream
// ---------------------------------------------------------------------------

/// Asserts that the upstream saw none of `names` (any case).
fn assert_absent(seen: &Recorded, names: &[&str]) {
    let leaked: Vec<String> = seen
        .headers
        .iter()
        .filter(|(n, _)| names.iter().any(|x| x.eq_ignore_ascii_case(n)))
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    assert!(leaked.is_empty(), "reached the upstream: {leaked:?}");
}

/// Exactly the gateway's identity headers, one value each.
fn assert_identity_is_the_gateways(seen: &Recorded, team_id: &str) {
    let identity: Vec<(String, String)> = seen
        .headers
        .iter()
        .filter(|(n, _)| {
            n.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-tokengate-")
        })
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    let names: Vec<&str> = identity.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.len(),
        4,
        "one value each of kind, org, team, token-id: {identity:?}"
    );
    assert_eq!(seen.header("x-tokengate-kind"), Some("team"));
    assert_eq!(seen.header("x-tokengate-org"), Some("acme"));
    assert_eq!(seen.header("x-tokengate-team"), Some(team_id));
    assert!(seen.header("x-tokengate-token-id").is_some());
}

/// Several values of each stripped header, and Connection naming identity,
/// forwarding and Host headers: every client value is gone, and the
/// gateway's values are the only ones (guard: passes before and after ca0c00b).
#[tokio::test]
async fn review4_multiple_values_and_connection_naming_identity_headers() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces")
                .token(&token)
                .headers(&[
                    (
                        "Connection",
                        "X-Tokengate-Kind, x-forwarded-for, X-Forwarded-Host",
                    ),
                    ("Connection", "x-tokengate-org,X-Tokengate-Team , X-Hop"),
                    ("X-Tokengate-Org", "evil1"),
                    ("X-Tokengate-Org", "evil2"),
                    ("x_tokengate_org", "evil3"),
                    ("X-TOKENGATE-TEAM", "evil4"),
                    ("X-Tokengate-User", "evil5"),
                    ("X-Tokengate-User", "evil6"),
                    ("X-Forwarded-For", "evil7"),
                    ("X-Forwarded-For", "evil8"),
                    ("X-Forwarded-Host", "evil9"),
                    ("X-HTTP-Method-Override", "evil10"),
                    ("X-HTTP-Method-Override", "evil11"),
                    ("x_method_override", "evil12"),
                    ("X-Hop", "evil13"),
                    ("X-Hop", "evil14"),
                    ("Forwarded", "for=evil15"),
                    ("Forwarded", "for=evil16"),
                ]),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = world.upstream.last();
    for (name, value) in &seen.headers {
        assert!(!value.contains("evil"), "{name}: {value}");
    }
    assert_identity_is_the_gateways(&seen, &world.team_id);
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gateway.test"));
    assert_eq!(
        seen.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
            .count(),
        1
    );
}

/// `Connection: host` (and empty items, tabs, trailing commas): the Host the
/// upstream sees is the upstream's, X-Forwarded-Host the client's. (Before
/// ca0c00b `Connection: host` dropped X-Forwarded-Host; now it is kept: a
/// behaviour change, not a leak.)
#[tokio::test]
async fn review4_connection_naming_host_and_odd_whitespace() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces")
                .token(&token)
                .headers(&[
                    ("Connection", ",, \t host\t ,, X-Hop-A ,\tX-Hop-B\t,"),
                    ("Connection", ""),
                    ("Connection", " , ,"),
                    ("X-Hop-A", "1"),
                    ("X-Hop-B", "1"),
                    ("X-Kept", "yes"),
                ]),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = world.upstream.last();
    assert_absent(&seen, &["x-hop-a", "x-hop-b", "connection"]);
    assert_eq!(
        seen.header("host"),
        Some(world.upstream.addr.to_string().as_str())
    );
    assert_eq!(seen.header("x-forwarded-host"), Some("gateway.test"));
    assert_eq!(seen.header("x-kept"), Some("yes"));
    assert_identity_is_the_gateways(&seen, &world.team_id);
}

/// Close to hyper's 100-header limit, many Connection headers each naming
/// one hop header: all removed, the rest kept (guard).
#[tokio::test]
async fn review4_many_connection_headers_and_many_headers() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let names: Vec<String> = (0..30).map(|i| format!("X-Hop-{i}")).collect();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for name in &names {
        headers.push(("Connection", name.as_str()));
        headers.push((name.as_str(), "evil"));
    }
    let kept: Vec<String> = (0..20).map(|i| format!("X-Kept-{i}")).collect();
    for name in &kept {
        headers.push((name.as_str(), "yes"));
    }
    for _ in 0..10 {
        headers.push(("x_TOKENGATE_kind", "evil"));
    }
    let response = world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces")
                .token(&token)
                .headers(&headers),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = world.upstream.last();
    for (name, value) in &seen.headers {
        assert!(!value.contains("evil"), "{name}: {value}");
    }
    for name in &kept {
        assert_eq!(seen.header(name), Some("yes"), "{name}");
    }
    assert_identity_is_the_gateways(&seen, &world.team_id);
}

/// FINDING (pre-existing, not introduced by ca0c00b): forwarding headers are
/// matched by exact name only. The brief is "Forwarded, X-Forwarded-*,
/// X-Real-IP never reach the upstream", but X-Forwarded-Port, -Prefix,
/// -Scheme, -Ssl and -Server do (Rack, Spring, Django and ASP.NET build
/// redirect and absolute URLs, and decide "is this HTTPS", from them).
#[tokio::test]
async fn review4_every_x_forwarded_header_is_stripped() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces")
                .token(&token)
                .headers(&[
                    ("X-Forwarded-Port", "443"),
                    ("X-Forwarded-Prefix", "/evil"),
                    ("X-Forwarded-Scheme", "https"),
                    ("X-Forwarded-Ssl", "on"),
                    ("X-Forwarded-Server", "evil.example"),
                ]),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_absent(
        &world.upstream.last(),
        &[
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-forwarded-scheme",
            "x-forwarded-ssl",
            "x-forwarded-server",
        ],
    );
}

/// FINDING (pre-existing): X-Tokengate-* and method-override headers are
/// stripped in every `_`/`-` spelling because CGI-style upstreams (Rack,
/// WSGI, PHP) map both to the same HTTP_X_… variable; forwarding headers
/// are not: `X_Forwarded_For: 6.6.6.6` reaches a Rack app as
/// HTTP_X_FORWARDED_FOR next to (or instead of) the gateway's value.
#[tokio::test]
async fn review4_underscore_spellings_of_forwarding_headers_are_stripped() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces")
                .token(&token)
                .headers(&[
                    ("X_Forwarded_For", "6.6.6.6"),
                    ("x-forwarded_host", "evil.example"),
                    ("X_FORWARDED_PROTO", "https"),
                    ("X_Real_IP", "6.6.6.6"),
                ]),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = world.upstream.last();
    let leaked: Vec<String> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.contains('_'))
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    assert!(leaked.is_empty(), "reached the upstream: {leaked:?}");
}

/// FINDING (pre-existing): a `Connection` value with one obs-text byte
/// (which hyper accepts) fails `HeaderValue::to_str`, and then *none* of the
/// names it lists is removed: the hop-by-hop header reaches the upstream.
#[tokio::test]
async fn review4_connection_with_obs_text_still_removes_the_headers_it_names() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let mut raw = format!(
        "GET /api/v2/workspaces HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nX-Hop: secret\r\nConnection: X-Hop, "
    )
    .into_bytes();
    raw.extend_from_slice(b"caf\xe9\r\nContent-Length: 0\r\n\r\n");
    let response = send_bytes(world.gateway.addr, &raw).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_absent(&world.upstream.last(), &["x-hop"]);
}

// ---------------------------------------------------------------------------
// logging.rs / serve: lines at exit
// ---------------------------------------------------------------------------

/// `count` keep-alive requests on one connection; every one answered 401.
async fn keep_alive_requests(addr: SocketAddr, tag: &str, count: usize) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 8192];
    for i in 0..count {
        let request =
            format!("GET /api/v2/workspaces/{tag}-{i} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        // Each 401 fits one read; read until its (JSON) body ends.
        let mut got = Vec::new();
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("no answer")
                .unwrap();
            assert!(n > 0, "connection closed");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= length {
                    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
                    break;
                }
            }
        }
    }
    stream
}

/// Every access line of a request answered before SIGTERM is in the log
/// after a normal exit: several workers, connections left open (idle
/// keep-alive) at SIGTERM, SIGTERM right after the last answer.
#[tokio::test]
async fn review4_every_access_line_answered_before_sigterm_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "workers: 4\nlog:\n  format: json\n");
    let rounds: usize = std::env::var("REVIEW4_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let conns: usize = std::env::var("REVIEW4_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    for round in 0..rounds {
        let addr = free_addr();
        let log_path = dir.path().join(format!("log-{round}.txt"));
        let log_file = std::fs::File::create(&log_path).unwrap();
        let mut child = Killed(
            Command::new(env!("CARGO_BIN_EXE_tokengate"))
                .args(["serve", "--config"])
                .arg(&config)
                .args(["--listen", &addr.to_string()])
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .unwrap(),
        );
        wait_listening(addr, &mut child.0).await;
        let mut set = tokio::task::JoinSet::new();
        for c in 0..conns {
            set.spawn(keep_alive_requests(
                addr,
                Box::leak(format!("r{round}c{c}").into_boxed_str()),
                40,
            ));
        }
        let open = set.join_all().await;
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        drop(open);
        assert!(status.success(), "{status}");
        let log = std::fs::read_to_string(&log_path).unwrap();
        let access = log
            .lines()
            .filter(|l| l.contains("\"tokengate::access\""))
            .count();
        assert_eq!(
            access,
            conns * 40,
            "round {round}: access lines in the log:\n{log}"
        );
        assert!(log.contains("tokengate stopped"), "{log}");
    }
}
