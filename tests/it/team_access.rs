//! The team access API (`/api/v2/team-workspaces`, Terraform Enterprise's
//! documents) served by the gateway: who may call it, the bodies TFE's
//! clients send, its errors, the audit trail; access changes and
//! revocations holding from the very next request on two gateway processes
//! sharing one Redis; and `tokengate access set|list|remove`.

use crate::access::Scene;
use crate::harness::*;
use serde_json::{json, Value};
use tokengate::access::model::{AccessLevel, Permissions};
use tokengate::store::{OrganizationAccess, Owner};

fn add_body(team: &str, ws: &str, attributes: Value) -> String {
    json!({"data": {"type": "team-workspaces", "attributes": attributes, "relationships": {
        "team": {"data": {"type": "teams", "id": team}},
        "workspace": {"data": {"type": "workspaces", "id": ws}}}}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_add_list_show_change_and_remove_team_access_with_tfe_documents() {
    let scene = Scene::new().await;
    let owner = scene.owner_token().await;
    let (team, team_token) = scene.team("builders").await;
    // Before: 404 for the team, as it has no access.
    assert_eq!(
        scene
            .call("GET", "/api/v2/workspaces/ws-1", &team_token, "")
            .await
            .status,
        404
    );

    let added = scene
        .call(
            "POST",
            "/api/v2/team-workspaces",
            &owner,
            &add_body(&team, "ws-1", json!({"access": "read"})),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(
        added.header("content-type"),
        Some("application/vnd.api+json")
    );
    let doc = added.json();
    let id = doc["data"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("tws-"), "{id}");
    assert_eq!(doc["data"]["type"], "team-workspaces");
    assert_eq!(
        doc["data"]["attributes"],
        json!({"access": "read", "runs": "read", "variables": "read", "state-versions": "read",
               "sentinel-mocks": "none", "workspace-locking": false, "run-tasks": false, "policy-overrides": false})
    );
    assert_eq!(
        doc["data"]["relationships"]["team"]["data"],
        json!({"id": team, "type": "teams"})
    );
    assert_eq!(
        doc["data"]["relationships"]["workspace"]["data"],
        json!({"id": "ws-1", "type": "workspaces"})
    );
    assert_eq!(
        doc["data"]["links"]["self"],
        format!("/api/v2/team-workspaces/{id}")
    );
    // The very next request of the team is allowed.
    assert_eq!(
        scene
            .call("GET", "/api/v2/workspaces/ws-1", &team_token, "")
            .await
            .status,
        200
    );

    // List, with raw brackets (terrasnek) and encoded ones plus paging (pytfe).
    for query in [
        "filter[workspace][id]=ws-1".to_owned(),
        "filter%5Bworkspace%5D%5Bid%5D=ws-1&page%5Bnumber%5D=1&page%5Bsize%5D=100".to_owned(),
    ] {
        let listed = scene
            .call(
                "GET",
                &format!("/api/v2/team-workspaces?{query}"),
                &owner,
                "",
            )
            .await;
        assert_eq!(listed.status, 200, "{query}: {}", listed.body);
        assert_eq!(
            listed.json()["data"].as_array().unwrap().len(),
            1,
            "{}",
            listed.body
        );
        assert_eq!(listed.json()["data"][0]["id"], id.as_str());
    }
    let paged = scene
        .call(
            "GET",
            "/api/v2/team-workspaces?filter[workspace][id]=ws-1&page[size]=1",
            &owner,
            "",
        )
        .await;
    assert_eq!(
        paged.json()["meta"]["pagination"]["total-count"],
        1,
        "{}",
        paged.body
    );

    let shown = scene
        .call("GET", &format!("/api/v2/team-workspaces/{id}"), &owner, "")
        .await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json(), doc);

    // PATCH in the three shapes clients send: TFE's sample (no type),
    // go-tfe (type), pytfe (type and id).
    let custom = json!({"access": "custom", "runs": "plan", "variables": "read", "state-versions": "read-outputs"});
    for data in [
        json!({"attributes": custom}),
        json!({"type": "team-workspaces", "attributes": {"workspace-locking": true}}),
        json!({"type": "team-workspaces", "id": id, "attributes": {"run-tasks": true}}),
    ] {
        let changed = scene
            .call(
                "PATCH",
                &format!("/api/v2/team-workspaces/{id}"),
                &owner,
                &json!({"data": data}).to_string(),
            )
            .await;
        assert_eq!(changed.status, 200, "{data}: {}", changed.body);
    }
    let now = scene
        .call(
            "GET",
            &format!("/api/v2/team-workspaces/{id}.json"),
            &owner,
            "",
        )
        .await
        .json();
    assert_eq!(
        now["data"]["attributes"],
        json!({"access": "custom", "runs": "plan", "variables": "read", "state-versions": "read-outputs",
               "sentinel-mocks": "none", "workspace-locking": true, "run-tasks": true, "policy-overrides": false})
    );
    // The change holds from the next request: a plan may be queued now.
    let run =
        json!({"data": {"relationships": {"workspace": {"data": {"id": "ws-1"}}}}}).to_string();
    assert_eq!(
        scene
            .call("POST", "/api/v2/runs", &team_token, &run)
            .await
            .status,
        200
    );
    assert_eq!(
        scene
            .call(
                "GET",
                "/api/v2/workspaces/ws-1/current-state-version",
                &team_token,
                ""
            )
            .await
            .status,
        403
    );

    let removed = scene
        .call(
            "DELETE",
            &format!("/api/v2/team-workspaces/{id}"),
            &owner,
            "null",
        )
        .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    assert_eq!(
        scene
            .call("GET", &format!("/api/v2/team-workspaces/{id}"), &owner, "")
            .await
            .status,
        404
    );
    assert_eq!(
        scene
            .call("GET", "/api/v2/workspaces/ws-1", &team_token, "")
            .await
            .status,
        404,
        "revoked at once"
    );

    // None of it reached the upstream; the workspace was looked up there.
    assert!(
        scene
            .forwarded()
            .iter()
            .all(|r| !r.contains("team-workspaces")),
        "{:?}",
        scene.forwarded()
    );
    let audit = scene.world.store().audit_events(None, 100).await.unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.action.starts_with("access"))
        .map(|e| (e.action.as_str(), e.detail.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        actions,
        [
            ("access_add", "workspace ws-1: read"),
            ("access_update", "workspace ws-1: custom (runs:plan, variables:read, state-versions:read-outputs)"),
            ("access_update", "workspace ws-1: custom (runs:plan, variables:read, state-versions:read-outputs, workspace-locking)"),
            ("access_update", "workspace ws-1: custom (runs:plan, variables:read, state-versions:read-outputs, workspace-locking, run-tasks)"),
            ("access_remove", "workspace ws-1: custom (runs:plan, variables:read, state-versions:read-outputs, workspace-locking, run-tasks)"),
        ]
    );
    assert!(audit
        .iter()
        .filter(|e| e.action.starts_with("access"))
        .all(|e| e.target == format!("team:{team}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_manage_team_access_follows_tfe() {
    let scene = Scene::new().await;
    let store = scene.world.store();
    let (target, _) = scene.team("target").await;
    let add = |ws: &str, access: &str| add_body(&target, ws, json!({"access": access}));
    // A team with read on ws-1: sees it, may not change its team access (403);
    // ws-2 it cannot see (404).
    let reader = scene
        .team_with("reader", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    let refused = scene
        .call(
            "POST",
            "/api/v2/team-workspaces",
            &reader,
            &add("ws-1", "read"),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused
            .error_detail()
            .contains("needs admin on workspace ws-1"),
        "{}",
        refused.body
    );
    assert_eq!(
        scene
            .call(
                "POST",
                "/api/v2/team-workspaces",
                &reader,
                &add("ws-2", "read")
            )
            .await
            .status,
        404
    );
    // A workspace admin may, on that workspace only.
    let admin = scene
        .team_with("ws-admin", AccessLevel::Admin, Permissions::CUSTOM_DEFAULT)
        .await;
    let added = scene
        .call(
            "POST",
            "/api/v2/team-workspaces",
            &admin,
            &add("ws-1", "read"),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(
        scene
            .call(
                "POST",
                "/api/v2/team-workspaces",
                &admin,
                &add("ws-2", "read")
            )
            .await
            .status,
        404
    );
    // manage-workspaces, and the organization token, on any workspace of acme.
    let (managers, manager) = scene.team("managers").await;
    store
        .set_organization_access(
            &managers,
            OrganizationAccess {
                manage_workspaces: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let added = scene
        .call(
            "POST",
            "/api/v2/team-workspaces",
            &manager,
            &add("ws-2", "write"),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let org = scene.world.gateway.issue(scene.world.org_owner()).await;
    let ws2 = added.json()["data"]["id"].as_str().unwrap().to_owned();
    let changed = scene
        .call(
            "PATCH",
            &format!("/api/v2/team-workspaces/{ws2}"),
            &org,
            r#"{"data":{"attributes":{"access":"admin"}}}"#,
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    // Nobody reaches another organization's workspace or access.
    assert_eq!(
        scene
            .call(
                "POST",
                "/api/v2/team-workspaces",
                &org,
                &add("ws-g", "read")
            )
            .await
            .status,
        404
    );
    assert_eq!(
        scene
            .call(
                "GET",
                "/api/v2/team-workspaces?filter[workspace][id]=ws-g",
                &org,
                ""
            )
            .await
            .status,
        404
    );
    // The reader sees only its own team's access in the list, not target's.
    let listed = scene
        .call(
            "GET",
            "/api/v2/team-workspaces?filter[workspace][id]=ws-1",
            &reader,
            "",
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let teams: Vec<String> = listed.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["relationships"]["team"]["data"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(!teams.contains(&target), "{teams:?}");
    assert_eq!(teams.len(), 1, "{teams:?}");
    let all = scene
        .call(
            "GET",
            "/api/v2/team-workspaces?filter[workspace][id]=ws-1",
            &admin,
            "",
        )
        .await;
    assert_eq!(
        all.json()["data"].as_array().unwrap().len(),
        3,
        "{}",
        all.body
    );
    // Refused attempts are in the audit trail.
    let refused: Vec<String> = store
        .audit_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "access_add_refused")
        .map(|e| e.detail.unwrap_or_default())
        .collect();
    assert_eq!(
        refused,
        [
            "workspace ws-1",
            "workspace ws-2",
            "workspace ws-2",
            "workspace ws-g"
        ]
    );
    assert!(scene.forwarded().is_empty(), "{:?}", scene.forwarded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_team_access_requests_name_the_problem() {
    let scene = Scene::new().await;
    let owner = scene.owner_token().await;
    let (team, _) = scene.team("t").await;
    let post = |body: String| {
        let owner = owner.clone();
        let scene = &scene;
        async move {
            scene
                .call("POST", "/api/v2/team-workspaces", &owner, &body)
                .await
        }
    };
    // Not JSON: refused before anything reads it (the canonical request).
    let broken = post("{".to_owned()).await;
    assert_eq!(broken.status, 400, "{}", broken.body);
    for (body, status, pointer) in [
        (r#"{"data":{"type":"workspaces"}}"#.to_owned(), 422, "/data/type"),
        (add_body(&team, "ws-1", json!({})), 422, "/data/attributes/access"),
        (add_body(&team, "ws-1", json!({"access": "owner"})), 422, "/data/attributes/access"),
        (add_body(&team, "ws-1", json!({"access": "read", "runs": "apply"})), 422, "/data/attributes/runs"),
        (add_body(&team, "ws-1", json!({"access": "custom", "variables": "all"})), 422, "/data/attributes/variables"),
        (add_body(&team, "ws-1", json!({"access": "custom", "workspace-locking": "yes"})), 422, "/data/attributes/workspace-locking"),
        (json!({"data": {"attributes": {"access": "read"}, "relationships": {"team": {"data": {"id": team}}}}}).to_string(), 422, "/data/relationships/workspace/data/id"),
    ] {
        let response = post(body.clone()).await;
        assert_eq!(response.status, status, "{body}: {}", response.body);
        let error = &response.json()["errors"][0];
        assert_eq!(error["source"]["pointer"], pointer, "{body}: {}", response.body);
        assert!(!error["detail"].as_str().unwrap().is_empty());
    }
    let read_only = post(add_body(
        &team,
        "ws-1",
        json!({"access": "read", "runs": "apply"}),
    ))
    .await;
    assert!(
        read_only.error_detail().contains(
            "`runs` is read-only when access level is 'read'; use the 'custom' access level"
        ),
        "{}",
        read_only.body
    );
    // Unknown workspace (upstream 404), unknown team: 404.
    assert_eq!(
        post(add_body(&team, "ws-404", json!({"access": "read"})))
            .await
            .status,
        404
    );
    let ghost = post(add_body("team-ghost", "ws-1", json!({"access": "read"}))).await;
    assert_eq!(ghost.status, 404, "{}", ghost.body);
    let other_org = post(add_body(
        &scene.globex_team,
        "ws-1",
        json!({"access": "read"}),
    ))
    .await;
    assert_eq!(other_org.status, 404, "{}", other_org.body);
    // A second access of one team to one workspace.
    assert_eq!(
        post(add_body(&team, "ws-1", json!({"access": "read"})))
            .await
            .status,
        200
    );
    let twice = post(add_body(&team, "ws-1", json!({"access": "write"}))).await;
    assert_eq!(twice.status, 422, "{}", twice.body);
    assert!(
        twice
            .error_detail()
            .starts_with("Team has already been taken"),
        "{}",
        twice.body
    );
    // The list needs its filter; methods it does not have are 405.
    let unfiltered = scene
        .call("GET", "/api/v2/team-workspaces", &owner, "")
        .await;
    assert_eq!(unfiltered.status, 400);
    assert!(
        unfiltered
            .error_detail()
            .contains("filter[workspace][id] is required"),
        "{}",
        unfiltered.body
    );
    assert_eq!(
        scene
            .call("PUT", "/api/v2/team-workspaces", &owner, "{}")
            .await
            .status,
        405
    );
    // Without a token: 401.
    let anonymous = scene
        .world
        .send(RawRequest::new(
            "GET",
            "/api/v2/team-workspaces?filter[workspace][id]=ws-1",
        ))
        .await;
    assert_eq!(anonymous.status, 401);
    assert!(scene.forwarded().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_token_that_mints_team_tokens_cannot_grant_apply() {
    let scene = Scene::with_config("token_api: { org_tokens_manage_team_tokens: true }").await;
    let org = scene.world.gateway.issue(scene.world.org_owner()).await;
    let (team, _) = scene.team("minted").await;
    let read = scene
        .call(
            "POST",
            "/api/v2/team-workspaces",
            &org,
            &add_body(&team, "ws-1", json!({"access": "read"})),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let id = read.json()["data"]["id"].as_str().unwrap().to_owned();
    for body in [
        r#"{"data":{"attributes":{"access":"write"}}}"#,
        r#"{"data":{"attributes":{"access":"custom","runs":"apply"}}}"#,
    ] {
        let refused = scene
            .call(
                "PATCH",
                &format!("/api/v2/team-workspaces/{id}"),
                &org,
                body,
            )
            .await;
        assert_eq!(refused.status, 403, "{body}: {}", refused.body);
        assert!(
            refused.error_detail().contains("cannot grant runs:apply"),
            "{}",
            refused.body
        );
    }
    let access = scene.world.store().team_access(&id).await.unwrap().unwrap();
    assert_eq!(access.access, AccessLevel::Read, "nothing changed");
}

/// Two `tokengate serve` processes on one Redis and one upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_changes_hold_from_the_next_request_on_every_replica() {
    let redis = RedisServer::start();
    let upstream = RecordingUpstream::start().await;
    {
        let mut directory = upstream.directory();
        directory.strict();
        directory.workspace("ws-1", "one", "acme");
        directory.run("run-1", "ws-1");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &upstream.url(),
        &redis.url(),
        "log: { level: info, format: json }",
    );
    let loaded = tokengate::config::Config::load(&config).unwrap();
    let store = tokengate::gateway::open_store(&loaded).unwrap();
    let org = store.create_org("acme").await.unwrap();
    let team = store.create_team("acme", "dev").await.unwrap();
    let user = store
        .create_user("acme", "olivia", &[org.owners_team_id])
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for owner in [
        Owner::Team {
            org: "acme".into(),
            team_id: team.id.clone(),
        },
        Owner::User {
            org: "acme".into(),
            user_id: user.id,
        },
    ] {
        let issued =
            tokengate::token::lifecycle::issue(store.as_ref(), owner, loaded.hashing, None, None)
                .await
                .unwrap();
        tokens.push(issued.token.secret_token);
    }
    let [team_token, owner]: [String; 2] = tokens.try_into().unwrap();
    let a = GatewayProcess::start(&config);
    let b = GatewayProcess::start(&config);
    let call = |addr, method: &'static str, path: String, token: String, body: String| async move {
        send_raw(
            addr,
            RawRequest::new(method, &path)
                .token(&token)
                .body(body.as_bytes()),
        )
        .await
    };
    let apply = || {
        call(
            b.addr,
            "POST",
            "/api/v2/runs/run-1/actions/apply".into(),
            team_token.clone(),
            String::new(),
        )
    };
    assert_eq!(apply().await.status, 404, "no access yet");

    let added = call(
        a.addr,
        "POST",
        "/api/v2/team-workspaces".into(),
        owner.clone(),
        add_body(&team.id, "ws-1", json!({"access": "write"})),
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let id = added.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        apply().await.status,
        200,
        "granted on A, applies through B at once"
    );

    let lowered = call(
        a.addr,
        "PATCH",
        format!("/api/v2/team-workspaces/{id}"),
        owner.clone(),
        r#"{"data":{"attributes":{"access":"read"}}}"#.into(),
    )
    .await;
    assert_eq!(lowered.status, 200, "{}", lowered.body);
    let response = apply().await;
    assert_eq!(
        response.status, 403,
        "lowered on A, refused on B at once: {}",
        response.body
    );

    let removed = call(
        a.addr,
        "DELETE",
        format!("/api/v2/team-workspaces/{id}"),
        owner.clone(),
        String::new(),
    )
    .await;
    assert_eq!(removed.status, 204);
    assert_eq!(
        apply().await.status,
        404,
        "revoked on A, hidden on B at once"
    );
    let applies: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.target.ends_with("/apply"))
        .collect();
    assert_eq!(
        applies.len(),
        1,
        "only the apply made while the access allowed it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_cli_sets_lists_and_removes_with_the_workspace_checked_upstream() {
    let scene = Scene::new().await;
    let (team, token) = scene.team("cli").await;
    let config = scene.world.dir.path().join("tokengate.yaml");
    let config = config.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["access"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", config]);
        tokengate_text(&all)
    };
    let (ok, stdout, stderr) = run(&[
        "set",
        "--team",
        &team,
        "--workspace",
        "ws-1",
        "--access",
        "write",
    ]);
    assert!(ok, "{stderr}");
    let set: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(set["access"], "write");
    assert_eq!(set["runs"], "apply");
    assert_eq!(set["created"], true);
    assert_eq!(
        scene
            .call("POST", "/api/v2/runs/run-1/actions/apply", &token, "")
            .await
            .status,
        200
    );
    // Setting again changes it (here to a custom set).
    let (ok, stdout, stderr) = run(&[
        "set",
        "--team",
        &team,
        "--workspace",
        "ws-1",
        "--access",
        "custom",
        "--runs",
        "plan",
        "--state-versions",
        "read-outputs",
        "--workspace-locking",
        "true",
    ]);
    assert!(ok, "{stderr}");
    let custom: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (
            custom["access"].as_str(),
            custom["runs"].as_str(),
            custom["created"].as_bool()
        ),
        (Some("custom"), Some("plan"), Some(false))
    );
    assert_eq!(custom["state-versions"], "read-outputs");
    assert_eq!(
        custom["variables"], "write",
        "kept from write where not given"
    );
    assert_eq!(custom["id"], set["id"]);
    assert_eq!(
        scene
            .call("POST", "/api/v2/runs/run-1/actions/apply", &token, "")
            .await
            .status,
        403
    );

    let (ok, stdout, _) = run(&["list", "--workspace", "ws-1"]);
    assert!(ok);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        listed["team_accesses"].as_array().unwrap().len(),
        1,
        "{stdout}"
    );
    assert_eq!(listed["team_accesses"][0]["team"], team.as_str());
    let (ok, stdout, _) = run(&["list", "--team", &team]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["team_accesses"][0]["workspace"],
        "ws-1"
    );

    // Errors name the argument and the fix; the workspace is asked upstream.
    for (args, expected) in [
        (
            vec![
                "set",
                "--team",
                &team,
                "--workspace",
                "ws-404",
                "--access",
                "read",
            ],
            "--workspace: workspace `ws-404` was not found upstream",
        ),
        (
            vec![
                "set",
                "--team",
                &team,
                "--workspace",
                "ws-g",
                "--access",
                "read",
            ],
            "--workspace: workspace `ws-g` belongs to organization `globex`",
        ),
        (
            vec![
                "set",
                "--team",
                "team-ghost",
                "--workspace",
                "ws-1",
                "--access",
                "read",
            ],
            "--team: team `team-ghost` not found",
        ),
        (
            vec![
                "set",
                "--team",
                &team,
                "--workspace",
                "ws-1",
                "--access",
                "owner",
            ],
            "--access: `owner` is not an access level",
        ),
        (
            vec![
                "set",
                "--team",
                &team,
                "--workspace",
                "ws-1",
                "--access",
                "read",
                "--runs",
                "apply",
            ],
            "--runs: only with --access custom",
        ),
        (
            vec![
                "set",
                "--team",
                &team,
                "--workspace",
                "ws-1",
                "--access",
                "custom",
                "--runs",
                "all",
            ],
            "--runs: `all` is not one of read, plan or apply",
        ),
    ] {
        let (ok, _, stderr) = run(&args);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let (ok, stdout, _) = run(&["remove", "--team", &team, "--workspace", "ws-1"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["removed"],
        true
    );
    assert_eq!(
        scene
            .call("GET", "/api/v2/workspaces/ws-1", &token, "")
            .await
            .status,
        404
    );
    let (ok, stdout, _) = run(&["remove", "--team", &team, "--workspace", "ws-1"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["removed"],
        false
    );
    let actions: Vec<String> = scene
        .world
        .store()
        .audit_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "cli")
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["access_add", "access_update", "access_remove"]);
}

/// Workspace admin does not include policy overrides, so a workspace admin
/// cannot hand them out (to another team or to itself) and then override
/// the policy check that stops an apply; a caller that has them may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_caller_with_policy_overrides_may_grant_them() {
    let scene = Scene::new().await;
    scene.world.upstream.directory().put(
        "/api/v2/policy-checks/polchk-1",
        Entry::Doc(document(
            "polchk-1",
            "policy-checks",
            &[("run", "runs", "run-1")],
        )),
    );
    let override_path = "/api/v2/policy-checks/polchk-1/actions/override";
    let overriden = |scene: &Scene| {
        scene
            .forwarded()
            .iter()
            .any(|r| r == &format!("POST {override_path}"))
    };
    let (admins, admin) = scene.team("ws-admins").await;
    let own = scene
        .grant(
            &admins,
            "ws-1",
            AccessLevel::Admin,
            Permissions::CUSTOM_DEFAULT,
        )
        .await;
    let (target, target_token) = scene.team("target").await;
    let with_overrides = json!({"access": "custom", "runs": "apply", "policy-overrides": true});
    let refused = scene
        .call(
            "POST",
            "/api/v2/team-workspaces",
            &admin,
            &add_body(&target, "ws-1", with_overrides.clone()),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused
            .error_detail()
            .contains("granting policy-overrides needs policy-overrides"),
        "{}",
        refused.body
    );
    let self_grant = json!({"data": {"attributes": with_overrides}}).to_string();
    let refused = scene
        .call(
            "PATCH",
            &format!("/api/v2/team-workspaces/{}", own.id),
            &admin,
            &self_grant,
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let store = scene.world.store();
    assert_eq!(
        store.team_access(&own.id).await.unwrap().unwrap().access,
        AccessLevel::Admin,
        "the admin's own access did not change"
    );
    assert!(store.team_accesses(&target).await.unwrap().is_empty());
    for token in [&admin, &target_token] {
        let answer = scene.call("POST", override_path, token, "").await;
        assert!(matches!(answer.status, 403 | 404), "{}", answer.body);
    }
    assert!(!overriden(&scene), "{:?}", scene.forwarded());

    // An owner has them, so may grant them; the grantee then overrides.
    let owner = scene.owner_token().await;
    let granted = scene
        .call(
            "POST",
            "/api/v2/team-workspaces",
            &owner,
            &add_body(&target, "ws-1", with_overrides),
        )
        .await;
    assert_eq!(granted.status, 200, "{}", granted.body);
    let answer = scene.call("POST", override_path, &target_token, "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(overriden(&scene), "{:?}", scene.forwarded());
    // The workspace admin may still change that access's other permissions,
    // keeping the overrides it did not grant.
    let id = granted.json()["data"]["id"].as_str().unwrap().to_owned();
    let changed = scene
        .call(
            "PATCH",
            &format!("/api/v2/team-workspaces/{id}"),
            &admin,
            &json!({"data": {"attributes": {"access": "custom", "runs": "apply", "variables": "write", "policy-overrides": true}}}).to_string(),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert!(
        store
            .team_access(&id)
            .await
            .unwrap()
            .unwrap()
            .permissions
            .policy_overrides
    );
}
