//! The whole request path without sockets: `Gateway::handle` called with a
//! request value, on an embedded store in a temp dir. The upstream address
//! is one nobody listens on, so a 403 or 401 (rather than a 502) proves that
//! nothing was forwarded; a recording upstream shows the identity headers.

use crate::harness::{free_addr, write_embedded_config, RecordingUpstream};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokengate::config::Config;
use tokengate::gateway::Gateway;
use tokengate::proxy::GatewayBody;
use tokengate::store::Owner;
use tokengate::token::lifecycle;

const CLIENT: ([u8; 4], u16) = ([192, 0, 2, 7], 40000);

/// A gateway on an embedded store, an organization `acme` with a team
/// `dev`, a user (owner and dev member), and a token for each of them.
struct Socketless {
    gateway: Arc<Gateway>,
    team_id: String,
    team_token: String,
    org_token: String,
    user_token: String,
    _dir: tempfile::TempDir,
}

impl Socketless {
    async fn new(upstream: &str) -> Socketless {
        let dir = tempfile::tempdir().unwrap();
        let path = write_embedded_config(dir.path(), upstream, "tokengate.db", "");
        let gateway = Gateway::build(Config::load(&path).unwrap()).unwrap();
        let store = gateway.store.clone();
        let org = store.create_org("acme").await.unwrap();
        let team = store.create_team("acme", "dev").await.unwrap();
        crate::harness::manage_all_workspaces(store.as_ref(), &team.id).await;
        let user = store
            .create_user("acme", "alice", &[org.owners_team_id, team.id.clone()])
            .await
            .unwrap();
        let hashing = gateway.config.hashing;
        let issue = |owner: Owner| {
            let store = store.clone();
            async move {
                lifecycle::issue(store.as_ref(), owner, hashing, None, None)
                    .await
                    .unwrap()
                    .token
                    .secret_token
            }
        };
        Socketless {
            team_token: issue(Owner::Team {
                org: "acme".into(),
                team_id: team.id.clone(),
            })
            .await,
            org_token: issue(Owner::Org { org: "acme".into() }).await,
            user_token: issue(Owner::User {
                org: "acme".into(),
                user_id: user.id,
            })
            .await,
            team_id: team.id,
            gateway,
            _dir: dir,
        }
    }

    /// With an upstream address that nobody listens on.
    async fn offline() -> Socketless {
        Socketless::new(&format!("http://{}", free_addr())).await
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "gateway.example");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/vnd.api+json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let lease = self.gateway.forwarder.lease();
        let response = self
            .gateway
            .handle(request, SocketAddr::from(CLIENT), &lease)
            .await;
        Answer::read(response).await
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    json: serde_json::Value,
}

impl Answer {
    async fn read(response: Response<GatewayBody>) -> Answer {
        let (parts, body) = response.into_parts();
        let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("the body arrives")
            .unwrap()
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    }

    fn detail(&self) -> String {
        self.json["errors"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

#[tokio::test]
async fn a_request_without_a_token_gets_401_and_is_not_forwarded() {
    let world = Socketless::offline().await;
    let answer = world
        .call("GET", "/api/v2/organizations/acme/workspaces", None, "")
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    assert_eq!(answer.headers["content-type"], "application/vnd.api+json");
    assert_eq!(answer.json["errors"][0]["status"], "401");
    let bad = world
        .call("GET", "/api/v2/workspaces/ws-1", Some("not-a-token"), "")
        .await;
    assert_eq!(bad.status, 401, "{}", bad.detail());
}

#[tokio::test]
async fn an_org_token_apply_gets_403_naming_the_rule_and_is_not_forwarded() {
    let world = Socketless::offline().await;
    let answer = world
        .call(
            "POST",
            "/api/v2/runs/run-1/actions/apply",
            Some(&world.org_token),
            "",
        )
        .await;
    assert_eq!(answer.status, 403);
    assert!(
        answer.detail().contains("`org-no-run-actions`"),
        "{}",
        answer.detail()
    );
}

#[tokio::test]
async fn an_allowed_request_is_forwarded_and_a_dead_upstream_is_a_502() {
    let world = Socketless::offline().await;
    let answer = world
        .call(
            "GET",
            "/api/v2/organizations/acme/workspaces",
            Some(&world.team_token),
            "",
        )
        .await;
    assert_eq!(answer.status, 502, "{}", answer.detail());
    assert_eq!(answer.detail(), "the upstream cannot be reached");
    // A request whose run must be looked up first is refused before that:
    // the access check fails closed.
    let answer = world
        .call(
            "POST",
            "/api/v2/runs/run-1/actions/apply",
            Some(&world.team_token),
            "",
        )
        .await;
    assert_eq!(answer.status, 502, "{}", answer.detail());
    assert_eq!(
        answer.detail(),
        "the gateway could not check access to run run-1: the upstream gave no usable answer"
    );
}

#[tokio::test]
async fn a_store_fault_fails_closed_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::harness::offline_config(dir.path(), "");
    let gateway = Gateway::build(Config::load(&config).unwrap()).unwrap();
    let token = tokengate::token::format::generate(&tokengate::token::format::new_slot());
    let request = Request::builder()
        .uri("/api/v2/workspaces/ws-1")
        .header("host", "gateway.example")
        .header("authorization", format!("Bearer {}", token.secret_token))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let lease = gateway.forwarder.lease();
    let answer = Answer::read(
        gateway
            .handle(request, SocketAddr::from(CLIENT), &lease)
            .await,
    )
    .await;
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.detail(),
        "the token store is unavailable; try again",
        "the cause stays in the log"
    );
}

#[tokio::test]
async fn the_upstream_sees_the_gateways_identity_headers_only() {
    let upstream = RecordingUpstream::start().await;
    let world = Socketless::new(&upstream.url()).await;
    let lease = world.gateway.forwarder.lease();
    let request = Request::builder()
        .uri("/api/v2/workspaces/ws-1")
        .header("host", "gateway.example")
        .header("authorization", format!("Bearer {}", world.team_token))
        .header("x-tokengate-kind", "org")
        .header("x-forwarded-for", "10.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = Answer::read(
        world
            .gateway
            .handle(request, SocketAddr::from(CLIENT), &lease)
            .await,
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-tokengate-kind"), Some("team"));
    assert_eq!(seen.header("x-tokengate-org"), Some("acme"));
    assert_eq!(
        seen.header("x-tokengate-team"),
        Some(world.team_id.as_str())
    );
    assert_eq!(seen.header("x-forwarded-for"), Some("192.0.2.7"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("x-forwarded-host"), Some("gateway.example"));
}

#[tokio::test]
async fn the_token_api_is_served_and_a_regenerate_replaces_the_token_at_once() {
    let world = Socketless::offline().await;
    let path = format!("/api/v2/teams/{}/authentication-token", world.team_id);
    let created = world.call("POST", &path, Some(&world.user_token), "").await;
    assert_eq!(created.status, 201, "{}", created.detail());
    let new_token = created.json["data"]["attributes"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = world
        .call(
            "GET",
            "/api/v2/workspaces/ws-1",
            Some(&world.team_token),
            "",
        )
        .await;
    assert_eq!(old.status, 401, "{}", old.detail());
    let new = world
        .call("GET", "/api/v2/workspaces/ws-1", Some(&new_token), "")
        .await;
    assert_eq!(new.status, 502, "forwarded (to nobody): {}", new.detail());
    // A team token manages no token: 404, as if the team did not exist.
    let refused = world.call("DELETE", &path, Some(&new_token), "").await;
    assert_eq!(refused.status, 404);
}

#[tokio::test]
async fn a_body_rule_reads_the_body_and_refuses_what_it_matches() {
    let world = Socketless::offline().await;
    let answer = world
        .call(
            "PATCH",
            "/api/v2/workspaces/ws-1",
            Some(&world.org_token),
            r#"{"data":{"attributes":{"auto-apply":true}}}"#,
        )
        .await;
    assert_eq!(answer.status, 403);
    assert!(answer.detail().contains("`org-no-auto-apply`"));
    let invalid = world
        .call(
            "PATCH",
            "/api/v2/workspaces/ws-1",
            Some(&world.org_token),
            "{not json",
        )
        .await;
    assert_eq!(invalid.status, 400, "{}", invalid.detail());
}

#[tokio::test]
async fn reserved_paths_are_answered_by_the_gateway() {
    let world = Socketless::offline().await;
    let health = world.call("GET", "/_tokengate/health", None, "").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json["status"], "ok");
    let unknown = world.call("GET", "/_tokengate/nothing", None, "").await;
    assert_eq!(unknown.status, 404);
}
