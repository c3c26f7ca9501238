//! Team tokens' writes to organization resources addressed by their own id,
//! and their reads of a variable set's variables, end to end on a real
//! Redis and the recording upstream: a team with the organization
//! permission Terraform Enterprise requires (manage-projects,
//! manage-workspaces, manage-policies, …) changes and deletes its own
//! organization's projects, variable sets, policy sets, … and the upstream
//! receives them byte for byte; a team without it gets 403 naming the
//! permission, a team of another organization 404, and the upstream
//! receives nothing. Reading a variable set's variables (`include=vars`,
//! `/relationships/vars`) needs organization:read-workspaces.

use crate::access::Scene;
use crate::org_resources::{place_families, FAMILIES, RENAME};
use serde_json::json;
use tokengate::store::OrganizationAccess;

/// Each id-addressed collection a team writes to, and the organization
/// permission it needs there.
const WRITES: [(&str, &str); 11] = [
    ("projects", "manage-projects"),
    ("team-projects", "manage-projects"),
    ("varsets", "manage-workspaces"),
    ("policy-sets", "manage-policies"),
    ("policies", "manage-policies"),
    ("policy-set-versions", "manage-policies"),
    ("agent-pools", "manage-agent-pools"),
    ("oauth-clients", "manage-vcs-settings"),
    ("oauth-tokens", "manage-vcs-settings"),
    ("tasks", "manage-run-tasks"),
    ("organization-memberships", "manage-membership"),
];

const FLAGS: [&str; 15] = [
    "manage-workspaces",
    "manage-projects",
    "read-workspaces",
    "read-projects",
    "manage-teams",
    "manage-membership",
    "manage-organization-access",
    "manage-policies",
    "manage-policy-overrides",
    "manage-run-tasks",
    "manage-vcs-settings",
    "manage-agent-pools",
    "manage-providers",
    "manage-modules",
    "access-secret-teams",
];

/// Organization access with exactly `flags`.
fn access(flags: &[&str]) -> OrganizationAccess {
    let mut access = OrganizationAccess::default();
    for flag in flags {
        let field = match *flag {
            "manage-workspaces" => &mut access.manage_workspaces,
            "manage-projects" => &mut access.manage_projects,
            "read-workspaces" => &mut access.read_workspaces,
            "read-projects" => &mut access.read_projects,
            "manage-teams" => &mut access.manage_teams,
            "manage-membership" => &mut access.manage_membership,
            "manage-organization-access" => &mut access.manage_organization_access,
            "manage-policies" => &mut access.manage_policies,
            "manage-policy-overrides" => &mut access.manage_policy_overrides,
            "manage-run-tasks" => &mut access.manage_run_tasks,
            "manage-vcs-settings" => &mut access.manage_vcs_settings,
            "manage-agent-pools" => &mut access.manage_agent_pools,
            "manage-providers" => &mut access.manage_providers,
            "manage-modules" => &mut access.manage_modules,
            "access-secret-teams" => &mut access.access_secret_teams,
            other => panic!("unknown flag {other}"),
        };
        *field = true;
    }
    access
}

/// Every flag but `needed` (and, for manage-workspaces or manage-projects,
/// without the other one, which TFE counts as more).
fn all_but(needed: &str) -> OrganizationAccess {
    let workspaces = ["manage-workspaces", "manage-projects"];
    let flags: Vec<&str> = FLAGS
        .into_iter()
        .filter(|f| *f != needed && !(workspaces.contains(f) && workspaces.contains(&needed)))
        .collect();
    access(&flags)
}

/// Scene's team of `globex`, with every organization permission, and its token.
async fn globex_admin(scene: &Scene) -> String {
    scene
        .world
        .store()
        .set_organization_access(&scene.globex_team, access(&FLAGS))
        .await
        .unwrap();
    scene.globex_token().await
}

/// The family of `collection`: (acme's id, globex's id, method, path under the id).
fn family(collection: &str) -> (&'static str, &'static str, &'static str, &'static str) {
    let (_, own, other, method, under) = FAMILIES
        .into_iter()
        .find(|f| f.0 == collection)
        .expect("a family");
    (own, other, method, under)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_writes_its_own_organizations_resources_by_id_with_the_permission_only() {
    let scene = Scene::new().await;
    place_families(&scene);
    let globex = globex_admin(&scene).await;
    let mut allowed = Vec::new();
    for (collection, flag) in WRITES {
        let (own, other, method, under) = family(collection);
        let without = scene
            .team_with_org_access(&format!("no-{collection}"), all_but(flag))
            .await;
        let with = scene
            .team_with_org_access(&format!("{collection}-admins"), access(&[flag]))
            .await;
        let own_path = format!("/api/v2/{collection}/{own}");
        let own_nested = format!("{own_path}/{under}");
        let writes = [
            ("PATCH", own_path.clone(), RENAME),
            ("DELETE", own_path.clone(), ""),
            (method, own_nested, "{}"),
        ];
        // Without the permission (every other one): 403 naming it.
        for (method, path, body) in &writes {
            let response = scene.call(method, path, &without, body).await;
            assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
            let detail = response.error_detail();
            assert!(
                detail.contains(&format!("needs organization:{flag} in organization acme")),
                "{method} {path}: {detail}"
            );
        }
        // Another organization's, with the permission: 404.
        let other_path = format!("/api/v2/{collection}/{other}");
        for (method, path, body) in [
            ("PATCH", other_path.as_str(), RENAME),
            ("DELETE", other_path.as_str(), ""),
        ] {
            let response = scene.call(method, path, &with, body).await;
            assert_eq!(response.status, 404, "{method} {path}: {}", response.body);
            assert_eq!(response.error_detail(), "not found", "{method} {path}");
        }
        // A team of another organization, with every permission: 404.
        let response = scene.call("PATCH", &own_path, &globex, RENAME).await;
        assert_eq!(response.status, 404, "PATCH {own_path}: {}", response.body);
        allowed.push((with, writes));
    }
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "no refused write reached the upstream"
    );
    // With the permission, in its own organization: forwarded byte for byte.
    let mut expected = Vec::new();
    for (with, writes) in &allowed {
        for (method, path, body) in writes {
            let response = scene.call(method, path, with, body).await;
            assert_eq!(response.status, 200, "{method} {path}: {}", response.body);
            expected.push((format!("{method} {path}"), body.as_bytes().to_vec()));
        }
    }
    let received = scene.world.upstream.requests();
    let seen: Vec<(String, Vec<u8>)> = received
        .iter()
        .map(|r| (format!("{} {}", r.method, r.target), r.body.to_vec()))
        .collect();
    assert_eq!(seen, expected, "forwarded byte for byte");
    for request in &received {
        assert_eq!(request.header("x-tokengate-org"), Some("acme"));
        assert_eq!(request.header("x-tokengate-kind"), Some("team"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_grants_project_access_in_its_own_organization_with_manage_projects_only() {
    let scene = Scene::new().await;
    place_families(&scene);
    let (own_team, _) = scene.team("devs").await;
    let with = scene
        .team_with_org_access("project-admins", access(&["manage-projects"]))
        .await;
    let without = scene
        .team_with_org_access("others", all_but("manage-projects"))
        .await;
    let grant = |project: &str, team: &str| {
        json!({"data": {"type": "team-projects", "attributes": {"access": "admin"},
            "relationships": {
                "project": {"data": {"type": "projects", "id": project}},
                "team": {"data": {"type": "teams", "id": team}}}}})
        .to_string()
    };
    let globex_team = scene.globex_team.clone();
    for (token, body, status) in [
        (&with, grant("prj-b", &own_team), 404),
        (&with, grant("prj-a", &globex_team), 404),
        (&without, grant("prj-a", &own_team), 403),
    ] {
        let response = scene
            .call("POST", "/api/v2/team-projects", token, &body)
            .await;
        assert_eq!(response.status, status, "{body}: {}", response.body);
        if status == 403 {
            let detail = response.error_detail();
            assert!(
                detail.contains("needs organization:manage-projects in organization acme"),
                "{detail}"
            );
        }
    }
    assert_eq!(scene.forwarded(), Vec::<String>::new());
    let body = grant("prj-a", &own_team);
    let response = scene
        .call("POST", "/api/v2/team-projects", &with, &body)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(scene.forwarded(), ["POST /api/v2/team-projects"]);
    assert_eq!(scene.world.upstream.last().body, body.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_sets_variables_need_read_workspaces() {
    let scene = Scene::new().await;
    place_families(&scene);
    let (_, member) = scene.team("members").await;
    let readers = scene
        .team_with_org_access("readers", access(&["read-workspaces"]))
        .await;
    let managers = scene
        .team_with_org_access("managers", access(&["manage-workspaces"]))
        .await;
    let globex = globex_admin(&scene).await;
    let reads = [
        "/api/v2/organizations/acme/varsets?include=vars",
        "/api/v2/organizations/acme/varsets?include=workspaces%2Cvars",
        "/api/v2/projects/prj-a/varsets?include=vars",
        "/api/v2/varsets/varset-a?include=vars",
        "/api/v2/varsets/varset-a/relationships/vars",
    ];
    for path in reads {
        let response = scene.call("GET", path, &member, "").await;
        assert_eq!(response.status, 403, "GET {path}: {}", response.body);
        let detail = response.error_detail();
        assert!(
            detail.contains("needs organization:read-workspaces in organization acme"),
            "GET {path}: {detail}"
        );
        let response = scene.call("GET", path, &globex, "").await;
        assert_eq!(response.status, 404, "GET {path}: {}", response.body);
    }
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "no variable reached a team without read-workspaces"
    );
    // The lists and the set without their variables stay open to members.
    let mut expected = Vec::new();
    for path in [
        "/api/v2/organizations/acme/varsets",
        "/api/v2/organizations/acme/varsets?include=workspaces",
        "/api/v2/varsets/varset-a",
    ] {
        let response = scene.call("GET", path, &member, "").await;
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        expected.push(format!("GET {path}"));
    }
    // read-workspaces, or manage-workspaces which meets it: forwarded.
    for token in [&readers, &managers] {
        for path in reads {
            let response = scene.call("GET", path, token, "").await;
            assert_eq!(response.status, 200, "GET {path}: {}", response.body);
            expected.push(format!("GET {path}"));
        }
    }
    assert_eq!(scene.forwarded(), expected);
}
