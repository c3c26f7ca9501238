//! Findings of the adversarial review: each test failed before its fix.

use crate::harness::*;

/// Rack's `MethodOverride` (on in every non-API Rails app) turns a `POST`
/// carrying `X-HTTP-Method-Override: GET` into a `GET`. The policy judged a
/// `POST`, so an organization token could read the JSON plan (a `GET` the
/// policy refuses it) by sending a `POST` with the header.
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
/// action upstream. The policy compared the last segment literally and let
/// it through.
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
