//! Coalesced credential reads keep the freshness rule: a request never
//! reuses a store read that was sent before it started.

use crate::harness::*;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokengate::auth::CoalescedReads;
use tokengate::config::Argon2Params;
use tokengate::store::redis::RedisStore;
use tokengate::store::*;

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
}

const CHEAP: Argon2Params = Argon2Params {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sent_before_a_regenerate_is_never_shared_with_a_later_request() {
    let redis = RedisServer::start();
    let plain = RedisStore::new(&redis.url(), Duration::from_secs(2)).unwrap();
    plain.create_org("acme").await.unwrap();
    let owner = Owner::Org { org: "acme".into() };
    let old = tokengate::token::lifecycle::issue(&plain, owner.clone(), CHEAP, None, None)
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
        tokio::spawn(async move { reads.credential(&slot).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The token is regenerated while that read is on its way back...
    let new = tokengate::token::lifecycle::issue(&plain, owner, CHEAP, None, None)
        .await
        .unwrap();
    // ...so a request that starts now must see the new credential.
    let later = reads.credential(&slot).await.unwrap().unwrap();
    assert_eq!(
        later.generation, new.credential.generation,
        "a later request reused an earlier read"
    );
    let earlier = first.await.unwrap().unwrap().unwrap();
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
        CHEAP,
        None,
        None,
    )
    .await
    .unwrap();
    let reads = Arc::new(CoalescedReads::new(Arc::new(plain.clone())));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (reads, slot) = (reads.clone(), issued.credential.slot.clone());
            tokio::spawn(async move { reads.credential(&slot).await })
        })
        .collect();
    for task in tasks {
        let credential = task.await.unwrap().unwrap().unwrap();
        assert_eq!(credential.token_id, issued.credential.token_id);
    }
}
