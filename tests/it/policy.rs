//! Policy rules end to end: the default Terraform Enterprise org-token
//! rules, body predicates (a body a rule needs must be JSON within the limit,
//! and what was judged is forwarded byte for byte), shadow mode, and the
//! `tokengate policy` commands through the real binary.

use crate::harness::*;

/// A request with a chunked body made of `chunks`, as a client streams it.
fn chunked(method: &str, path: &str, token: &str, chunks: &[&str]) -> Vec<u8> {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nContent-Type: application/vnd.api+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in chunks {
        raw.push_str(&format!("{:X}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    raw.into_bytes()
}

/// Every call Terraform Enterprise refuses to organization tokens, with the
/// default rule that refuses it here.
const ORG_REFUSED: &[(&str, &str, &str, &str)] = &[
    (
        "POST",
        "/api/v2/runs",
        r#"{"data":{"relationships":{"workspace":{"data":{"id":"ws-1"}}}}}"#,
        "org-no-run-create",
    ),
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
    (
        "PUT",
        "/api/v2/workspaces/ws-1",
        r#"{"Data":{"Attributes":{"autoApply":true}}}"#,
        "org-no-auto-apply",
    ),
    (
        "PUT",
        "/api/v2/runs/run-1/actions/apply",
        "",
        "org-no-run-actions",
    ),
    (
        "POST",
        "/api/v2/runs/run-1/actions/apply.json",
        "",
        "org-no-run-actions",
    ),
    (
        "PATCH",
        "/api/v2/workspaces/ws-1/state-versions",
        r#"{"data":{"relationships":{"rollback-state-version":{"data":{"id":"sv-1"}}}}}"#,
        "org-no-state-versions",
    ),
    (
        "GET",
        "/api/v2/assessment-results/asmtres-1/json-output",
        "",
        "org-no-plan-json",
    ),
    (
        "POST",
        "/api/v2/no-code-modules/nocode-1/workspaces",
        r#"{"data":{"attributes":{"name":"n","auto_apply":true}}}"#,
        "org-no-no-code",
    ),
    (
        "POST",
        "/api/v2/no-code-modules/nocode-1/workspaces/ws-1/upgrade/upg-1",
        "",
        "org-no-no-code",
    ),
    (
        "POST",
        "/api/v2/workspaces/ws-1/notification-configurations",
        "{}",
        "org-no-notification-configurations",
    ),
    (
        "PATCH",
        "/api/v2/workspaces/ws-1",
        r#"{"data":{"attributes":{"auto-destroy-at":"2030-01-01T00:00:00Z"}}}"#,
        "org-no-auto-destroy",
    ),
    (
        "PATCH",
        "/api/v2/projects/prj-1",
        r#"{"data":{"attributes":{"auto-destroy-activity-duration":"1d"}}}"#,
        "org-no-auto-destroy",
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
    // A team (here one that manages every workspace) is let through, except
    // where the gateway cannot tell which workspace (or, for no-code
    // provisioning, a project or an SSH key by id, which organization) a
    // resource belongs to and so cannot check access to it
    // (docs/ACCESS.md), and where it lacks the organization permission
    // (SSH keys need manage-vcs-settings): refused.
    let unplaced = |method: &str, path: &str| {
        path.starts_with("/api/v2/assessment-results/")
            || path.starts_with("/api/v2/projects/")
            || path == "/api/v2/no-code-modules/nocode-1/workspaces"
            || (method != "GET" && path.contains("ssh-keys"))
    };
    for (method, path, body, _) in ORG_REFUSED {
        let response = world
            .send(
                RawRequest::new(method, path)
                    .token(&team)
                    .body(body.as_bytes()),
            )
            .await;
        let expected = if unplaced(method, path) { 403 } else { 200 };
        assert_eq!(
            response.status, expected,
            "team {method} {path}: {}",
            response.body
        );
    }
    let placed = ORG_REFUSED
        .iter()
        .filter(|(method, path, _, _)| !unplaced(method, path));
    assert_eq!(world.upstream.count(), placed.count());
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
            detail.contains("not valid JSON") || detail.contains("duplicate key"),
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
    // Every body is judged, whether or not a rule reads it: one that is not
    // JSON is refused for a team too, and nothing reaches the upstream.
    let response = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                .token(&team)
                .body(b"not json"),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(world.upstream.count(), 0);
}

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
    // A body that is not JSON is refused before any rule, shadow or not.
    let response = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
                .token(&team)
                .body(b"name=prod"),
        )
        .await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(world.upstream.count(), 2);
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
            "tokengate_requests_total{decision=\"allow\",rule=\"workspace-admin\"}"
        ),
        2.0
    );
}

// --- The `tokengate policy` commands, through the real binary ---------------

#[test]
fn the_shipped_cases_pass_against_the_default_policy() {
    let (ok, stdout, stderr) = tokengate_text(&["policy", "test", "config/policy.cases.yaml"]);
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
    let (ok, stdout, stderr) = tokengate_text(&["policy", "test", cases.to_str().unwrap()]);
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
    let (ok, _, stderr) = tokengate_text(&[
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
    let (ok, stdout, stderr) = tokengate_text(&[
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
    let (ok, stdout, _) = tokengate_text(&[
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
        stdout.contains("decision: allow by rule `workspace-admin`"),
        "{stdout}"
    );
    assert!(stdout.contains("when[0] does not hold"), "{stdout}");
    assert!(
        stdout.contains("requires: admin on workspace ws-1 (the gateway checks"),
        "{stdout}"
    );

    let (ok, _, stderr) = tokengate_text(&[
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
    let (ok, stdout, _) = tokengate_text(&["policy", "lint", "--policy", path]);
    assert!(ok, "warnings alone do not fail lint: {stdout}");
    assert!(
        stdout.contains("warning: rules[1] (org-no-apply): shadowed by earlier rule `all-api`"),
        "{stdout}"
    );
    let (ok, _, stderr) = tokengate_text(&["policy", "lint", "--policy", path, "--strict"]);
    assert!(!ok && stderr.contains("1 lint warning(s)"), "{stderr}");
    assert!(
        tokengate_text(&["policy", "lint"]).0,
        "the default policy lints clean"
    );
    let (ok, stdout, stderr) = tokengate_text(&["check", "--config", "config/tokengate.yaml"]);
    assert!(ok, "the example config is valid: {stdout}{stderr}");

    std::fs::write(
        &policy,
        "default: deny\nrules:\n  - { id: x, effect: deny, principals: [org], methods: [POST], paths: [\"/a/{}\"], when: [{ field: team_id, equals: t }] }\n  - { id: x, effect: allow, principals: [org], methods: [GET], paths: [/b], extra: 1 }\n",
    )
    .unwrap();
    let (ok, _, stderr) = tokengate_text(&["policy", "lint", "--policy", path]);
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
