//! The web UI over HTTP, without a browser: `Gateway::handle` called with
//! request values on an embedded store (and the real CLI for passwords).
//! What a browser test cannot see well: that UI paths are never forwarded
//! in any spelling and that proxied requests never reach the UI; cookie
//! attributes; `no-store` and the content security policy; CSRF refusals
//! (missing, wrong, cross-site); throttled sign-ins; pasted tokens; idle
//! and absolute session timeouts; sign-out everywhere; confirmations
//! without JavaScript; shown-once secrets; readable pages for bad input;
//! `tokengate user set-password`.

use crate::harness::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokengate::config::Config;
use tokengate::gateway::Gateway;
use tokengate::store::{Owner, Store, Timestamp, User};
use tokengate::token::lifecycle;

const PASSWORD: &str = "a long passphrase";
const ADDRESS: ([u8; 4], u16) = ([192, 0, 2, 50], 50000);

/// A gateway on an embedded store in front of a recording upstream:
/// organization `acme`, teams `dev` and `ops`; alice (owner, dev), bob
/// (dev) and carol (ops), each with [`PASSWORD`].
struct World {
    gateway: Arc<Gateway>,
    upstream: RecordingUpstream,
    dev: String,
    ops: String,
    alice: User,
    bob: User,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new(extra: &str) -> World {
        let upstream = RecordingUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_embedded_config(dir.path(), &upstream.url(), "tokengate.db", extra);
        let gateway = Gateway::build(Config::load(&path).unwrap()).unwrap();
        let store = gateway.store.clone();
        let org = store.create_org("acme").await.unwrap();
        let dev = store.create_team("acme", "dev").await.unwrap();
        let ops = store.create_team("acme", "ops").await.unwrap();
        let alice = store
            .create_user("acme", "alice", &[org.owners_team_id, dev.id.clone()])
            .await
            .unwrap();
        let bob = store
            .create_user("acme", "bob", std::slice::from_ref(&dev.id))
            .await
            .unwrap();
        let carol = store
            .create_user("acme", "carol", std::slice::from_ref(&ops.id))
            .await
            .unwrap();
        for user in [&alice, &bob, &carol] {
            tokengate::ui::password::set(store.as_ref(), user, PASSWORD.into(), TEST_ARGON2)
                .await
                .unwrap();
        }
        World {
            gateway,
            upstream,
            dev: dev.id,
            ops: ops.id,
            alice,
            bob,
            _dir: dir,
        }
    }

    fn store(&self) -> &dyn Store {
        self.gateway.store.as_ref()
    }

    async fn send(&self, request: Request<Full<Bytes>>, from: SocketAddr) -> Page {
        let lease = self.gateway.forwarder.lease();
        let response = self.gateway.handle(request, from, &lease).await;
        let (parts, body) = response.into_parts();
        let bytes = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .expect("the body arrives")
            .unwrap()
            .to_bytes();
        Page {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A visitor with an empty cookie jar, from [`ADDRESS`].
    fn visitor(&self) -> Visitor<'_> {
        self.visitor_from(SocketAddr::from(ADDRESS))
    }

    fn visitor_from(&self, address: SocketAddr) -> Visitor<'_> {
        Visitor {
            world: self,
            cookies: BTreeMap::new(),
            address,
        }
    }

    /// A request through the proxy with `token`: its status.
    async fn proxied(&self, token: &str) -> StatusCode {
        let request = Request::builder()
            .uri("/api/v2/workspaces")
            .header("host", "gateway.example")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(request, SocketAddr::from(ADDRESS)).await.status
    }

    async fn team_token_id(&self, team_id: &str) -> Option<String> {
        lifecycle::current(
            self.store(),
            &Owner::Team {
                org: "acme".into(),
                team_id: team_id.into(),
            },
        )
        .await
        .unwrap()
        .map(|c| c.token_id)
    }
}

/// A response of the UI.
struct Page {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Page {
    /// The `Set-Cookie` line of cookie `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The new secret shown on the page, if any.
    fn secret(&self) -> Option<String> {
        let at = self.body.find("data-secret autocomplete")?;
        let before = &self.body[..at];
        let value = before.rfind("value=\"")?;
        let rest = &before[value + 7..];
        Some(rest[..rest.find('"')?].to_owned())
    }
}

/// A client that keeps the UI's cookies, as a browser would.
struct Visitor<'a> {
    world: &'a World,
    cookies: BTreeMap<String, String>,
    address: SocketAddr,
}

impl Visitor<'_> {
    fn keep_cookies(&mut self, page: &Page) {
        for line in page.headers.get_all("set-cookie") {
            let line = line.to_str().unwrap();
            let pair = line.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if line.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "gateway.example");
        if !self.cookies.is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        if method == "POST" {
            request = request.header("content-type", "application/x-www-form-urlencoded");
            if !extra.iter().any(|(name, _)| *name == "sec-fetch-site") {
                request = request.header("sec-fetch-site", "same-origin");
            }
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let page = self.world.send(request, self.address).await;
        self.keep_cookies(&page);
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        self.request("GET", path, "", &[]).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form(fields);
        self.request("POST", path, &body, &[]).await
    }

    /// Opens the sign-in page and signs in.
    async fn sign_in(&mut self, username: &str, password: &str) -> Page {
        let page = self.get("/_tokengate/ui/").await;
        let csrf = page.csrf();
        self.post(
            "/_tokengate/ui/sign-in",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// The session's CSRF token, from a page that has forms.
    async fn csrf(&mut self) -> String {
        self.get("/_tokengate/ui/teams").await.csrf()
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        out.append_pair(k, v);
    }
    out.finish()
}

#[tokio::test]
async fn ui_paths_are_answered_by_the_gateway_and_never_forwarded() {
    let world = World::new("").await;
    let mut visitor = world.visitor();
    for (path, status) in [
        ("/_tokengate/ui", 200),
        ("/_tokengate/ui/", 200),
        ("/_tokengate/ui/teams", 303),
        ("/_tokengate/ui/nothing-here", 404),
        ("/_tokengate/ui/teams/../../../api/v2/workspaces", 404),
        ("/_tokengate/ui/%2e%2e/%2e%2e/api/v2/workspaces", 404),
        ("/_tokengate/ui/x%2Fy", 404),
        ("/_tokengate/ui/assets/app.css", 200),
    ] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, status, "{path}: {}", page.body);
        assert!(
            status == 303 || page.header("content-type").starts_with("text/"),
            "{path}: a page, not JSON"
        );
    }
    // Other spellings of the reserved prefix are the admin endpoints' 404.
    for path in [
        "/_TOKENGATE/ui/",
        "//_tokengate/ui/",
        "/_tokengate/uix",
        "/_tokengate/./ui",
    ] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, 404, "{path}");
    }
    // A form is read by the UI (the proxy would refuse it with 415).
    let page = visitor
        .request(
            "POST",
            "/_tokengate/ui/sign-in",
            "username=a&password=b",
            &[],
        )
        .await;
    assert_eq!(page.status, 403, "no CSRF token: {}", page.body);
    assert!(page.body.contains("could not be verified"));
    assert_eq!(world.upstream.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn proxied_requests_never_reach_the_ui() {
    let world = World::new("").await;
    let token = lifecycle::issue(
        world.store(),
        Owner::Team {
            org: "acme".into(),
            team_id: world.dev.clone(),
        },
        TEST_SECRETS,
        None,
        None,
    )
    .await
    .unwrap()
    .token
    .secret_token;
    for _ in 0..3 {
        assert_eq!(world.proxied(&token).await, 200);
    }
    assert_eq!(world.upstream.count(), 3);
    // The UI is made on its first request: the proxied ones never touched it.
    assert!(world.gateway.ui.get().is_none());
    world.visitor().get("/_tokengate/ui/").await;
    assert!(world.gateway.ui.get().is_some());
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_scoped_to_the_ui() {
    let world = World::new("").await;
    let mut visitor = world.visitor();
    let page = visitor.sign_in("ALICE", PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), "/_tokengate/ui/teams");
    let cookie = page.set_cookie("tg_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/_tokengate/ui"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "{cookie}"
    );
    let id = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("tg_session=");
    assert_eq!(id.len(), 43, "{id}");
    // The store keeps the session under the digest of the id, never the id.
    let key = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes())
    );
    let session = world.store().ui_session(&key).await.unwrap().unwrap();
    assert_eq!(session.user_id, world.alice.id);
    let teams = visitor.get("/_tokengate/ui/teams").await;
    assert_eq!(teams.status, 200);
    assert!(teams.body.contains("Signed in as <strong>alice</strong>"));

    // Secure over TLS (the listener's ClientProto marker) and with ui.secure_cookies.
    let request = Request::builder()
        .uri("/_tokengate/ui/")
        .header("host", "gateway.example")
        .extension(tokengate::upstream::headers::ClientProto::Https)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let page = world.send(request, SocketAddr::from(ADDRESS)).await;
    assert!(page.set_cookie("tg_signin").unwrap().contains("Secure"));
    let secure = World::new("ui: { secure_cookies: true }").await;
    let page = secure.visitor().sign_in("alice", PASSWORD).await;
    assert!(page.set_cookie("tg_session").unwrap().contains("Secure"));
}

#[tokio::test]
async fn every_page_is_no_store_with_a_strict_content_security_policy() {
    let world = World::new("").await;
    let mut visitor = world.visitor();
    let mut pages = vec![visitor.get("/_tokengate/ui/").await];
    visitor.sign_in("alice", PASSWORD).await;
    for path in [
        "/_tokengate/ui/teams",
        &format!("/_tokengate/ui/teams/{}", world.dev),
        "/_tokengate/ui/tokens",
        "/_tokengate/ui/tokens/organization",
        "/_tokengate/ui/nothing",
    ] {
        pages.push(visitor.get(path).await);
    }
    for page in &pages {
        assert_eq!(page.header("cache-control"), "no-store", "{}", page.body);
        assert!(page
            .header("content-security-policy")
            .contains("default-src 'none'"));
        assert!(page
            .header("content-security-policy")
            .contains("frame-ancestors 'none'"));
        assert_eq!(page.header("x-frame-options"), "DENY");
        assert_eq!(page.header("referrer-policy"), "no-referrer");
        assert!(page.header("content-type").starts_with("text/html"));
        assert!(!page.body.contains("<script>"), "no inline script");
    }
    let css = visitor.get("/_tokengate/ui/assets/app.css").await;
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
    assert!(css.header("cache-control").contains("max-age"));
}

#[tokio::test]
async fn a_form_without_its_csrf_token_changes_nothing() {
    let world = World::new("").await;
    let mut visitor = world.visitor();
    visitor.sign_in("alice", PASSWORD).await;
    let action = format!("/_tokengate/ui/teams/{}/token", world.dev);
    let csrf = visitor.csrf().await;
    let other = world.visitor().get("/_tokengate/ui/").await.csrf();
    for fields in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", other.as_str())],
        vec![("csrf", &csrf[1..])],
    ] {
        let page = visitor.post(&action, &fields).await;
        assert_eq!(page.status, 403, "{fields:?}");
        assert!(page.body.contains("Nothing was changed"), "{}", page.body);
    }
    // A cross-site POST is refused before the form is read, even with
    // the right token.
    let page = visitor
        .request(
            "POST",
            &action,
            &form(&[("csrf", &csrf)]),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.header("content-type").starts_with("text/html"));
    assert_eq!(world.team_token_id(&world.dev).await, None);
    // With its token, the same form works.
    let page = visitor.post(&action, &[("csrf", &csrf)]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(world.team_token_id(&world.dev).await.is_some());
    // Signing in needs the sign-in form's own token too.
    let mut stranger = world.visitor();
    let page = stranger
        .post(
            "/_tokengate/ui/sign-in",
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.set_cookie("tg_session").is_none());
}

#[tokio::test]
async fn a_secret_is_shown_once_and_never_in_an_address() {
    let world = World::new("").await;
    let mut visitor = world.visitor();
    visitor.sign_in("bob", PASSWORD).await;
    let csrf = visitor.csrf().await;
    let created = visitor
        .post(
            &format!("/_tokengate/ui/teams/{}/token", world.dev),
            &[("csrf", &csrf), ("expires", "never")],
        )
        .await;
    assert_eq!(created.status, 303);
    assert!(created.body.is_empty());
    let location = created.location().to_owned();
    assert_eq!(
        location,
        format!("/_tokengate/ui/teams/{}#token", world.dev)
    );
    let page = visitor.get(location.split('#').next().unwrap()).await;
    let secret = page.secret().expect("the secret, once");
    assert!(secret.contains(".atlasv1."));
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.body.contains("It will not be shown again"));
    assert_eq!(world.proxied(&secret).await, 200);
    let again = visitor.get(location.split('#').next().unwrap()).await;
    assert_eq!(again.secret(), None);
    assert!(!again.body.contains(&secret));
    // The audit trail names bob.
    let events = world.store().audit_events(None, 100).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.action == "generate" && e.actor == world.bob.id));
}

#[tokio::test]
async fn regenerate_and_delete_ask_first_without_javascript() {
    let world = World::new("").await;
    let mut visitor = world.visitor();
    visitor.sign_in("alice", PASSWORD).await;
    let csrf = visitor.csrf().await;
    let action = format!("/_tokengate/ui/teams/{}/token", world.dev);
    visitor.post(&action, &[("csrf", &csrf)]).await;
    let first = world.team_token_id(&world.dev).await.unwrap();
    // Without confirmed=yes: a confirmation page, nothing changes.
    let ask = visitor
        .post(&action, &[("csrf", &csrf), ("expires", "keep")])
        .await;
    assert_eq!(ask.status, 200);
    assert!(
        ask.body.contains("stops working on the very next request"),
        "{}",
        ask.body
    );
    assert!(ask.body.contains("name=\"confirmed\" value=\"yes\""));
    assert!(ask.body.contains("name=\"expires\" value=\"keep\""));
    assert_eq!(
        world.team_token_id(&world.dev).await.as_deref(),
        Some(first.as_str())
    );
    let done = visitor
        .post(
            &action,
            &[("csrf", &csrf), ("expires", "keep"), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(done.status, 303);
    let second = world.team_token_id(&world.dev).await.unwrap();
    assert_ne!(second, first);
    let delete = format!("{action}/delete");
    let ask = visitor.post(&delete, &[("csrf", &csrf)]).await;
    assert!(ask.body.contains("stops working on the very next request"));
    assert_eq!(
        world.team_token_id(&world.dev).await.as_deref(),
        Some(second.as_str())
    );
    visitor
        .post(&delete, &[("csrf", &csrf), ("confirmed", "yes")])
        .await;
    assert_eq!(world.team_token_id(&world.dev).await, None);
}

#[tokio::test]
async fn member_token_management_is_the_owners_switch_and_binds_members() {
    let world = World::new("").await;
    let mut bob = world.visitor();
    bob.sign_in("bob", PASSWORD).await;
    let team_page = format!("/_tokengate/ui/teams/{}", world.dev);
    let page = bob.get(&team_page).await;
    assert!(page.body.contains("Create a team token"));
    assert!(
        !page.body.contains("Allow member token management"),
        "owners only"
    );
    let bob_csrf = page.csrf();
    // bob cannot flip the switch: 404, and it is audited.
    let refused = bob
        .post(
            &format!("{team_page}/member-token-management"),
            &[("csrf", &bob_csrf)],
        )
        .await;
    assert_eq!(refused.status, 404);
    // alice turns it off; bob loses the controls, and his POSTs are 404.
    let mut alice = world.visitor();
    alice.sign_in("alice", PASSWORD).await;
    let csrf = alice.csrf().await;
    let page = alice
        .post(
            &format!("{team_page}/member-token-management"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, 303);
    assert!(
        !world
            .store()
            .team(&world.dev)
            .await
            .unwrap()
            .unwrap()
            .allow_member_token_management
    );
    let page = bob.get(&team_page).await;
    assert!(page.body.contains("not manage its tokens"));
    let forged = bob
        .post(&format!("{team_page}/token"), &[("csrf", &bob_csrf)])
        .await;
    assert_eq!(forged.status, 404);
    assert!(forged.body.contains("Not found"));
    assert_eq!(world.team_token_id(&world.dev).await, None);
    let events = world.store().audit_events(None, 100).await.unwrap();
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert!(
        actions.contains(&("member_token_management_off", world.alice.id.as_str())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("member_token_management_refused", world.bob.id.as_str())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("generate_refused", world.bob.id.as_str())),
        "{actions:?}"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_name_and_per_address() {
    let world = World::new("").await;
    let mut visitor = world.visitor();
    for _ in 0..5 {
        let page = visitor.sign_in("alice", "wrong password!").await;
        assert_eq!(page.status, 401);
        assert!(page.body.contains("not correct"));
    }
    visitor.sign_in("alice", "wrong password!").await;
    // Now even the right password waits, from any address.
    let elsewhere = SocketAddr::from(([198, 51, 100, 9], 4000));
    let page = world
        .visitor_from(elsewhere)
        .sign_in("alice", PASSWORD)
        .await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.body.contains("Too many failed sign-ins"));
    assert!(page.set_cookie("tg_session").is_none());
    // Another person from another address is not held up.
    let page = world.visitor_from(elsewhere).sign_in("bob", PASSWORD).await;
    assert_eq!(page.status, 303);
    // An address that tries many names waits too.
    let noisy = SocketAddr::from(([198, 51, 100, 77], 4000));
    let mut noisy = world.visitor_from(noisy);
    for n in 0..21 {
        noisy.sign_in(&format!("nobody{n}"), "whatever it is").await;
    }
    let page = noisy.sign_in("carol", PASSWORD).await;
    assert_eq!(page.status, 429);
}

#[tokio::test]
async fn tokens_pasted_into_the_sign_in_form_are_refused_unchecked() {
    let world = World::new("").await;
    let org_token = lifecycle::issue(
        world.store(),
        Owner::Org { org: "acme".into() },
        TEST_SECRETS,
        None,
        None,
    )
    .await
    .unwrap()
    .token
    .secret_token;
    for (username, password) in [("alice", org_token.as_str()), (org_token.as_str(), "x")] {
        let page = world.visitor().sign_in(username, password).await;
        assert_eq!(page.status, 403);
        assert!(page
            .body
            .contains("Service accounts cannot be used interactively"));
        assert!(!page.body.contains(&org_token), "the token is not echoed");
        assert!(page.set_cookie("tg_session").is_none());
    }
    let events = world.store().audit_events(None, 100).await.unwrap();
    assert!(events.iter().all(|e| e.action != "sign_in"), "{events:?}");
}

#[tokio::test]
async fn sessions_end_when_idle_past_their_age_and_everywhere_on_request() {
    let world = World::new("").await;
    let mut visitor = world.visitor();
    visitor.sign_in("alice", PASSWORD).await;
    let id = visitor.cookies["tg_session"].clone();
    let key = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes())
    );
    let store = world.store();
    let fresh = store.ui_session(&key).await.unwrap().unwrap();
    let minutes = |n: i64| Timestamp(Timestamp::now().0 - n * 60_000);
    // Unused for 31 minutes (the idle timeout is 30): signed out.
    let idle = tokengate::store::UiSession {
        last_seen: minutes(31),
        ..fresh.clone()
    };
    store.put_ui_session(&key, &idle).await.unwrap();
    let page = visitor.get("/_tokengate/ui/teams").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/_tokengate/ui/?session-ended");
    assert!(store.ui_session(&key).await.unwrap().is_none(), "deleted");
    // Busy, but signed in 13 hours ago (the maximum is 12): signed out.
    let mut visitor = world.visitor();
    visitor.sign_in("alice", PASSWORD).await;
    let id = visitor.cookies["tg_session"].clone();
    let key = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes())
    );
    let session = store.ui_session(&key).await.unwrap().unwrap();
    let old = tokengate::store::UiSession {
        created_at: minutes(13 * 60),
        last_seen: minutes(1),
        ..session
    };
    store.put_ui_session(&key, &old).await.unwrap();
    assert_eq!(visitor.get("/_tokengate/ui/teams").await.status, 303);
    // Sign out everywhere ends the other browser's session too.
    let mut first = world.visitor();
    let mut second = world.visitor();
    first.sign_in("alice", PASSWORD).await;
    second.sign_in("alice", PASSWORD).await;
    let csrf = first.csrf().await;
    let out = first
        .post(
            "/_tokengate/ui/sign-out",
            &[("csrf", &csrf), ("everywhere", "yes")],
        )
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/_tokengate/ui/?signed-out");
    assert!(out.set_cookie("tg_session").unwrap().contains("Max-Age=0"));
    assert_eq!(second.get("/_tokengate/ui/teams").await.status, 303);
    // A new password ends every session as well.
    let mut third = world.visitor();
    third.sign_in("alice", PASSWORD).await;
    assert_eq!(third.get("/_tokengate/ui/teams").await.status, 200);
    tokengate::ui::password::set(store, &world.alice, "another long one".into(), TEST_ARGON2)
        .await
        .unwrap();
    assert_eq!(third.get("/_tokengate/ui/teams").await.status, 303);
}

#[tokio::test]
async fn bad_input_gets_a_readable_page() {
    let world = World::new("").await;
    let mut visitor = world.visitor();
    visitor.sign_in("alice", PASSWORD).await;
    let csrf = visitor.csrf().await;
    let readable = |page: &Page| {
        assert!(
            page.header("content-type").starts_with("text/html"),
            "{}",
            page.body
        );
        assert!(!page.body.contains("panicked") && !page.body.contains("\"errors\""));
    };
    for (method, path, status) in [
        ("GET", "/_tokengate/ui/teams/team-doesnotexist", 404),
        ("GET", "/_tokengate/ui/teams/not%20a%20team", 404),
        ("PUT", "/_tokengate/ui/teams", 405),
        ("DELETE", "/_tokengate/ui/sign-in", 405),
        ("GET", "/_tokengate/ui/tokens/at-nothing/delete", 405),
    ] {
        let page = visitor.request(method, path, "", &[]).await;
        assert_eq!(page.status, status, "{method} {path}: {}", page.body);
        readable(&page);
    }
    let huge = format!("csrf={csrf}&description={}", "x".repeat(40_000));
    let page = visitor
        .request(
            "POST",
            &format!("/_tokengate/ui/teams/{}/tokens", world.dev),
            &huge,
            &[],
        )
        .await;
    assert_eq!(page.status, 413);
    readable(&page);
    // Bytes that are not a form, and fields that make no sense.
    let page = visitor
        .request(
            "POST",
            &format!("/_tokengate/ui/teams/{}/tokens", world.dev),
            "%%%\u{0}&&==",
            &[],
        )
        .await;
    assert_eq!(page.status, 403);
    readable(&page);
    for (fields, says) in [
        (
            vec![("csrf", csrf.as_str()), ("description", "")],
            "Enter a description",
        ),
        (
            vec![
                ("csrf", csrf.as_str()),
                ("description", "d"),
                ("expires", "soon"),
            ],
            "Choose an expiration",
        ),
        (
            vec![
                ("csrf", csrf.as_str()),
                ("description", "d"),
                ("expires", "date"),
                ("date", "2001-01-01"),
            ],
            "must be in the future",
        ),
        (
            vec![
                ("csrf", csrf.as_str()),
                ("description", "d"),
                ("expires", "date"),
                ("date", "next week"),
            ],
            "as a day",
        ),
    ] {
        let page = visitor
            .post(
                &format!("/_tokengate/ui/teams/{}/tokens", world.dev),
                &fields,
            )
            .await;
        assert_eq!(page.status, 422, "{fields:?}");
        assert!(page.body.contains(says), "{says}: {}", page.body);
        readable(&page);
    }
    // A description taken by another token of the team.
    for expect in [303, 422] {
        let page = visitor
            .post(
                &format!("/_tokengate/ui/teams/{}/tokens", world.dev),
                &[("csrf", &csrf), ("description", "CI")],
            )
            .await;
        assert_eq!(page.status, expect);
    }
    // The list with parameters it cannot use says so, and lists anyway.
    for query in [
        "sort=bogus",
        "page%5Bnumber%5D=0",
        "filter%5Bstatus%5D=later",
    ] {
        let page = visitor.get(&format!("/_tokengate/ui/tokens?{query}")).await;
        assert_eq!(page.status, 200, "{query}");
        assert!(
            page.body.contains("That search could not be used"),
            "{query}: {}",
            page.body
        );
    }
    let page = visitor.get("/_tokengate/ui/tokens?q=%FF%FE").await;
    assert_eq!(page.status, 200);
}

#[tokio::test]
async fn the_ui_can_be_turned_off() {
    let world = World::new("ui: { enabled: false }").await;
    let page = world.visitor().get("/_tokengate/ui/").await;
    assert_eq!(page.status, 404);
    assert!(page.body.contains("turned off"));
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn the_team_token_list_pages_searches_and_filters() {
    let world = World::new("").await;
    for n in 0..23 {
        let team = if n % 2 == 0 { &world.dev } else { &world.ops };
        lifecycle::issue_own(
            world.store(),
            Owner::Team {
                org: "acme".into(),
                team_id: team.clone(),
            },
            TEST_SECRETS,
            None,
            (n == 0).then(|| Timestamp::now().plus_millis(1)),
            Some(format!("token {n:02}")),
        )
        .await
        .unwrap();
    }
    let mut alice = world.visitor();
    alice.sign_in("alice", PASSWORD).await;
    let first = alice.get("/_tokengate/ui/tokens").await;
    assert!(first.body.contains("Showing 1–20 of 23"), "{}", first.body);
    assert!(first.body.contains("rel=\"next\""));
    let second = alice.get("/_tokengate/ui/tokens?page%5Bnumber%5D=2").await;
    assert!(second.body.contains("Showing 21–23 of 23"));
    assert!(second.body.contains("rel=\"prev\""));
    let ops = alice.get("/_tokengate/ui/tokens?q=OP").await;
    assert!(ops.body.contains("of 11"), "{}", ops.body);
    let expired = alice
        .get("/_tokengate/ui/tokens?filter%5Bstatus%5D=expired")
        .await;
    assert!(expired.body.contains("Showing 1–1 of 1"));
    assert!(expired.body.contains("token 00") && expired.body.contains("Expired"));
    // carol manages ops only (members manage their team): she sees 11.
    let mut carol = world.visitor();
    carol.sign_in("carol", PASSWORD).await;
    let page = carol.get("/_tokengate/ui/tokens").await;
    assert!(page.body.contains("of 11"), "{}", page.body);
    assert!(!page.body.contains("Organization token"));
}

// --- tokengate user set-password ----------------------------------------

/// `tokengate user set-password ARGS`, with `stdin` piped in.
fn set_password(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(["user", "set-password"])
        .args(args)
        .env_remove("TOKENGATE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn set_password_reads_standard_input_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_embedded_config(dir.path(), "http://127.0.0.1:1", "tokengate.db", "");
    let c = config.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", c]);
        let output = tokengate(&all);
        assert!(
            output.status.success(),
            "{:?}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    cli(&["org", "create", "acme"]);
    cli(&["org", "create", "initech"]);
    let alice = cli(&["user", "create", "--org", "acme", "alice"]);
    cli(&["user", "create", "--org", "initech", "Alice"]);
    cli(&["user", "create", "--org", "acme", "bob"]);

    let (ok, out, err) = set_password(
        &["--config", c, "--org", "acme", "alice"],
        "a long passphrase\n",
    );
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["id"], alice["id"]);
    assert_eq!(answer["sign_in_name"], "alice");
    assert_eq!(answer["sessions_ended"], 0);
    assert!(!out.contains("passphrase") && !err.contains("passphrase"));
    // The password itself is never an argument.
    let (ok, _, err) = set_password(&["--config", c, "bob", "a long passphrase"], "");
    assert!(!ok);
    assert!(err.contains("unexpected argument"), "{err}");
    for (args, stdin, says) in [
        (vec!["bob"], "", "standard input: no password"),
        (vec!["bob"], "short\n", "at least 12 characters"),
        (
            vec!["nobody"],
            "a long passphrase\n",
            "NAME: no user named `nobody`",
        ),
        (
            vec!["alice"],
            "a long passphrase\n",
            "NAME: 2 users are named `alice`",
        ),
        // alice of initech may not take acme's alice's sign-in name.
        (
            vec!["--org", "initech", "alice"],
            "a long passphrase\n",
            "NAME: the sign-in name `alice`",
        ),
    ] {
        let mut all = vec!["--config", c];
        all.extend(args.iter().copied());
        let (ok, _, err) = set_password(&all, stdin);
        assert!(!ok, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let token =
        tokengate::token::format::generate(&tokengate::token::format::new_slot()).secret_token;
    let (ok, _, err) = set_password(&["--config", c, "bob"], &format!("{token}\n"));
    assert!(!ok);
    assert!(err.contains("looks like an API token"), "{err}");
    assert!(!err.contains(&token));
    // By id, and a second time (the hash is replaced).
    let id = alice["id"].as_str().unwrap();
    for _ in 0..2 {
        let (ok, _, err) = set_password(&["--config", c, id], "another passphrase\r\n");
        assert!(ok, "{err}");
    }
}

/// The real TLS listener marks its requests as HTTPS, and the UI's cookies
/// are then `Secure`, over HTTP/1.1 and over HTTP/2 alike.
#[tokio::test]
async fn cookies_are_secure_through_the_tls_listener_over_http1_and_h2() {
    use crate::tls_harness::{reqwest_client, TlsWorld, HOST};
    let world = TlsWorld::start("").await;
    let root = world.pki.root_pem();
    for (http1_only, version) in [
        (true, http::Version::HTTP_11),
        (false, http::Version::HTTP_2),
    ] {
        let client = reqwest_client(world.addr(), &root, http1_only);
        let response = client
            .get(format!(
                "https://{HOST}:{}/_tokengate/ui/",
                world.addr().port()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{version:?}");
        assert_eq!(response.version(), version);
        let cookies: Vec<String> = response
            .headers()
            .get_all(http::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let signin = cookies
            .iter()
            .find(|c| c.starts_with("tg_signin="))
            .unwrap_or_else(|| panic!("no sign-in cookie: {cookies:?}"));
        assert!(signin.contains("Secure"), "{version:?}: {signin}");
        assert!(signin.contains("HttpOnly") && signin.contains("SameSite=Strict"));
        let page = response.text().await.unwrap();
        assert!(page.contains("Sign in"), "{page}");
    }
    assert_eq!(world.upstream.count(), 0, "the UI is never forwarded");
}
