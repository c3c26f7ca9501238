//! The `/_tokengate/` endpoints and metrics: paths under `/_tokengate/` are
//! never forwarded; who may call the admin endpoints (addresses, listed teams
//! and users); how they authenticate (throttled and counted like the request
//! path); and what the metrics count.

use crate::harness::*;
use tokengate::store::Owner;

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
async fn admin_endpoints_are_for_allowed_addresses_only() {
    let world = World::new().await;
    let status = world
        .send(RawRequest::new("GET", "/_tokengate/status"))
        .await;
    assert_eq!(
        status.status, 200,
        "loopback is allowed by default: {}",
        status.body
    );
    let metrics = world
        .send(RawRequest::new("GET", "/_tokengate/metrics"))
        .await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/_tokengate/reload"))
            .await
            .status,
        405
    );
    assert_eq!(
        world
            .send(RawRequest::new("POST", "/_tokengate/status"))
            .await
            .status,
        405
    );
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/_tokengate/status/x"))
            .await
            .status,
        404
    );

    let world = World::with_config("admin: { allow_from: [10.0.0.0/8, \"fd00::/8\"] }").await;
    for (method, path) in [
        ("GET", "/_tokengate/status"),
        ("GET", "/_tokengate/metrics"),
        ("POST", "/_tokengate/reload"),
        ("GET", "/_tokengate//./status/"),
    ] {
        let response = world
            .send(RawRequest::new(method, path).headers(&[("X-Forwarded-For", "10.1.1.1")]))
            .await;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
        assert!(response.error_detail().contains("admin.allow_from"));
    }
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/_tokengate/health"))
            .await
            .status,
        200
    );
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/_tokengate/ready"))
            .await
            .status,
        200
    );
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn admin_teams_and_users_require_a_listed_token_and_reload_live() {
    let world = PolicyWorld::start(DEFAULT_POLICY, "").await;
    let (team, org) = world.tokens().await;
    let other_team = world.store().create_team("acme", "ops").await.unwrap();
    let other = world
        .gateway
        .issue(Owner::Team {
            org: "acme".into(),
            team_id: other_team.id,
        })
        .await;
    let config = std::fs::read_to_string(&world.config).unwrap();
    replace_file(
        &world.config,
        &format!("{config}\nadmin: {{ teams: [{}] }}\n", world.team_id),
    );
    let reload = world.reload().await;
    assert_eq!(reload.status, 200, "{}", reload.body);
    assert_eq!(
        reload.json()["reloaded"]["restart_required"],
        serde_json::json!([])
    );

    let status = RawRequest::new("GET", "/_tokengate/status");
    assert_eq!(world.send(status).await.status, 401);
    assert_eq!(world.send(status.token("garbage")).await.status, 401);
    assert_eq!(
        world.send(status.token(&org)).await.status,
        403,
        "org tokens are not admin"
    );
    assert_eq!(
        world.send(status.token(&other)).await.status,
        403,
        "another team is not admin"
    );
    assert_eq!(world.send(status.token(&team)).await.status, 200);
    assert_eq!(world.upstream.count(), 0);
}

/// The admin endpoints authenticate like the request path: guessed
/// secrets are 401 every time, and never lock the listed token out.
#[tokio::test]
async fn guessed_secrets_at_an_admin_endpoint_are_401_and_never_lock_out_the_real_token() {
    let world = World::with_config("admin: { teams: [team-admin0] }").await;
    let real = world.gateway.issue(world.team_owner()).await;
    let status = |token: String| {
        let addr = world.gateway.addr;
        async move {
            send_raw(
                addr,
                RawRequest::new("GET", "/_tokengate/status").token(&token),
            )
            .await
        }
    };
    for _ in 0..50 {
        let forged = forge(&real[..14]);
        assert_eq!(status(forged).await.status, 401);
    }
    assert_eq!(
        status(real).await.status,
        403,
        "verified: not a listed team"
    );
}

/// Failed authentications at the admin endpoints are counted like those of
/// the request path: guessing at `/_tokengate/status` must show in
/// `tokengate_auth_failures_total`.
#[tokio::test]
async fn failed_admin_authentications_are_counted_in_the_metrics() {
    let world = World::with_config("admin: { teams: [team-admin0] }").await;
    let real = world.gateway.issue(world.team_owner()).await;
    let forged = forge(&real[..14]);
    let response = send_raw(
        world.gateway.addr,
        RawRequest::new("GET", "/_tokengate/metrics").token(&forged),
    )
    .await;
    assert_eq!(response.status, 401);
    let text = world.gateway.gateway.metrics.encode();
    assert!(
        text.lines()
            .any(|l| l == "tokengate_auth_failures_total{reason=\"bad_secret\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_count_decisions_auth_failures_store_errors_and_upstream_latency() {
    let mut world = World::new().await;
    let team = world.gateway.issue(world.team_owner()).await;
    let org = world.gateway.issue(world.org_owner()).await;
    world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&team))
        .await;
    world
        .send(RawRequest::new("POST", "/api/v2/runs/r/actions/apply").token(&org))
        .await;
    world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token("garbage"))
        .await;
    world
        .send(RawRequest::new("GET", "/api/v2/workspaces"))
        .await;
    world.redis.kill();
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/api/v2/workspaces").token(&team))
            .await
            .status,
        503
    );
    assert_eq!(
        world
            .send(RawRequest::new("GET", "/_tokengate/ready"))
            .await
            .status,
        503
    );
    let text = world
        .send(RawRequest::new("GET", "/_tokengate/metrics"))
        .await
        .body;
    for (series, value) in [
        (
            "tokengate_requests_total{decision=\"allow\",rule=\"api-for-authenticated\"}",
            1.0,
        ),
        (
            "tokengate_requests_total{decision=\"deny\",rule=\"org-no-run-actions\"}",
            1.0,
        ),
        (
            "tokengate_requests_total{decision=\"deny\",rule=\"default\"}",
            1.0,
        ),
        (
            "tokengate_auth_failures_total{reason=\"malformed_token\"}",
            1.0,
        ),
        ("tokengate_auth_failures_total{reason=\"store_error\"}", 1.0),
        ("tokengate_store_errors_total", 2.0),
        (
            "tokengate_upstream_duration_seconds_count{outcome=\"response\"}",
            1.0,
        ),
    ] {
        assert_eq!(metric(&text, series), value, "{series} in\n{text}");
    }
    assert!(
        text.contains("# TYPE tokengate_upstream_duration_seconds histogram"),
        "{text}"
    );
}
