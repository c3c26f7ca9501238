//! Red team B's F11 end to end (real binary, real Redis, recording
//! upstream): a JSON:API `include` of state, outputs or runs on an
//! organization-wide list is a read of every workspace, so it needs
//! organization-wide read; a workspace shown with its state or outputs
//! needs the state permission. Every refusal is checked as "the upstream
//! never saw it"; every allowed request as "it arrived, target and body as
//! sent".

use crate::access::Scene;
use tokengate::access::model::{AccessLevel, Permissions, StateVersions};
use tokengate::store::{OrganizationAccess, Owner};

/// Asserts the upstream was sent exactly `targets` (GETs, empty bodies),
/// in order and as the client sent them, since it had seen `from`
/// requests; returns how many it has seen now.
fn assert_forwarded_exactly(scene: &Scene, from: usize, targets: &[String]) -> usize {
    let seen = scene.world.upstream.requests();
    let new = &seen[from.min(seen.len())..];
    let sent: Vec<String> = new.iter().map(|r| r.target.clone()).collect();
    assert_eq!(sent, targets, "what the upstream received");
    for recorded in new {
        assert_eq!(recorded.method, "GET", "{}", recorded.target);
        assert!(recorded.body.is_empty(), "{}", recorded.target);
    }
    seen.len()
}

/// Every spelling of the attack: Rails reads each as an include of state,
/// outputs or a run's plan (log URLs).
const ATTACKS: [&str; 12] = [
    "/api/v2/organizations/acme/workspaces?include=outputs",
    "/api/v2/organizations/acme/workspaces?include=current-state-version,outputs",
    "/api/v2/organizations/acme/workspaces?include=current_state_version",
    "/api/v2/organizations/acme/workspaces?include=current-state-version,outputs,current_run.plan&page[size]=100",
    "/api/v2/organizations/acme/workspaces?include=organization%2Coutputs",
    "/api/v2/organizations/acme/workspaces?include=organization&include=current-state-version",
    "/api/v2/organizations/acme/workspaces?include=current-state-version.outputs",
    "/api/v2/organizations/acme/workspaces?%69nclude=CurrentStateVersion",
    "/api/v2/organizations/acme/workspaces?include[]=outputs",
    "/api/v2/organizations/acme/workspaces?include=organization,+outputs",
    "/api/v2/organizations/acme/runs?include=plan,workspace",
    "/api/v2/organizations/acme/projects?include=workspaces.current_state_version",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_without_workspace_access_cannot_include_state_in_organization_lists() {
    let scene = Scene::new().await;
    let (_, nobody) = scene.team("nobody").await;
    // The same team reads no workspace at all.
    let hidden = scene
        .call("GET", "/api/v2/workspaces/ws-1", &nobody, "")
        .await;
    assert_eq!(hidden.status, 404, "{}", hidden.body);
    let seen = assert_forwarded_exactly(&scene, 0, &[]);
    for target in ATTACKS {
        let response = scene.call("GET", target, &nobody, "").await;
        assert_eq!(response.status, 403, "{target}: {}", response.body);
        let detail = response.error_detail();
        assert!(
            detail.contains("organization:read-workspaces")
                && detail.contains("organization-lists-include"),
            "{target}: {detail}"
        );
        let head = scene.call("HEAD", target, &nobody, "").await;
        assert_eq!(head.status, 403, "HEAD {target}");
    }
    let seen = assert_forwarded_exactly(&scene, seen, &[]);
    // The lists themselves, and harmless includes, are forwarded as sent
    // (an earlier `include` is not the one Rack reads).
    let benign: Vec<String> = [
        "/api/v2/organizations/acme/workspaces",
        "/api/v2/organizations/acme/workspaces?include=organization,project&page%5Bsize%5D=100",
        "/api/v2/organizations/acme/workspaces?include=outputs&include=organization",
        "/api/v2/organizations/acme/runs?include=workspace,created_by",
        "/api/v2/organizations/acme/projects",
    ]
    .map(str::to_owned)
    .to_vec();
    for target in &benign {
        let response = scene.call("GET", target, &nobody, "").await;
        assert_eq!(response.status, 200, "{target}: {}", response.body);
    }
    assert_forwarded_exactly(&scene, seen, &benign);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_wide_readers_owners_and_the_organization_token_keep_their_includes() {
    let scene = Scene::new().await;
    let store = scene.world.store();
    let mut tokens = Vec::new();
    for (name, access) in [
        (
            "viewers",
            OrganizationAccess {
                read_workspaces: true,
                ..Default::default()
            },
        ),
        (
            "managers",
            OrganizationAccess {
                manage_workspaces: true,
                ..Default::default()
            },
        ),
        (
            "project-managers",
            OrganizationAccess {
                manage_projects: true,
                ..Default::default()
            },
        ),
    ] {
        let (team, token) = scene.team(name).await;
        store.set_organization_access(&team, access).await.unwrap();
        tokens.push(token);
    }
    tokens.push(scene.owner_token().await);
    tokens.push(
        scene
            .world
            .gateway
            .issue(Owner::Org { org: "acme".into() })
            .await,
    );
    let mut expected = Vec::new();
    for token in &tokens {
        for target in ATTACKS {
            let response = scene.call("GET", target, token, "").await;
            assert_eq!(response.status, 200, "{target}: {}", response.body);
            expected.push(target.to_owned());
        }
    }
    let seen = assert_forwarded_exactly(&scene, 0, &expected);
    // Another organization's token includes nothing of acme.
    let globex = scene
        .world
        .gateway
        .issue(Owner::Org {
            org: "globex".into(),
        })
        .await;
    let response = scene.call("GET", ATTACKS[1], &globex, "").await;
    assert!(
        matches!(response.status, 403 | 404),
        "{}: {}",
        response.status,
        response.body
    );
    // A team with only other organization permissions is refused.
    let (policy_team, policy_token) = scene.team("policy-people").await;
    store
        .set_organization_access(
            &policy_team,
            OrganizationAccess {
                manage_policies: true,
                read_projects: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let response = scene.call("GET", ATTACKS[0], &policy_token, "").await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert_forwarded_exactly(&scene, seen, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_shown_with_its_state_or_outputs_needs_the_state_permission() {
    let scene = Scene::new().await;
    let with_state = |state_versions| Permissions {
        state_versions,
        ..Permissions::CUSTOM_DEFAULT
    };
    let runs_only = scene
        .team_with(
            "runs-only",
            AccessLevel::Custom,
            with_state(StateVersions::None),
        )
        .await;
    let outputs = scene
        .team_with(
            "outputs",
            AccessLevel::Custom,
            with_state(StateVersions::ReadOutputs),
        )
        .await;
    let reader = scene
        .team_with("reader", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    let state = "/api/v2/workspaces/ws-1?include=current-state-version";
    let outs = "/api/v2/organizations/acme/workspaces/one?include=outputs";
    let plain = "/api/v2/workspaces/ws-1?include=organization";
    let cases = [
        (&runs_only, [403, 403, 200]),
        (&outputs, [403, 200, 200]),
        (&reader, [200, 200, 200]),
    ];
    let mut expected = Vec::new();
    for (token, statuses) in cases {
        for (target, status) in [state, outs, plain].into_iter().zip(statuses) {
            let response = scene.call("GET", target, token, "").await;
            assert_eq!(response.status, status, "{target}: {}", response.body);
            if status == 200 {
                expected.push(target.to_owned());
            } else {
                assert!(
                    response.error_detail().contains("state-versions:read"),
                    "{target}: {}",
                    response.body
                );
            }
        }
    }
    assert_forwarded_exactly(&scene, 0, &expected);
}
