//! The real `tokengate` binary: bootstrap commands, `check`, bad input (one
//! line on stderr that names the argument, also for store errors), and
//! `serve` as a separate process whose log must never contain a token.

use crate::harness::*;
use serde_json::Value;
use std::process::{Command, Stdio};

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

    // `serve` as a separate process, logging at trace level.
    let serve = ServeProcess::start(std::path::Path::new(c), "serve.log", "trace").await;
    let addr = serve.addr;

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
    let log_path = serve.log_path.clone();
    assert!(serve.terminate(), "serve exits 0 on SIGTERM");
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

#[tokio::test]
async fn two_replicas_share_one_redis_and_regenerate_takes_effect_on_both() {
    let world = cli_world().await;
    let c = world.config.as_str();
    let owners = json_of(&["org", "create", "--config", c, "acme"])["owners_team_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team_id = json_of(&["team", "create", "--config", c, "--org", "acme", "dev"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = json_of(&[
        "user", "create", "--config", c, "--org", "acme", "--team", &owners, "olivia",
    ])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = std::path::Path::new(c);
    let a = ServeProcess::start(config, "a.log", "info").await;
    let b = ServeProcess::start(config, "b.log", "info").await;
    let path = format!("/api/v2/teams/{team_id}/authentication-token");
    let create = |addr| {
        let path = path.clone();
        let owner = owner.clone();
        async move {
            let response = send_raw(addr, RawRequest::new("POST", &path).token(&owner)).await;
            assert_eq!(response.status, 201, "{}", response.body);
            response.json()["data"]["attributes"]["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let get = |addr, token: String| async move {
        send_raw(
            addr,
            RawRequest::new("GET", "/api/v2/workspaces").token(&token),
        )
        .await
        .status
    };
    let old = create(a.addr).await;
    assert_eq!(
        get(b.addr, old.clone()).await,
        200,
        "replica b accepts (and caches) the token"
    );
    assert_eq!(get(a.addr, old.clone()).await, 200);
    let new = create(a.addr).await;
    assert_eq!(
        get(b.addr, old.clone()).await,
        401,
        "regenerate through a: the old token fails on b at once"
    );
    assert_eq!(get(a.addr, old).await, 401);
    assert_eq!(get(b.addr, new.clone()).await, 200);
    let response = send_raw(b.addr, RawRequest::new("DELETE", &path).token(&owner)).await;
    assert_eq!(response.status, 204);
    assert_eq!(
        get(a.addr, new).await,
        401,
        "revoke through b: refused on a at once"
    );
    assert_eq!(
        world.upstream.count(),
        3,
        "only the three accepted requests were forwarded"
    );
}

#[tokio::test]
async fn audit_prints_json_lines_filtered_by_org_and_time() {
    let world = cli_world().await;
    let c = world.config.as_str();
    json_of(&["org", "create", "--config", c, "acme"]);
    json_of(&["org", "create", "--config", c, "globex"]);
    let before = tokengate::store::Timestamp::now();
    json_of(&["token", "create", "--config", c, "--org", "acme"]);
    json_of(&["token", "create", "--config", c, "--org", "acme"]);
    json_of(&["token", "create", "--config", c, "--org", "globex"]);
    json_of(&["token", "revoke", "--config", c, "--org", "acme"]);
    let output = tokengate(&["audit", "--config", c, "--org", "acme"]);
    assert!(output.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["generate", "regenerate", "revoke"]);
    assert!(lines
        .iter()
        .all(|e| e["org"] == "acme" && e["actor"] == "cli" && e["target"] == "org:acme"));
    assert!(lines
        .iter()
        .all(|e| e["token_id"].as_str().unwrap().starts_with("at-")));
    let since = (before.0 / 1000 + 3600) * 1000;
    let later = tokengate::store::Timestamp(since).to_rfc3339();
    let output = tokengate(&["audit", "--config", c, "--since", &later]);
    assert!(output.status.success());
    assert!(output.stdout.is_empty(), "nothing after an hour from now");
    let err = failure_of(&["audit", "--config", c, "--since", "yesterday"]);
    assert!(err.contains("--since"), "{err}");
}

#[tokio::test]
async fn serve_dev_needs_nothing_and_prints_commands_that_work() {
    use std::io::BufRead;
    let port = free_port();
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("TOKENGATE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    // The banner ends with the regenerate command.
    let banner = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            text.push_str(&line);
            text.push('\n');
            if line.contains("/authentication-token") {
                break;
            }
        }
        text
    });
    let banner = tokio::time::timeout(std::time::Duration::from_secs(30), banner)
        .await
        .unwrap()
        .unwrap();
    let value = |name: &str| {
        banner
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("no {name} in banner:\n{banner}"))
            .to_owned()
    };
    let (gateway, team, reader, org, user) = (
        value("TG"),
        value("TEAM_TOKEN"),
        value("READER_TOKEN"),
        value("ORG_TOKEN"),
        value("USER_TOKEN"),
    );
    assert_eq!(gateway, format!("http://127.0.0.1:{port}"));
    let addr: std::net::SocketAddr = gateway.trim_start_matches("http://").parse().unwrap();
    // Run the printed curl commands' requests: same method, path and token.
    let mut statuses = Vec::new();
    for line in banner.lines().filter(|l| l.starts_with("curl ")) {
        let method = if line.contains("-X POST") {
            "POST"
        } else {
            "GET"
        };
        let path = line.split("$TG").nth(1).unwrap().trim().trim_matches('"');
        let token = ["TEAM_TOKEN", "READER_TOKEN", "ORG_TOKEN", "USER_TOKEN"]
            .iter()
            .find(|t| line.contains(&format!("${t}")))
            .map(|t| match *t {
                "TEAM_TOKEN" => team.clone(),
                "READER_TOKEN" => reader.clone(),
                "ORG_TOKEN" => org.clone(),
                _ => user.clone(),
            });
        let mut request = RawRequest::new(method, path);
        if let Some(token) = token.as_deref() {
            request = request.token(token);
        }
        let response = send_raw(addr, request).await;
        if line.contains("ORG_TOKEN") && line.contains("/apply") {
            assert!(
                response.error_detail().contains("team token"),
                "{}",
                response.body
            );
        }
        if line.contains("READER_TOKEN") && line.contains("/apply") {
            assert!(
                response.error_detail().contains("needs runs:apply"),
                "{}",
                response.body
            );
        }
        if line.contains("TEAM_TOKEN") && line.contains("/apply") {
            assert_eq!(
                response.json()["meta"]["caller"]["kind"],
                "team",
                "the mock API saw a team caller"
            );
        }
        statuses.push(response.status);
    }
    assert_eq!(
        statuses,
        [202, 200, 403, 404, 403, 200, 200, 404, 401, 200, 201],
        "team apply, reader read, reader apply, reader on demo, org apply, org read, org's own project, another organization's project, no token, team access list, regenerate"
    );
    // The web UI's address, and passwords that sign in.
    assert!(
        banner.contains(&format!("web UI       {gateway}/_tokengate/ui/")),
        "{banner}"
    );
    for name in ["alice", "bob"] {
        let password = banner
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("sign in as {name} / "))
                    .or_else(|| l.trim().strip_prefix(&format!("or {name} / ")))
            })
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no password for {name} in banner:\n{banner}"))
            .to_owned();
        let page = send_raw(addr, RawRequest::new("GET", "/_tokengate/ui/")).await;
        assert_eq!(page.status, 200);
        let cookie = page
            .headers
            .iter()
            .find(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.starts_with("tg_signin="))
            .map(|(_, v)| v.split(';').next().unwrap().to_owned())
            .expect("the sign-in form's cookie");
        let csrf = cookie.trim_start_matches("tg_signin=").to_owned();
        let body = format!("csrf={csrf}&username={name}&password={password}");
        let signed_in = send_raw(
            addr,
            RawRequest::new("POST", "/_tokengate/ui/sign-in")
                .headers(&[
                    ("Cookie", &cookie),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ])
                .body(body.as_bytes()),
        )
        .await;
        assert_eq!(signed_in.status, 303, "{name}: {}", signed_in.body);
        assert_eq!(signed_in.header("location"), Some("/_tokengate/ui/teams"));
    }
    // "(deleted on exit)": Ctrl-C stops it and leaves no folder behind.
    let folder = banner
        .lines()
        .find_map(|l| l.split("embedded store in ").nth(1))
        .and_then(|rest| rest.strip_suffix(" (deleted on exit)"))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no dev folder in banner:\n{banner}"));
    assert!(folder.join("tokengate.db").exists(), "{}", folder.display());
    child.signal("INT");
    let status = child.wait_exit(std::time::Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(!folder.exists(), "{} is still there", folder.display());
}

#[test]
fn the_shipped_example_config_and_policy_are_valid() {
    let config = repo_path("config/tokengate.yaml");
    let ok = json_of(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(ok["valid"], true);
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
