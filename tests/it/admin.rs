//! The `/_tokengate/` endpoints and metrics: who may call them (addresses,
//! listed teams and users), how they authenticate (throttled and counted like
//! the request path), and what the metrics count.

use crate::harness::*;

/// The admin endpoints authenticate like the request path, so a throttled
/// guess must get the same 429 (with Retry-After), not a 401 that tells a
/// guesser nothing changed.
#[tokio::test]
async fn a_throttled_guess_at_an_admin_endpoint_is_answered_429() {
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
    assert_eq!(status(real.clone()).await.status, 403, "not a listed team");
    for _ in 0..tokengate::auth::FAILURES_BEFORE_THROTTLE {
        let forged = tokengate::token::format::assemble(
            &real[..14],
            &tokengate::token::format::random_string(64),
        );
        assert_eq!(status(forged).await.status, 401);
    }
    let forged = tokengate::token::format::assemble(
        &real[..14],
        &tokengate::token::format::random_string(64),
    );
    let response = status(forged).await;
    assert_eq!(response.status, 429, "{}", response.body);
    assert_eq!(response.header("retry-after"), Some("60"));
}

/// Failed authentications at the admin endpoints are counted like those of
/// the request path: guessing at `/_tokengate/status` must show in
/// `tokengate_auth_failures_total`.
#[tokio::test]
async fn failed_admin_authentications_are_counted_in_the_metrics() {
    let world = World::with_config("admin: { teams: [team-admin0] }").await;
    let real = world.gateway.issue(world.team_owner()).await;
    let forged = tokengate::token::format::assemble(
        &real[..14],
        &tokengate::token::format::random_string(64),
    );
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
