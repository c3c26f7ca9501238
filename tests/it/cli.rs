//! The real `tokengate` binary: bootstrap commands, `check`, bad input, and
//! `serve` as a separate process whose log must never contain a token.

use crate::harness::*;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn tokengate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(args)
        .env_remove("TOKENGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs a command that must succeed and print one JSON object.
fn json_of(args: &[&str]) -> Value {
    let output = tokengate(args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// Runs a command that must fail with a one-line reason on stderr.
fn failure_of(args: &[&str]) -> String {
    let output = tokengate(args);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(output.stdout.is_empty(), "nothing on stdout on failure");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    stderr
}

struct CliWorld {
    _redis: RedisServer,
    upstream: RecordingUpstream,
    _dir: tempfile::TempDir,
    config: String,
}

async fn cli_world() -> CliWorld {
    let redis = RedisServer::start();
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &upstream.url(), &redis.url(), "")
        .display()
        .to_string();
    CliWorld {
        _redis: redis,
        upstream,
        _dir: dir,
        config,
    }
}

#[tokio::test]
async fn bootstrap_commands_print_json_and_tokens_work() {
    let world = cli_world().await;
    let c = world.config.as_str();
    let org = json_of(&["org", "create", "--config", c, "acme"]);
    assert_eq!(org["name"], "acme");
    assert!(org["owners_team_id"].as_str().unwrap().starts_with("team-"));
    let team = json_of(&["team", "create", "--config", c, "--org", "acme", "dev"]);
    let team_id = team["id"].as_str().unwrap().to_owned();
    assert!(team_id.starts_with("team-"));
    assert_eq!(team["name"], "dev");
    assert_eq!(team["organization"], "acme");
    let user = json_of(&[
        "user", "create", "--config", c, "--org", "acme", "--team", &team_id, "alice",
    ]);
    assert!(user["id"].as_str().unwrap().starts_with("user-"));
    assert_eq!(user["name"], "alice");
    let user_token = user["token"].as_str().unwrap().to_owned();
    let team_token = json_of(&["token", "create", "--config", c, "--team", &team_id]);
    assert!(team_token["id"].as_str().unwrap().starts_with("at-"));
    let team_token = team_token["token"].as_str().unwrap().to_owned();
    let org_token = json_of(&["token", "create", "--config", c, "--org", "acme"])["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let gateway = TestGateway::start(std::path::Path::new(c)).await;
    let get = |token: String| {
        let addr = gateway.addr;
        async move {
            send_raw(
                addr,
                RawRequest::new("GET", "/api/v2/workspaces").token(&token),
            )
            .await
            .status
        }
    };
    assert_eq!(get(team_token.clone()).await, 200);
    assert_eq!(get(org_token.clone()).await, 200);
    assert_eq!(get(user_token.clone()).await, 200);
    let kinds: Vec<String> = world
        .upstream
        .requests()
        .iter()
        .map(|r| r.header("x-tokengate-kind").unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["team", "org", "user"]);

    // Regenerating through the CLI invalidates the old token at once.
    let regenerated = json_of(&["token", "create", "--config", c, "--team", &team_id]);
    assert_eq!(get(team_token).await, 401);
    assert_eq!(
        get(regenerated["token"].as_str().unwrap().to_owned()).await,
        200
    );
    let revoked = json_of(&["token", "revoke", "--config", c, "--org", "acme"]);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(get(org_token).await, 401);
    let again = json_of(&["token", "revoke", "--config", c, "--org", "acme"]);
    assert_eq!(again["revoked"], false);
}

#[tokio::test]
async fn bad_cli_input_names_the_argument_and_changes_nothing() {
    let world = cli_world().await;
    let c = world.config.as_str();
    json_of(&["org", "create", "--config", c, "acme"]);
    let err = failure_of(&["org", "create", "--config", c, "acme"]);
    assert!(err.contains("already exists"), "{err}");
    let err = failure_of(&["org", "create", "--config", c, "bad name!"]);
    assert!(err.contains("invalid"), "{err}");
    let err = failure_of(&["team", "create", "--config", c, "--org", "nope", "dev"]);
    assert!(err.contains("organization `nope` not found"), "{err}");
    let err = failure_of(&[
        "token",
        "create",
        "--config",
        c,
        "--team",
        "team-doesnotexist",
    ]);
    assert!(err.contains("--team"), "{err}");
    let err = failure_of(&["token", "create", "--config", c, "--org", "nope"]);
    assert!(err.contains("--org"), "{err}");
    let err = failure_of(&["token", "create", "--config", c]);
    assert!(err.contains("--team") && err.contains("--org"), "{err}");
    let err = failure_of(&[
        "token", "create", "--config", c, "--team", "team-x", "--org", "acme",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = failure_of(&[
        "user",
        "create",
        "--config",
        c,
        "--org",
        "acme",
        "--team",
        "team-nope",
        "bob",
    ]);
    assert!(err.contains("team-nope"), "{err}");
    let err = failure_of(&["org", "create", "acme2"]);
    assert!(err.contains("--config"), "{err}");
    let err = failure_of(&[
        "org",
        "create",
        "--config",
        "/nonexistent/tokengate.yaml",
        "x",
    ]);
    assert!(err.contains("/nonexistent/tokengate.yaml"), "{err}");
}

#[test]
fn check_reports_every_config_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), "http://127.0.0.1:9", "redis://127.0.0.1:1", "");
    let ok = json_of(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(ok["valid"], true);
    assert!(ok["rules"].as_u64().unwrap() > 3);

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listen: nowhere\nupstream:\n  url: ftp://x\n  urll: y\nstore:\n  redis:\n    url: redis://127.0.0.1:1\n    timeout_ms: 0\npolicy:\n  file: policy.yaml\nlog:\n  format: xml\nunknown_top: 1\n",
    )
    .unwrap();
    let err = failure_of(&["check", "--config", bad.to_str().unwrap()]);
    for expected in [
        "listen",
        "upstream.url",
        "upstream.urll: unknown key",
        "store.redis.timeout_ms",
        "log.format",
        "unknown_top: unknown key",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in: {err}");
    }
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");

    let typed = dir.path().join("typed.yaml");
    std::fs::write(
        &typed,
        "upstream:\n  url: http://x\n  forward_authorization: maybe\n",
    )
    .unwrap();
    let err = failure_of(&["check", "--config", typed.to_str().unwrap()]);
    assert!(err.contains("upstream.forward_authorization"), "{err}");

    let no_policy = dir.path().join("nopolicy.yaml");
    std::fs::write(
        &no_policy,
        "upstream: { url: 'http://127.0.0.1:9' }\nstore: { redis: { url: 'redis://127.0.0.1:1' } }\npolicy: { file: missing.yaml }\n",
    )
    .unwrap();
    let err = failure_of(&["check", "--config", no_policy.to_str().unwrap()]);
    assert!(err.contains("missing.yaml"), "{err}");
}

#[tokio::test]
async fn serve_logs_requests_and_never_a_token() {
    let world = cli_world().await;
    let c = world.config.as_str();
    json_of(&["org", "create", "--config", c, "acme"]);
    let team_id = json_of(&["team", "create", "--config", c, "--org", "acme", "dev"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team_token = json_of(&["token", "create", "--config", c, "--team", &team_id])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let org_token = json_of(&["token", "create", "--config", c, "--org", "acme"])["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // `serve` on a fixed free port, as a separate process, logging at trace level.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(c)
        .unwrap()
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    std::fs::write(c, text).unwrap();
    let log_path = std::path::Path::new(c).with_file_name("serve.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(["serve", "--config", c])
        .env("RUST_LOG", "trace")
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "serve did not listen");

    let wrong_secret = format!("{}{}", &team_token[..team_token.len() - 8], "AAAAAAAA");
    let statuses = [
        send_raw(
            addr,
            RawRequest::new("GET", "/api/v2/workspaces").token(&team_token),
        )
        .await
        .status,
        send_raw(
            addr,
            RawRequest::new("POST", "/api/v2/runs/r/actions/apply").token(&org_token),
        )
        .await
        .status,
        send_raw(
            addr,
            RawRequest::new("GET", "/api/v2/workspaces").token(&wrong_secret),
        )
        .await
        .status,
        send_raw(
            addr,
            RawRequest::new("GET", &format!("/api/v2/{team_token}")).token(&team_token),
        )
        .await
        .status,
    ];
    assert_eq!(statuses, [200, 403, 401, 200]);
    // SIGTERM: graceful shutdown flushes the log.
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exits 0 on SIGTERM");

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("tokengate::access"),
        "access lines are logged: {log}"
    );
    assert!(
        log.contains("rule=\"org-no-run-actions\"") || log.contains("rule=org-no-run-actions"),
        "denials name the rule: {}",
        log.lines()
            .filter(|l| l.contains("access"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let team_token_id = format!("at-{}", &team_token[..14]);
    assert!(log.contains(&team_token_id), "token ids are logged");
    for secret in [&team_token, &org_token, &wrong_secret] {
        let secret_part = &secret[23..];
        assert!(
            !log.contains(secret_part),
            "a token secret leaked into the log"
        );
    }
}
