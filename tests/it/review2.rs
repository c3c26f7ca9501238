//! Second review: reload and admin endpoints, config and policy loading,
//! the stores' keys, the command line and the metrics.

use crate::harness::*;
use std::process::{Command, Output, Stdio};

fn tokengate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(args)
        .env_remove("TOKENGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A failure with exactly one line on stderr, which names `argument`.
fn one_line_failure(args: &[&str], argument: &str) {
    let output = tokengate(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line on stderr, got:\n{stderr}"
    );
    assert!(
        stderr.starts_with("error: ") && stderr.contains(argument),
        "{args:?}: the error must name {argument}: {stderr}"
    );
}

#[test]
fn argument_errors_found_by_the_parser_are_one_line_naming_the_argument() {
    one_line_failure(
        &[
            "team",
            "set",
            "--config",
            "c.yaml",
            "--team",
            "team-x",
            "--allow-member-token-management",
            "maybe",
        ],
        "--allow-member-token-management",
    );
    one_line_failure(
        &["audit", "--config", "c.yaml", "--since", "yesterday"],
        "--since",
    );
    one_line_failure(&["serve", "--dev", "--listen", "nope"], "--listen");
    one_line_failure(&["org", "create", "acme"], "--config");
    one_line_failure(&["policy", "explain", "--kind", "org"], "--method");
}

#[test]
fn store_errors_of_bootstrap_commands_name_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::harness::write_embedded_config(
        dir.path(),
        "http://127.0.0.1:9",
        "./data/tokengate.db",
        "",
    );
    let c = config.to_str().unwrap();
    assert!(tokengate(&["org", "create", "--config", c, "acme"])
        .status
        .success());
    one_line_failure(
        &["team", "create", "--config", c, "--org", "nope", "dev"],
        "--org",
    );
    one_line_failure(
        &["user", "create", "--config", c, "--org", "nope", "bob"],
        "--org",
    );
    one_line_failure(
        &[
            "user",
            "create",
            "--config",
            c,
            "--org",
            "acme",
            "--team",
            "team-nope",
            "bob",
        ],
        "--team",
    );
}

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
