//! HTTP/2 on the listener: requests judged exactly as HTTP/1.1 ones (the
//! same refusals for the same `:path` spellings, the same identity
//! headers, `:authority` as the host), connection-specific header fields
//! refused as malformed, rapid reset and header-list floods cut off while
//! other clients are served, bodies bounded and timed, idle and
//! non-reading clients closed, graceful drain with `GOAWAY`, and h2c with
//! prior knowledge when it is turned on.

use crate::harness::{metric, write_config, RawRequest, RedisServer, TestGateway, World};
use crate::tls_harness::{
    frame, read_response, request_frame, tls_section, FrameOutcome, H2Request, Pki, RawH2,
    TlsWorld, Validity, CANCEL, CONTINUATION, ENHANCE_YOUR_CALM, H2, HEADERS, HOST, PATIENCE,
    PROTOCOL_ERROR, RST_STREAM,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokengate::store::Owner;

const WORKSPACE: &str = "/api/v2/workspaces/ws-1";

#[tokio::test]
async fn requests_are_judged_and_forwarded_over_h2_exactly_as_over_http1() {
    let world = TlsWorld::start("limits: { http2: { max_concurrent_streams: 7 } }").await;
    let team = world.gateway.issue(world.team_owner()).await;
    let org = world.gateway.issue(world.org_owner()).await;
    let mut h2 = world.h2().await;

    // A team token: forwarded with the gateway's identity headers, the
    // client's copies stripped.
    let response = h2
        .request(H2Request::new("GET", WORKSPACE).token(&team).headers(&[
            ("x-tokengate-team", "team-forged"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-http-method-override", "DELETE"),
        ]))
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = world.upstream.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, WORKSPACE);
    assert_eq!(seen.header("x-tokengate-kind"), Some("team"));
    assert_eq!(
        seen.header("x-tokengate-team"),
        Some(world.team_id.as_str())
    );
    assert_eq!(seen.header("x-tokengate-org"), Some("acme"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some(HOST));
    assert_eq!(seen.header("x-http-method-override"), None);
    assert_eq!(
        seen.header("host"),
        Some(world.upstream.addr.to_string().as_str())
    );
    assert_eq!(h2.send.current_max_send_streams(), 7);

    // The same request in many spellings, over HTTP/1.1 and over h2: the
    // same status, and when forwarded, the same target and body upstream.
    let apply_body = br#"{"data":{"attributes":{"auto-apply":true}}}"#;
    let camel_body = br#"{"data":{"Attributes":{"autoApply":"1"}}}"#;
    let cases: Vec<(&str, &str, &str, &[u8])> = vec![
        ("POST", "/api/v2/runs/run-1/actions/apply", &org, b""),
        ("POST", "/api/v2/runs/run-1/actions/./apply", &org, b""),
        ("POST", "/api/v2//runs/run-1/actions/apply", &org, b""),
        ("POST", "/api/v2/runs/run-1/actions/%61pply", &org, b""),
        ("POST", "/api/v2/runs/run-1/actions/apply.json", &org, b""),
        ("POST", "/api/v2/runs/run-1/actions/x/../apply", &org, b""),
        ("POST", "/api/v2/runs/run-1/actions/apply%2F", &org, b""),
        ("POST", "/api/v2/runs/run-1/actions/apply;x", &org, b""),
        ("POST", "/api/v2/runs/run-1/actions/apply", &team, b""),
        ("PATCH", WORKSPACE, &org, apply_body),
        ("PUT", WORKSPACE, &org, camel_body),
        (
            "PATCH",
            "/api/v2/workspaces/ws-1?data[attributes][auto-apply]=true",
            &org,
            b"",
        ),
        ("GET", "/api/v2/workspaces/ws-1?_method=DELETE", &team, b""),
        ("GET", "/api/v2/./workspaces/ws-1/", &team, b""),
        ("GET", "/api/v2/workspaces/ws-%31", &team, b""),
        (
            "PATCH",
            WORKSPACE,
            &team,
            br#"{"data":{"attributes":{"name":"x"}}}"#,
        ),
        (
            "POST",
            "/api/v2/teams/team-x/authentication-token",
            &org,
            b"",
        ),
        ("GET", "/_tokengate/health", "", b""),
        ("GET", "/_tokengate/../api/v2/workspaces", "", b""),
    ];
    for (method, path, token, body) in cases {
        let before = world.upstream.count();
        let mut raw = RawRequest::new(method, path).body(body);
        if !token.is_empty() {
            raw = raw.token(token);
        }
        let over_http1 = world.http1(raw).await;
        let forwarded_http1 = world.upstream.count() > before;
        let seen_http1 = forwarded_http1.then(|| world.upstream.last());

        let before = world.upstream.count();
        let mut request = H2Request::new(method, path).body(body);
        if !token.is_empty() {
            request = request.token(token);
        }
        let over_h2 = h2.request(request).await.unwrap();
        let forwarded_h2 = world.upstream.count() > before;
        let seen_h2 = forwarded_h2.then(|| world.upstream.last());

        let case = format!("{method} {path}");
        assert_eq!(
            over_h2.status, over_http1.status,
            "{case}: {}",
            over_h2.body
        );
        assert_eq!(forwarded_h2, forwarded_http1, "{case}");
        if let (Some(h1), Some(h2)) = (seen_http1, seen_h2) {
            assert_eq!(h2.method, h1.method, "{case}");
            assert_eq!(h2.target, h1.target, "{case}");
            assert_eq!(h2.body, h1.body, "{case}");
            // A request without a body may come without a length over h2.
            let length = |seen: &crate::harness::Recorded| {
                seen.header("content-length").unwrap_or("0").to_owned()
            };
            assert_eq!(length(&h2), length(&h1), "{case}");
            assert!(
                !h2.target.contains("apply") || token != org,
                "{case}: an org apply forwarded"
            );
        }
        if over_h2.status >= 400 {
            assert!(
                over_h2.json()["errors"][0]["status"].is_string(),
                "{case}: not JSON:API: {}",
                over_h2.body
            );
        }
    }
    let applies = world
        .upstream
        .requests()
        .into_iter()
        .filter(|seen| {
            seen.target.contains("apply") && seen.header("x-tokengate-kind") == Some("organization")
        })
        .count();
    assert_eq!(
        applies, 0,
        "an organization token's apply reached the upstream"
    );

    // `:authority` is the host; a `Host` field must repeat it.
    let response = h2
        .request(
            H2Request::new("GET", WORKSPACE)
                .token(&team)
                .headers(&[("host", "other.test")]),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 400, "{}", response.body);
    // HEAD: the status and headers, never a body.
    let response = h2.request(H2Request::new("HEAD", WORKSPACE)).await.unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(response.body, "");
    // Cookies sent as several fields reach the upstream as one header.
    h2.request(
        H2Request::new("GET", WORKSPACE)
            .token(&team)
            .headers(&[("cookie", "a=1"), ("cookie", "b=2")]),
    )
    .await
    .unwrap();
    let seen = world.upstream.last();
    let cookies: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(name, _)| name == "cookie")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(cookies, ["a=1; b=2"]);
}

#[tokio::test]
async fn connection_specific_header_fields_are_malformed_over_h2() {
    let world = TlsWorld::start("").await;
    let team = world.gateway.issue(world.team_owner()).await;
    let bearer = format!("Bearer {team}");
    let mut raw = RawH2::connect(world.addr(), &world.pki.root_pem()).await;
    let fields = |extra: (&'static str, &'static str)| {
        vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", HOST),
            (":path", WORKSPACE),
            ("authorization", bearer.as_str()),
            extra,
        ]
    };
    let mut stream = 1;
    for field in [
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "timeout=5"),
        ("upgrade", "websocket"),
        ("proxy-connection", "keep-alive"),
        ("te", "gzip"),
    ] {
        assert!(raw.send(&request_frame(stream, &fields(field))).await);
        assert_eq!(
            raw.outcome(stream).await,
            FrameOutcome::Reset(PROTOCOL_ERROR),
            "{field:?}"
        );
        stream += 2;
    }
    // `TE: trailers` is allowed, and the connection served on.
    assert!(
        raw.send(&request_frame(stream, &fields(("te", "trailers"))))
            .await
    );
    assert_eq!(raw.outcome(stream).await, FrameOutcome::Answered);
    assert_eq!(world.upstream.count(), 1);
    assert_eq!(world.upstream.last().header("te"), None);
}

#[tokio::test]
async fn rapid_reset_is_cut_off_while_another_client_is_served() {
    let world = TlsWorld::start("").await;
    let team = world.gateway.issue(world.team_owner()).await;

    // Another client, sending all along.
    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let mut steady = world.h2().await;
    let steady_task = {
        let (stop, statuses, team) = (stop.clone(), statuses.clone(), team.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let status = steady
                    .request(H2Request::new("GET", WORKSPACE).token(&team))
                    .await
                    .map_or(0, |response| response.status);
                statuses.lock().unwrap().push(status);
            }
        })
    };

    // Open streams and reset them at once, as fast as the client can.
    let mut attacker = world.h2().await;
    let limit = 20_000;
    let mut opened = 0;
    for _ in 0..limit {
        let ready = tokio::time::timeout(PATIENCE, attacker.send.clone().ready()).await;
        let Ok(Ok(mut send)) = ready else { break };
        let request = http::Request::builder()
            .method("GET")
            .uri(format!("https://{HOST}{WORKSPACE}"))
            .header("authorization", format!("Bearer {team}"))
            .body(())
            .unwrap();
        match send.send_request(request, false) {
            Ok((_response, mut body)) => {
                body.send_reset(h2::Reason::CANCEL);
                opened += 1;
            }
            Err(_) => break,
        }
        if opened % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let ended = tokio::time::timeout(PATIENCE, &mut attacker.driver)
        .await
        .expect("the attacking connection was never closed")
        .unwrap();
    // GOAWAY (ENHANCE_YOUR_CALM), or the connection closed under the
    // client's writes before it read the GOAWAY.
    let cut_off = ended
        .as_ref()
        .err()
        .is_some_and(|err| err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || err.is_io());
    assert!(cut_off, "after {opened} streams: {ended:?}");
    assert!(opened < limit, "never cut off: {opened} streams");

    // The same frame by frame: HEADERS and RST_STREAM pairs in one write
    // get GOAWAY with ENHANCE_YOUR_CALM.
    let mut raw = RawH2::connect(world.addr(), &world.pki.root_pem()).await;
    let bearer = format!("Bearer {team}");
    let mut pairs = Vec::new();
    for i in 0..200u32 {
        let stream = 2 * i + 1;
        pairs.extend(request_frame(
            stream,
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", HOST),
                (":path", WORKSPACE),
                ("authorization", bearer.as_str()),
            ],
        ));
        pairs.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
    }
    raw.send(&pairs).await;
    assert_eq!(
        raw.outcome(u32::MAX).await,
        FrameOutcome::GoAway(ENHANCE_YOUR_CALM)
    );

    stop.store(true, Ordering::Relaxed);
    steady_task.await.unwrap();
    let statuses = statuses.lock().unwrap().clone();
    assert!(!statuses.is_empty());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // And a new connection is served.
    let response = world
        .h2()
        .await
        .request(H2Request::new("GET", WORKSPACE).token(&team))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(
        world.upstream.count() < opened / 2,
        "{} of {opened} reset streams were forwarded",
        world.upstream.count()
    );
}

#[tokio::test]
async fn oversized_header_lists_and_continuation_floods_are_cut_off_while_others_are_served() {
    let world = TlsWorld::start("limits: { max_header_bytes: 16384, max_header_count: 20 }").await;
    let team = world.gateway.issue(world.team_owner()).await;
    let mut h2 = world.h2().await;
    let normal = H2Request::new("GET", WORKSPACE).token(&team);

    // Over the header list limit: refused (431, or the stream reset), and
    // the connection serves on.
    let big = "x".repeat(20_000);
    let refused = h2.request(normal.headers(&[("x-big", big.as_str())])).await;
    match refused {
        Ok(response) => assert_eq!(response.status, 431, "{}", response.body),
        Err(err) => assert!(err.reason().is_some(), "{err:?}"),
    }
    assert_eq!(h2.request(normal).await.unwrap().status, 200);

    // Too many fields: 431 with a JSON:API error, as over HTTP/1.1.
    let many: Vec<(String, String)> = (0..25).map(|i| (format!("x-f{i}"), "1".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let response = h2.request(normal.headers(&many)).await.unwrap();
    assert_eq!(response.status, 431);
    assert!(response.json()["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("header lines"));

    // Far over the limit: the connection is closed.
    let huge = "x".repeat(200_000);
    let _ = h2
        .request(normal.headers(&[("x-huge", huge.as_str())]))
        .await
        .expect_err("a header list 12 times the limit was answered");
    let ended = tokio::time::timeout(PATIENCE, &mut h2.driver)
        .await
        .expect("the connection stayed open")
        .unwrap();
    assert!(ended.is_err(), "{ended:?}");

    // A header block in a flood of CONTINUATION frames: GOAWAY.
    let mut raw = RawH2::connect(world.addr(), &world.pki.root_pem()).await;
    let block = crate::tls_harness::header_block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", HOST),
        (":path", WORKSPACE),
    ]);
    let mut flood = crate::tls_harness::frame(HEADERS, 0, 1, &block);
    for i in 0..200 {
        let field =
            crate::tls_harness::header_block(&[("x-c", if i % 2 == 0 { "a" } else { "b" })]);
        flood.extend(crate::tls_harness::frame(CONTINUATION, 0, 1, &field));
    }
    raw.send(&flood).await;
    assert_eq!(
        raw.outcome(1).await,
        FrameOutcome::GoAway(ENHANCE_YOUR_CALM)
    );

    // Others are served, and nothing oversized reached the upstream.
    let response = world.h2().await.request(normal).await.unwrap();
    assert_eq!(response.status, 200);
    assert!(world
        .upstream
        .requests()
        .iter()
        .all(|seen| seen.header("x-big").is_none() && seen.header("x-huge").is_none()));
}

#[tokio::test]
async fn h2_bodies_are_bounded_timed_and_forwarded_whole() {
    let world = TlsWorld::start(
        "limits: { max_body_bytes: 64, body_idle_timeout_ms: 300, body_read_timeout_ms: 5000 }",
    )
    .await;
    let team = world.gateway.issue(world.team_owner()).await;
    let mut h2 = world.h2().await;
    let patch = |body: &'static [u8]| H2Request::new("PATCH", WORKSPACE).token(&team).body(body);

    // Within the limit: forwarded whole, with its exact length.
    let body = br#"{"data":{"attributes":{"name":"x"}}}"#;
    let response = h2.request(patch(body)).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = world.upstream.last();
    assert_eq!(seen.body, body);
    assert_eq!(
        seen.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    let forwarded = world.upstream.count();

    // Over the limit, without a declared length: 413.
    let response = h2.request(patch(&[b' '; 65])).await.unwrap();
    assert_eq!(response.status, 413);
    // A declared length over the limit: 413 before the body is read.
    let response = h2
        .request(patch(&[b' '; 10]).headers(&[("content-length", "1000")]))
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status, 413);
    }

    // A body that stops coming: 408.
    let request = http::Request::builder()
        .method("PATCH")
        .uri(format!("https://{HOST}{WORKSPACE}"))
        .header("authorization", format!("Bearer {team}"))
        .header("content-type", "application/vnd.api+json")
        .body(())
        .unwrap();
    let mut send = h2.send.clone().ready().await.unwrap();
    let (response, mut stream) = send.send_request(request, false).unwrap();
    stream
        .send_data(bytes::Bytes::from_static(b"{\"data\":"), false)
        .unwrap();
    let response = read_response(response).await.unwrap();
    assert_eq!(response.status, 408, "{}", response.body);
    assert_eq!(world.upstream.count(), forwarded);
    let metrics = world.metrics().await;
    assert!(metric(&metrics, "tokengate_timeouts_total{kind=\"body_idle\"}") >= 1.0);
    drop(stream);
}

#[tokio::test]
async fn idle_h2_connections_and_clients_that_do_not_read_are_closed() {
    let world =
        TlsWorld::start("limits: { keep_alive_timeout_ms: 300, write_timeout_ms: 300 }").await;
    let team = world.gateway.issue(world.team_owner()).await;

    // Idle after a request: GOAWAY, and the connection ends cleanly.
    let mut idle = world.h2().await;
    let response = idle
        .request(H2Request::new("GET", WORKSPACE).token(&team))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let ended = tokio::time::timeout(PATIENCE, &mut idle.driver)
        .await
        .expect("an idle connection was kept open")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");

    // A client that opens no window for the response: cut off.
    let config = crate::tls_harness::client_config(
        &world.pki.root_pem(),
        &[b"h2"],
        crate::tls_harness::TLS_12_AND_13,
    );
    let stream = crate::tls_harness::tls_connect(world.addr(), config)
        .await
        .unwrap();
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(0);
    let mut closed = H2::handshake(stream, builder).await;
    let pending = closed
        .start(H2Request::new("GET", WORKSPACE).token(&team))
        .await
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, pending)
        .await
        .expect("no response head");
    if let Ok(response) = response {
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let chunk = tokio::time::timeout(PATIENCE, body.data())
            .await
            .expect("the stalled response was never cut off");
        assert!(
            !matches!(chunk, Some(Ok(_))),
            "data past a zero window: {chunk:?}"
        );
    }
    let _ = tokio::time::timeout(PATIENCE, &mut closed.driver)
        .await
        .expect("the connection of a client that does not read stayed open");
    let metrics = world.metrics().await;
    assert!(
        metric(&metrics, "tokengate_timeouts_total{kind=\"write\"}") >= 1.0,
        "{metrics}"
    );
}

/// An upstream that answers `/api/v2/slow` only once released.
async fn slow_upstream(
    release: Arc<tokio::sync::Notify>,
    arrived: Arc<tokio::sync::Notify>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (release, arrived) = (release.clone(), arrived.clone());
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let (release, arrived) = (release.clone(), arrived.clone());
                    async move {
                        if request.uri().path() == "/api/v2/slow" {
                            arrived.notify_one();
                            release.notified().await;
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(
                                b"{\"slow\":true}",
                            )),
                        ))
                    }
                },
            );
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A gateway over TLS in front of [`slow_upstream`], on its own Redis, with
/// a team token.
struct SlowWorld {
    gateway: TestGateway,
    team: String,
    pki: Pki,
    release: Arc<tokio::sync::Notify>,
    arrived: Arc<tokio::sync::Notify>,
    _redis: RedisServer,
    _dir: tempfile::TempDir,
}

impl SlowWorld {
    async fn start(extra: &str) -> SlowWorld {
        let redis = RedisServer::start();
        let release = Arc::new(tokio::sync::Notify::new());
        let arrived = Arc::new(tokio::sync::Notify::new());
        let upstream = slow_upstream(release.clone(), arrived.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new("tokengate test");
        let files = pki.issue(dir.path(), "server", &[HOST], Validity::Current);
        let config = write_config(
            dir.path(),
            &format!("http://{upstream}"),
            &redis.url(),
            &tls_section(&files, extra),
        );
        let gateway = TestGateway::start(&config).await;
        gateway.store().create_org("acme").await.unwrap();
        let team_id = gateway.store().create_team("acme", "dev").await.unwrap().id;
        let team = gateway
            .issue(Owner::Team {
                org: "acme".into(),
                team_id,
            })
            .await;
        SlowWorld {
            gateway,
            team,
            pki,
            release,
            arrived,
            _redis: redis,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn a_drain_sends_goaway_and_finishes_the_streams_in_flight() {
    let SlowWorld {
        gateway,
        team,
        pki,
        release,
        arrived,
        _redis,
        _dir,
    } = SlowWorld::start("shutdown: { grace_period_ms: 20000 }").await;
    let addr = gateway.addr;
    let mut h2 = H2::connect(addr, &pki.root_pem()).await;
    let in_flight = h2
        .start(H2Request::new("GET", "/api/v2/slow").token(&team))
        .await
        .unwrap();
    arrived.notified().await;

    let stopping = tokio::spawn(gateway.stop());
    // The drain reaches the connection: new streams are refused (GOAWAY)
    // while the one in flight goes on.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let refused = match h2.send.clone().ready().await {
            Err(_) => true,
            Ok(mut send) => {
                let request = http::Request::builder()
                    .uri(format!("https://{HOST}/_tokengate/health"))
                    .body(())
                    .unwrap();
                match send.send_request(request, true) {
                    Err(_) => true,
                    Ok((response, _)) => read_response(response).await.is_err(),
                }
            }
        };
        if refused {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no GOAWAY");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    release.notify_one();
    let response = read_response(in_flight).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body, "{\"slow\":true}");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("the drain did not end")
        .unwrap();
    let ended = tokio::time::timeout(PATIENCE, &mut h2.driver)
        .await
        .expect("the connection outlived the drain")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_only_when_turned_on() {
    let world = World::with_config("http2_cleartext: true").await;
    let team = world.gateway.issue(world.team_owner()).await;
    let tcp = tokio::net::TcpStream::connect(world.gateway.addr)
        .await
        .unwrap();
    let mut h2 = H2::handshake(tcp, h2::client::Builder::new()).await;
    let response = h2
        .request(H2Request::new("GET", WORKSPACE).token(&team))
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = world.upstream.last();
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-tokengate-team"),
        Some(world.team_id.as_str())
    );
    // HTTP/1.1 on the same listener.
    let response = world
        .send(RawRequest::new("GET", WORKSPACE).token(&team))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(world.upstream.count(), 2);

    // Without it, the preface is not HTTP/1.1: refused, nothing forwarded.
    let plain = World::new().await;
    let tcp = tokio::net::TcpStream::connect(plain.gateway.addr)
        .await
        .unwrap();
    let mut h2 = H2::handshake(tcp, h2::client::Builder::new()).await;
    let refused = h2
        .request(H2Request::new("GET", WORKSPACE).token(&team))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(plain.upstream.count(), 0);
}

/// A client that resets its stream once the request went upstream cannot
/// keep it out of the access log and the metrics: the request is recorded
/// as it is dropped, with status 499.
#[tokio::test]
async fn a_stream_reset_after_forwarding_is_still_logged_and_counted() {
    let SlowWorld {
        gateway,
        team,
        pki,
        release,
        arrived,
        _redis,
        _dir,
    } = SlowWorld::start("").await;
    let mut h2 = H2::connect(gateway.addr, &pki.root_pem()).await;
    let counted = |metrics: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("tokengate_requests_total{decision=\"allow\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    let metrics = || H2Request::new("GET", "/_tokengate/metrics");
    let before = counted(&h2.request(metrics()).await.unwrap().body);
    let in_flight = h2
        .start(H2Request::new("GET", "/api/v2/slow").token(&team))
        .await
        .unwrap();
    arrived.notified().await;
    // Dropping the response future resets the stream (CANCEL).
    drop(in_flight);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let after = counted(&h2.request(metrics()).await.unwrap().body);
        if after > before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reset request was never counted ({before} allowed requests before, {after} after)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    release.notify_one();
}

/// A stream without a valid token gets its answer before a byte of its
/// body is read: the gateway does not wait for (or hold) the body.
#[tokio::test]
async fn a_stream_body_is_not_read_before_its_sender_is_authenticated() {
    let world = TlsWorld::start("").await;
    let h2 = world.h2().await;
    for authorization in [None, Some("Bearer garbage")] {
        let mut send = tokio::time::timeout(PATIENCE, h2.send.clone().ready())
            .await
            .unwrap()
            .unwrap();
        let mut request = http::Request::builder()
            .method("PATCH")
            .uri(format!("https://{HOST}{WORKSPACE}"))
            .header("content-type", "application/vnd.api+json")
            .header("content-length", "1048576");
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        // The body is announced and never sent.
        let (response, _body) = send.send_request(request.body(()).unwrap(), false).unwrap();
        let response = tokio::time::timeout(PATIENCE, read_response(response))
            .await
            .expect("the gateway waited for the body")
            .unwrap();
        assert_eq!(response.status, 401, "{authorization:?}: {}", response.body);
    }
    assert_eq!(world.upstream.count(), 0);
}

/// Terraform's CLI talks HTTP/2 over TLS (Go's client offers `h2`): an
/// upload to the object storage with a declared length streams to the
/// upstream while it arrives over HTTP/2 too, so an archive larger than
/// `limits.max_body_bytes` reaches the upstream whole, byte for byte.
#[tokio::test]
async fn an_upload_over_h2_streams_past_the_body_limit() {
    use crate::object_storage::{created_with, large_archive, CREATE_CV, ISSUED};
    let world = TlsWorld::start("limits: { max_body_bytes: 1024 }").await;
    {
        let mut directory = world.upstream.directory();
        directory.workspace("ws-1", "one", "acme");
        directory.answer_forwarded("POST", CREATE_CV, 201, created_with(ISSUED));
    }
    let team = world.gateway.issue(world.team_owner()).await;
    let mut h2 = world.h2().await;
    let created = h2
        .request(
            H2Request::new("POST", CREATE_CV)
                .token(&team)
                .body(br#"{"data":{"type":"configuration-versions"}}"#),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);

    let archive = large_archive(300_000);
    let length = archive.len().to_string();
    let headers = [
        ("content-type", "application/octet-stream"),
        ("content-length", length.as_str()),
    ];
    let uploaded = h2
        .request(
            H2Request::new("PUT", ISSUED)
                .headers(&headers)
                .body(&archive),
        )
        .await
        .unwrap();
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let uploads: Vec<_> = world
        .upstream
        .requests()
        .into_iter()
        .filter(|seen| seen.method == "PUT")
        .collect();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].header("content-length"), Some("300000"));
    assert!(uploads[0].body == archive, "forwarded byte for byte");
}
