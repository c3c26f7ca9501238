//! Organization resources addressed by their own id (red team F3), end to
//! end on a real Redis and the recording upstream: an organization token
//! reads, changes and deletes its own organization's projects, variable
//! sets, policy sets and their versions, policies, agent pools, OAuth
//! clients and tokens, run tasks, memberships, project team access and
//! Stacks — forwarded byte for byte —
//! and another organization's are 404 and never reach the upstream; a team
//! token reads its own organization's only (its writes need the
//! organization permission: team_org_writes.rs). A
//! lookup that gives no clear answer refuses the request. Every refusal is
//! checked as "the upstream never saw it".

use crate::access::Scene;
use crate::harness::*;
use serde_json::json;

/// Each family: (collection, acme's id, globex's id, a path under the id
/// that changes something, with its method).
pub const FAMILIES: [(&str, &str, &str, &str, &str); 13] = [
    (
        "projects",
        "prj-a",
        "prj-b",
        "POST",
        "relationships/workspaces",
    ),
    (
        "varsets",
        "varset-a",
        "varset-b",
        "POST",
        "relationships/vars",
    ),
    (
        "policy-sets",
        "polset-a",
        "polset-b",
        "DELETE",
        "relationships/workspaces",
    ),
    ("policies", "pol-a", "pol-b", "PUT", "upload"),
    (
        "agent-pools",
        "apool-a",
        "apool-b",
        "PATCH",
        "relationships/allowed-workspaces",
    ),
    (
        "oauth-clients",
        "oc-a",
        "oc-b",
        "POST",
        "relationships/projects",
    ),
    ("oauth-tokens", "ot-a", "ot-b", "PATCH", "x"),
    ("tasks", "task-a", "task-b", "PATCH", "x"),
    ("organization-memberships", "ou-a", "ou-b", "PATCH", "x"),
    ("team-projects", "tprj-a", "tprj-b", "PATCH", "x"),
    ("stacks", "st-a", "st-b", "POST", "actions/x"),
    (
        "stack-configurations",
        "stc-a",
        "stc-b",
        "GET",
        "source-bundle",
    ),
    (
        "policy-set-versions",
        "polsetver-a",
        "polsetver-b",
        "PATCH",
        "x",
    ),
];

/// `acme` owns every `…-a`, `globex` every `…-b`: by its own
/// `organization` relationship, or (project team access, Stacks, Stack
/// configurations, OAuth tokens, policy set versions) through its project,
/// Stack (then its project), OAuth client or policy set.
pub fn place_families(scene: &Scene) {
    let mut directory = scene.world.upstream.directory();
    for (collection, own, other, _, _) in FAMILIES {
        match collection {
            "team-projects" => {
                directory.team_project(own, "prj-a", "team-x");
                directory.team_project(other, "prj-b", "team-x");
            }
            "oauth-tokens" => {
                directory.oauth_token(own, "oc-a");
                directory.oauth_token(other, "oc-b");
            }
            "stacks" => {
                directory.owned_by(collection, own, "project", "projects", "prj-a");
                directory.owned_by(collection, other, "project", "projects", "prj-b");
            }
            "stack-configurations" => {
                directory.owned_by(collection, own, "stack", "stacks", "st-a");
                directory.owned_by(collection, other, "stack", "stacks", "st-b");
            }
            "policy-set-versions" => {
                let parent = ("policy-set", "policy-sets");
                directory.owned_by(collection, own, parent.0, parent.1, "polset-a");
                directory.owned_by(collection, other, parent.0, parent.1, "polset-b");
            }
            _ => {
                directory.org_resource(collection, own, "acme");
                directory.org_resource(collection, other, "globex");
            }
        }
    }
    // The parents the two lead to.
    directory.org_resource("projects", "prj-a", "acme");
    directory.org_resource("projects", "prj-b", "globex");
    directory.org_resource("oauth-clients", "oc-a", "acme");
    directory.org_resource("oauth-clients", "oc-b", "globex");
}

pub const RENAME: &str = r#"{"data":{"attributes":{"name":"pwned"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_token_acts_on_its_own_organizations_resources_by_id_only() {
    let scene = Scene::new().await;
    place_families(&scene);
    let org = scene.org_token().await;
    // Another organization's: read, change, delete, or anything under it.
    for (collection, _, other, method, under) in FAMILIES {
        let path = format!("/api/v2/{collection}/{other}");
        let nested = format!("{path}/{under}");
        for (method, path, body) in [
            ("GET", path.as_str(), ""),
            ("PATCH", path.as_str(), RENAME),
            ("PUT", path.as_str(), RENAME),
            ("DELETE", path.as_str(), ""),
            (method, nested.as_str(), "{}"),
        ] {
            let response = scene.call(method, path, &org, body).await;
            assert_eq!(response.status, 404, "{method} {path}: {}", response.body);
            assert_eq!(response.error_detail(), "not found", "{method} {path}");
        }
    }
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "nothing of another organization reached the upstream"
    );
    // Its own organization's: forwarded byte for byte.
    let mut expected = Vec::new();
    for (collection, own, _, method, under) in FAMILIES {
        let path = format!("/api/v2/{collection}/{own}");
        let nested = format!("{path}/{under}");
        for (method, path, body) in [
            ("GET", path.as_str(), ""),
            ("PATCH", path.as_str(), RENAME),
            ("DELETE", path.as_str(), ""),
            (method, nested.as_str(), "{}"),
        ] {
            let response = scene.call(method, path, &org, body).await;
            assert_eq!(response.status, 200, "{method} {path}: {}", response.body);
            expected.push((format!("{method} {path}"), body.to_owned()));
        }
    }
    let received = scene.world.upstream.requests();
    let seen: Vec<(String, String)> = received
        .iter()
        .map(|r| {
            (
                format!("{} {}", r.method, r.target),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .collect();
    assert_eq!(seen, expected, "its own were forwarded, byte for byte");
    for request in &received {
        assert_eq!(request.header("x-tokengate-org"), Some("acme"));
        assert_eq!(request.header("x-tokengate-kind"), Some("org"));
    }
    // Each resource's organization was asked once (cached: it never moves),
    // the two that lead through a parent once each too.
    let lookups: Vec<String> = scene
        .world
        .upstream
        .lookups()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    for (collection, own, other, _, _) in FAMILIES {
        for id in [own, other] {
            let path = format!("/api/v2/{collection}/{id}");
            let asked = lookups.iter().filter(|l| **l == path).count();
            assert_eq!(asked, 1, "{path} in {lookups:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_red_team_requests_are_refused_and_the_same_on_its_own_are_forwarded() {
    let scene = Scene::new().await;
    place_families(&scene);
    let org = scene.org_token().await;
    let refused = [
        ("PATCH", "/api/v2/projects/prj-b", RENAME),
        ("DELETE", "/api/v2/varsets/varset-b", ""),
        // F3's format-suffix and upper-case spellings are the same id.
        ("DELETE", "/api/v2/varsets/varset-b.json", ""),
        ("PATCH", "/API/V2/PROJECTS/prj-b", RENAME),
    ];
    for (method, path, body) in refused {
        let response = scene.call(method, path, &org, body).await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.body);
    }
    assert_eq!(scene.forwarded(), Vec::<String>::new());
    for (method, path, body) in [
        ("PATCH", "/api/v2/projects/prj-a", RENAME),
        ("DELETE", "/api/v2/varsets/varset-a", ""),
    ] {
        let response = scene.call(method, path, &org, body).await;
        assert_eq!(response.status, 200, "{method} {path}: {}", response.body);
        let last = scene.world.upstream.last();
        assert_eq!(
            format!("{} {}", last.method, last.target),
            format!("{method} {path}")
        );
        assert_eq!(last.body, body.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_team_access_and_stacks_are_created_within_the_organization_only() {
    let scene = Scene::new().await;
    place_families(&scene);
    let org = scene.org_token().await;
    let (own_team, _) = scene.team("devs").await;
    let grant = |project: &str, team: &str| {
        json!({"data": {"type": "team-projects", "attributes": {"access": "admin"},
            "relationships": {
                "project": {"data": {"type": "projects", "id": project}},
                "team": {"data": {"type": "teams", "id": team}}}}})
        .to_string()
    };
    let globex_team = scene.globex_team.clone();
    for (body, status) in [
        (grant("prj-b", &own_team), 404),
        (grant("prj-a", &globex_team), 404),
        (
            json!({"data": {"type": "team-projects", "attributes": {"access": "admin"}}})
                .to_string(),
            422,
        ),
    ] {
        let response = scene
            .call("POST", "/api/v2/team-projects", &org, &body)
            .await;
        assert_eq!(response.status, status, "{body}: {}", response.body);
    }
    for (query, status) in [
        ("?filter%5Bproject%5D%5Bid%5D=prj-b", 404),
        ("?filter[project][id]=prj-b", 404),
        ("", 400),
    ] {
        let path = format!("/api/v2/team-projects{query}");
        let response = scene.call("GET", &path, &org, "").await;
        assert_eq!(response.status, status, "{path}: {}", response.body);
    }
    // A Stack is created in the token's own project only.
    let stack = |project: &str| {
        json!({"data": {"type": "stacks", "attributes": {"name": "s"},
            "relationships": {"project": {"data": {"type": "projects", "id": project}}}}})
        .to_string()
    };
    let response = scene
        .call("POST", "/api/v2/stacks", &org, &stack("prj-b"))
        .await;
    assert_eq!(response.status, 404, "{}", response.body);
    // A bare collection names nothing the gateway can place: refused.
    let response = scene.call("POST", "/api/v2/varsets", &org, "{}").await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert!(response
        .error_detail()
        .contains("`organization-resources-org-unplaced`"));
    assert_eq!(scene.forwarded(), Vec::<String>::new());

    let body = grant("prj-a", &own_team);
    let response = scene
        .call("POST", "/api/v2/team-projects", &org, &body)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let own_stack = stack("prj-a");
    let response = scene.call("POST", "/api/v2/stacks", &org, &own_stack).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let list = "/api/v2/team-projects?filter[project][id]=prj-a";
    let response = scene.call("GET", list, &org, "").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let received = scene.world.upstream.requests();
    assert_eq!(
        scene.forwarded(),
        [
            "POST /api/v2/team-projects".to_owned(),
            "POST /api/v2/stacks".to_owned(),
            format!("GET {list}")
        ]
    );
    assert_eq!(received[0].body, body.as_bytes());
    assert_eq!(received[1].body, own_stack.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_without_a_clear_answer_refuses_the_request() {
    let scene = Scene::with_config("resolver: { timeout_ms: 300 }").await;
    let org = scene.org_token().await;
    {
        let mut directory = scene.world.upstream.directory();
        directory.put("/api/v2/projects/prj-err", Entry::Status(500));
        directory.put("/api/v2/projects/prj-denied", Entry::Status(401));
        directory.put("/api/v2/projects/prj-slow", Entry::Hang);
        // Names no organization.
        directory.put(
            "/api/v2/projects/prj-bare",
            Entry::Doc(json!({"data": {"id": "prj-bare", "type": "projects"}})),
        );
        // About another project.
        directory.org_resource("projects", "prj-x", "acme");
        directory.put(
            "/api/v2/projects/prj-other",
            Entry::Doc(document(
                "prj-x",
                "projects",
                &[("organization", "organizations", "acme")],
            )),
        );
        // An organization relationship that is not an organization.
        directory.put(
            "/api/v2/varsets/varset-typed",
            Entry::Doc(document(
                "varset-typed",
                "varsets",
                &[("organization", "teams", "acme")],
            )),
        );
        // A project team access whose project fails, or is not named.
        directory.team_project("tprj-err", "prj-err", "team-x");
        directory.put(
            "/api/v2/team-projects/tprj-bare",
            Entry::Doc(json!({"data": {"id": "tprj-bare", "type": "team-projects"}})),
        );
    }
    let unusable = "the upstream gave no usable answer";
    for (path, status, detail) in [
        ("/api/v2/projects/prj-nope", 404, "not found".to_owned()),
        ("/api/v2/projects/prj-err", 502, format!("the gateway could not check access to project prj-err: {unusable}")),
        ("/api/v2/projects/prj-denied", 502, format!("the gateway could not check access to project prj-denied: {unusable}")),
        ("/api/v2/projects/prj-bare", 502, format!("the gateway could not check access to project prj-bare: {unusable}")),
        ("/api/v2/projects/prj-other", 502, format!("the gateway could not check access to project prj-other: {unusable}")),
        ("/api/v2/varsets/varset-typed", 502, format!("the gateway could not check access to variable set varset-typed: {unusable}")),
        ("/api/v2/team-projects/tprj-err", 502, format!("the gateway could not check access to project team access tprj-err: {unusable}")),
        ("/api/v2/team-projects/tprj-bare", 502, format!("the gateway could not check access to project team access tprj-bare: {unusable}")),
        ("/api/v2/projects/prj-slow", 504, "the gateway could not check access to project prj-slow: the upstream did not answer GET /api/v2/projects/prj-slow within 300 ms (resolver.timeout_ms)".to_owned()),
    ] {
        let response = scene.call("PATCH", path, &org, RENAME).await;
        assert_eq!(response.status, status, "{path}: {}", response.body);
        assert_eq!(response.error_detail(), detail, "{path}");
    }
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "a resource that cannot be placed is never forwarded"
    );
    // Errors are not remembered: once the upstream answers, it resolves.
    scene
        .world
        .upstream
        .directory()
        .org_resource("projects", "prj-err", "acme");
    for path in ["/api/v2/projects/prj-err", "/api/v2/team-projects/tprj-err"] {
        let response = scene.call("PATCH", path, &org, RENAME).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    assert_eq!(scene.forwarded().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_token_reads_its_own_organizations_resources_by_id_only() {
    let scene = Scene::new().await;
    place_families(&scene);
    let (_, team) = scene.team("readers").await;
    let globex = scene.globex_token().await;
    for (collection, own, other, _, _) in FAMILIES {
        for (token, id) in [(&team, other), (&globex, own)] {
            let path = format!("/api/v2/{collection}/{id}");
            for path in [path.clone(), format!("{path}/relationships/vars")] {
                let response = scene.call("GET", &path, token, "").await;
                assert_eq!(response.status, 404, "GET {path}: {}", response.body);
            }
        }
    }
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "no team read another organization's resource"
    );
    let mut expected = Vec::new();
    for (collection, own, other, _, _) in FAMILIES {
        for (token, id) in [(&team, own), (&globex, other)] {
            let path = format!("/api/v2/{collection}/{id}");
            let response = scene.call("GET", &path, token, "").await;
            assert_eq!(response.status, 200, "GET {path}: {}", response.body);
            expected.push(format!("GET {path}"));
        }
    }
    assert_eq!(scene.forwarded(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_and_people_tokens_keep_what_they_had() {
    let scene = Scene::new().await;
    place_families(&scene);
    let (_, team) = scene.team("readers").await;
    let owner = scene.owner_token().await;
    // Team writes that name nothing the gateway can place stay refused
    // (fail closed): bare collections, SSH keys, the /run-tasks/… paths;
    // agents, whose documents name no organization, are refused to team
    // and organization tokens alike. (Writes by id are checked:
    // team_org_writes.rs.)
    let org = scene.org_token().await;
    for (method, path, token, rule) in [
        (
            "POST",
            "/api/v2/varsets",
            &team,
            "organization-resources-unplaced",
        ),
        (
            "PATCH",
            "/api/v2/ssh-keys/sshkey-1",
            &team,
            "organization-resources-unplaced",
        ),
        (
            "DELETE",
            "/api/v2/run-tasks/task-a",
            &team,
            "organization-resources-unplaced",
        ),
        ("DELETE", "/api/v2/agents/agent-1", &team, "agents-unplaced"),
        ("DELETE", "/api/v2/agents/agent-1", &org, "agents-unplaced"),
    ] {
        let response = scene.call(method, path, token, RENAME).await;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
        let detail = response.error_detail();
        assert!(detail.contains(&format!("`{rule}`")), "{detail}");
    }
    assert_eq!(scene.forwarded(), Vec::<String>::new());
    // A person's token is forwarded as before (the upstream knows people),
    // and nothing is looked up for it.
    let response = scene
        .call("PATCH", "/api/v2/projects/prj-a", &owner, RENAME)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(scene.forwarded(), ["PATCH /api/v2/projects/prj-a"]);
    assert!(scene.world.upstream.lookups().is_empty());
}
