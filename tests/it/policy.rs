//! Policy tuning end to end: the default Terraform Enterprise org-token rules,
//! body predicates, shadow mode, admin endpoints, metrics, live reload (also
//! under load), and the `tokengate policy` commands through the real binary.

use crate::harness::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokengate::store::Owner;

const DEFAULT_POLICY: &str = include_str!("../../config/policy.yaml");

/// A rule put first in the default policy: teams may not GET the marker.
const DENY_MARKER: &str = "  - { id: deny-marker, effect: deny, principals: [team], methods: [GET], paths: [/api/v2/marker], message: the marker is closed }\n";

/// The default policy with `rules` inserted before its first rule.
fn default_with(rules: &str) -> String {
    DEFAULT_POLICY.replacen("rules:\n", &format!("rules:\n{rules}"), 1)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces a file the way editors do: write a temporary file, rename it over.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A request with a chunked body made of `chunks`, as a client streams it.
fn chunked(method: &str, path: &str, token: &str, chunks: &[&str]) -> Vec<u8> {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in chunks {
        raw.push_str(&format!("{:X}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    raw.into_bytes()
}

/// A [`World`] whose policy lives in its own file, so tests can change it.
struct PolicyWorld {
    world: World,
    policy: PathBuf,
    config: PathBuf,
}

impl std::ops::Deref for PolicyWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl PolicyWorld {
    async fn start(policy_text: &str, extra: &str) -> PolicyWorld {
        let world = World::with_config_file(|dir, upstream, redis| {
            let policy = dir.join("policy.yaml");
            std::fs::write(&policy, policy_text).unwrap();
            let config = write_config_with_policy(dir, upstream, redis, &policy, extra);
            // Room to pause Redis in the middle of a request without a 503.
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, text.replace("timeout_ms: 250", "timeout_ms: 5000")).unwrap();
            config
        })
        .await;
        let policy = world.dir.path().join("policy.yaml");
        let config = world.dir.path().join("tokengate.yaml");
        PolicyWorld {
            world,
            policy,
            config,
        }
    }

    async fn tokens(&self) -> (String, String) {
        let team = self.gateway.issue(self.team_owner()).await;
        let org = self.gateway.issue(self.org_owner()).await;
        (team, org)
    }

    async fn reload(&self) -> RawResponse {
        self.send(RawRequest::new("POST", "/_tokengate/reload"))
            .await
    }

    async fn metrics(&self) -> String {
        let response = self
            .send(RawRequest::new("GET", "/_tokengate/metrics"))
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        response.body
    }
}

/// The value of one series (`name{labels}`) in Prometheus text, 0 if absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Every call Terraform Enterprise refuses to organization tokens, with the
/// default rule that refuses it here.
const ORG_REFUSED: &[(&str, &str, &str, &str)] = &[
    ("POST", "/api/v2/runs", "{}", "org-no-run-create"),
    (
        "POST",
        "/api/v2/runs/run-1/actions/apply",
        "",
        "org-no-run-actions",
    ),
    (
        "POST",
        "/api/v2/runs/run-1/actions/force-execute",
        "",
        "org-no-run-actions",
    ),
    (
        "POST",
        "/api/v2/runs/run-1/actions/discard",
        "",
        "org-no-run-actions",
    ),
    (
        "POST",
        "/api/v2/runs/run-1/actions/cancel",
        "",
        "org-no-run-actions",
    ),
    (
        "POST",
        "/api/v2/runs/run-1/actions/force-cancel",
        "",
        "org-no-run-actions",
    ),
    (
        "POST",
        "/api/v2/workspaces/ws-1/configuration-versions",
        "{}",
        "org-no-configuration-upload",
    ),
    (
        "POST",
        "/api/v2/workspaces/ws-1/state-versions",
        "{}",
        "org-no-state-versions",
    ),
    (
        "GET",
        "/api/v2/plans/plan-1/json-output",
        "",
        "org-no-plan-json",
    ),
    (
        "GET",
        "/api/v2/runs/run-1/plan/json-output",
        "",
        "org-no-plan-json",
    ),
    (
        "GET",
        "/api/v2/organizations/acme/ssh-keys",
        "",
        "org-no-ssh-keys",
    ),
    (
        "POST",
        "/api/v2/organizations/acme/ssh-keys",
        "{}",
        "org-no-ssh-keys",
    ),
    ("GET", "/api/v2/ssh-keys/sshkey-1", "", "org-no-ssh-keys"),
    (
        "PATCH",
        "/api/v2/ssh-keys/sshkey-1",
        "{}",
        "org-no-ssh-keys",
    ),
    ("DELETE", "/api/v2/ssh-keys/sshkey-1", "", "org-no-ssh-keys"),
    (
        "PATCH",
        "/api/v2/workspaces/ws-1/relationships/ssh-key",
        "{}",
        "org-no-ssh-keys",
    ),
    (
        "POST",
        "/api/v2/policy-checks/polchk-1/actions/override",
        "",
        "org-no-policy-override",
    ),
    (
        "POST",
        "/api/v2/task-stages/ts-1/actions/override",
        "",
        "org-no-task-stage-override",
    ),
    (
        "PATCH",
        "/api/v2/workspaces/ws-1",
        r#"{"data":{"attributes":{"auto-apply":true}}}"#,
        "org-no-auto-apply",
    ),
    (
        "PATCH",
        "/api/v2/workspaces/ws-1",
        r#"{"data":{"attributes":{"auto-apply":"on"}}}"#,
        "org-no-auto-apply",
    ),
    (
        "PATCH",
        "/api/v2/organizations/acme/workspaces/prod",
        r#"{"data":{"attributes":{"auto_apply":1}}}"#,
        "org-no-auto-apply",
    ),
    (
        "POST",
        "/api/v2/organizations/acme/workspaces",
        r#"{"data":{"attributes":{"name":"n","auto-apply-run-trigger":true}}}"#,
        "org-no-auto-apply",
    ),
];

#[tokio::test]
async fn organization_tokens_are_refused_every_tfe_restricted_call_and_teams_are_not() {
    let world = World::new().await;
    let org = world.gateway.issue(world.org_owner()).await;
    let team = world.gateway.issue(world.team_owner()).await;
    for (method, path, body, rule) in ORG_REFUSED {
        let response = world
            .send(
                RawRequest::new(method, path)
                    .token(&org)
                    .body(body.as_bytes()),
            )
            .await;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
        let detail = response.error_detail();
        assert!(
            detail.contains(&format!("policy rule `{rule}`")),
            "{method} {path}: {detail}"
        );
        assert!(detail.contains("use a team token"), "{detail}");
    }
    assert_eq!(
        world.upstream.count(),
        0,
        "no refused org call may reach the upstream"
    );
    for (method, path, body, _) in ORG_REFUSED {
        let response = world
            .send(
                RawRequest::new(method, path)
                    .token(&team)
                    .body(body.as_bytes()),
            )
            .await;
        assert_eq!(
            response.status, 200,
            "team {method} {path}: {}",
            response.body
        );
    }
    assert_eq!(world.upstream.count(), ORG_REFUSED.len());
    assert!(world
        .upstream
        .requests()
        .iter()
        .all(|r| r.header("x-tokengate-kind") == Some("team")));
}

#[tokio::test]
async fn the_judged_body_is_forwarded_byte_for_byte() {
    let world = World::new().await;
    let org = world.gateway.issue(world.org_owner()).await;
    let body =
        "{ \"data\" :{\"attributes\": {\"auto-apply\":false ,\"name\":\"caf\u{e9}\\u0021\"}}}\n\n";
    let response = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                .token(&org)
                .body(body.as_bytes()),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(world.upstream.last().body, body.as_bytes());

    // Chunked: the chunks the rule judged, joined, and nothing else.
    let raw = chunked(
        "PATCH",
        "/api/v2/workspaces/ws-2",
        &org,
        &[r#"{"data""#, r#":{"attributes":{"name":1}"#, "}}"],
    );
    let response = send_bytes(world.gateway.addr, &raw).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = world.upstream.last();
    assert_eq!(seen.target, "/api/v2/workspaces/ws-2");
    assert_eq!(
        String::from_utf8(seen.body).unwrap(),
        r#"{"data":{"attributes":{"name":1}}}"#
    );

    // The same trick with auto-apply switched on is refused.
    let raw = chunked(
        "PATCH",
        "/api/v2/workspaces/ws-3",
        &org,
        &[r#"{"data":{"attri"#, r#"butes":{"auto-apply":true}}}"#],
    );
    let response = send_bytes(world.gateway.addr, &raw).await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(world.upstream.count(), 2);
}

#[tokio::test]
async fn a_body_a_rule_needs_must_be_json_and_within_the_limit() {
    let world = World::with_config("limits: { max_body_bytes: 256 }").await;
    let org = world.gateway.issue(world.org_owner()).await;
    let team = world.gateway.issue(world.team_owner()).await;
    for body in [
        &b"data[attributes][auto-apply]=true"[..],
        b"{\"data\":",
        b"\xff\xfe",
        // Parsers disagree on which duplicate wins: never judge one and forward the other.
        br#"{"data":{"attributes":{"auto-apply":false,"auto-apply":true}}}"#,
    ] {
        let response = world
            .send(
                RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                    .token(&org)
                    .body(body),
            )
            .await;
        assert_eq!(response.status, 400, "{}", response.body);
        let detail = response.error_detail();
        assert!(
            detail.contains("`org-no-auto-apply` needs a JSON body"),
            "{detail}"
        );
    }
    let big = format!(
        r#"{{"data":{{"attributes":{{"description":"{}"}}}}}}"#,
        "x".repeat(300)
    );
    let response = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                .token(&org)
                .body(big.as_bytes()),
        )
        .await;
    assert_eq!(
        response.status, 413,
        "declared too large: {}",
        response.body
    );
    let raw = chunked(
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &org,
        &[&big[..100], &big[100..]],
    );
    let response = send_bytes(world.gateway.addr, &raw).await;
    assert_eq!(response.status, 413, "chunked too large: {}", response.body);
    assert_eq!(world.upstream.count(), 0, "nothing refused is forwarded");
    // No rule reads a team's PATCH body: whatever it is, it is forwarded.
    let response = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                .token(&team)
                .body(b"not json"),
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(world.upstream.last().body, b"not json");
}

const SHADOW_RULES: &str = "  - id: watch-org-deletes
    effect: deny
    principals: [org]
    methods: [DELETE]
    paths: [\"/api/v2/workspaces/{workspace_id}\"]
    mode: shadow
  - id: watch-prod-renames
    effect: deny
    principals: [team]
    methods: [PATCH]
    paths: [\"/api/v2/workspaces/{workspace_id}\"]
    when: [{ body: /data/attributes/name, equals: prod }]
    mode: shadow
";

#[tokio::test]
async fn shadow_rules_count_what_they_would_do_and_never_change_a_response() {
    let world = PolicyWorld::start(&default_with(SHADOW_RULES), "").await;
    let (team, org) = world.tokens().await;
    let response = world
        .send(RawRequest::new("DELETE", "/api/v2/workspaces/ws-1").token(&org))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let rename = br#"{"data":{"attributes":{"name":"prod"}}}"#;
    let response = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                .token(&team)
                .body(rename),
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(world.upstream.last().body, rename);
    // A body the shadow rule cannot read is skipped, not refused.
    let response = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                .token(&team)
                .body(b"name=prod"),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(world.upstream.count(), 3);
    let metrics = world.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "tokengate_shadow_matches_total{rule=\"watch-org-deletes\",outcome=\"would_deny\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "tokengate_shadow_matches_total{rule=\"watch-prod-renames\",outcome=\"would_deny\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "tokengate_requests_total{decision=\"allow\",rule=\"api-for-authenticated\"}"
        ),
        3.0
    );
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

#[tokio::test]
async fn reload_swaps_the_policy_and_keeps_the_old_one_when_the_new_is_invalid() {
    let world = PolicyWorld::start(DEFAULT_POLICY, "").await;
    let (team, _) = world.tokens().await;
    let marker = || world.send(RawRequest::new("GET", "/api/v2/marker").token(&team));
    assert_eq!(marker().await.status, 200);

    let closed = default_with(DENY_MARKER);
    replace_file(&world.policy, &closed);
    let response = world.reload().await;
    assert_eq!(response.status, 200, "{}", response.body);
    let report = &response.json()["reloaded"];
    assert_eq!(report["changed"], true);
    assert_eq!(report["sha256"], sha256_hex(&closed));
    assert_eq!(report["previous_sha256"], sha256_hex(DEFAULT_POLICY));
    let refused = marker().await;
    assert_eq!(refused.status, 403);
    assert!(refused.error_detail().contains("deny-marker"));

    let broken = default_with(
        "  - { id: broken, effect: deny, principals: [robots], methods: [GET], paths: [\"/api/{}\"] }\n",
    );
    replace_file(&world.policy, &broken);
    let response = world.reload().await;
    assert_eq!(response.status, 422, "{}", response.body);
    let problems = response.json()["errors"][0]["meta"]["problems"].clone();
    let keys: Vec<&str> = problems
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["rules[0] (broken).principals", "rules[0] (broken).paths[0]"],
        "{problems}"
    );
    assert!(response
        .error_detail()
        .contains("previous policy keeps serving"));
    assert_eq!(
        marker().await.status,
        403,
        "the last good policy keeps serving"
    );

    let status = world
        .send(RawRequest::new("GET", "/_tokengate/status"))
        .await
        .json();
    let policy = &status["policy"];
    assert_eq!(policy["sha256"], sha256_hex(&closed));
    assert_eq!(policy["rules"], 14);
    assert!(
        policy["loaded_at"].as_str().unwrap().ends_with('Z'),
        "{policy}"
    );
    assert_eq!(policy["reloads_succeeded"], 1);
    assert_eq!(policy["reloads_failed"], 1);
    assert_eq!(policy["last_result"], "failure");
    assert_eq!(
        policy["last_error"]["problems"][0]["key"],
        "rules[0] (broken).principals"
    );

    std::fs::remove_file(&world.policy).unwrap();
    let response = world.reload().await;
    assert_eq!(
        response.status, 500,
        "an unreadable file: {}",
        response.body
    );
    assert_eq!(marker().await.status, 403);

    // Keys that cannot change live are reported, the rest still reloads.
    std::fs::write(&world.policy, DEFAULT_POLICY).unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap();
    replace_file(
        &world.config,
        &config.replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1"),
    );
    let response = world.reload().await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json()["reloaded"]["restart_required"],
        serde_json::json!(["listen"])
    );
    assert_eq!(marker().await.status, 200);

    let metrics = world.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "tokengate_policy_reloads_total{outcome=\"success\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "tokengate_policy_reloads_total{outcome=\"failure\"}"
        ),
        2.0
    );
    assert_eq!(world.upstream.count(), 2);
}

#[tokio::test]
async fn a_request_in_flight_keeps_the_policy_it_arrived_under() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = PolicyWorld::start(DEFAULT_POLICY, "").await;
    let (_, org) = world.tokens().await;
    let allow_all = "default: allow\nrules: []\n";
    let body = br#"{"data":{"attributes":{"auto-apply":true}}}"#;
    let patch = |ws: &str| {
        format!(
        "PATCH /api/v2/workspaces/{ws} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {org}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    };
    async fn response_of(mut stream: tokio::net::TcpStream) -> String {
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    }

    // 1. Arrived, still authenticating (Redis paused) when the policy changes.
    world.redis.signal("STOP");
    let mut stream = tokio::net::TcpStream::connect(world.gateway.addr)
        .await
        .unwrap();
    stream.write_all(patch("ws-1").as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    replace_file(&world.policy, allow_all);
    assert_eq!(world.reload().await.status, 200);
    world.redis.signal("CONT");
    let text = response_of(stream).await;
    assert!(
        text.starts_with("HTTP/1.1 403") && text.contains("org-no-auto-apply"),
        "{text}"
    );

    // 2. Arrived, still sending its body when the policy changes back and forth.
    replace_file(&world.policy, DEFAULT_POLICY);
    assert_eq!(world.reload().await.status, 200);
    let mut stream = tokio::net::TcpStream::connect(world.gateway.addr)
        .await
        .unwrap();
    stream.write_all(patch("ws-2").as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    replace_file(&world.policy, allow_all);
    assert_eq!(world.reload().await.status, 200);
    let now = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-9")
                .token(&org)
                .body(body),
        )
        .await;
    assert_eq!(now.status, 200, "new requests get the new policy");
    stream.write_all(&body[10..]).await.unwrap();
    let text = response_of(stream).await;
    assert!(
        text.starts_with("HTTP/1.1 403") && text.contains("org-no-auto-apply"),
        "{text}"
    );
    assert_eq!(world.upstream.count(), 1);
    assert_eq!(world.upstream.last().target, "/api/v2/workspaces/ws-9");
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

/// Loops × requests per loop in the reload-under-load test.
const LOOPS: usize = 8;
const REQUESTS_PER_LOOP: usize = 200;
const RELOADS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_under_load_fails_and_misdecides_nothing() {
    let open = DEFAULT_POLICY.to_owned();
    let closed = default_with(DENY_MARKER);
    let world = PolicyWorld::start(&open, "").await;
    let (team, org) = world.tokens().await;
    let base = format!("http://{}", world.gateway.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(LOOPS)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let mut loops = Vec::new();
    for worker in 0..LOOPS {
        let (client, base, team, org) = (client.clone(), base.clone(), team.clone(), org.clone());
        loops.push(tokio::spawn(async move {
            let mut problems = Vec::new();
            let mut forwarded = 0usize;
            for i in 0..REQUESTS_PER_LOOP {
                let kind = (worker + i) % 3;
                let request = match kind {
                    0 => client
                        .get(format!("{base}/api/v2/workspaces/ws-{i}"))
                        .bearer_auth(&team),
                    1 => client
                        .post(format!("{base}/api/v2/runs/run-{i}/actions/apply"))
                        .bearer_auth(&org),
                    _ => client
                        .get(format!("{base}/api/v2/marker"))
                        .bearer_auth(&team),
                };
                let response = match request.send().await {
                    Ok(response) => response,
                    Err(err) => {
                        problems.push(format!("request failed: {err}"));
                        continue;
                    }
                };
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                let ok = match (kind, status) {
                    (0, 200) => true,
                    (1, 403) => body.contains("org-no-run-actions"),
                    (2, 200) => true,
                    (2, 403) => body.contains("deny-marker"),
                    _ => false,
                };
                if status == 200 {
                    forwarded += 1;
                }
                if !ok {
                    problems.push(format!("kind {kind}: {status} {body}"));
                }
            }
            (problems, forwarded)
        }));
    }

    let gateway = world.gateway.gateway.clone();
    let (policy, open_text, closed_text) = (world.policy.clone(), open.clone(), closed.clone());
    let reloader = tokio::spawn(async move {
        for round in 0..RELOADS {
            let text = if round % 2 == 0 {
                &closed_text
            } else {
                &open_text
            };
            replace_file(&policy, text);
            let report = tokengate::runtime::reload::reload_async(gateway.clone())
                .await
                .unwrap_or_else(|e| panic!("reload {round}: {e}"));
            assert!(report.changed, "reload {round} swapped nothing");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    let mut problems = Vec::new();
    let mut forwarded = 0;
    for handle in loops {
        let (p, f) = handle.await.unwrap();
        problems.extend(p);
        forwarded += f;
    }
    reloader.await.unwrap();
    assert!(
        problems.is_empty(),
        "{} problems, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert_eq!(
        world.upstream.count(),
        forwarded,
        "exactly the allowed requests were forwarded"
    );
    assert!(world.upstream.requests().iter().all(
        |r| !r.target.contains("actions/apply") && r.header("x-tokengate-kind") == Some("team")
    ));
    let status = world
        .send(RawRequest::new("GET", "/_tokengate/status"))
        .await
        .json();
    assert_eq!(status["policy"]["reloads_succeeded"], RELOADS);
    assert_eq!(status["policy"]["reloads_failed"], 0);
}

// --- The `tokengate policy` commands, through the real binary ---------------

fn tokengate(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(args)
        .current_dir(repo_path(""))
        .env_remove("TOKENGATE_CONFIG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_cases_pass_against_the_default_policy() {
    let (ok, stdout, stderr) = tokengate(&["policy", "test", "config/policy.cases.yaml"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn a_wrong_case_fails_with_a_readable_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        format!(
            "policy: {}\ncases:\n  - {{ name: org may apply, kind: org, org: acme, method: POST, path: /api/v2/runs/run-1/actions/apply, expect: allow }}\n  - {{ name: team may apply, kind: team, method: POST, path: /api/v2/runs/run-1/actions/apply, expect: allow }}\n",
            repo_path("config/policy.yaml").display()
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = tokengate(&["policy", "test", cases.to_str().unwrap()]);
    assert!(!ok, "a failing case must fail the command:\n{stdout}");
    assert!(
        stdout.contains(
            "FAIL cases[0] (org may apply): POST /api/v2/runs/run-1/actions/apply as org org=acme"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("expected: allow\n"), "{stdout}");
    assert!(
        stdout.contains("actual:   deny by `org-no-run-actions` (status 403)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
    assert!(
        !stdout.contains("cases[1]"),
        "passing cases stay quiet: {stdout}"
    );
    assert!(stderr.contains("1 of 2 policy cases failed"), "{stderr}");

    std::fs::write(
        &cases,
        "cases:\n  - { kind: robot, method: GET, path: /, expect: allow, colour: red }\n",
    )
    .unwrap();
    let (ok, _, stderr) = tokengate(&[
        "policy",
        "test",
        cases.to_str().unwrap(),
        "--policy",
        "config/policy.yaml",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("cases[0].colour: unknown key") && stderr.contains("cases[0].kind"),
        "{stderr}"
    );
}

#[test]
fn explain_shows_the_canonical_path_every_rule_and_the_decision() {
    let (ok, stdout, stderr) = tokengate(&[
        "policy",
        "explain",
        "--kind",
        "org",
        "--method",
        "POST",
        "--path",
        "/api/v2/runs/run-1/actions/%61pply/",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("canonical: /api/v2/runs/run-1/actions/apply\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("public-discovery")
            && stdout.contains("no: methods are [GET, HEAD], the request is POST"),
        "{stdout}"
    );
    assert!(
        stdout.contains("org-no-run-create")
            && stdout.contains("no: no path template matches (/api/v2/runs)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("MATCH (path /api/v2/runs/{run_id}/actions/apply): deny — decides"),
        "{stdout}"
    );
    assert!(
        stdout.contains("users-everywhere") && stdout.contains("not reached"),
        "{stdout}"
    );
    assert!(
        stdout.contains("decision: deny by rule `org-no-run-actions` (403)"),
        "{stdout}"
    );

    let config = repo_path("config/tokengate.yaml");
    let (ok, stdout, _) = tokengate(&[
        "policy",
        "explain",
        "--config",
        config.to_str().unwrap(),
        "--kind",
        "org",
        "--method",
        "PATCH",
        "--path",
        "/api/v2/workspaces/ws-1",
        "--body",
        r#"{"data":{"attributes":{"auto-apply":false}}}"#,
    ]);
    assert!(ok);
    assert!(
        stdout.contains("decision: allow by rule `api-for-authenticated`"),
        "{stdout}"
    );
    assert!(stdout.contains("when[0] does not hold"), "{stdout}");

    let (ok, _, stderr) = tokengate(&[
        "policy", "explain", "--kind", "robot", "--method", "GET", "--path", "/",
    ]);
    assert!(!ok);
    assert!(stderr.contains("--kind: is missing or unknown"), "{stderr}");
}

#[test]
fn lint_warns_about_unreachable_rules_and_load_errors_name_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "default: deny\nrules:\n  - { id: all-api, effect: allow, principals: [org], methods: [\"*\"], paths: [/api/**] }\n  - { id: org-no-apply, effect: deny, principals: [org], methods: [POST], paths: [\"/api/v2/runs/{id}/actions/apply\"] }\n",
    )
    .unwrap();
    let path = policy.to_str().unwrap();
    let (ok, stdout, _) = tokengate(&["policy", "lint", "--policy", path]);
    assert!(ok, "warnings alone do not fail lint: {stdout}");
    assert!(
        stdout.contains("warning: rules[1] (org-no-apply): shadowed by earlier rule `all-api`"),
        "{stdout}"
    );
    let (ok, _, stderr) = tokengate(&["policy", "lint", "--policy", path, "--strict"]);
    assert!(!ok && stderr.contains("1 lint warning(s)"), "{stderr}");
    assert!(
        tokengate(&["policy", "lint"]).0,
        "the default policy lints clean"
    );
    let (ok, stdout, stderr) = tokengate(&["check", "--config", "config/tokengate.yaml"]);
    assert!(ok, "the example config is valid: {stdout}{stderr}");

    std::fs::write(
        &policy,
        "default: deny\nrules:\n  - { id: x, effect: deny, principals: [org], methods: [POST], paths: [\"/a/{}\"], when: [{ field: team_id, equals: t }] }\n  - { id: x, effect: allow, principals: [org], methods: [GET], paths: [/b], extra: 1 }\n",
    )
    .unwrap();
    let (ok, _, stderr) = tokengate(&["policy", "lint", "--policy", path]);
    assert!(!ok, "a policy that cannot load fails");
    for fragment in [
        "has 4 problem(s)",
        "rules[1] (x).extra: unknown key",
        "rules[0] (x).paths[0]:",
        "rules[0] (x).when[0]: field `team_id` is never set",
        "rules[1] (x).id: duplicate id `x`",
    ] {
        assert!(stderr.contains(fragment), "no `{fragment}` in {stderr}");
    }
}

// --- `tokengate serve`: decision log, file watching and SIGHUP --------------

/// Redis, an upstream, a policy file and a running `tokengate serve`.
struct Served {
    _redis: RedisServer,
    upstream: RecordingUpstream,
    _dir: tempfile::TempDir,
    policy: PathBuf,
    process: GatewayProcess,
    team: String,
    org: String,
}

impl Served {
    /// `watch: false` turns `policy.watch` off.
    async fn start(policy_text: &str, watch: bool) -> Served {
        let redis = RedisServer::start();
        let upstream = RecordingUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, policy_text).unwrap();
        let extra = "log: { level: info, format: json }";
        let config =
            write_config_with_policy(dir.path(), &upstream.url(), &redis.url(), &policy, extra);
        if !watch {
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(
                &config,
                text.replace("\npolicy:\n", "\npolicy:\n  watch: false\n"),
            )
            .unwrap();
        }
        let loaded = tokengate::config::Config::load(&config).unwrap();
        let store = tokengate::gateway::open_store(&loaded).unwrap();
        store.create_org("acme").await.unwrap();
        let team_id = store.create_team("acme", "dev").await.unwrap().id;
        let issue = |owner| {
            tokengate::token::lifecycle::issue(store.as_ref(), owner, loaded.hashing, None, None)
        };
        let team = issue(Owner::Team {
            org: "acme".into(),
            team_id,
        })
        .await
        .unwrap()
        .token
        .secret_token;
        let org = issue(Owner::Org { org: "acme".into() })
            .await
            .unwrap()
            .token
            .secret_token;
        let process = GatewayProcess::start(&config);
        Served {
            _redis: redis,
            upstream,
            _dir: dir,
            policy,
            process,
            team,
            org,
        }
    }

    async fn marker(&self) -> u16 {
        send_raw(
            self.process.addr,
            RawRequest::new("GET", "/api/v2/marker").token(&self.team),
        )
        .await
        .status
    }

    /// Waits (up to 10 s) until the marker gets `status`.
    async fn marker_becomes(&self, status: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.marker().await == status {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Log lines (JSON) that satisfy `pred`, waiting up to 5 s for one.
    async fn log_where(&self, pred: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<serde_json::Value> = self
                .process
                .log_lines()
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|v| pred(v))
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn every_request_logs_its_rule_mode_and_decision_and_shadow_matches() {
    let served = Served::start(&default_with(SHADOW_RULES), true).await;
    let addr = served.process.addr;
    let response = send_raw(
        addr,
        RawRequest::new("POST", "/api/v2/runs/r/actions/apply").token(&served.org),
    )
    .await;
    assert_eq!(response.status, 403);
    let response = send_raw(
        addr,
        RawRequest::new("DELETE", "/api/v2/workspaces/ws-1").token(&served.org),
    )
    .await;
    assert_eq!(response.status, 200);

    let denied = served
        .log_where(|v| v["target"] == "tokengate::access" && v["method"] == "POST")
        .await;
    assert_eq!(denied.len(), 1, "{:?}", served.process.log_lines());
    let line = &denied[0];
    assert_eq!(line["rule"], "org-no-run-actions");
    assert_eq!(line["mode"], "enforce");
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["status"], 403);
    assert!(
        line["reason"].as_str().unwrap().contains("cannot apply"),
        "{line}"
    );
    assert!(line["token_id"].as_str().unwrap().starts_with("at-"));
    let all = served.process.log_lines().join("\n");
    assert!(!all.contains(&served.org), "a token must never be logged");

    let allowed = served
        .log_where(|v| v["target"] == "tokengate::access" && v["method"] == "DELETE")
        .await;
    assert_eq!(allowed[0]["decision"], "allow");
    assert_eq!(allowed[0]["rule"], "api-for-authenticated");
    assert!(
        allowed[0]["shadow"]
            .as_str()
            .unwrap()
            .contains("watch-org-deletes"),
        "{}",
        allowed[0]
    );
    let shadow = served
        .log_where(|v| v["target"] == "tokengate::shadow")
        .await;
    assert_eq!(shadow.len(), 1);
    assert_eq!(shadow[0]["rule"], "watch-org-deletes");
    assert_eq!(shadow[0]["outcome"], "would_deny");
    assert_eq!(served.upstream.count(), 1);
}

#[tokio::test]
async fn serve_reloads_when_the_policy_file_is_replaced_or_rewritten() {
    let served = Served::start(DEFAULT_POLICY, true).await;
    assert_eq!(served.marker().await, 200);
    replace_file(&served.policy, &default_with(DENY_MARKER));
    assert!(
        served.marker_becomes(403).await,
        "the file watcher did not reload: {:?}",
        served.process.log_lines()
    );
    // A broken file keeps the last good policy and logs where it is broken.
    replace_file(
        &served.policy,
        &default_with(
            "  - { id: bad, effect: deny, principals: [org], methods: [GET], paths: [nope] }\n",
        ),
    );
    let problems = served.log_where(|v| v["message"] == "reload problem").await;
    assert_eq!(problems.len(), 1, "{:?}", served.process.log_lines());
    assert_eq!(problems[0]["key"], "rules[0] (bad).paths[0]");
    assert_eq!(served.marker().await, 403);
    replace_file(&served.policy, DEFAULT_POLICY);
    assert!(served.marker_becomes(200).await);
    // Written in place (same inode), as `echo >` or an editor without
    // atomic saves does.
    std::fs::write(&served.policy, default_with(DENY_MARKER)).unwrap();
    assert!(
        served.marker_becomes(403).await,
        "an in-place write was not noticed"
    );
}

/// A policy written in two steps (a writer that pauses, or a file copied in
/// pieces) must not be loaded in between: its first half can be a valid
/// policy without the rule that comes later. Here the "half" lacks the deny
/// rule; the gateway must never allow the marker while the file is written.
#[tokio::test]
async fn serve_does_not_load_a_policy_file_while_it_is_still_being_written() {
    let served = Served::start(&default_with(DENY_MARKER), true).await;
    assert_eq!(served.marker().await, 403);
    let finished = format!("{}# written in two steps\n", default_with(DENY_MARKER));
    // The watcher polls every 500 ms from its start, just before the gateway
    // listened: start writing ~300 ms into a poll period, so that a poll
    // sees the first half and the next one the finished file.
    tokio::time::sleep(Duration::from_millis(250)).await;
    std::fs::write(&served.policy, DEFAULT_POLICY).unwrap();
    let writing = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&served.policy, &finished).unwrap();
    };
    let watching = async {
        let deadline = Instant::now() + Duration::from_millis(2500);
        let mut allowed = 0;
        while Instant::now() < deadline {
            if served.marker().await == 200 {
                allowed += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        allowed
    };
    let ((), allowed) = tokio::join!(writing, watching);
    assert_eq!(allowed, 0, "the half-written policy was served");
    // The finished file was loaded.
    let want = sha256_hex(&finished);
    let reloaded = served
        .log_where(|v| v["message"] == "policy reloaded" && v["sha256"] == want.as_str())
        .await;
    assert_eq!(reloaded.len(), 1, "{:?}", served.process.log_lines());
    assert_eq!(served.marker().await, 403);
}

#[tokio::test]
async fn serve_reloads_on_sighup() {
    let served = Served::start(DEFAULT_POLICY, false).await;
    replace_file(&served.policy, &default_with(DENY_MARKER));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        served.marker().await,
        200,
        "with policy.watch off, only a signal reloads"
    );
    served.process.signal("HUP");
    assert!(
        served.marker_becomes(403).await,
        "SIGHUP did not reload: {:?}",
        served.process.log_lines()
    );
    let reloaded = served
        .log_where(|v| v["message"] == "SIGHUP received; reloading")
        .await;
    assert_eq!(reloaded.len(), 1);
}
