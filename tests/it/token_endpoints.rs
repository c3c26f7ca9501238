//! Terraform Enterprise 1.x's newer token endpoints through real sockets on
//! a real Redis: described team tokens, tokens by id, the organization-wide
//! list and bulk delete, user tokens, TTL policies, `account/details`,
//! manage-teams, the organization setting that refuses user tokens, and
//! every token path — format suffixes, any case, endpoints the gateway does
//! not serve — answered here and never forwarded.

use crate::harness::*;
use serde_json::{json, Value};
use tokengate::store::{OrganizationAccess, Owner, TokenSettings};

/// An organization with an owner, a member of `dev`, a user in no team,
/// each with a user token, and the organization token.
struct Org {
    world: World,
    owner: String,
    owner_id: String,
    member: String,
    member_id: String,
    outsider: String,
    org_token: String,
}

async fn org_with(config: &str) -> Org {
    let world = World::with_config(config).await;
    let org = world.store().org("acme").await.unwrap().unwrap();
    let (owner, owner_token) = world
        .gateway
        .user_with_token("acme", "olivia", std::slice::from_ref(&org.owners_team_id))
        .await;
    let (member, member_token) = world
        .gateway
        .user_with_token("acme", "mike", std::slice::from_ref(&world.team_id))
        .await;
    let (_, outsider) = world.gateway.user_with_token("acme", "nora", &[]).await;
    let org_token = world.gateway.issue(world.org_owner()).await;
    Org {
        world,
        owner: owner_token,
        owner_id: owner.id,
        member: member_token,
        member_id: member.id,
        outsider,
        org_token,
    }
}

async fn org() -> Org {
    org_with("").await
}

async fn call(world: &World, method: &str, path: &str, token: &str, body: &str) -> RawResponse {
    world
        .send(
            RawRequest::new(method, path)
                .token(token)
                .body(body.as_bytes()),
        )
        .await
}

async fn works(world: &World, token: &str) -> bool {
    let status = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(token))
        .await
        .status;
    assert!(status == 200 || status == 401, "unexpected {status}");
    status == 200
}

fn described(description: &str) -> String {
    json!({"data": {"type": "authentication-tokens", "attributes": {"description": description}}})
        .to_string()
}

/// Creates a described token of `team_id` as `token`: (id, secret).
async fn create_described(
    world: &World,
    team_id: &str,
    token: &str,
    description: &str,
) -> (String, String) {
    let response = call(
        world,
        "POST",
        &format!("/api/v2/teams/{team_id}/authentication-tokens"),
        token,
        &described(description),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let doc = response.json();
    assert_eq!(doc["data"]["attributes"]["description"], description);
    (
        doc["data"]["id"].as_str().unwrap().to_owned(),
        doc["data"]["attributes"]["token"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

fn ids(doc: &Value) -> Vec<String> {
    doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn described_team_tokens_coexist_and_one_is_deleted_alone() {
    let o = org().await;
    let w = &o.world;
    let legacy = call(
        w,
        "POST",
        &format!("/api/v2/teams/{}/authentication-token", w.team_id),
        &o.member,
        "",
    )
    .await
    .json()["data"]["attributes"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (a_id, a) = create_described(w, &w.team_id, &o.member, "ci").await;
    let (b_id, b) = create_described(w, &w.team_id, &o.owner, "deploy").await;
    for token in [&legacy, &a, &b] {
        assert!(works(w, token).await);
    }
    // A description is unique within the team (and required here).
    let path = format!("/api/v2/teams/{}/authentication-tokens", w.team_id);
    let duplicate = call(w, "POST", &path, &o.member, &described("ci")).await;
    assert_eq!(duplicate.status, 422, "{}", duplicate.body);
    assert_eq!(
        duplicate.json()["errors"][0]["source"]["pointer"],
        "/data/attributes/description"
    );
    assert!(duplicate.error_detail().contains("already been taken"));
    let missing = call(w, "POST", &path, &o.member, "{}").await;
    assert_eq!(missing.status, 422);
    assert_eq!(
        missing.json()["errors"][0]["source"]["pointer"],
        "/data/attributes/description"
    );
    // Read by id: no secret; the creator in a type clients understand.
    let read = call(
        w,
        "GET",
        &format!("/api/v2/authentication-tokens/{a_id}"),
        &o.member,
        "",
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let doc = read.json();
    assert_eq!(doc["data"]["attributes"]["token"], Value::Null);
    assert_eq!(
        doc["data"]["relationships"]["created-by"]["data"],
        json!({"id": o.member_id, "type": "users"})
    );
    assert_eq!(
        doc["data"]["relationships"]["team"]["data"]["id"],
        w.team_id.as_str()
    );
    // Deleting a by id (with a format suffix) fails only a, at once.
    let deleted = call(
        w,
        "DELETE",
        &format!("/api/v2/authentication-tokens/{a_id}.json"),
        &o.member,
        "null",
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert!(!works(w, &a).await);
    assert!(works(w, &b).await);
    assert!(works(w, &legacy).await);
    let gone = call(
        w,
        "GET",
        &format!("/api/v2/authentication-tokens/{a_id}"),
        &o.member,
        "",
    )
    .await;
    assert_eq!(gone.status, 404);
    // The description is free again; the legacy endpoint replaces only
    // the legacy token.
    create_described(w, &w.team_id, &o.member, "ci").await;
    call(
        w,
        "POST",
        &format!("/api/v2/teams/{}/authentication-token", w.team_id),
        &o.member,
        "",
    )
    .await;
    assert!(!works(w, &legacy).await);
    assert!(works(w, &b).await);
    // Outsiders see nothing, by id either.
    for token in [&o.outsider, &o.org_token] {
        let response = call(
            w,
            "GET",
            &format!("/api/v2/authentication-tokens/{b_id}"),
            token,
            "",
        )
        .await;
        assert_eq!(response.status, 404);
        let response = call(
            w,
            "DELETE",
            &format!("/api/v2/authentication-tokens/{b_id}"),
            token,
            "",
        )
        .await;
        assert_eq!(response.status, 404);
    }
    assert!(works(w, &b).await);
    assert!(
        w.upstream
            .requests()
            .iter()
            .all(|r| r.target == "/api/v2/workspaces"),
        "the token API is never forwarded"
    );
}

#[tokio::test]
async fn the_organization_list_pages_searches_sorts_and_filters() {
    let o = org().await;
    let w = &o.world;
    let ops = w.store().create_team("acme", "ops").await.unwrap();
    let (a, _) = create_described(w, &w.team_id, &o.owner, "a").await;
    let (b, _) = create_described(w, &ops.id, &o.owner, "b").await;
    let soon = tokengate::store::Timestamp::now()
        .plus_millis(3 * 86_400_000)
        .to_rfc3339();
    let response = call(
        w,
        "POST",
        &format!("/api/v2/teams/{}/authentication-tokens", w.team_id),
        &o.owner,
        &json!({"data": {"attributes": {"description": "c", "expired-at": soon}}}).to_string(),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let c = response.json()["data"]["id"].as_str().unwrap().to_owned();
    let list = |query: &str, token: &str| {
        let path = format!("/api/v2/organizations/acme/team-tokens{query}");
        let token = token.to_owned();
        async move {
            let response = call(w, "GET", &path, &token, "").await;
            assert_eq!(response.status, 200, "{path}: {}", response.body);
            response.json()
        }
    };
    // Default: ascending expiry, no expiry last; page of 20 with TFE's meta.
    let all = list("", &o.owner).await;
    assert_eq!(ids(&all)[0], c);
    assert_eq!(ids(&all).len(), 3);
    assert_eq!(all["meta"]["pagination"]["total-count"], 3);
    assert_eq!(all["meta"]["pagination"]["page-size"], 20);
    assert!(all["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["attributes"]["token"].is_null()));
    // Paging.
    let first = list("?page%5Bnumber%5D=1&page%5Bsize%5D=2", &o.owner).await;
    let second = list("?page[number]=2&page[size]=2", &o.owner).await;
    assert_eq!(ids(&first).len(), 2);
    assert_eq!(ids(&second).len(), 1);
    assert_eq!(first["meta"]["pagination"]["next-page"], 2);
    assert_eq!(second["meta"]["pagination"]["prev-page"], 1);
    assert_eq!(second["meta"]["pagination"]["total-pages"], 2);
    // q by team name, sort, filter.
    assert_eq!(ids(&list("?q=OP", &o.owner).await), vec![b.clone()]);
    assert_eq!(
        ids(&list("?sort=-team-name", &o.owner).await)[0],
        b,
        "ops sorts after dev"
    );
    assert_eq!(
        ids(&list("?sort=created-at", &o.owner).await),
        [a.clone(), b.clone(), c.clone()]
    );
    assert_eq!(
        ids(&list("?filter%5Bstatus%5D=expiring_in_7_days", &o.owner).await),
        vec![c.clone()]
    );
    assert_eq!(
        ids(&list("?filter[status]=no_expiration&sort=created-at", &o.owner).await),
        [a.clone(), b.clone()]
    );
    // Bad parameters are named.
    for (query, parameter) in [
        ("?sort=colour", "sort"),
        ("?page[size]=0", "page[size]"),
        ("?filter[status]=soon", "filter[status]"),
    ] {
        let path = format!("/api/v2/organizations/acme/team-tokens{query}");
        let response = call(w, "GET", &path, &o.owner, "").await;
        assert_eq!(response.status, 400, "{query}");
        assert_eq!(
            response.json()["errors"][0]["source"]["parameter"],
            parameter
        );
    }
    // A member sees their own team's tokens only; the org token (by
    // default) none; another organization gets 404.
    let mut member_view = ids(&list("?sort=created-at", &o.member).await);
    member_view.sort();
    let mut dev_tokens = vec![a.clone(), c.clone()];
    dev_tokens.sort();
    assert_eq!(member_view, dev_tokens);
    assert!(ids(&list("", &o.org_token).await).is_empty());
    w.store().create_org("globex").await.unwrap();
    assert_eq!(
        call(
            w,
            "GET",
            "/api/v2/organizations/globex/team-tokens",
            &o.owner,
            ""
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn bulk_delete_checks_every_id_first_then_deletes_them_all() {
    let o = org().await;
    let w = &o.world;
    let ops = w.store().create_team("acme", "ops").await.unwrap();
    let (a, a_token) = create_described(w, &w.team_id, &o.owner, "a").await;
    let (b, b_token) = create_described(w, &ops.id, &o.owner, "b").await;
    let (_, c_token) = create_described(w, &ops.id, &o.owner, "c").await;
    let body = |ids: &[&str]| {
        json!({"data": ids.iter().map(|id| json!({"type": "authentication-tokens", "id": id})).collect::<Vec<_>>()})
            .to_string()
    };
    let path = "/api/v2/organizations/acme/team-tokens";
    // A member may not delete ops' token: 422 naming it, nothing deleted.
    let refused = call(w, "DELETE", path, &o.member, &body(&[&a, &b])).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        refused.json()["errors"][0]["source"]["pointer"],
        "/data/1/id"
    );
    assert!(works(w, &a_token).await);
    // Callers who manage no team token: 403, as the API reference says.
    let forbidden = call(w, "DELETE", path, &o.outsider, &body(&[&a])).await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    let unknown = call(
        w,
        "DELETE",
        path,
        &o.owner,
        &body(&[&a, "at-AAAAAAAAAAAAAA"]),
    )
    .await;
    assert_eq!(unknown.status, 422);
    assert!(works(w, &a_token).await);
    // The owner deletes both; the third token lives on.
    let deleted = call(w, "DELETE", path, &o.owner, &body(&[&a, &b])).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert!(!works(w, &a_token).await);
    assert!(!works(w, &b_token).await);
    assert!(works(w, &c_token).await);
    let audit = w.store().audit_events(None, 100).await.unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.action == "revoke").count(),
        2,
        "{audit:?}"
    );
}

#[tokio::test]
async fn user_tokens_are_the_users_own_business() {
    let o = org().await;
    let w = &o.world;
    let path = format!("/api/v2/users/{}/authentication-tokens", o.owner_id);
    let created = call(
        w,
        "POST",
        &path,
        &o.owner,
        r#"{"data":{"type":"authentication-tokens","attributes":{"description":"laptop","expired-at":"2999-01-01T00:00:00"}}}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let doc = created.json();
    let id = doc["data"]["id"].as_str().unwrap().to_owned();
    let token = doc["data"]["attributes"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        doc["data"]["attributes"]["expired-at"], "2999-01-01T00:00:00.000Z",
        "a time without a zone is UTC"
    );
    assert!(works(w, &token).await);
    assert!(
        works(w, &o.owner).await,
        "the user's other token still works"
    );
    let listed = call(w, "GET", &path, &o.owner, "").await;
    assert_eq!(listed.status, 200);
    let listed = ids(&listed.json());
    assert!(listed.contains(&id), "{listed:?}");
    assert_eq!(listed.len(), 2, "both of the user's tokens: {listed:?}");
    // Nobody else: not another user, not the organization, not with a team token.
    let team_token = w.gateway.issue(w.team_owner()).await;
    for other in [&o.member, &o.org_token, &team_token] {
        for (method, target) in [
            ("GET", path.clone()),
            ("POST", path.clone()),
            ("GET", format!("/api/v2/authentication-tokens/{id}")),
            ("DELETE", format!("/api/v2/authentication-tokens/{id}")),
        ] {
            let response = call(w, method, &target, other, "").await;
            assert_eq!(response.status, 404, "{method} {target}: {}", response.body);
        }
    }
    assert!(works(w, &token).await);
    let deleted = call(
        w,
        "DELETE",
        &format!("/api/v2/authentication-tokens/{id}"),
        &o.owner,
        "",
    )
    .await;
    assert_eq!(deleted.status, 204);
    assert!(!works(w, &token).await);
    assert!(works(w, &o.owner).await);
}

#[tokio::test]
async fn ttl_policies_bound_new_tokens_and_shorten_older_ones_at_once() {
    let o = org().await;
    let w = &o.world;
    let path = "/api/v2/organizations/acme/token-ttl-policies";
    let older = call(
        w,
        "POST",
        &format!("/api/v2/teams/{}/authentication-token", w.team_id),
        &o.owner,
        "",
    )
    .await
    .json()["data"]["attributes"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Owners only.
    assert_eq!(call(w, "GET", path, &o.member, "").await.status, 403);
    assert_eq!(call(w, "GET", path, &o.org_token, "").await.status, 403);
    let read = call(w, "GET", path, &o.owner, "").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["data"].as_array().unwrap().len(), 4);
    // The Python SDK's shape: a 1-second maximum for team tokens.
    let patched = call(
        w,
        "PATCH",
        path,
        &o.owner,
        r#"{"data":[{"type":"organization-token-ttl-policies","attributes":{"token-type":"team","max-ttl-ms":1000}}]}"#,
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let team_policy = patched.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["attributes"]["token-type"] == "team")
        .unwrap()["attributes"]["max-ttl-ms"]
        .clone();
    assert_eq!(team_policy, 1000);
    // The older token (created more than... just now) is shortened to its
    // creation + 1 s: expired within a second and a half.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !works(w, &older).await,
        "an older token past the maximum fails"
    );
    // New tokens: a longer expiry is refused, none given gets the maximum.
    let team_path = format!("/api/v2/teams/{}/authentication-token", w.team_id);
    let too_long = call(
        w,
        "POST",
        &team_path,
        &o.owner,
        r#"{"data":{"attributes":{"expired-at":"2999-01-01T00:00:00Z"}}}"#,
    )
    .await;
    assert_eq!(too_long.status, 422, "{}", too_long.body);
    assert_eq!(
        too_long.json()["errors"][0]["source"]["pointer"],
        "/data/attributes/expired-at"
    );
    let bounded = call(w, "POST", &team_path, &o.owner, "").await;
    assert_eq!(bounded.status, 201);
    assert!(bounded.json()["data"]["attributes"]["expired-at"].is_string());
    // Organization tokens have no maximum: unaffected.
    assert!(works(w, &o.org_token).await);
    // The API reference's shape; null removes a maximum.
    let cleared = call(
        w,
        "PATCH",
        path,
        &o.owner,
        r#"{"data":{"type":"organization-token-ttl-policies","attributes":{"token-ttl-policies":[{"token-type":"team","max-ttl-ms":null}]}}}"#,
    )
    .await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    let bad = call(
        w,
        "PATCH",
        path,
        &o.owner,
        r#"{"data":[{"attributes":{"token-type":"robots","max-ttl-ms":5}}]}"#,
    )
    .await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        bad.json()["errors"][0]["source"]["pointer"],
        "/data/0/attributes/token-type"
    );
}

#[tokio::test]
async fn the_default_expiry_is_configurable() {
    let o = org_with("token_api: { default_expiry: 30d }").await;
    let w = &o.world;
    let response = call(
        w,
        "POST",
        &format!("/api/v2/teams/{}/authentication-token", w.team_id),
        &o.member,
        "",
    )
    .await;
    assert_eq!(response.status, 201);
    let expired_at = response.json()["data"]["attributes"]["expired-at"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = tokengate::store::Timestamp::parse_rfc3339(&expired_at).unwrap();
    let expected = tokengate::store::Timestamp::now().plus_millis(30 * 86_400_000);
    assert!((at.0 - expected.0).abs() < 60_000, "{expired_at}");
}

#[tokio::test]
async fn account_details_for_service_accounts_is_answered_here() {
    let o = org().await;
    let w = &o.world;
    let team_token = w.gateway.issue(w.team_owner()).await;
    for (token, kind, id) in [
        (&team_token, "teams", w.team_id.as_str()),
        (&o.org_token, "organizations", "acme"),
    ] {
        let response = call(w, "GET", "/api/v2/account/details", token, "").await;
        assert_eq!(response.status, 200, "{}", response.body);
        let data = &response.json()["data"];
        assert_eq!(data["type"], "users");
        assert!(data["id"].as_str().unwrap().starts_with("user-"));
        assert_eq!(data["attributes"]["is-service-account"], true);
        assert_eq!(
            data["relationships"]["authenticated-resource"]["data"],
            json!({"id": id, "type": kind})
        );
    }
    assert_eq!(w.upstream.count(), 0);
    // A user's is forwarded (the upstream knows its users).
    let response = call(w, "GET", "/api/v2/account/details", &o.owner, "").await;
    assert_eq!(response.status, 200);
    assert_eq!(w.upstream.last().target, "/api/v2/account/details");
}

#[tokio::test]
async fn manage_teams_members_manage_other_teams_tokens_but_never_owners_or_admin_teams() {
    let o = org().await;
    let w = &o.world;
    let store = w.store();
    let org = store.org("acme").await.unwrap().unwrap();
    let leads = store.create_team("acme", "leads").await.unwrap();
    store
        .set_organization_access(
            &leads.id,
            OrganizationAccess {
                manage_teams: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, lead) = w
        .gateway
        .user_with_token("acme", "lee", std::slice::from_ref(&leads.id))
        .await;
    let leads_token = w
        .gateway
        .issue(Owner::Team {
            org: "acme".into(),
            team_id: leads.id.clone(),
        })
        .await;
    let legacy = |team_id: &str| format!("/api/v2/teams/{team_id}/authentication-token");
    // A lead turns dev's member token management off through the API (a
    // member may not); a PATCH that changes more is the upstream's.
    let team_path = format!("/api/v2/teams/{}", w.team_id);
    let switch = |on: bool| {
        json!({"data": {"type": "teams", "attributes": {"allow-member-token-management": on}}})
            .to_string()
    };
    assert_eq!(
        call(w, "PATCH", &team_path, &o.member, &switch(false))
            .await
            .status,
        404
    );
    let off = call(w, "PATCH", &team_path, &lead, &switch(false)).await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(
        off.json()["data"]["attributes"]["allow-member-token-management"],
        false
    );
    assert!(
        !store
            .team(&w.team_id)
            .await
            .unwrap()
            .unwrap()
            .allow_member_token_management
    );
    assert_eq!(w.upstream.count(), 0, "the switch is the gateway's");
    let mixed =
        json!({"data": {"attributes": {"allow-member-token-management": true, "name": "dev2"}}});
    let forwarded = call(w, "PATCH", &team_path, &lead, &mixed.to_string()).await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(w.upstream.last().target, team_path);
    // A lead manages dev's tokens without being a member, even when dev
    // restricts its tokens to owners; so does the leads team's token.
    assert_eq!(
        call(w, "POST", &legacy(&w.team_id), &lead, "").await.status,
        201
    );
    assert_eq!(
        call(w, "POST", &legacy(&w.team_id), &leads_token, "")
            .await
            .status,
        201
    );
    assert_eq!(
        call(w, "POST", &legacy(&w.team_id), &o.member, "")
            .await
            .status,
        404,
        "members no longer may"
    );
    // Never the owners team's token (that would make a lead an owner).
    assert_eq!(
        call(w, "POST", &legacy(&org.owners_team_id), &lead, "")
            .await
            .status,
        404
    );
    // The owners team's token acts as an owner.
    let owners_token = w
        .gateway
        .issue(Owner::Team {
            org: "acme".into(),
            team_id: org.owners_team_id.clone(),
        })
        .await;
    assert_eq!(
        call(w, "POST", &legacy(&w.team_id), &owners_token, "")
            .await
            .status,
        201
    );
    assert_eq!(
        call(
            w,
            "POST",
            "/api/v2/organizations/acme/authentication-token",
            &owners_token,
            ""
        )
        .await
        .status,
        201
    );
}

#[tokio::test]
async fn an_organization_may_refuse_user_tokens_on_its_resources() {
    let o = org().await;
    let w = &o.world;
    let store = w.store();
    let current = store.org("acme").await.unwrap().unwrap().token_settings;
    let off = TokenSettings {
        user_tokens_enabled: false,
        ..current.clone()
    };
    assert!(store
        .replace_token_settings("acme", &current, &off)
        .await
        .unwrap());
    let response = call(w, "GET", "/api/v2/workspaces", &o.owner, "").await;
    assert_eq!(response.status, 403);
    assert!(response.error_detail().contains("user tokens"));
    let response = call(
        w,
        "POST",
        &format!("/api/v2/teams/{}/authentication-token", w.team_id),
        &o.owner,
        "",
    )
    .await;
    assert_eq!(response.status, 403);
    assert_eq!(w.upstream.count(), 0);
    // The user's own tokens and account stay reachable; team tokens work.
    let own = format!("/api/v2/users/{}/authentication-tokens", o.owner_id);
    assert_eq!(call(w, "GET", &own, &o.owner, "").await.status, 200);
    assert_eq!(
        call(w, "GET", "/api/v2/account/details", &o.owner, "")
            .await
            .status,
        200
    );
    let team_token = w.gateway.issue(w.team_owner()).await;
    assert!(works(w, &team_token).await);
}

#[tokio::test]
async fn every_token_path_is_served_or_refused_never_forwarded() {
    let o = org_with("token_api: { org_tokens_manage_team_tokens: true }").await;
    let w = &o.world;
    let team = &w.team_id;
    let org_token = &o.org_token;
    // Suffixes and spellings the upstream routes to the token endpoints
    // are served: with an org token as TFE would let it (switch on).
    for path in [
        format!("/api/v2/teams/{team}/authentication-token.json"),
        format!("/API/V2/TEAMS/{team}/AUTHENTICATION-TOKEN"),
        format!("/api/v2/teams/{team}/authentication_token.xml"),
        format!("/api/v2/teams/{team}/authentication-token/"),
    ] {
        let response = call(w, "POST", &path, org_token, "").await;
        assert_eq!(response.status, 201, "{path}: {}", response.body);
    }
    // Endpoints the gateway does not serve are refused with 404.
    for (method, path) in [
        (
            "POST",
            "/api/v2/agent-pools/apool-1/authentication-tokens".to_owned(),
        ),
        (
            "GET",
            "/api/v2/agent-pools/apool-1/authentication-tokens.json".to_owned(),
        ),
        ("GET", "/api/v2/authentication-tokens".to_owned()),
        (
            "DELETE",
            "/api/v2/authentication-tokens/at-1/extra".to_owned(),
        ),
        (
            "POST",
            format!("/api/v2/teams/{team}/authentication-token/x"),
        ),
    ] {
        let response = call(w, method, &path, org_token, "").await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.body);
    }
    // `token=` names a token type the gateway does not serve: 404, and the
    // organization token is untouched.
    for method in ["POST", "GET", "DELETE"] {
        for query in [
            "token=audit-trails",
            "TOKEN=audit-trails",
            "%74oken=x",
            "token%5B%5D=x",
        ] {
            let path = format!("/api/v2/organizations/acme/authentication-token.json?{query}");
            let response = call(w, method, &path, &o.owner, "").await;
            // Spellings other than the allowed write parameter `token` are
            // refused on writes before the token API (400); refused either way.
            let expected: &[u16] = if method == "GET" || query == "token=audit-trails" {
                &[404]
            } else {
                &[400, 404]
            };
            assert!(
                expected.contains(&response.status),
                "{method} {path}: {} {}",
                response.status,
                response.body
            );
        }
    }
    assert!(works(w, org_token).await);
    assert_eq!(
        w.upstream.count(),
        1,
        "only the works() check reached the upstream: {:?}",
        w.upstream.requests()
    );
    assert!(w
        .upstream
        .requests()
        .iter()
        .all(|r| r.target == "/api/v2/workspaces"));
}
