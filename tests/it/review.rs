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

/// A shape-valid guess for a given 14-char id (test-only forgery).
fn forge(id: &str) -> String {
    tokengate::token::format::assemble(id, &tokengate::token::format::random_string(64))
}

/// The flood throttle checked the failure count before verifying and
/// counted a failure only after argon2 finished, so guesses sent at the same
/// time all passed the check: 60 concurrent guesses for one known token id
/// cost 60 argon2 runs instead of the 20 the throttle promises.
#[tokio::test]
async fn concurrent_guesses_cannot_outrun_the_throttle() {
    let world = World::new().await;
    let real = world.gateway.issue(world.team_owner()).await;
    let id = real[..14].to_owned();
    let addr = world.gateway.addr;
    let guesses: Vec<_> = (0..60)
        .map(|_| {
            let forged = forge(&id);
            tokio::spawn(async move {
                send_raw(
                    addr,
                    RawRequest::new("GET", "/api/v2/workspaces").token(&forged),
                )
                .await
                .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for guess in guesses {
        statuses.push(guess.await.unwrap());
    }
    let verified = statuses.iter().filter(|&&s| s == 401).count();
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 429),
        "{statuses:?}"
    );
    assert!(
        verified <= tokengate::auth::FAILURES_BEFORE_THROTTLE as usize,
        "{verified} guesses were verified with argon2: {statuses:?}"
    );
    assert_eq!(world.upstream.count(), 0);
}

/// Rack's MethodOverride honours `_method` in a form (or untyped) POST body,
/// so a POST the policy allows could run as another method upstream.
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
    // JSON bodies and bodiless POSTs still go through; people may post forms.
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
    let response = world
        .send(
            RawRequest::new("POST", "/session")
                .token(&user_token)
                .headers(&form)
                .body(b"a=b"),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
}
