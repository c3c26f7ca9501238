//! Team workspace access on the request path, end to end on a real Redis:
//! what each access level (and each custom permission) lets a team token
//! do, users with the union of their teams, organization-level permissions
//! and the owners team, organization tokens kept inside their organization,
//! 404 for what the caller cannot see, and the resolver (unknown ids,
//! upstream errors, timeouts, one fetch per relation, a bounded cache).
//! Every refusal is checked as "the upstream never saw it".

use crate::harness::*;
use serde_json::json;
use std::sync::Arc;
use tokengate::access::model::{
    AccessLevel, Permissions, Runs, SentinelMocks, StateVersions, Variables,
};
use tokengate::store::{OrganizationAccess, Owner, TeamAccess};

/// Redis, a recording upstream that knows workspaces `ws-1` (`one`) and
/// `ws-2` (`two`) of `acme` and `ws-g` (`g`) of `globex`, runs `run-1`,
/// `run-2`, `run-g` of them, and a gateway on the default policy.
pub struct Scene {
    pub world: World,
    /// A team of `globex`.
    pub globex_team: String,
}

impl Scene {
    pub async fn new() -> Scene {
        Self::with_config("").await
    }

    pub async fn with_config(extra: &str) -> Scene {
        Self::around(World::with_config(extra).await).await
    }

    /// The scene's workspaces, runs and teams around `world`.
    pub async fn around(world: World) -> Scene {
        {
            let mut directory = world.upstream.directory();
            directory.strict();
            directory.workspace("ws-1", "one", "acme");
            directory.workspace("ws-2", "two", "acme");
            directory.workspace("ws-g", "g", "globex");
            directory.run("run-1", "ws-1");
            directory.run("run-2", "ws-2");
            directory.run("run-g", "ws-g");
        }
        world.store().create_org("globex").await.unwrap();
        let globex_team = world.store().create_team("globex", "ops").await.unwrap().id;
        Scene { world, globex_team }
    }

    /// An owner's token (a user in the owners team of acme).
    pub async fn owner_token(&self) -> String {
        let owners = self
            .world
            .store()
            .org("acme")
            .await
            .unwrap()
            .unwrap()
            .owners_team_id;
        self.world
            .gateway
            .user_with_token("acme", "olivia", &[owners])
            .await
            .1
    }

    /// The organization token of `acme`.
    pub async fn org_token(&self) -> String {
        self.world
            .gateway
            .issue(Owner::Org { org: "acme".into() })
            .await
    }

    /// The token of the scene's `globex` team.
    pub async fn globex_token(&self) -> String {
        self.world
            .gateway
            .issue(Owner::Team {
                org: "globex".into(),
                team_id: self.globex_team.clone(),
            })
            .await
    }

    /// A new team of `acme` with organization-level `access`, and its token.
    pub async fn team_with_org_access(&self, name: &str, access: OrganizationAccess) -> String {
        let (team, token) = self.team(name).await;
        self.world
            .store()
            .set_organization_access(&team, access)
            .await
            .unwrap();
        token
    }

    /// A new team of `acme` and its token.
    pub async fn team(&self, name: &str) -> (String, String) {
        let team = self.world.store().create_team("acme", name).await.unwrap();
        let token = self
            .world
            .gateway
            .issue(Owner::Team {
                org: "acme".into(),
                team_id: team.id.clone(),
            })
            .await;
        (team.id, token)
    }

    /// A new team with `level` (and `permissions`, for custom) on `ws-1`.
    pub async fn team_with(
        &self,
        name: &str,
        level: AccessLevel,
        permissions: Permissions,
    ) -> String {
        let (team, token) = self.team(name).await;
        self.grant(&team, "ws-1", level, permissions).await;
        token
    }

    pub async fn grant(
        &self,
        team: &str,
        ws: &str,
        level: AccessLevel,
        permissions: Permissions,
    ) -> TeamAccess {
        let access = TeamAccess::new(team, ws, "acme", level, permissions);
        self.world.store().add_team_access(&access).await.unwrap();
        access
    }

    pub async fn call(&self, method: &str, path: &str, token: &str, body: &str) -> RawResponse {
        self.world
            .send(
                RawRequest::new(method, path)
                    .token(token)
                    .body(body.as_bytes()),
            )
            .await
    }

    /// `METHOD target` of every request the upstream was sent (not lookups).
    pub fn forwarded(&self) -> Vec<String> {
        self.world
            .upstream
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }
}

/// A run create body for workspace `ws`.
fn run_for(ws: &str) -> String {
    json!({"data": {"type": "runs", "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}}}})
        .to_string()
}

const VAR: &str =
    r#"{"data":{"type":"vars","attributes":{"key":"k","value":"v","category":"terraform"}}}"#;

/// A request: method, path, body.
type Call<'a> = (&'a str, &'a str, String);

/// Sends each request with `token`; the statuses, in order.
async fn statuses(scene: &Scene, token: &str, requests: &[(&str, &str, &str)]) -> Vec<u16> {
    let mut out = Vec::new();
    for (method, path, body) in requests {
        out.push(scene.call(method, path, token, body).await.status);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_team_reads_and_nothing_it_cannot_do_reaches_the_upstream() {
    let scene = Scene::new().await;
    let token = scene
        .team_with("readers", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    for path in [
        "/api/v2/workspaces/ws-1",
        "/api/v2/runs/run-1",
        "/api/v2/workspaces/ws-1/vars",
    ] {
        let response = scene.call("GET", path, &token, "").await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    let refused = [
        ("POST", "/api/v2/runs", run_for("ws-1"), "runs:plan"),
        (
            "POST",
            "/api/v2/workspaces/ws-1/configuration-versions",
            "{}".into(),
            "runs:plan",
        ),
        (
            "POST",
            "/api/v2/runs/run-1/actions/apply",
            String::new(),
            "runs:apply",
        ),
        (
            "POST",
            "/api/v2/workspaces/ws-1/vars",
            VAR.into(),
            "variables:write",
        ),
        (
            "PATCH",
            "/api/v2/workspaces/ws-1/vars/var-1",
            VAR.into(),
            "variables:write",
        ),
        (
            "DELETE",
            "/api/v2/workspaces/ws-1/vars/var-1",
            String::new(),
            "variables:write",
        ),
    ];
    for (method, path, body, permission) in &refused {
        let response = scene.call(method, path, &token, body).await;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
        let detail = response.error_detail();
        assert!(
            detail.contains(&format!("needs {permission} on")),
            "{method} {path}: {detail}"
        );
        assert!(
            detail.contains("the caller has runs:read, variables:read, state-versions:read"),
            "{detail}"
        );
    }
    assert_eq!(
        scene.forwarded(),
        [
            "GET /api/v2/workspaces/ws-1",
            "GET /api/v2/runs/run-1",
            "GET /api/v2/workspaces/ws-1/vars"
        ],
        "the upstream saw the reads and nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_plans_write_applies_and_admin_changes_settings() {
    let scene = Scene::new().await;
    let plan = scene
        .team_with("planners", AccessLevel::Plan, Permissions::CUSTOM_DEFAULT)
        .await;
    let write = scene
        .team_with("writers", AccessLevel::Write, Permissions::CUSTOM_DEFAULT)
        .await;
    let admin = scene
        .team_with("admins", AccessLevel::Admin, Permissions::CUSTOM_DEFAULT)
        .await;
    let run = run_for("ws-1");
    let settings = r#"{"data":{"type":"workspaces","attributes":{"terraform-version":"1.9.0"}}}"#;
    let requests: Vec<(&str, &str, &str)> = vec![
        ("POST", "/api/v2/runs", &run),
        ("POST", "/api/v2/runs/run-1/actions/apply", ""),
        ("POST", "/api/v2/workspaces/ws-1/vars", VAR),
        (
            "POST",
            "/api/v2/workspaces/ws-1/actions/lock",
            r#"{"reason":"x"}"#,
        ),
        ("PATCH", "/api/v2/workspaces/ws-1", settings),
        ("POST", "/api/v2/runs/run-1/actions/force-cancel", ""),
    ];
    assert_eq!(
        statuses(&scene, &plan, &requests).await,
        [200, 403, 403, 403, 403, 403],
        "plan"
    );
    assert_eq!(
        statuses(&scene, &write, &requests).await,
        [200, 200, 200, 200, 403, 403],
        "write"
    );
    assert_eq!(
        statuses(&scene, &admin, &requests).await,
        [200, 200, 200, 200, 200, 200],
        "admin"
    );
    let refused = scene
        .call("PATCH", "/api/v2/workspaces/ws-1", &write, settings)
        .await;
    assert!(
        refused
            .error_detail()
            .contains("needs admin on workspace ws-1"),
        "{}",
        refused.body
    );
    // What was allowed arrived, body and all; nothing else did.
    let forwarded = scene.forwarded();
    assert_eq!(forwarded.len(), 1 + 4 + 6, "{forwarded:?}");
    assert_eq!(
        forwarded
            .iter()
            .filter(|r| r.ends_with("/actions/apply"))
            .count(),
        2,
        "only write and admin applied: {forwarded:?}"
    );
    assert_eq!(
        forwarded.iter().filter(|r| r.starts_with("PATCH")).count(),
        1,
        "{forwarded:?}"
    );
    assert_eq!(scene.world.upstream.requests()[0].body, run.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_permissions_allow_exactly_what_they_say() {
    let scene = Scene::new().await;
    let base = Permissions::CUSTOM_DEFAULT;
    // (name, the custom permissions, request, the permission the default
    // policy requires for it): each team may make its request, and the
    // team with only `runs: read` may make none of them.
    let cases: Vec<(&str, Permissions, Call, &str)> = vec![
        (
            "c-plan",
            Permissions {
                runs: Runs::Plan,
                ..base
            },
            ("POST", "/api/v2/runs", run_for("ws-1")),
            "runs:plan",
        ),
        (
            "c-apply",
            Permissions {
                runs: Runs::Apply,
                ..base
            },
            ("POST", "/api/v2/runs/run-1/actions/discard", String::new()),
            "runs:apply",
        ),
        (
            "c-vars-read",
            Permissions {
                variables: Variables::Read,
                ..base
            },
            ("GET", "/api/v2/workspaces/ws-1/vars", String::new()),
            "variables:read",
        ),
        (
            "c-vars-write",
            Permissions {
                variables: Variables::Write,
                ..base
            },
            ("PATCH", "/api/v2/workspaces/ws-1/vars/var-1", VAR.into()),
            "variables:write",
        ),
        (
            "c-outputs",
            Permissions {
                state_versions: StateVersions::ReadOutputs,
                ..base
            },
            (
                "GET",
                "/api/v2/workspaces/ws-1/current-state-version-outputs",
                String::new(),
            ),
            "state-versions:read-outputs",
        ),
        (
            "c-state",
            Permissions {
                state_versions: StateVersions::Read,
                ..base
            },
            (
                "GET",
                "/api/v2/workspaces/ws-1/current-state-version",
                String::new(),
            ),
            "state-versions:read",
        ),
        (
            "c-state-write",
            Permissions {
                state_versions: StateVersions::Write,
                ..base
            },
            (
                "POST",
                "/api/v2/workspaces/ws-1/state-versions",
                "{}".into(),
            ),
            "state-versions:write",
        ),
        (
            "c-locking",
            Permissions {
                workspace_locking: true,
                ..base
            },
            (
                "POST",
                "/api/v2/workspaces/ws-1/actions/unlock",
                String::new(),
            ),
            "workspace-locking",
        ),
        (
            "c-run-tasks",
            Permissions {
                run_tasks: true,
                ..base
            },
            ("POST", "/api/v2/workspaces/ws-1/tasks", "{}".into()),
            "run-tasks",
        ),
        (
            "c-overrides",
            Permissions {
                policy_overrides: true,
                ..base
            },
            (
                "POST",
                "/api/v2/task-stages/ts-1/actions/override",
                String::new(),
            ),
            "policy-overrides",
        ),
    ];
    {
        let mut directory = scene.world.upstream.directory();
        directory.put(
            "/api/v2/task-stages/ts-1",
            Entry::Doc(document("ts-1", "task-stages", &[("run", "runs", "run-1")])),
        );
    }
    let runs_only = scene.team_with("c-read", AccessLevel::Custom, base).await;
    for (name, permissions, (method, path, body), permission) in &cases {
        let token = scene
            .team_with(name, AccessLevel::Custom, *permissions)
            .await;
        let before = scene.forwarded().len();
        let allowed = scene.call(method, path, &token, body).await;
        assert_eq!(
            allowed.status, 200,
            "{name}: {method} {path}: {}",
            allowed.body
        );
        assert_eq!(
            scene.forwarded().len(),
            before + 1,
            "{name}: forwarded once"
        );
        let refused = scene.call(method, path, &runs_only, body).await;
        assert_eq!(
            refused.status, 403,
            "runs:read only: {method} {path}: {}",
            refused.body
        );
        assert!(
            refused
                .error_detail()
                .contains(&format!("needs {permission}")),
            "{}",
            refused.body
        );
        assert_eq!(
            scene.forwarded().len(),
            before + 1,
            "{name}: the refusal reached nobody"
        );
    }
    // Sentinel mocks (plan exports name their plan in the body).
    scene.world.upstream.directory().put(
        "/api/v2/plans/plan-1",
        Entry::Doc(document("plan-1", "plans", &[("run", "runs", "run-1")])),
    );
    let mocks = scene
        .team_with(
            "c-mocks",
            AccessLevel::Custom,
            Permissions {
                sentinel_mocks: SentinelMocks::Read,
                ..base
            },
        )
        .await;
    let export = r#"{"data":{"type":"plan-exports","attributes":{"data-type":"sentinel-mock-bundle-v0"},"relationships":{"plan":{"data":{"id":"plan-1","type":"plans"}}}}}"#;
    assert_eq!(
        scene
            .call("POST", "/api/v2/plan-exports", &mocks, export)
            .await
            .status,
        200
    );
    assert_eq!(
        scene
            .call("POST", "/api/v2/plan-exports", &runs_only, export)
            .await
            .status,
        403
    );
    // Custom access never includes the admin-only actions.
    let everything = Permissions {
        policy_overrides: true,
        ..Permissions::ALL
    };
    let custom_all = scene
        .team_with("c-all", AccessLevel::Custom, everything)
        .await;
    let response = scene
        .call("DELETE", "/api/v2/workspaces/ws-1", &custom_all, "")
        .await;
    assert_eq!(response.status, 403, "{}", response.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_without_access_or_of_another_organization_is_404_and_never_forwarded() {
    let scene = Scene::new().await;
    let token = scene
        .team_with("ws1-only", AccessLevel::Admin, Permissions::CUSTOM_DEFAULT)
        .await;
    let hidden = [
        ("GET", "/api/v2/workspaces/ws-2", String::new()),
        (
            "GET",
            "/api/v2/organizations/acme/workspaces/two",
            String::new(),
        ),
        ("POST", "/api/v2/runs/run-2/actions/apply", String::new()),
        ("POST", "/api/v2/runs", run_for("ws-2")),
        ("GET", "/api/v2/workspaces/ws-g", String::new()),
        (
            "GET",
            "/api/v2/organizations/globex/workspaces/g",
            String::new(),
        ),
        ("GET", "/api/v2/runs/run-g", String::new()),
        ("POST", "/api/v2/runs/run-g/actions/apply", String::new()),
        (
            "GET",
            "/api/v2/organizations/globex/workspaces",
            String::new(),
        ),
        (
            "GET",
            &format!("/api/v2/teams/{}", scene.globex_team),
            String::new(),
        ),
    ];
    for (method, path, body) in &hidden {
        let response = scene.call(method, path, &token, body).await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.body);
        assert_eq!(
            response.error_detail(),
            "not found",
            "nothing said about it"
        );
    }
    assert_eq!(scene.forwarded(), Vec::<String>::new());
    // Another organization's workspace name is not even looked up.
    assert!(
        !scene
            .world
            .upstream
            .lookups()
            .iter()
            .any(|l| l.target.contains("/organizations/globex/")),
        "{:?}",
        scene.world.upstream.lookups()
    );
    // Its own workspace and organization it may use.
    assert_eq!(
        scene
            .call("GET", "/api/v2/workspaces/ws-1", &token, "")
            .await
            .status,
        200
    );
    assert_eq!(
        scene
            .call("GET", "/api/v2/organizations/acme/workspaces", &token, "")
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_token_acts_in_its_organization_and_nowhere_else() {
    let scene = Scene::new().await;
    let org = scene.world.gateway.issue(scene.world.org_owner()).await;
    let hidden = [
        ("GET", "/api/v2/workspaces/ws-g".to_owned()),
        ("PATCH", "/api/v2/workspaces/ws-g".to_owned()),
        ("GET", "/api/v2/runs/run-g".to_owned()),
        ("GET", "/api/v2/organizations/globex/workspaces".to_owned()),
        ("GET", format!("/api/v2/teams/{}", scene.globex_team)),
        (
            "POST",
            format!("/api/v2/teams/{}/authentication-token", scene.globex_team),
        ),
        (
            "GET",
            format!("/api/v2/teams/{}/authentication-token", scene.globex_team),
        ),
    ];
    for (method, path) in &hidden {
        let response = scene.call(method, path, &org, "").await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.body);
    }
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "nothing of globex was forwarded"
    );
    // In its own organization it may read and change every workspace
    // (no grant needed), but the policy still refuses its applies.
    let settings = r#"{"data":{"attributes":{"description":"x"}}}"#;
    assert_eq!(
        scene
            .call("GET", "/api/v2/workspaces/ws-2", &org, "")
            .await
            .status,
        200
    );
    assert_eq!(
        scene
            .call("PATCH", "/api/v2/workspaces/ws-2", &org, settings)
            .await
            .status,
        200
    );
    let apply = scene
        .call("POST", "/api/v2/runs/run-1/actions/apply", &org, "")
        .await;
    assert_eq!(apply.status, 403);
    assert!(
        apply.error_detail().contains("`org-no-run-actions`"),
        "{}",
        apply.body
    );
    assert_eq!(
        scene.forwarded(),
        [
            "GET /api/v2/workspaces/ws-2",
            "PATCH /api/v2/workspaces/ws-2"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_act_with_their_teams_together_owners_and_organization_permissions_count() {
    let scene = Scene::new().await;
    let store = scene.world.store();
    let (readers, _) = scene.team("u-readers").await;
    let (planners, _) = scene.team("u-planners").await;
    scene
        .grant(
            &readers,
            "ws-1",
            AccessLevel::Read,
            Permissions::CUSTOM_DEFAULT,
        )
        .await;
    scene
        .grant(
            &planners,
            "ws-1",
            AccessLevel::Custom,
            Permissions {
                runs: Runs::Plan,
                ..Permissions::CUSTOM_DEFAULT
            },
        )
        .await;
    let (_, both) = scene
        .world
        .gateway
        .user_with_token("acme", "bo", &[readers.clone(), planners])
        .await;
    // read (variables, state) + plan (runs) from two teams: the highest of each.
    let run = run_for("ws-1");
    let requests: Vec<(&str, &str, &str)> = vec![
        ("GET", "/api/v2/workspaces/ws-1/vars", ""),
        ("POST", "/api/v2/runs", &run),
        ("POST", "/api/v2/runs/run-1/actions/apply", ""),
        ("GET", "/api/v2/workspaces/ws-2", ""),
    ];
    assert_eq!(
        statuses(&scene, &both, &requests).await,
        [200, 200, 403, 404]
    );
    // The owners team may do everything in its organization.
    let owners = store.org("acme").await.unwrap().unwrap().owners_team_id;
    let (_, owner) = scene
        .world
        .gateway
        .user_with_token("acme", "olivia", &[owners])
        .await;
    assert_eq!(
        statuses(&scene, &owner, &requests).await,
        [200, 200, 200, 200]
    );
    assert_eq!(
        scene
            .call("GET", "/api/v2/workspaces/ws-g", &owner, "")
            .await
            .status,
        404
    );
    // Organization-level permissions: read-workspaces reads every workspace,
    // manage-workspaces is admin on every workspace and creates workspaces.
    let (viewers, viewer_token) = scene.team("viewers").await;
    store
        .set_organization_access(
            &viewers,
            OrganizationAccess {
                read_workspaces: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (managers, manager_token) = scene.team("managers").await;
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
    let create = r#"{"data":{"type":"workspaces","attributes":{"name":"new"}}}"#;
    let org_level: Vec<(&str, &str, &str)> = vec![
        ("GET", "/api/v2/workspaces/ws-2/current-state-version", ""),
        ("POST", "/api/v2/runs/run-2/actions/apply", ""),
        ("DELETE", "/api/v2/workspaces/ws-2", ""),
        ("POST", "/api/v2/organizations/acme/workspaces", create),
    ];
    assert_eq!(
        statuses(&scene, &viewer_token, &org_level).await,
        [200, 403, 403, 403]
    );
    assert_eq!(
        statuses(&scene, &manager_token, &org_level).await,
        [200, 200, 200, 200]
    );
    let refused = scene
        .call(
            "POST",
            "/api/v2/organizations/acme/workspaces",
            &viewer_token,
            create,
        )
        .await;
    assert!(
        refused
            .error_detail()
            .contains("needs organization:manage-workspaces"),
        "{}",
        refused.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_resolved_as_the_upstream_routes_them_and_bad_targets_are_refused() {
    let scene = Scene::new().await;
    let token = scene
        .team_with("fmt", AccessLevel::Write, Permissions::CUSTOM_DEFAULT)
        .await;
    let response = scene
        .call("GET", "/api/v2/runs/run-1.json", &token, "")
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let response = scene
        .call("POST", "/api/v2/runs/run-1/actions/apply.json", &token, "")
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        scene
            .world
            .upstream
            .lookups()
            .iter()
            .all(|l| !l.target.contains(".json")),
        "the run was looked up without its format suffix"
    );
    // A run create without a workspace: 422 naming the pointer.
    let missing = scene
        .call(
            "POST",
            "/api/v2/runs",
            &token,
            r#"{"data":{"type":"runs"}}"#,
        )
        .await;
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert_eq!(
        missing.json()["errors"][0]["source"]["pointer"],
        "/data/relationships/workspace/data/id"
    );
    // A query parameter that a Rails upstream would merge over the judged body.
    let merged = scene
        .call(
            "POST",
            "/api/v2/runs?data%5Brelationships%5D%5Bworkspace%5D%5Bdata%5D%5Bid%5D=ws-2",
            &token,
            &run_for("ws-1"),
        )
        .await;
    assert_eq!(merged.status, 400, "{}", merged.body);
    // An escaped space is refused before any policy (the canonical path).
    let odd = scene.call("GET", "/api/v2/runs/run%201", &token, "").await;
    assert_eq!(odd.status, 400, "{}", odd.body);
    // An id that cannot be an id names nothing.
    let long = format!("/api/v2/runs/run-{}", "x".repeat(200));
    let odd = scene.call("GET", &long, &token, "").await;
    assert_eq!(odd.status, 404, "{}", odd.body);
    assert_eq!(
        scene.forwarded(),
        [
            "GET /api/v2/runs/run-1.json",
            "POST /api/v2/runs/run-1/actions/apply.json"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_upstream_errors_and_timeouts_are_refused_and_never_forwarded() {
    let scene = Scene::with_config("resolver: { timeout_ms: 300 }").await;
    let token = scene
        .team_with("r", AccessLevel::Admin, Permissions::CUSTOM_DEFAULT)
        .await;
    {
        let mut directory = scene.world.upstream.directory();
        directory.put("/api/v2/runs/run-err", Entry::Status(500));
        directory.put("/api/v2/runs/run-denied", Entry::Status(401));
        directory.put("/api/v2/runs/run-slow", Entry::Hang);
        directory.put(
            "/api/v2/runs/run-bare",
            Entry::Doc(json!({"data": {"id": "run-bare", "type": "runs"}})),
        );
        directory.put(
            "/api/v2/runs/run-other",
            Entry::Doc(document(
                "run-x",
                "runs",
                &[("workspace", "workspaces", "ws-1")],
            )),
        );
    }
    for (run, status, detail) in [
        ("run-nope", 404, "not found"),
        ("run-err", 502, "the gateway could not check access to run run-err: the upstream gave no usable answer"),
        ("run-denied", 502, "the gateway could not check access to run run-denied: the upstream gave no usable answer"),
        ("run-bare", 502, "the gateway could not check access to run run-bare: the upstream gave no usable answer"),
        ("run-other", 502, "the gateway could not check access to run run-other: the upstream gave no usable answer"),
        ("run-slow", 504, "the gateway could not check access to run run-slow: the upstream did not answer GET /api/v2/runs/run-slow within 300 ms (resolver.timeout_ms)"),
    ] {
        let response = scene.call("POST", &format!("/api/v2/runs/{run}/actions/apply"), &token, "").await;
        assert_eq!(response.status, status, "{run}: {}", response.body);
        assert_eq!(response.error_detail(), detail, "{run}");
    }
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "a target that cannot be resolved is never forwarded"
    );
    // Errors are not remembered: once the upstream answers, the run resolves.
    scene.world.upstream.directory().run("run-err", "ws-1");
    let response = scene
        .call("POST", "/api/v2/runs/run-err/actions/apply", &token, "")
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_immutable_relation_is_fetched_once_under_100_concurrent_requests() {
    let scene = Scene::new().await;
    let token = scene
        .team_with("many", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (addr, token) = (scene.world.gateway.addr, token.clone());
        requests.spawn(async move {
            send_raw(
                addr,
                RawRequest::new("GET", "/api/v2/runs/run-1").token(&token),
            )
            .await
            .status
        });
    }
    let statuses = requests.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let lookups: Vec<String> = scene
        .world
        .upstream
        .lookups()
        .iter()
        .map(|l| l.target.clone())
        .collect();
    assert_eq!(
        lookups,
        ["/api/v2/runs/run-1", "/api/v2/workspaces/ws-1"],
        "one fetch per relation"
    );
    assert_eq!(scene.forwarded().len(), 100);
    // And later requests need no lookup at all.
    scene
        .call("GET", "/api/v2/workspaces/ws-1/runs", &token, "")
        .await;
    assert_eq!(scene.world.upstream.lookups().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_cache_is_bounded() {
    let scene = Scene::with_config("resolver: { cache_capacity: 8 }").await;
    let (team, token) = scene.team("bounded").await;
    for i in 0..40 {
        let ws = format!("ws-b{i}");
        scene
            .world
            .upstream
            .directory()
            .workspace(&ws, &format!("b{i}"), "acme");
        scene
            .grant(&team, &ws, AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
            .await;
        let response = scene
            .call("GET", &format!("/api/v2/workspaces/{ws}"), &token, "")
            .await;
        assert_eq!(response.status, 200, "{ws}: {}", response.body);
    }
    let cached = scene
        .world
        .gateway
        .gateway
        .access
        .resolver
        .cached_relations()
        .await;
    assert!(cached <= 8, "{cached} relations cached with capacity 8");
    assert_eq!(scene.world.upstream.lookups().len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_carry_the_configured_authorization_and_forwarded_requests_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("resolver-authorization");
    std::fs::write(&secret, "Bearer lookup-secret\n").unwrap();
    let scene = Scene::with_config(&format!(
        "resolver: {{ authorization: {{ file: {} }} }}",
        secret.display()
    ))
    .await;
    let token = scene
        .team_with("auth", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    assert_eq!(
        scene
            .call("GET", "/api/v2/runs/run-1", &token, "")
            .await
            .status,
        200
    );
    let lookups = scene.world.upstream.lookups();
    assert_eq!(lookups.len(), 2);
    for lookup in &lookups {
        assert_eq!(lookup.header("authorization"), Some("Bearer lookup-secret"));
        assert_eq!(lookup.header("x-tokengate-lookup"), Some("1"));
        assert_eq!(
            lookup.header("x-tokengate-kind"),
            None,
            "a lookup is nobody's request"
        );
    }
    let forwarded = scene.world.upstream.last();
    assert_eq!(forwarded.header("authorization"), None);
    // A client cannot pass its request off as a lookup.
    let disguised = scene
        .world
        .send(
            RawRequest::new("GET", "/api/v2/runs/run-1")
                .token(&token)
                .headers(&[("X-Tokengate-Lookup", "1")]),
        )
        .await;
    assert_eq!(disguised.status, 200);
    assert_eq!(scene.world.upstream.requests().len(), 2);
    assert_eq!(scene.world.upstream.lookups().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_check_is_logged_and_counted() {
    let scene = Scene::new().await;
    let token = scene
        .team_with("counted", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    scene.call("GET", "/api/v2/runs/run-1", &token, "").await;
    scene
        .call("POST", "/api/v2/runs/run-1/actions/apply", &token, "")
        .await;
    scene
        .call("GET", "/api/v2/workspaces/ws-2", &token, "")
        .await;
    let metrics = scene
        .world
        .send(RawRequest::new("GET", "/_tokengate/metrics"))
        .await
        .body;
    for (outcome, count) in [("granted", 1.0), ("forbidden", 1.0), ("hidden", 1.0)] {
        assert_eq!(
            metric(
                &metrics,
                &format!("tokengate_access_checks_total{{outcome=\"{outcome}\"}}")
            ),
            count,
            "{outcome}"
        );
    }
    assert_eq!(
        metric(
            &metrics,
            "tokengate_requests_total{decision=\"deny\",rule=\"runs-apply\"}"
        ),
        1.0
    );
}

/// Fail closed: when the store cannot answer the access read, the request
/// is refused (503, logged as a store failure) and never forwarded; the
/// access is read again on the next request, so once the store answers,
/// the team is served again. The gateway's Redis user is refused `HGET`
/// (the access read) while `GET` (the credential read) still works, so the
/// failure is the access read's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_answer_the_access_read_refuses_and_forwards_nothing() {
    let scene = Scene::new().await;
    let token = scene
        .team_with("writers", AccessLevel::Write, Permissions::CUSTOM_DEFAULT)
        .await;
    let read = scene
        .call("GET", "/api/v2/workspaces/ws-1", &token, "")
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let url = scene.world.redis.url();
    crate::redis_harness::query::<String>(&url, &["ACL", "SETUSER", "default", "-hget"]).unwrap();
    for (method, path) in [
        ("GET", "/api/v2/workspaces/ws-1"),
        ("POST", "/api/v2/runs/run-1/actions/apply"),
        ("GET", "/api/v2/workspaces/ws-1/vars"),
    ] {
        let response = scene.call(method, path, &token, "").await;
        assert_eq!(response.status, 503, "{method} {path}: {}", response.body);
        assert!(
            response.error_detail().contains("store"),
            "{method} {path}: {}",
            response.body
        );
    }
    assert_eq!(
        scene.forwarded(),
        ["GET /api/v2/workspaces/ws-1"],
        "nothing was forwarded while the access could not be read"
    );
    crate::redis_harness::query::<String>(&url, &["ACL", "SETUSER", "default", "+hget"]).unwrap();
    let apply = scene
        .call("POST", "/api/v2/runs/run-1/actions/apply", &token, "")
        .await;
    assert_eq!(apply.status, 200, "{}", apply.body);
    assert_eq!(
        scene.forwarded(),
        [
            "GET /api/v2/workspaces/ws-1",
            "POST /api/v2/runs/run-1/actions/apply"
        ]
    );
}

/// A team token's request about a workspace costs one store round trip:
/// its credential and its team's access to the workspace (named in the
/// path, or found in the resolver's cache for a run) are read together. A
/// relay between the gateway and Redis counts the turns in which the
/// gateway sent reads after Redis had answered: one per request (two when
/// the access was read after the credential).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_tokens_credential_and_access_are_read_in_one_round_trip() {
    let mut relay = None;
    let world = World::with_config_file(|dir, upstream, redis| {
        let port = redis.rsplit(':').next().unwrap().trim_end_matches('/');
        let started = TurnCountingRelay::start(port.parse().unwrap());
        let url = format!("redis://{}", started.addr);
        relay = Some(started);
        write_config(dir, upstream, &url, "")
    })
    .await;
    let relay = relay.unwrap();
    let scene = Scene::around(world).await;
    let token = scene
        .team_with("readers", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    let requests = [
        ("GET", "/api/v2/workspaces/ws-1"),
        ("GET", "/api/v2/runs/run-1"),
    ];
    // Warm up: the resolver's cache, the script in Redis, the slot's team,
    // the token's last-used time (written at most once a minute, off the
    // request path).
    for _ in 0..2 {
        for (method, path) in requests {
            let response = scene.call(method, path, &token, "").await;
            assert_eq!(response.status, 200, "{path}: {}", response.body);
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let before = relay.turns();
    for (method, path) in requests {
        let response = scene.call(method, path, &token, "").await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(relay.turns() - before, 2, "one round trip per request");
}

/// A TCP relay in front of Redis that counts turns: chunks from a client
/// that name a `tg:` key and come after Redis answered that client (or
/// first on its connection). Reads sent together are one turn; a read that
/// waits for an answer before it is sent is a turn of its own.
struct TurnCountingRelay {
    addr: std::net::SocketAddr,
    turns: Arc<std::sync::atomic::AtomicUsize>,
}

impl TurnCountingRelay {
    fn start(redis_port: u16) -> TurnCountingRelay {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let turns = Arc::new(AtomicUsize::new(0));
        let count = turns.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", redis_port)).await
                else {
                    continue;
                };
                let count = count.clone();
                // Whether Redis answered since the client's last turn.
                let answered = Arc::new(AtomicBool::new(true));
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let heard = answered.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = server_read.read(&mut buf).await {
                        heard.store(true, Ordering::SeqCst);
                        if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        if chunk.windows(3).any(|w| w == b"tg:")
                            && answered.swap(false, Ordering::SeqCst)
                        {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        if server_write.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        TurnCountingRelay { addr, turns }
    }

    fn turns(&self) -> usize {
        self.turns.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Rack reads `filter[workspace]name` (and `…[name]]`, `[filter]…`) as
/// `filter[workspace][name]`, the last one winning: a lookup of the
/// canonical name would check one workspace while the upstream lists
/// another's state. Such names are refused, as is a token in the query,
/// and neither reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_names_rack_reads_differently_and_tokens_in_queries_never_reach_the_upstream() {
    let scene = Scene::new().await;
    let reader = scene
        .team_with("reader", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    let list = "/api/v2/state-versions?filter[organization][name]=acme&filter[workspace][name]=one";
    let allowed = scene.call("GET", list, &reader, "").await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    for smuggled in [
        "&filter[workspace]name=two",
        "&filter[workspace][name]]=two",
        "&[filter][workspace][name]=two",
        "&filter%5Bworkspace%5Dname=two",
    ] {
        let refused = scene
            .call("GET", &format!("{list}{smuggled}"), &reader, "")
            .await;
        assert_eq!(refused.status, 400, "{smuggled}: {}", refused.body);
        assert!(
            refused.error_detail().contains("is not in the form"),
            "{}",
            refused.body
        );
    }
    let leaked = scene
        .call(
            "GET",
            &format!("/api/v2/workspaces/ws-1?token={reader}"),
            &reader,
            "",
        )
        .await;
    assert_eq!(leaked.status, 400, "{}", leaked.body);
    assert!(leaked.error_detail().contains("holds a tokengate token"));
    assert_eq!(
        scene.forwarded(),
        vec![format!("GET {list}")],
        "only the canonical list reached the upstream"
    );
}

/// A run may be created with any existing configuration version, even
/// another workspace's, and its document then names it: the resolver must
/// not believe that the configuration version is the run's workspace's
/// (found by a red-team pass: a `plan` team downloaded another
/// organization's code and locked its owners out). Only the workspace that
/// lists the configuration version among its own gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_naming_another_workspaces_configuration_version_does_not_give_it_away() {
    let scene = Scene::new().await;
    let planners = scene
        .team_with("planners", AccessLevel::Plan, Permissions::CUSTOM_DEFAULT)
        .await;
    let (twos, twos_token) = scene.team("twos").await;
    scene
        .grant(
            &twos,
            "ws-2",
            AccessLevel::Read,
            Permissions::CUSTOM_DEFAULT,
        )
        .await;
    {
        let mut directory = scene.world.upstream.directory();
        directory.configuration_versions("ws-1", &["cv-1"]);
        directory.configuration_versions("ws-2", &["cv-2"]);
        // run-a of ws-1 was created with ws-2's configuration version.
        directory.run_with_parts("run-a", "ws-1", "plan-a", "cv-2");
        directory.run_with_parts("run-b", "ws-2", "plan-b", "cv-2");
        directory.run_with_parts("run-c", "ws-1", "plan-c", "cv-1");
    }
    let read = |token: &str, path: &'static str| {
        let token = token.to_owned();
        let scene = &scene;
        async move { scene.call("GET", path, &token, "").await }
    };
    assert_eq!(read(&planners, "/api/v2/runs/run-a").await.status, 200);
    // A plan is the run's own: known from the run (its document names no run).
    assert_eq!(read(&planners, "/api/v2/plans/plan-a").await.status, 200);
    let stolen = read(&planners, "/api/v2/configuration-versions/cv-2/download").await;
    assert_eq!(stolen.status, 502, "{}", stolen.body);
    assert!(
        stolen
            .error_detail()
            .contains("could not check access to configuration version cv-2"),
        "{}",
        stolen.body
    );
    // The refuted claim is dropped: asking again costs no lookup.
    let lookups = scene.world.upstream.lookups().len();
    let again = read(&planners, "/api/v2/configuration-versions/cv-2/download").await;
    assert_eq!(again.status, 502, "{}", again.body);
    let asked: Vec<String> = scene.world.upstream.lookups()[lookups..]
        .iter()
        .map(|l| l.target.clone())
        .collect();
    assert_eq!(asked, ["/api/v2/configuration-versions/cv-2"]);
    // The planners' own configuration version, named by their own run.
    assert_eq!(read(&planners, "/api/v2/runs/run-c").await.status, 200);
    assert_eq!(
        read(&planners, "/api/v2/configuration-versions/cv-1/download")
            .await
            .status,
        200
    );
    // ws-2's team is not locked out of its own configuration version…
    assert_eq!(read(&twos_token, "/api/v2/runs/run-b").await.status, 200);
    assert_eq!(
        read(&twos_token, "/api/v2/configuration-versions/cv-2/download")
            .await
            .status,
        200
    );
    // …and, now that it is known to be ws-2's, it is hidden from the planners.
    assert_eq!(
        read(&planners, "/api/v2/configuration-versions/cv-2/download")
            .await
            .status,
        404
    );
    assert_eq!(
        scene.forwarded(),
        [
            "GET /api/v2/runs/run-a",
            "GET /api/v2/plans/plan-a",
            "GET /api/v2/runs/run-c",
            "GET /api/v2/configuration-versions/cv-1/download",
            "GET /api/v2/runs/run-b",
            "GET /api/v2/configuration-versions/cv-2/download",
        ],
        "the upstream saw ws-2's configuration version asked for by ws-2's team only"
    );
}

/// Terraform's CLI creates a configuration version, uploads to it, then
/// reads it by id until it is uploaded, before any run names it: the
/// answer to the creation tells the resolver whose it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_version_is_known_from_the_answer_that_created_it() {
    let scene = Scene::new().await;
    let planners = scene
        .team_with("planners", AccessLevel::Plan, Permissions::CUSTOM_DEFAULT)
        .await;
    let created = json!({"data": {"id": "cv-new", "type": "configuration-versions",
        "attributes": {"status": "pending", "upload-url": "https://archivist/v1/object/x"}}});
    {
        let mut directory = scene.world.upstream.directory();
        directory.answer_forwarded(
            "POST",
            "/api/v2/workspaces/ws-1/configuration-versions",
            201,
            created.clone(),
        );
        // Another workspace's creation answer naming a configuration
        // version of its own changes nothing for ws-1's teams.
        directory.answer_forwarded(
            "POST",
            "/api/v2/workspaces/ws-2/configuration-versions",
            201,
            json!({"data": {"id": "cv-two", "type": "configuration-versions"}}),
        );
        directory.configuration_versions("ws-1", &[]);
        directory.put(
            "/api/v2/configuration-versions/cv-new",
            Entry::Doc(document("cv-new", "configuration-versions", &[])),
        );
    }
    let create = scene
        .call(
            "POST",
            "/api/v2/workspaces/ws-1/configuration-versions",
            &planners,
            r#"{"data":{"type":"configuration-versions","attributes":{"auto-queue-runs":false}}}"#,
        )
        .await;
    assert_eq!(create.status, 201, "{}", create.body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&create.body).unwrap(),
        created,
        "the creation answer reaches the client unchanged"
    );
    let read = scene
        .call(
            "GET",
            "/api/v2/configuration-versions/cv-new",
            &planners,
            "",
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let owner = scene.owner_token().await;
    let other = scene
        .call(
            "POST",
            "/api/v2/workspaces/ws-2/configuration-versions",
            &owner,
            "{}",
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.body);
    let hidden = scene
        .call(
            "GET",
            "/api/v2/configuration-versions/cv-two",
            &planners,
            "",
        )
        .await;
    assert_eq!(hidden.status, 404, "{}", hidden.body);
    assert_eq!(
        scene.forwarded(),
        [
            "POST /api/v2/workspaces/ws-1/configuration-versions",
            "GET /api/v2/configuration-versions/cv-new",
            "POST /api/v2/workspaces/ws-2/configuration-versions",
        ]
    );
}
