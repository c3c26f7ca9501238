//! Authentication: bad, unknown, missing, expired and wrong-secret tokens
//! get 401 and are never forwarded; regenerate and revoke take effect on the
//! next request; guessing secrets for a known id never locks its owner out
//! (also when the guesses arrive at once) and, once its record was read,
//! costs no store read; and coalesced credential reads keep the freshness
//! rule: a request never reuses a store read that was sent before it started.

use crate::harness::*;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokengate::auth::CoalescedReads;
use tokengate::store::redis::RedisStore;
use tokengate::store::*;

#[tokio::test]
async fn bad_unknown_and_missing_tokens_get_401_and_are_never_forwarded() {
    let world = World::new().await;
    let good = world.gateway.issue(world.team_owner()).await;
    // Same id, different secret (valid checksum is impossible to guess, so
    // this fails the shape check), an unknown slot, and garbage.
    let other_world_token =
        tokengate::token::format::generate(&tokengate::token::format::new_slot()).secret_token;
    let mut flipped = good.clone().into_bytes();
    flipped[40] = if flipped[40] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    for token in [
        other_world_token.as_str(),
        flipped.as_str(),
        "garbage",
        "a.atlasv1.b",
    ] {
        let response = world
            .send(RawRequest::new("GET", "/api/v2/workspaces").token(token))
            .await;
        assert_eq!(response.status, 401, "{token}: {}", response.body);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }
    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  x", "token abc"] {
        let response = world
            .send(
                RawRequest::new("GET", "/api/v2/workspaces").headers(&[("Authorization", header)]),
            )
            .await;
        assert_eq!(response.status, 401, "{header}");
    }
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces"))
        .await;
    assert_eq!(response.status, 401, "no token: {}", response.body);
    let response = world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces")
                .token(&good)
                .headers(&[("Authorization", "Bearer x")]),
        )
        .await;
    assert_eq!(response.status, 400, "two Authorization headers");
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn a_right_id_with_a_wrong_secret_is_refused() {
    let world = World::new().await;
    let real = world.gateway.issue(world.team_owner()).await;
    // A token of the right slot and generation but another secret: passes
    // the shape check and the generation check, and must fail argon2.
    let forged = forge(&real[..14]);
    assert_ne!(forged, real);
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&forged))
        .await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert!(response.error_detail().contains("invalid"));
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&real))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(world.upstream.count(), 1);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let world = World::new().await;
    let hashing = world.gateway.gateway.config.hashing;
    let past = tokengate::store::Timestamp(tokengate::store::Timestamp::now().0 - 1000);
    let issued = tokengate::token::lifecycle::issue(
        world.store(),
        world.team_owner(),
        hashing,
        None,
        Some(past),
    )
    .await
    .unwrap();
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&issued.token.secret_token))
        .await;
    assert_eq!(response.status, 401);
    assert!(response.error_detail().contains("expired"));
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn regenerate_and_revoke_take_effect_on_the_next_request() {
    let world = World::new().await;
    let old = world.gateway.issue(world.team_owner()).await;
    let ok = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&old))
        .await;
    assert_eq!(ok.status, 200, "the old token works (and is now cached)");
    let new = world.gateway.issue(world.team_owner()).await;
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&old))
        .await;
    assert_eq!(
        response.status, 401,
        "old token after regenerate: {}",
        response.body
    );
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&new))
        .await;
    assert_eq!(response.status, 200);
    tokengate::token::lifecycle::revoke(world.store(), &world.team_owner())
        .await
        .unwrap();
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&new))
        .await;
    assert_eq!(response.status, 401, "revoked token");
    assert_eq!(world.upstream.count(), 2);
}

/// `GET /api/v2/workspaces` with `token`.
async fn list_workspaces(addr: std::net::SocketAddr, token: String) -> RawResponse {
    send_raw(
        addr,
        RawRequest::new("GET", "/api/v2/workspaces").token(&token),
    )
    .await
}

/// A token's public id is not secret. Wrong secrets for it are refused one
/// by one and never lock the owner out: there is no per-id throttle to
/// trip, so the genuine token keeps working however many guesses came first.
#[tokio::test]
async fn guessing_secrets_for_a_known_id_never_refuses_the_real_token() {
    let world = World::new().await;
    let real = world.gateway.issue(world.team_owner()).await;
    let get = |token: String| list_workspaces(world.gateway.addr, token);
    for _ in 0..200 {
        let response = get(forge(&real[..14])).await;
        assert_eq!(response.status, 401, "{}", response.body);
    }
    assert_eq!(get(real.clone()).await.status, 200, "never locked out");
    assert_eq!(world.upstream.count(), 1, "only the genuine request");
}

/// Reads the store answered so far (`GET`, `HGET` and scripts), from
/// Redis's own command statistics.
fn store_reads(redis_url: &str) -> u64 {
    crate::redis_harness::info(redis_url, "commandstats")
        .iter()
        .filter(|(name, _)| {
            [
                "cmdstat_get",
                "cmdstat_hget",
                "cmdstat_evalsha",
                "cmdstat_eval",
            ]
            .contains(&name.as_str())
        })
        .filter_map(|(_, stats)| {
            stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Once a token's record has been read, a wrong secret for the same id and
/// generation is refused from what that read said: a flood of guesses costs
/// no store round trip. Nothing is accepted that way: the genuine token is
/// still read on every request, and a regenerate takes effect at once.
#[tokio::test]
async fn wrong_secrets_for_a_read_generation_are_refused_without_a_store_read() {
    let world = World::new().await;
    let real = world.gateway.issue(world.team_owner()).await;
    let get = |token: String| list_workspaces(world.gateway.addr, token);
    assert_eq!(get(real.clone()).await.status, 200);
    // The last-used write runs after the response; let it land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = world.redis.url();
    let before = store_reads(&url);
    for _ in 0..50 {
        let response = get(forge(&real[..14])).await;
        assert_eq!(response.status, 401, "{}", response.body);
        assert!(response.error_detail().contains("invalid"));
    }
    assert_eq!(store_reads(&url), before, "a guess read the store");
    assert_eq!(get(real.clone()).await.status, 200);
    assert!(
        store_reads(&url) > before,
        "the genuine token was accepted without a fresh read"
    );
    let new = world.gateway.issue(world.team_owner()).await;
    assert_eq!(get(new.clone()).await.status, 200, "the new token, at once");
    assert_eq!(get(real.clone()).await.status, 401, "the replaced token");
    assert_eq!(
        get(forge(&new[..14])).await.status,
        401,
        "a guess at the new one"
    );
    assert_eq!(world.upstream.count(), 3, "only the genuine requests");
}

/// Guesses sent at the same time as the genuine token, before the genuine
/// token was ever verified in this process: every guess is 401, every
/// genuine request is forwarded.
#[tokio::test]
async fn concurrent_guesses_never_refuse_the_genuine_token() {
    let world = World::new().await;
    let real = world.gateway.issue(world.team_owner()).await;
    let id = real[..14].to_owned();
    let addr = world.gateway.addr;
    let requests: Vec<_> = (0..120)
        .map(|i| {
            let genuine = i % 4 == 0;
            let token = if genuine { real.clone() } else { forge(&id) };
            tokio::spawn(async move {
                let status = send_raw(
                    addr,
                    RawRequest::new("GET", "/api/v2/workspaces").token(&token),
                )
                .await
                .status;
                (genuine, status)
            })
        })
        .collect();
    for request in requests {
        let (genuine, status) = request.await.unwrap();
        assert_eq!(
            status,
            if genuine { 200 } else { 401 },
            "genuine: {genuine}"
        );
    }
    assert_eq!(world.upstream.count(), 30);
}

/// A record hashed with argon2id (an older record, or the argon2id scheme
/// before a switch back to sha256) verifies, and is re-hashed to the
/// configured scheme after its first successful use; the re-hash never
/// resurrects a token replaced in the meantime.
#[tokio::test]
async fn an_argon2_record_verifies_and_is_rehashed_to_the_configured_scheme() {
    let world = World::new().await;
    let issued = tokengate::token::lifecycle::issue(
        world.store(),
        world.team_owner(),
        crate::harness::TEST_ARGON2_SECRETS,
        None,
        None,
    )
    .await
    .unwrap();
    let slot = issued.credential.slot.clone();
    assert!(issued.credential.secret_hash.starts_with("$argon2id$"));
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&issued.token.secret_token))
        .await;
    assert_eq!(response.status, 200);
    let mut stored = None;
    for _ in 0..100 {
        stored = world.store().credential(&slot).await.unwrap();
        if stored
            .as_ref()
            .is_some_and(|c| c.secret_hash.starts_with("$sha256$"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = stored.unwrap();
    assert!(stored.secret_hash.starts_with("$sha256$"), "{stored:?}");
    assert_eq!(stored.token_id, issued.credential.token_id);
    let again = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&issued.token.secret_token))
        .await;
    assert_eq!(again.status, 200, "the re-hashed record verifies");
    // A re-hash against a record that changed since is refused.
    assert!(!world
        .store()
        .replace_secret_hash(&issued.credential, "$sha256$00")
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrent_load_no_request_started_after_a_regenerate_accepts_the_old_token() {
    let world = World::new().await;
    let old = world.gateway.issue(world.team_owner()).await;
    let addr = world.gateway.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A flood of requests with the same token keeps coalesced reads in flight.
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let (old, stop) = (old.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 400 {
                    send_raw(
                        addr,
                        RawRequest::new("GET", "/api/v2/workspaces").token(&old),
                    )
                    .await;
                    sent += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let new = world.gateway.issue(world.team_owner()).await;
    // Every request that starts now must see the new credential.
    let checks: Vec<_> = (0..32)
        .map(|_| {
            let old = old.clone();
            tokio::spawn(async move {
                send_raw(
                    addr,
                    RawRequest::new("GET", "/api/v2/workspaces").token(&old),
                )
                .await
                .status
            })
        })
        .collect();
    for check in checks {
        assert_eq!(
            check.await.unwrap(),
            401,
            "a request started after the regenerate accepted the old token"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    let response = world
        .send(RawRequest::new("GET", "/api/v2/workspaces").token(&new))
        .await;
    assert_eq!(response.status, 200);
}

// --- coalesced credential reads ----------------------------------------

/// The real Redis store, except that each credential answer arrives late:
/// the read happens at once, the answer is handed back after `delay`.
struct LateAnswers {
    inner: RedisStore,
    delay: Duration,
}

#[async_trait]
impl Store for LateAnswers {
    async fn credential(&self, slot: &str) -> Result<Option<Credential>, StoreError> {
        let answer = self.inner.credential(slot).await;
        tokio::time::sleep(self.delay).await;
        answer
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn create_org(&self, name: &str) -> Result<Organization, StoreError> {
        self.inner.create_org(name).await
    }
    async fn org(&self, name: &str) -> Result<Option<Organization>, StoreError> {
        self.inner.org(name).await
    }
    async fn create_team(&self, org: &str, name: &str) -> Result<Team, StoreError> {
        self.inner.create_team(org, name).await
    }
    async fn team(&self, team_id: &str) -> Result<Option<Team>, StoreError> {
        self.inner.team(team_id).await
    }
    async fn create_user(
        &self,
        org: &str,
        name: &str,
        teams: &[String],
    ) -> Result<User, StoreError> {
        self.inner.create_user(org, name, teams).await
    }
    async fn user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        self.inner.user(user_id).await
    }
    async fn ensure_slot(&self, owner: &Owner) -> Result<String, StoreError> {
        self.inner.ensure_slot(owner).await
    }
    async fn slot_of(&self, owner: &Owner) -> Result<Option<String>, StoreError> {
        self.inner.slot_of(owner).await
    }
    async fn put_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        self.inner.put_credential(credential).await
    }
    async fn replace_secret_hash(
        &self,
        current: &Credential,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        self.inner.replace_secret_hash(current, new_hash).await
    }
    async fn delete_credential(&self, slot: &str) -> Result<Option<Credential>, StoreError> {
        self.inner.delete_credential(slot).await
    }
    async fn touch_last_used(
        &self,
        slot: &str,
        token_id: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.touch_last_used(slot, token_id, at).await
    }
    async fn last_used(&self, slot: &str) -> Result<Option<Timestamp>, StoreError> {
        self.inner.last_used(slot).await
    }
    async fn set_member_token_management(
        &self,
        team_id: &str,
        allowed: bool,
    ) -> Result<Team, StoreError> {
        self.inner
            .set_member_token_management(team_id, allowed)
            .await
    }
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.inner.append_audit(event).await
    }
    async fn audit_events(
        &self,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_events(since, limit).await
    }
    async fn add_team_access(&self, access: &TeamAccess) -> Result<(), StoreError> {
        self.inner.add_team_access(access).await
    }
    async fn update_team_access(&self, access: &TeamAccess) -> Result<(), StoreError> {
        self.inner.update_team_access(access).await
    }
    async fn team_access(&self, id: &str) -> Result<Option<TeamAccess>, StoreError> {
        self.inner.team_access(id).await
    }
    async fn remove_team_access(&self, id: &str) -> Result<Option<TeamAccess>, StoreError> {
        self.inner.remove_team_access(id).await
    }
    async fn workspace_team_accesses(&self, ws: &str) -> Result<Vec<TeamAccess>, StoreError> {
        self.inner.workspace_team_accesses(ws).await
    }
    async fn team_accesses(&self, team_id: &str) -> Result<Vec<TeamAccess>, StoreError> {
        self.inner.team_accesses(team_id).await
    }
    async fn access_facts(
        &self,
        team_ids: &[String],
        workspace_id: Option<&str>,
    ) -> Result<Vec<TeamFacts>, StoreError> {
        self.inner.access_facts(team_ids, workspace_id).await
    }
    async fn insert_token(&self, credential: &Credential) -> Result<(), StoreError> {
        self.inner.insert_token(credential).await
    }
    async fn delete_token(
        &self,
        slot: &str,
        token_id: &str,
    ) -> Result<Option<Credential>, StoreError> {
        self.inner.delete_token(slot, token_id).await
    }
    async fn org_tokens(&self, org: &str) -> Result<Vec<StoredToken>, StoreError> {
        self.inner.org_tokens(org).await
    }
    async fn clamp_expiry(&self, current: &Credential, at: Timestamp) -> Result<bool, StoreError> {
        self.inner.clamp_expiry(current, at).await
    }
    async fn replace_token_settings(
        &self,
        org: &str,
        current: &TokenSettings,
        new: &TokenSettings,
    ) -> Result<bool, StoreError> {
        self.inner.replace_token_settings(org, current, new).await
    }
    async fn set_organization_access(
        &self,
        team_id: &str,
        access: OrganizationAccess,
    ) -> Result<Team, StoreError> {
        self.inner.set_organization_access(team_id, access).await
    }
    async fn org_teams(&self, org: &str) -> Result<Vec<Team>, StoreError> {
        self.inner.org_teams(org).await
    }
    async fn team_members(&self, team_id: &str) -> Result<Vec<User>, StoreError> {
        self.inner.team_members(team_id).await
    }
    async fn users_named(&self, name: &str) -> Result<Vec<User>, StoreError> {
        self.inner.users_named(name).await
    }
    async fn set_login(&self, login: &Login) -> Result<(), StoreError> {
        self.inner.set_login(login).await
    }
    async fn login(&self, name: &str) -> Result<Option<Login>, StoreError> {
        self.inner.login(name).await
    }
    async fn put_ui_session(&self, key: &str, session: &UiSession) -> Result<(), StoreError> {
        self.inner.put_ui_session(key, session).await
    }
    async fn ui_session(&self, key: &str) -> Result<Option<UiSession>, StoreError> {
        self.inner.ui_session(key).await
    }
    async fn delete_ui_session(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete_ui_session(key).await
    }
    async fn delete_user_ui_sessions(&self, user_id: &str) -> Result<usize, StoreError> {
        self.inner.delete_user_ui_sessions(user_id).await
    }
    async fn put_ui_flash(
        &self,
        key: &str,
        value: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.put_ui_flash(key, value, expires_at).await
    }
    async fn take_ui_flash(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.take_ui_flash(key).await
    }
    async fn put_upload_grant(&self, key: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        self.inner.put_upload_grant(key, expires_at).await
    }
    async fn upload_granted(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.upload_granted(key).await
    }
    async fn end_upload_grant(&self, key: &str) -> Result<(), StoreError> {
        self.inner.end_upload_grant(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sent_before_a_regenerate_is_never_shared_with_a_later_request() {
    let redis = RedisServer::start();
    let plain = RedisStore::new(&redis.url(), Duration::from_secs(2)).unwrap();
    plain.create_org("acme").await.unwrap();
    let owner = Owner::Org { org: "acme".into() };
    let old = tokengate::token::lifecycle::issue(&plain, owner.clone(), TEST_SECRETS, None, None)
        .await
        .unwrap();
    let slot = old.credential.slot.clone();
    let late = Arc::new(LateAnswers {
        inner: plain.clone(),
        delay: Duration::from_millis(300),
    });
    let reads = Arc::new(CoalescedReads::new(late));

    // A request starts: its read goes out now and answers (old) 300 ms later.
    let first = {
        let (reads, slot) = (reads.clone(), slot.clone());
        tokio::spawn(async move { reads.read(&slot, None).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The token is regenerated while that read is on its way back...
    let new = tokengate::token::lifecycle::issue(&plain, owner, TEST_SECRETS, None, None)
        .await
        .unwrap();
    // ...so a request that starts now must see the new credential.
    let later = reads.read(&slot, None).await.unwrap();
    let later = later.credential.as_ref().unwrap();
    assert_eq!(
        later.generation, new.credential.generation,
        "a later request reused an earlier read"
    );
    let earlier = first.await.unwrap().unwrap();
    let earlier = earlier.credential.as_ref().unwrap();
    assert_eq!(earlier.generation, old.credential.generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_a_read_that_starts_after_all_of_them() {
    let redis = RedisServer::start();
    let plain = RedisStore::new(&redis.url(), Duration::from_secs(2)).unwrap();
    plain.create_org("acme").await.unwrap();
    let issued = tokengate::token::lifecycle::issue(
        &plain,
        Owner::Org { org: "acme".into() },
        TEST_SECRETS,
        None,
        None,
    )
    .await
    .unwrap();
    let reads = Arc::new(CoalescedReads::new(Arc::new(plain.clone())));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (reads, slot) = (reads.clone(), issued.credential.slot.clone());
            tokio::spawn(async move { reads.read(&slot, None).await })
        })
        .collect();
    for task in tasks {
        let read = task.await.unwrap().unwrap();
        let credential = read.credential.as_ref().unwrap();
        assert_eq!(credential.token_id, issued.credential.token_id);
    }
}
