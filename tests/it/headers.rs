//! Header stripping and identity headers: no identity, forwarding,
//! method-override, hop-by-hop or credential header of the client reaches the
//! upstream, in any spelling, case, count or `Connection` listing; the
//! upstream sees the gateway's identity headers, one value each.

use crate::harness::*;

#[tokio::test]
async fn spoofed_identity_headers_are_stripped() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces")
                .token(&token)
                .headers(&[
                    ("X-Tokengate-Kind", "org"),
                    ("x-tokengate-org", "evil"),
                    ("X_TOKENGATE_TEAM", "team-evil"),
                    ("x-tokengate_user", "user-evil"),
                    ("X-Tokengate-Anything", "1"),
                    ("X-Forwarded-For", "10.0.0.1"),
                    ("X-Forwarded-Host", "evil.example"),
                    ("Forwarded", "for=evil"),
                    ("X-Real-IP", "evil"),
                    ("X-HTTP-Method-Override", "DELETE-evil"),
                    ("Connection", "close, X-Hop"),
                    ("X-Hop", "secret"),
                    ("Proxy-Authorization", "Basic x"),
                    ("X-Kept", "yes"),
                ]),
        )
        .await;
    assert_eq!(response.status, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.header("x-tokengate-kind"), Some("team"));
    assert_eq!(seen.header("x-tokengate-org"), Some("acme"));
    assert_eq!(
        seen.header("x-tokengate-team"),
        Some(world.team_id.as_str())
    );
    for (name, value) in &seen.headers {
        let lower = name.to_ascii_lowercase().replace('_', "-");
        assert!(
            !value.contains("evil"),
            "spoofed value reached the upstream: {name}: {value}"
        );
        if lower.starts_with("x-tokengate-") {
            assert!(
                [
                    "x-tokengate-kind",
                    "x-tokengate-org",
                    "x-tokengate-team",
                    "x-tokengate-token-id"
                ]
                .contains(&lower.as_str()),
                "{name}"
            );
        }
    }
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gateway.test"));
    assert_eq!(seen.header("authorization"), None, "the token stays here");
    assert_eq!(seen.header("x-hop"), None);
    assert_eq!(seen.header("proxy-authorization"), None);
    assert_eq!(seen.header("x-kept"), Some("yes"));
    // Anonymous requests cannot smuggle identity either.
    let response = world
        .send(RawRequest::new("GET", "/api/v2/ping").headers(&[("X-Tokengate-Kind", "team")]))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(world.upstream.last().header("x-tokengate-kind"), None);
}

/// Sends `GET /api/v2/workspaces` with a team token and `headers` to a new
/// [`World`], which must forward it; the world, and the request as its
/// upstream received it.
async fn forwarded_with(headers: &[(&str, &str)]) -> (World, Recorded) {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces")
                .token(&token)
                .headers(headers),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = world.upstream.last();
    (world, seen)
}

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
/// gateway's values are the only ones.
#[tokio::test]
async fn repeated_and_connection_named_identity_headers_leave_only_the_gateways() {
    let (world, seen) = forwarded_with(&[
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
    ])
    .await;
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

/// Empty items, tabs and trailing commas in `Connection`: the hop headers
/// it names are removed, the Host the upstream sees is the upstream's, and
/// X-Forwarded-Host (the client's Host) is kept.
#[tokio::test]
async fn connection_lists_with_odd_whitespace_remove_the_named_hop_headers() {
    let (world, seen) = forwarded_with(&[
        ("Connection", ",, \t keep-alive\t ,, X-Hop-A ,\tX-Hop-B\t,"),
        ("Connection", ""),
        ("Connection", " , ,"),
        ("X-Hop-A", "1"),
        ("X-Hop-B", "1"),
        ("X-Kept", "yes"),
    ])
    .await;
    assert_absent(&seen, &["x-hop-a", "x-hop-b", "connection"]);
    assert_eq!(
        seen.header("host"),
        Some(world.upstream.addr.to_string().as_str())
    );
    assert_eq!(seen.header("x-forwarded-host"), Some("gateway.test"));
    assert_eq!(seen.header("x-kept"), Some("yes"));
    assert_identity_is_the_gateways(&seen, &world.team_id);
}

/// `Connection` naming an end-to-end header the gateway judges or sets
/// (`Content-Type`: the upstream would read the judged JSON as a form;
/// `Host`, `Authorization`, …) is refused, and nothing reaches the upstream.
#[tokio::test]
async fn connection_naming_a_judged_end_to_end_header_is_refused() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    for listed in [
        "Content-Type",
        "content-type, keep-alive",
        "Content-Length",
        "host",
        "Authorization",
        "Content_Type",
    ] {
        let response = world
            .send(
                RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                    .token(&token)
                    .headers(&[("Connection", listed)])
                    .body(br#"{"data":{"attributes":{"name":"x"}}}"#),
            )
            .await;
        assert_eq!(response.status, 400, "{listed}: {}", response.body);
    }
    assert_eq!(world.upstream.count(), 0);
}

/// Close to hyper's 100-header limit, many Connection headers each naming
/// one hop header: all removed, the rest kept.
#[tokio::test]
async fn many_connection_headers_near_the_header_limit_remove_every_named_header() {
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
    let (world, seen) = forwarded_with(&headers).await;
    for (name, value) in &seen.headers {
        assert!(!value.contains("evil"), "{name}: {value}");
    }
    for name in &kept {
        assert_eq!(seen.header(name), Some("yes"), "{name}");
    }
    assert_identity_is_the_gateways(&seen, &world.team_id);
}

/// Forwarded, every X-Forwarded-* and X-Real-IP never reach the upstream,
/// not only the well-known names: X-Forwarded-Port, -Prefix, -Scheme, -Ssl
/// and -Server are stripped too (Rack, Spring, Django and ASP.NET build
/// redirect and absolute URLs, and decide "is this HTTPS", from them).
#[tokio::test]
async fn every_x_forwarded_header_is_stripped() {
    let (_, seen) = forwarded_with(&[
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Prefix", "/evil"),
        ("X-Forwarded-Scheme", "https"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Forwarded-Server", "evil.example"),
    ])
    .await;
    assert_absent(
        &seen,
        &[
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-forwarded-scheme",
            "x-forwarded-ssl",
            "x-forwarded-server",
        ],
    );
}

/// CGI-style upstreams (Rack, WSGI, PHP) map `_` and `-` to the same
/// HTTP_X_… variable, so forwarding headers are stripped in every `_`/`-`
/// spelling, like X-Tokengate-* and method-override headers:
/// `X_Forwarded_For: 6.6.6.6` would reach a Rack app as HTTP_X_FORWARDED_FOR
/// next to (or instead of) the gateway's value.
#[tokio::test]
async fn underscore_spellings_of_forwarding_headers_are_stripped() {
    let (_, seen) = forwarded_with(&[
        ("X_Forwarded_For", "6.6.6.6"),
        ("x-forwarded_host", "evil.example"),
        ("X_FORWARDED_PROTO", "https"),
        ("X_Real_IP", "6.6.6.6"),
    ])
    .await;
    let leaked: Vec<String> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.contains('_'))
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    assert!(leaked.is_empty(), "reached the upstream: {leaked:?}");
}

/// A `Connection` value with an obs-text byte (which hyper accepts, and
/// which `HeaderValue::to_str` refuses) still removes every header it names:
/// the hop-by-hop header never reaches the upstream.
#[tokio::test]
async fn a_connection_header_with_obs_text_still_removes_the_headers_it_names() {
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

/// `allowed_hosts`: a request naming any other host is refused before
/// anything else and never reaches the upstream (where a Rails upstream
/// would trust it as `X-Forwarded-Host` for its links); the names allowed
/// pass with any port and case, wildcards cover subdomains only.
#[tokio::test]
async fn only_allowed_hosts_are_answered_and_forwarded() {
    let world = World::with_config("allowed_hosts: [gateway.test, \"*.corp.test\"]\n").await;
    let token = world.gateway.issue(world.team_owner()).await;
    let get = |host: &str, path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
    };
    let addr = world.gateway.addr;
    for host in [
        "evil.example",
        "corp.test",
        "gateway.test.evil.example",
        "127.0.0.1",
    ] {
        for path in ["/api/v2/workspaces/ws-1", "/_tokengate/ui/"] {
            let response = send_bytes(addr, get(host, path).as_bytes()).await;
            assert_eq!(response.status, 400, "{host} {path}: {}", response.body);
            assert!(
                response.error_detail().contains("allowed_hosts"),
                "{}",
                response.body
            );
        }
    }
    assert_eq!(
        world.upstream.count(),
        0,
        "no other host reached the upstream"
    );
    // The gateway's own health checks answer any host (a probe names the
    // address it dials).
    for path in ["/_tokengate/health", "/_tokengate/ready"] {
        let response = send_bytes(addr, get("10.1.2.3:8080", path).as_bytes()).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    for host in ["gateway.test", "GATEWAY.test:8443", "tfe.corp.test"] {
        let response = send_bytes(addr, get(host, "/api/v2/workspaces/ws-1").as_bytes()).await;
        assert_eq!(response.status, 200, "{host}: {}", response.body);
        assert_eq!(world.upstream.last().header("x-forwarded-host"), Some(host));
    }
    assert_eq!(world.upstream.count(), 3);
}
