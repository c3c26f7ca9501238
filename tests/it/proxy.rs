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
        "/api/v2/runs/run-abc/actions/apply?x=1",
        "/api/v2/runs/run-abc%23/actions/apply",
        "/api/v2/runs/run-abc/actions/apply%3Fx",
        "/api/v2/runs/run-abc/actions/apply%20",
        "/api/v2/runs/run-abc/actions/%C0%AFapply",
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
async fn upstream_down_is_a_502() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let dead = free_addr();
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

/// Rack's `MethodOverride` (on in every non-API Rails app) turns a `POST`
/// carrying `X-HTTP-Method-Override: GET` into a `GET`, while the policy
/// judges the `POST`. No method-override header reaches the upstream, so an
/// organization token cannot read the JSON plan (a `GET` the policy refuses
/// it) by sending a `POST` with the header.
#[tokio::test]
async fn method_override_headers_never_reach_the_upstream() {
    let world = World::new().await;
    let org = world.gateway.issue(world.org_owner()).await;
    let plan = "/api/v2/plans/plan-1/json-output";
    assert_eq!(
        world
            .send(RawRequest::new("GET", plan).token(&org))
            .await
            .status,
        403,
        "the policy refuses this GET to organization tokens"
    );
    for name in [
        "X-HTTP-Method-Override",
        "x-http-method-override",
        "X_HTTP_METHOD_OVERRIDE",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let response = world
            .send(
                RawRequest::new("POST", plan)
                    .token(&org)
                    .headers(&[(name, "GET")]),
            )
            .await;
        if response.status == 200 {
            let seen = world.upstream.last();
            let leaked: Vec<_> = seen
                .headers
                .iter()
                .filter(|(n, _)| {
                    let n = n.to_ascii_lowercase().replace('_', "-");
                    n.contains("method")
                })
                .collect();
            assert!(
                leaked.is_empty(),
                "{name}: a method override reached the upstream: {leaked:?}"
            );
        }
    }
}

/// Rails routes every path with an optional format extension
/// (`/runs/:id/actions/apply(.:format)`), so `apply.json` is the apply
/// action upstream: a rule that refuses `apply` refuses `apply.json` too.
#[tokio::test]
async fn a_format_extension_does_not_slip_past_a_rule() {
    let world = World::new().await;
    let org = world.gateway.issue(world.org_owner()).await;
    for (method, path) in [
        ("POST", "/api/v2/runs/run-1/actions/apply.json"),
        ("POST", "/api/v2/runs/run-1/actions/APPLY.json"),
        ("POST", "/api/v2/runs.json"),
        ("POST", "/api/v2/workspaces/ws-1/state-versions.xml"),
        ("GET", "/api/v2/plans/plan-1/json-output.json"),
        ("POST", "/api/v2/runs/run-1/actions/apply%2Ejson"),
    ] {
        let response = world.send(RawRequest::new(method, path).token(&org)).await;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
    }
    assert_eq!(world.upstream.count(), 0, "{:?}", world.upstream.requests());
    // Ids with dots and other endpoints are unaffected.
    let team = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(RawRequest::new("POST", "/api/v2/runs/run-1/actions/apply.json").token(&team))
        .await;
    assert_eq!(response.status, 200);
    let response = world
        .send(RawRequest::new("GET", "/api/v2/runs/run-1.json").token(&org))
        .await;
    assert_eq!(response.status, 200);
}

/// Rack's MethodOverride honours `_method` in a form (or untyped) POST body,
/// so a POST the policy allows could run as another method upstream: service
/// accounts get 415 for such bodies; people may post forms.
#[tokio::test]
async fn service_accounts_cannot_post_forms_that_override_the_method() {
    let world = World::new().await;
    let org = world.gateway.issue(world.org_owner()).await;
    let path = "/api/v2/plans/plan-1/json-output";
    for headers in [
        &[("Content-Type", "application/x-www-form-urlencoded")][..],
        &[("Content-Type", "multipart/form-data; boundary=x")][..],
        // An untyped body is form data to Rack.
        &[("Content-Type", "")][..],
    ] {
        let response = world
            .send(
                RawRequest::new("POST", path)
                    .token(&org)
                    .headers(headers)
                    .body(b"_method=GET"),
            )
            .await;
        assert_eq!(response.status, 415, "{headers:?}: {}", response.body);
    }
    assert_eq!(
        world.upstream.count(),
        0,
        "no form POST reached the upstream"
    );
    // JSON bodies and bodiless POSTs still go through; nobody posts forms.
    let json = [("Content-Type", "application/vnd.api+json")];
    let response = world
        .send(
            RawRequest::new("POST", "/api/v2/organizations/acme/workspaces")
                .token(&org)
                .headers(&json)
                .body(b"{}"),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let response = world
        .send(RawRequest::new("POST", "/api/v2/workspaces/ws-1/actions/lock").token(&org))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let (_, user_token) = world.gateway.user_with_token("acme", "alice", &[]).await;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let before = world.upstream.count();
    let response = world
        .send(
            RawRequest::new("POST", "/session")
                .token(&user_token)
                .headers(&form)
                .body(b"a=b"),
        )
        .await;
    assert_eq!(response.status, 415, "{}", response.body);
    assert_eq!(
        world.upstream.count(),
        before,
        "no form reached the upstream"
    );
}
