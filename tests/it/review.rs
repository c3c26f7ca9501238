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
