//! The request path end to end: real Redis, real sockets, a recording upstream.

use crate::harness::*;
use std::time::Duration;
use tokengate::store::Owner;

const APPLY: &str = "/api/v2/runs/run-abc/actions/apply";

#[tokio::test]
async fn team_token_is_forwarded_with_identity_headers() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces/ws-1?include=runs").token(&token))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body, "{\"upstream\":true}");
    let seen = world.upstream.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/api/v2/workspaces/ws-1?include=runs");
    assert_eq!(seen.header("x-tokengate-kind"), Some("team"));
    assert_eq!(seen.header("x-tokengate-org"), Some("acme"));
    assert_eq!(
        seen.header("x-tokengate-team"),
        Some(world.team_id.as_str())
    );
    assert_eq!(seen.header("x-tokengate-user"), None);
    let token_id = seen.header("x-tokengate-token-id").unwrap();
    assert!(
        token_id.starts_with("at-") && token[..14] == token_id[3..],
        "{token_id}"
    );
    assert_eq!(
        seen.header("authorization"),
        None,
        "the client's token must not reach the upstream"
    );
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gateway.test"));
}

#[tokio::test]
async fn team_token_may_apply() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(RawRequest::new("POST", APPLY).token(&token).body(b"{}"))
        .await;
    assert_eq!(response.status, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.target, APPLY);
    assert_eq!(seen.body, b"{}");
}

#[tokio::test]
async fn org_token_apply_is_refused_and_never_forwarded() {
    let world = World::new().await;
    let token = world.gateway.issue(world.org_owner()).await;
    for (method, path) in [
        ("POST", APPLY),
        ("POST", "/api/v2/runs"),
        ("POST", "/api/v2/runs/run-abc/actions/force-execute"),
        ("POST", "/api/v2/runs/run-abc/actions/discard"),
        ("POST", "/api/v2/runs/run-abc/actions/cancel"),
        ("POST", "/api/v2/runs/run-abc/actions/force-cancel"),
        ("POST", "/api/v2/workspaces/ws-1/configuration-versions"),
        ("POST", "/api/v2/workspaces/ws-1/state-versions"),
    ] {
        let response = world
            .send(RawRequest::new(method, path).token(&token))
            .await;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
        assert_eq!(
            response.header("content-type"),
            Some("application/vnd.api+json")
        );
        let detail = response.error_detail();
        assert!(detail.contains("team token"), "{detail}");
        assert!(
            detail.contains("policy rule `org-"),
            "the detail names the rule: {detail}"
        );
    }
    assert_eq!(
        world.upstream.count(),
        0,
        "the upstream must never see an org apply"
    );
    // The same token may still do CRUD.
    let response = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                .token(&token)
                .body(b"{}"),
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        world.upstream.last().header("x-tokengate-kind"),
        Some("org")
    );
}

#[tokio::test]
async fn other_spellings_of_an_apply_never_reach_the_upstream() {
    let world = World::new().await;
    let token = world.gateway.issue(world.org_owner()).await;
    for spelling in [
        "/api/v2/runs/run-abc/actions/%61pply",
        "/api/v2/runs/run-abc/actions/%61%70%70%6c%79",
        "//api/v2/runs/run-abc/actions/apply",
        "/api/v2//runs/run-abc/actions/apply",
        "/api/v2/./runs/run-abc/actions/apply",
        "/api/v2/runs/run-abc/actions/apply/",
        "/api/v2/runs/run-abc/actions/./apply",
        "/api/v2/runs/run-abc/x/../actions/apply",
        "/api/v2/runs/run-abc/x/%2e%2e/actions/apply",
        "/API/V2/RUNS/run-abc/ACTIONS/APPLY",
        "/api/v2/runs/run-abc/actions/apply?x=1",
    ] {
        let response = world
            .send(RawRequest::new("POST", spelling).token(&token))
            .await;
        assert_eq!(response.status, 403, "{spelling}: {}", response.body);
    }
    for rejected in [
        "/api/v2/runs/run-abc/actions%2Fapply",
        "/api/v2/runs/run-abc/actions%5capply",
        "/api/v2/runs/run-abc/actions/apply%00",
        "/api/v2/runs/run-abc/actions/%2561pply",
        "/api/v2/runs/run-abc/actions/apply;jsessionid=1",
        "/../api/v2/runs/run-abc/actions/apply",
        // The server takes origin-form targets only.
        "http://gateway.test/api/v2/runs/run-abc/actions/apply",
    ] {
        let response = world
            .send(RawRequest::new("POST", rejected).token(&token))
            .await;
        assert_eq!(response.status, 400, "{rejected}: {}", response.body);
        assert!(response.json()["errors"][0]["detail"].is_string());
    }
    assert_eq!(
        world.upstream.count(),
        0,
        "no spelling may reach the upstream"
    );
}

#[tokio::test]
async fn the_canonical_path_is_what_is_forwarded() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(RawRequest::new("GET", "//api/v2/./workspaces/%77s-1/x/../?q=%2F").token(&token))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        world.upstream.last().target,
        "/api/v2/workspaces/ws-1?q=%2F"
    );
}

#[tokio::test]
async fn bad_unknown_and_missing_tokens_get_401_and_are_never_forwarded() {
    let world = World::new().await;
    let good = world.gateway.issue(world.team_owner()).await;
    // Same id, different secret (valid checksum is impossible to guess, so
    // this fails the shape check), an unknown slot, and garbage.
    let other_world_token =
        tokengate::token::format::generate(&tokengate::token::format::new_slot()).secret_token;
    let mut flipped = good.clone().into_bytes();
    flipped[40] = if flipped[40] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    for token in [
        other_world_token.as_str(),
        flipped.as_str(),
        "garbage",
        "a.atlasv1.b",
    ] {
        let response = world
            .send(RawRequest::new("GET", "/api/v2/workspaces").token(token))
            .await;
        assert_eq!(response.status, 401, "{token}: {}", response.body);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }
    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  x", "token abc"] {
        let response = world
            .send(
                RawRequest::new("GET", "/api/v2/workspaces").headers(&[("Authorization", header)]),
            )
            .await;
        assert_eq!(response.status, 401, "{header}");
    }
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces"))
        .await;
    assert_eq!(response.status, 401, "no token: {}", response.body);
    let response = world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces")
                .token(&good)
                .headers(&[("Authorization", "Bearer x")]),
        )
        .await;
    assert_eq!(response.status, 400, "two Authorization headers");
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn a_right_id_with_a_wrong_secret_is_refused() {
    let world = World::new().await;
    let real = world.gateway.issue(world.team_owner()).await;
    // A token of the right slot and generation but another secret: passes
    // the shape check and the generation check, and must fail argon2.
    let forged = tokengate::token::format::assemble(
        &real[..14],
        &tokengate::token::format::random_string(64),
    );
    assert_ne!(forged, real);
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&forged))
        .await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert!(response.error_detail().contains("invalid"));
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&real))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(world.upstream.count(), 1);
}

#[tokio::test]
async fn regenerate_and_revoke_take_effect_on_the_next_request() {
    let world = World::new().await;
    let old = world.gateway.issue(world.team_owner()).await;
    let ok = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&old))
        .await;
    assert_eq!(ok.status, 200, "the old token works (and is now cached)");
    let new = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&old))
        .await;
    assert_eq!(
        response.status, 401,
        "old token after regenerate: {}",
        response.body
    );
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&new))
        .await;
    assert_eq!(response.status, 200);
    tokengate::token::lifecycle::revoke(world.store(), &world.team_owner())
        .await
        .unwrap();
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&new))
        .await;
    assert_eq!(response.status, 401, "revoked token");
    assert_eq!(world.upstream.count(), 2);
}

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

#[tokio::test]
async fn redis_outage_fails_closed_and_recovers() {
    let mut world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/api/v2/workspaces").token(&token))
            .await
            .status,
        200
    );

    world.redis.kill();
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&token))
        .await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.api+json")
    );
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/_tokengate/ready"))
            .await
            .status,
        503
    );
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/_tokengate/health"))
            .await
            .status,
        200
    );
    assert_eq!(
        world.upstream.count(),
        1,
        "nothing is forwarded while the store is down"
    );

    world.redis.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if world
            .send(RawRequest::new("GET", "/api/v2/workspaces").token(&token))
            .await
            .status
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the gateway must recover by itself when Redis is back"
    );
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/_tokengate/ready"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_hung_redis_times_out_into_503() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    world.redis.signal("STOP");
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&token))
        .await;
    world.redis.signal("CONT");
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn unauthenticated_discovery_is_forwarded_and_nothing_else() {
    let world = World::new().await;
    let response = world.send(RawRequest::new("GET", "/api/v2/ping")).await;
    assert_eq!(response.status, 200);
    let response = world
        .send(RawRequest::new("GET", "/.well-known/terraform.json"))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(world.upstream.count(), 2);
    assert_eq!(world.upstream.last().header("x-tokengate-kind"), None);
    let response = world.send(RawRequest::new("POST", "/api/v2/ping")).await;
    assert_eq!(response.status, 401);
    assert_eq!(world.upstream.count(), 2);
}

#[tokio::test]
async fn service_accounts_are_not_interactive_but_users_are() {
    let world = World::new().await;
    let team = world.gateway.issue(world.team_owner()).await;
    let org = world.gateway.issue(world.org_owner()).await;
    let (user, user_token) = world
        .gateway
        .user_with_token("acme", "alice", std::slice::from_ref(&world.team_id))
        .await;
    for token in [&team, &org] {
        let response = world
            .send(RawRequest::new("GET", "/app/acme/workspaces").token(token))
            .await;
        assert_eq!(response.status, 403, "{}", response.body);
        assert!(response.error_detail().contains("only call the API"));
    }
    assert_eq!(world.upstream.count(), 0);
    let response = world
        .send(RawRequest::new("GET", "/app/acme/workspaces").token(&user_token))
        .await;
    assert_eq!(response.status, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.header("x-tokengate-kind"), Some("user"));
    assert_eq!(seen.header("x-tokengate-user"), Some(user.id.as_str()));
    assert_eq!(seen.header("x-tokengate-team"), None);
}

#[tokio::test]
async fn reserved_paths_are_never_forwarded() {
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    for path in [
        "/_tokengate/nope",
        "/_TOKENGATE/x",
        "/api/../_tokengate/secret",
        "/_tokengate",
    ] {
        let response = world.send(RawRequest::new("GET", path).token(&token)).await;
        assert_eq!(response.status, 404, "{path}");
    }
    let health = world
        .send(RawRequest::new("GET", "/_tokengate/health"))
        .await;
    assert_eq!(health.status, 200);
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn unsupported_methods_and_oversized_bodies_are_refused() {
    let world = World::with_config("limits: { max_body_bytes: 16 }").await;
    let token = world.gateway.issue(world.team_owner()).await;
    for method in ["TRACE", "CONNECT", "post", "PROPFIND"] {
        let response = world
            .send(RawRequest::new(method, "/api/v2/workspaces").token(&token))
            .await;
        assert!(
            response.status == 405 || response.status == 400,
            "{method}: {}",
            response.status
        );
    }
    let response = world
        .send(
            RawRequest::new("POST", "/api/v2/workspaces")
                .token(&token)
                .body(&[b'x'; 64]),
        )
        .await;
    assert_eq!(response.status, 413);
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let world = World::new().await;
    let hashing = world.gateway.gateway.config.hashing;
    let past = tokengate::store::Timestamp(tokengate::store::Timestamp::now().0 - 1000);
    let issued = tokengate::token::lifecycle::issue(
        world.store(),
        world.team_owner(),
        hashing,
        None,
        Some(past),
    )
    .await
    .unwrap();
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&issued.token.secret_token))
        .await;
    assert_eq!(response.status, 401);
    assert!(response.error_detail().contains("expired"));
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn upstream_down_is_a_502() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = write_config(dir.path(), &format!("http://{dead}"), &redis.url(), "");
    let gateway = TestGateway::start(&config).await;
    gateway.store().create_org("acme").await.unwrap();
    let token = gateway.issue(Owner::Org { org: "acme".into() }).await;
    let response = send_raw(
        gateway.addr,
        RawRequest::new("GET", "/api/v2/workspaces").token(&token),
    )
    .await;
    assert_eq!(response.status, 502, "{}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.api+json")
    );
}

#[tokio::test]
async fn guessing_secrets_for_a_known_id_is_throttled_without_hurting_the_real_token() {
    let world = World::new().await;
    let real = world.gateway.issue(world.team_owner()).await;
    let get = |token: String| {
        let addr = world.gateway.addr;
        async move {
            send_raw(
                addr,
                RawRequest::new("GET", "/api/v2/workspaces").token(&token),
            )
            .await
        }
    };
    assert_eq!(
        get(real.clone()).await.status,
        200,
        "the real token is verified and cached"
    );
    let limit = tokengate::auth::FAILURES_BEFORE_THROTTLE as usize;
    for _ in 0..limit {
        let forged = tokengate::token::format::assemble(
            &real[..14],
            &tokengate::token::format::random_string(64),
        );
        assert_eq!(get(forged).await.status, 401);
    }
    let forged = tokengate::token::format::assemble(
        &real[..14],
        &tokengate::token::format::random_string(64),
    );
    let response = get(forged).await;
    assert_eq!(response.status, 429, "{}", response.body);
    assert_eq!(response.header("retry-after"), Some("60"));
    assert_eq!(
        get(real).await.status,
        200,
        "a cached real token is still served"
    );
    assert_eq!(world.upstream.count(), 2);
}

#[tokio::test]
async fn conflicting_message_framing_is_never_forwarded_ambiguously() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::new().await;
    let token = world.gateway.issue(world.team_owner()).await;
    // Content-Length and chunked together, with a smuggled request in the body.
    let smuggled = "GET /api/v2/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let request = format!(
        "POST /api/v2/workspaces HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {token}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n{smuggled}"
    );
    let mut stream = tokio::net::TcpStream::connect(world.gateway.addr)
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for seen in world.upstream.requests() {
        assert!(
            !seen.target.contains("smuggled"),
            "a smuggled request reached the upstream"
        );
        let lengths: Vec<_> = seen
            .headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .collect();
        let chunked = seen.headers.iter().any(|(n, _)| n == "transfer-encoding");
        assert!(
            !chunked || lengths.is_empty(),
            "both framings forwarded: {:?}",
            seen.headers
        );
        if let Some((_, len)) = lengths.first() {
            assert_eq!(len.parse::<usize>().unwrap(), seen.body.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrent_load_no_request_started_after_a_regenerate_accepts_the_old_token() {
    let world = World::new().await;
    let old = world.gateway.issue(world.team_owner()).await;
    let addr = world.gateway.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A flood of requests with the same token keeps coalesced reads in flight.
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let (old, stop) = (old.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 400 {
                    send_raw(
                        addr,
                        RawRequest::new("GET", "/api/v2/workspaces").token(&old),
                    )
                    .await;
                    sent += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let new = world.gateway.issue(world.team_owner()).await;
    // Every request that starts now must see the new credential.
    let checks: Vec<_> = (0..32)
        .map(|_| {
            let old = old.clone();
            tokio::spawn(async move {
                send_raw(
                    addr,
                    RawRequest::new("GET", "/api/v2/workspaces").token(&old),
                )
                .await
                .status
            })
        })
        .collect();
    for check in checks {
        assert_eq!(
            check.await.unwrap(),
            401,
            "a request started after the regenerate accepted the old token"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&new))
        .await;
    assert_eq!(response.status, 200);
}
