//! The default policy's answers to red team B's findings (F1, F2, F4, F6,
//! F7), end to end on the real binary, a real Redis and the recording
//! upstream: a `plan` team's auto-apply run, no-code upgrades and
//! provisioning, Stacks approvals and private module test runs,
//! owners-only backing data, organization-level writes and id-addressed
//! organization resources. Every refusal is checked as "the upstream never
//! saw it", every allowed call as "it arrived".

use crate::access::Scene;
use crate::harness::*;
use serde_json::json;
use tokengate::access::model::{AccessLevel, Permissions};
use tokengate::store::OrganizationAccess;

fn run_body(ws: &str, attributes: serde_json::Value) -> String {
    json!({"data": {"type": "runs", "attributes": attributes,
        "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}}}})
    .to_string()
}

/// Asserts a refusal with `status` whose detail contains `fragment`.
async fn refused(
    scene: &Scene,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
    status: u16,
    fragment: &str,
) {
    let response = scene.call(method, path, token, body).await;
    assert_eq!(
        response.status, status,
        "{method} {path}: {}",
        response.body
    );
    if !fragment.is_empty() {
        let detail = response.error_detail();
        assert!(detail.contains(fragment), "{method} {path}: {detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_applies_itself_needs_runs_apply() {
    let scene = Scene::new().await;
    let plan = scene
        .team_with("planners", AccessLevel::Plan, Permissions::CUSTOM_DEFAULT)
        .await;
    let write = scene
        .team_with("writers", AccessLevel::Write, Permissions::CUSTOM_DEFAULT)
        .await;
    // Every Rails-true spelling of auto-apply, and allow-empty-apply.
    for attributes in [
        json!({"auto-apply": true, "is-destroy": true}),
        json!({"auto_apply": "1"}),
        json!({"autoApply": "yes"}),
        json!({"AUTO-APPLY": "on"}),
        json!({"allow-empty-apply": true}),
    ] {
        refused(
            &scene,
            "POST",
            "/api/v2/runs",
            &plan,
            &run_body("ws-1", attributes.clone()),
            403,
            "needs runs:apply on workspace ws-1",
        )
        .await;
    }
    // A plain run, or one that says auto-apply false, needs only runs:plan.
    let plain = run_body("ws-1", json!({"message": "plan only"}));
    let off = run_body(
        "ws-1",
        json!({"auto-apply": false, "allow-empty-apply": "0"}),
    );
    for body in [&plain, &off] {
        let response = scene.call("POST", "/api/v2/runs", &plan, body).await;
        assert_eq!(response.status, 200, "{body}: {}", response.body);
    }
    // A team that may apply may ask for it; on an invisible workspace it is 404.
    let auto = run_body("ws-1", json!({"auto-apply": true}));
    let response = scene.call("POST", "/api/v2/runs", &write, &auto).await;
    assert_eq!(response.status, 200, "{}", response.body);
    refused(
        &scene,
        "POST",
        "/api/v2/runs",
        &write,
        &run_body("ws-2", json!({"auto-apply": true})),
        404,
        "",
    )
    .await;
    let received = scene.world.upstream.requests();
    let bodies: Vec<String> = received
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        bodies,
        [plain, off, auto],
        "only the allowed runs arrived, byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_code_upgrades_need_admin_and_provisioning_is_refused_to_teams() {
    let scene = Scene::new().await;
    let read = scene
        .team_with("readers", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    let admin = scene
        .team_with("admins", AccessLevel::Admin, Permissions::CUSTOM_DEFAULT)
        .await;
    let org = scene.org_token().await;
    let globex = scene.globex_token().await;
    let confirm = "/api/v2/no-code-modules/nocode-1/workspaces/ws-1/upgrade/run-u1";
    let start = "/api/v2/no-code-modules/nocode-1/workspaces/ws-1/upgrade";
    refused(
        &scene,
        "POST",
        confirm,
        &read,
        "",
        403,
        "needs admin on workspace ws-1",
    )
    .await;
    refused(
        &scene,
        "POST",
        start,
        &read,
        "",
        403,
        "needs admin on workspace ws-1",
    )
    .await;
    // A workspace it cannot see, or another organization's team: 404.
    refused(
        &scene,
        "POST",
        "/api/v2/no-code-modules/nocode-1/workspaces/ws-2/upgrade",
        &read,
        "",
        404,
        "",
    )
    .await;
    refused(&scene, "POST", confirm, &globex, "", 404, "").await;
    // Organization tokens never confirm one.
    refused(&scene, "POST", confirm, &org, "", 403, "`org-no-no-code`").await;
    // Provisioning: the module's organization is unknown, so teams are refused.
    let provision =
        r#"{"data":{"type":"workspaces","attributes":{"name":"evil","auto_apply":true}}}"#;
    for token in [&read, &admin] {
        refused(
            &scene,
            "POST",
            "/api/v2/no-code-modules/nocode-1/workspaces",
            token,
            provision,
            403,
            "`no-code-unplaced`",
        )
        .await;
    }
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "nothing was forwarded"
    );
    for path in [start, confirm] {
        let response = scene.call("POST", path, &admin, "").await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    assert_eq!(
        scene.forwarded(),
        [format!("POST {start}"), format!("POST {confirm}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_and_module_test_runs_never_apply_for_organization_tokens() {
    let scene = Scene::new().await;
    let org = scene.org_token().await;
    let admin = scene
        .team_with("admins", AccessLevel::Admin, Permissions::CUSTOM_DEFAULT)
        .await;
    let owner = scene.owner_token().await;
    let stacks = [
        "/api/v2/stack-deployment-runs/sdr-1/approve-all-plans",
        "/api/v2/stack-deployment-groups/sdg-1/approve-all-plans",
        "/api/v2/stack-deployment-groups/sdg-1/rerun",
        "/api/v2/stack-deployment-steps/sds-1/advance",
        "/api/v2/stacks/st-1/fetch-latest-from-vcs",
        "/api/v2/stacks/st-1/stack-configurations",
    ];
    for path in stacks {
        refused(
            &scene,
            "POST",
            path,
            &org,
            "",
            403,
            "`org-no-stack-deployments`",
        )
        .await;
        refused(
            &scene,
            "POST",
            path,
            &admin,
            "",
            403,
            "`stacks-apply-unmodelled`",
        )
        .await;
    }
    let test_run =
        "/api/v2/organizations/acme/tests/registry-modules/private/acme/mod/aws/test-runs";
    let publish = "/api/v2/organizations/acme/registry-modules/private/acme/net/aws/versions";
    refused(
        &scene,
        "POST",
        test_run,
        &org,
        "",
        403,
        "`org-no-module-tests`",
    )
    .await;
    refused(
        &scene,
        "POST",
        publish,
        &org,
        "",
        403,
        "`org-no-module-management`",
    )
    .await;
    // A team needs manage-modules for both.
    refused(
        &scene,
        "POST",
        test_run,
        &admin,
        "",
        403,
        "needs organization:manage-modules",
    )
    .await;
    refused(
        &scene,
        "POST",
        publish,
        &admin,
        "",
        403,
        "needs organization:manage-modules",
    )
    .await;
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "nothing was forwarded"
    );
    let modules = scene
        .team_with_org_access(
            "modules",
            OrganizationAccess {
                manage_modules: true,
                ..Default::default()
            },
        )
        .await;
    for path in [test_run, publish] {
        let response = scene.call("POST", path, &modules, "").await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    // People keep the Stacks calls (the upstream knows their project access).
    let response = scene.call("POST", stacks[0], &owner, "").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        scene.forwarded(),
        [
            format!("POST {test_run}"),
            format!("POST {publish}"),
            format!("POST {}", stacks[0])
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backing_data_is_deleted_or_restored_by_owners_only() {
    let scene = Scene::new().await;
    scene.world.upstream.directory().put(
        "/api/v2/state-versions/sv-1",
        Entry::Doc(document(
            "sv-1",
            "state-versions",
            &[("workspace", "workspaces", "ws-1")],
        )),
    );
    let admin = scene
        .team_with("admins", AccessLevel::Admin, Permissions::CUSTOM_DEFAULT)
        .await;
    let org = scene.org_token().await;
    let globex = scene.globex_token().await;
    let owner = scene.owner_token().await;
    let actions = [
        "soft_delete_backing_data",
        "restore_backing_data",
        "permanently_delete_backing_data",
    ];
    for action in actions {
        let path = format!("/api/v2/state-versions/sv-1/actions/{action}");
        refused(
            &scene,
            "POST",
            &path,
            &admin,
            "",
            403,
            "needs organization:owners",
        )
        .await;
        refused(&scene, "POST", &path, &globex, "", 404, "").await;
        refused(
            &scene,
            "POST",
            &path,
            &org,
            "",
            403,
            "`org-no-state-versions`",
        )
        .await;
        let cv = format!("/api/v2/configuration-versions/cv-1/actions/{action}");
        refused(&scene, "POST", &cv, &org, "", 403, "`org-no-backing-data`").await;
    }
    // Changing a state version by id is at least admin: a read team may not.
    let read = scene
        .team_with("readers", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    refused(
        &scene,
        "PATCH",
        "/api/v2/state-versions/sv-1",
        &read,
        "{}",
        403,
        "needs admin",
    )
    .await;
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "nothing was forwarded"
    );
    let path = "/api/v2/state-versions/sv-1/actions/soft_delete_backing_data";
    let response = scene.call("POST", path, &owner, "").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(scene.forwarded(), [format!("POST {path}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_writes_need_their_organization_permission() {
    let scene = Scene::new().await;
    let read = scene
        .team_with("readers", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    let org = scene.org_token().await;
    let globex = scene.globex_token().await;
    let varset = r#"{"data":{"type":"varsets","attributes":{"name":"g","global":true}}}"#;
    let writes = [
        ("/api/v2/organizations/acme/varsets", "manage-workspaces"),
        ("/api/v2/organizations/acme/projects", "manage-projects"),
        ("/api/v2/organizations/acme/policy-sets", "manage-policies"),
        (
            "/api/v2/organizations/acme/organization-memberships",
            "manage-membership",
        ),
        (
            "/api/v2/organizations/acme/oauth-clients",
            "manage-vcs-settings",
        ),
        (
            "/api/v2/organizations/acme/agent-pools",
            "manage-agent-pools",
        ),
        (
            "/api/v2/organizations/acme/registry-providers",
            "manage-providers",
        ),
        ("/api/v2/organizations/acme/run-tasks", "manage-run-tasks"),
    ];
    for (path, flag) in writes {
        refused(
            &scene,
            "POST",
            path,
            &read,
            varset,
            403,
            &format!("needs organization:{flag} in organization acme"),
        )
        .await;
    }
    refused(
        &scene,
        "POST",
        "/api/v2/organizations/acme/varsets",
        &globex,
        varset,
        404,
        "",
    )
    .await;
    // Replacing a team's members (PATCH/PUT) needs manage-membership like POST.
    let (team, _) = scene.team("victims").await;
    let users = format!("/api/v2/teams/{team}/relationships/users");
    let members = r#"{"data":[{"type":"users","id":"user-evil"}]}"#;
    for method in ["PATCH", "PUT"] {
        refused(
            &scene,
            method,
            &users,
            &read,
            members,
            403,
            "needs organization:manage-membership",
        )
        .await;
    }
    // Id-addressed organization resources: a team's writes need the
    // organization permission in the resource's organization; what names
    // nothing the gateway can place fails closed.
    {
        let mut directory = scene.world.upstream.directory();
        for (collection, id) in [
            ("projects", "prj-1"),
            ("varsets", "varset-1"),
            ("policy-sets", "polset-1"),
            ("oauth-clients", "oc-1"),
            ("organization-memberships", "ou-1"),
            ("agent-pools", "apool-1"),
        ] {
            directory.org_resource(collection, id, "acme");
        }
        directory.team_project("tprj-1", "prj-1", "team-x");
    }
    let by_id = [
        ("PATCH", "/api/v2/projects/prj-1", "manage-projects"),
        (
            "POST",
            "/api/v2/varsets/varset-1/relationships/workspaces",
            "manage-workspaces",
        ),
        (
            "DELETE",
            "/api/v2/policy-sets/polset-1/relationships/workspaces",
            "manage-policies",
        ),
        ("PATCH", "/api/v2/oauth-clients/oc-1", "manage-vcs-settings"),
        (
            "DELETE",
            "/api/v2/organization-memberships/ou-1",
            "manage-membership",
        ),
        ("PATCH", "/api/v2/team-projects/tprj-1", "manage-projects"),
        ("PATCH", "/api/v2/agent-pools/apool-1", "manage-agent-pools"),
    ];
    for (method, path, flag) in by_id {
        refused(
            &scene,
            method,
            path,
            &read,
            "{}",
            403,
            &format!("needs organization:{flag} in organization acme"),
        )
        .await;
    }
    refused(
        &scene,
        "DELETE",
        "/api/v2/run-tasks/task-1",
        &read,
        "{}",
        403,
        "`organization-resources-unplaced`",
    )
    .await;
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "nothing was forwarded"
    );

    // With the permission (or as the organization token) they arrive.
    let varsets = scene
        .team_with_org_access(
            "varsets",
            OrganizationAccess {
                manage_workspaces: true,
                ..Default::default()
            },
        )
        .await;
    let response = scene
        .call(
            "POST",
            "/api/v2/organizations/acme/varsets",
            &varsets,
            varset,
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    for (path, _) in writes {
        let response = scene.call("POST", path, &org, varset).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    // Organization tokens keep CRUD on id-addressed resources of their own
    // organization (org_resources.rs: another organization's are 404).
    scene
        .world
        .upstream
        .directory()
        .org_resource("projects", "prj-1", "acme");
    let rename = r#"{"data":{"attributes":{"name":"renamed"}}}"#;
    let response = scene
        .call("PATCH", "/api/v2/projects/prj-1", &org, rename)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let forwarded = scene.forwarded();
    assert_eq!(forwarded.len(), 1 + writes.len() + 1, "{forwarded:?}");
    assert_eq!(forwarded[0], "POST /api/v2/organizations/acme/varsets");
    assert_eq!(forwarded.last().unwrap(), "PATCH /api/v2/projects/prj-1");
    let received = scene.world.upstream.requests();
    assert_eq!(received[0].body, varset.as_bytes());
}
