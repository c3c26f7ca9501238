//! The store contract: every rule of the `Store` trait written once, as an
//! async function over `Arc<dyn Store>`, and run against each backend by
//! `contract_tests!`: `store_contract::redis::NAME` on a real redis-server,
//! `store_contract::redis_tls::NAME` on one over `rediss://` with an ACL
//! user and client certificates, `store_contract::embedded::NAME` on a redb
//! file in a temp dir, and `store_contract::sentinel::whole_contract` /
//! `store_contract::cluster::whole_contract`, which run every function in
//! turn on one Sentinel set (1 primary, 1 replica, 3 sentinels) or one
//! Cluster (3 primaries, 3 replicas), emptied between functions, both with
//! `wait_replicas: 1` (they take seconds to start, so one deployment
//! serves the whole contract). Below the contract: what only the embedded
//! file has (locking, directories), and the gateway serving from an
//! embedded store.

mod access;
mod grants;
mod ui;

use crate::harness::*;
use crate::redis_harness::*;
use access::*;
use grants::*;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokengate::store::embedded::EmbeddedStore;
use tokengate::store::redis::{RedisOptions, RedisStore, Secret, TlsMaterial, Topology};
use tokengate::store::{Credential, Owner, Store, StoreError, Timestamp};
use tokengate::token::format::PresentedToken;
use tokengate::token::lifecycle as tokens;
use ui::*;

/// One backend under test, with what it needs to be restarted.
pub struct Backend {
    pub store: Arc<dyn Store>,
    kind: Kind,
}

enum Kind {
    Redis(RedisServer),
    Tls {
        redis: TlsRedis,
        ca: TestCa,
    },
    Sentinel(SentinelSet),
    Cluster(ClusterSet),
    Embedded {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
}

impl Backend {
    pub fn redis() -> Backend {
        Self::with(Kind::Redis(RedisServer::start()))
    }

    pub fn redis_tls() -> Backend {
        let ca = TestCa::new();
        let redis = TlsRedis::start(&ca);
        Self::with(Kind::Tls { redis, ca })
    }

    pub fn sentinel() -> Backend {
        // No failover wanted here: the nodes restart well within this.
        Self::with(Kind::Sentinel(SentinelSet::start(Duration::from_secs(30))))
    }

    pub fn cluster() -> Backend {
        Self::with(Kind::Cluster(ClusterSet::start()))
    }

    pub fn embedded() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokengate.db");
        Backend {
            store: Arc::new(EmbeddedStore::open(&path).unwrap()),
            kind: Kind::Embedded { _dir: dir, path },
        }
    }

    fn with(kind: Kind) -> Backend {
        Backend {
            store: redis_store(&kind),
            kind,
        }
    }

    /// Empties the deployment shared by the functions of one `whole_contract`.
    pub fn reset(&self) {
        match &self.kind {
            Kind::Sentinel(set) => set.flush(),
            Kind::Cluster(set) => set.flush(),
            _ => {}
        }
    }

    /// Stops the store as a process exit would and opens it again on the
    /// same data: every Redis node is killed and restarted, the embedded
    /// file closed and reopened.
    pub async fn restart(self) -> Backend {
        let Backend { store, mut kind } = self;
        drop(store);
        match &mut kind {
            Kind::Redis(server) => server.restart(),
            Kind::Tls { redis, .. } => redis.server.restart(),
            Kind::Sentinel(set) => {
                for node in &mut set.nodes {
                    node.kill();
                }
                for node in &mut set.nodes {
                    node.restart();
                }
                set.wait_replicated(Duration::from_secs(15));
            }
            Kind::Cluster(set) => set.restart(),
            Kind::Embedded { path, .. } => {
                let store = Arc::new(EmbeddedStore::open(path).unwrap());
                return Backend { store, kind };
            }
        }
        Backend::with(kind)
    }

    /// Replaces the credential record in `slot` with bytes that are not a
    /// credential, behind the store's back.
    pub async fn corrupt_credential(self, slot: &str) -> Backend {
        let garbage = "{not a credential";
        let key = format!("tg:cred:{{{slot}}}");
        let node_url = match &self.kind {
            Kind::Redis(server) => Some(server.url()),
            Kind::Tls { redis, .. } => Some(redis.server.admin_url()),
            Kind::Sentinel(set) => {
                let addr = set.primary_addr().expect("no primary");
                Some(set.nodes[set.node_at(&addr)].url())
            }
            Kind::Cluster(set) => {
                let client = ::redis::cluster::ClusterClient::new(set.urls()).unwrap();
                let mut conn = client.get_connection().unwrap();
                ::redis::cmd("SET")
                    .arg(&key)
                    .arg(garbage)
                    .query::<()>(&mut conn)
                    .unwrap();
                None
            }
            Kind::Embedded { .. } => None,
        };
        if let Some(url) = node_url {
            let _: () = query(&url, &["SET", &key, garbage]).unwrap();
            return self;
        }
        let Kind::Embedded { path, .. } = &self.kind else {
            return self;
        };
        // The store holds the file's lock: close it, write, reopen.
        let path = path.clone();
        let Backend { store, kind } = self;
        drop(store);
        const CREDENTIALS: redb::TableDefinition<&str, &[u8]> =
            redb::TableDefinition::new("credentials");
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(CREDENTIALS)
            .unwrap()
            .insert(slot, garbage.as_bytes())
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        Backend {
            store: Arc::new(EmbeddedStore::open(&path).unwrap()),
            kind,
        }
    }
}

/// The Redis store for a deployment. A generous timeout: the machine is
/// shared with other builds.
fn redis_store(kind: &Kind) -> Arc<dyn Store> {
    let timeout = Duration::from_secs(5);
    let options = match kind {
        Kind::Redis(server) => RedisOptions::single(&server.url(), timeout),
        Kind::Tls { redis, ca } => {
            let read = |name: &str| std::fs::read(ca.file(name)).unwrap();
            RedisOptions {
                password: Some(Secret::new(ACL_PASSWORD)),
                tls: TlsMaterial {
                    ca_pem: Some(read("ca.pem")),
                    client_cert_pem: Some(read("client.pem")),
                    client_key_pem: Some(Secret::new(
                        String::from_utf8(read("client.key")).unwrap(),
                    )),
                },
                ..RedisOptions::single(&redis.url(), timeout)
            }
        }
        Kind::Sentinel(set) => RedisOptions {
            topology: Topology::Sentinel {
                master_name: MASTER_NAME.to_owned(),
                urls: set.sentinel_urls(),
                password: None,
                check_interval: Duration::from_millis(500),
            },
            wait_replicas: 1,
            ..RedisOptions::single("redis://unused", timeout)
        },
        Kind::Cluster(set) => RedisOptions {
            topology: Topology::Cluster { urls: set.urls() },
            wait_replicas: 1,
            ..RedisOptions::single("redis://unused", timeout)
        },
        Kind::Embedded { .. } => unreachable!("not a Redis deployment"),
    };
    Arc::new(RedisStore::open(options).unwrap())
}

/// Generates, for each contract function, `redis::NAME`, `redis_tls::NAME`
/// and `embedded::NAME` tests, and one `sentinel::whole_contract` and one
/// `cluster::whole_contract` that run them all in order. `NAME(store)`
/// gets `Arc<dyn Store>`; `NAME(backend)` gets the [`Backend`] (to restart
/// it) and hands it back. `#[redis: …]` adds an attribute to the Redis tests
/// only.
macro_rules! contract_tests {
    ($($(#[redis: $redis_attr:meta])? $name:ident($arg:ident);)*) => {
        contract_tests!(@each redis $($(#[redis: $redis_attr])? $name($arg);)*);
        contract_tests!(@each redis_tls $($(#[redis: $redis_attr])? $name($arg);)*);
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = super::Backend::embedded();
                    let _ = super::$name(contract_tests!(@arg backend $arg)).await;
                }
            )*
        }
        contract_tests!(@whole sentinel $($name($arg);)*);
        contract_tests!(@whole cluster $($name($arg);)*);
    };
    (@each $backend:ident $($(#[redis: $redis_attr:meta])? $name:ident($arg:ident);)*) => {
        mod $backend {
            $(
                $(#[$redis_attr])?
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = super::Backend::$backend();
                    let _ = super::$name(contract_tests!(@arg backend $arg)).await;
                }
            )*
        }
    };
    (@whole $backend:ident $($name:ident($arg:ident);)*) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn whole_contract() {
                if let Some(why) = crate::redis_harness::missing_redis_commands(stringify!($backend)) {
                    eprintln!("{why}");
                    return;
                }
                let mut backend = super::Backend::$backend();
                $(
                    backend.reset();
                    eprintln!("contract on {}: {}", stringify!($backend), stringify!($name));
                    backend = contract_tests!(@run backend $name $arg);
                )*
                drop(backend);
            }
        }
    };
    (@arg $backend:ident store) => { $backend.store.clone() };
    (@arg $backend:ident backend) => { $backend };
    (@run $backend:ident $name:ident store) => {{
        super::$name($backend.store.clone()).await;
        $backend
    }};
    (@run $backend:ident $name:ident backend) => { super::$name($backend).await };
}

contract_tests! {
    ping_answers(store);
    orgs_are_created_with_their_owners_team(store);
    names_are_validated(store);
    team_names_are_unique_per_organization(store);
    users_join_only_teams_of_their_organization(store);
    malformed_or_unknown_ids_find_nothing(store);
    each_owner_gets_one_slot_of_its_own(store);
    concurrent_ensure_slot_gives_one_slot_per_owner(store);
    malformed_slots_are_refused(store);
    put_credential_replaces_the_previous_one(store);
    delete_credential_returns_what_it_deleted(store);
    a_rehash_replaces_only_the_credential_it_was_computed_for(store);
    last_used_belongs_to_the_current_token(store);
    a_late_touch_by_a_replaced_token_changes_nothing(store);
    issue_then_revoke(store);
    concurrent_issues_leave_exactly_one_credential(store);
    team_settings_change_and_unknown_teams_are_not_found(store);
    audit_events_are_kept_in_order_and_filtered_by_time(store);
    data_survives_a_restart(backend);
    corrupt_records_are_reported_as_corrupt(backend);
    // Token API (issue 12): tokens with a slot of their own, listings,
    // token settings, organization access.
    tokens_with_their_own_slot_coexist_and_are_listed(store);
    descriptions_are_unique_per_team_and_freed_by_a_delete(store);
    delete_token_deletes_only_the_token_it_names(store);
    clamp_expiry_only_shortens_the_current_token(store);
    token_settings_are_replaced_only_when_unchanged(store);
    organization_access_is_set_per_team(store);
    own_slot_tokens_survive_a_restart(backend);
    team_access_is_kept_once_per_team_and_workspace(store);
    team_access_is_updated_and_removed_by_id(store);
    access_facts_are_each_teams_record_and_access(store);
    a_credential_read_with_its_team_access_agrees_with_the_two_reads(store);
    concurrent_adds_leave_one_access(store);
    // Web UI (issue 14): pages' lists, sign-ins, sessions, shown-once values.
    teams_and_members_are_listed_by_name(store);
    users_are_found_by_name_in_any_organization(store);
    a_sign_in_name_belongs_to_one_user(store);
    sessions_expire_and_end_one_by_one_or_all_at_once(store);
    a_flash_is_taken_once(store);
    sign_ins_and_sessions_survive_a_restart(backend);
    // Object storage: upload URLs issued through the gateway.
    upload_grants_are_kept_until_they_expire_or_end(store);
}

/// Fails unless `result` is the error `variant`; returns its message.
macro_rules! expect_err {
    ($result:expr, $variant:ident) => {
        match $result {
            Err(err @ StoreError::$variant(_)) => err.to_string(),
            other => panic!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

fn team_owner(team: &tokengate::store::Team) -> Owner {
    Owner::Team {
        org: team.organization.clone(),
        team_id: team.id.clone(),
    }
}

fn org_owner(org: &str) -> Owner {
    Owner::Org {
        org: org.to_owned(),
    }
}

/// A credential for `slot` as `tokens::issue` would store it (with a fake hash).
fn credential_in(slot: &str, owner: &Owner) -> Credential {
    let token = tokengate::token::format::generate(slot);
    Credential {
        token_id: token.public_id(),
        slot: slot.to_owned(),
        generation: token.generation,
        owner: owner.clone(),
        secret_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_owned(),
        created_at: Timestamp::now(),
        created_by: Some("user-test".to_owned()),
        expired_at: None,
        description: None,
        own_slot: false,
    }
}

/// A token with a slot of its own for `owner`, as `tokens::issue_own`
/// would store it (with a fake hash).
fn own_token(owner: &Owner, description: Option<&str>) -> Credential {
    let slot = tokengate::token::format::new_slot();
    Credential {
        own_slot: true,
        description: description.map(str::to_owned),
        ..credential_in(&slot, owner)
    }
}

/// The token ids `org_tokens` lists, sorted.
async fn listed(store: &dyn Store, org: &str) -> Vec<String> {
    let mut ids: Vec<String> = store
        .org_tokens(org)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.credential.token_id)
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&Credential]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|c| c.token_id.clone()).collect();
    ids.sort();
    ids
}

/// An organization `acme` and the slot of its organization token.
async fn acme_slot(store: &dyn Store) -> (Owner, String) {
    store.create_org("acme").await.unwrap();
    let owner = org_owner("acme");
    let slot = store.ensure_slot(&owner).await.unwrap();
    (owner, slot)
}

/// Records a use of `token_id` in `slot` at `millis`.
async fn touch(store: &dyn Store, slot: &str, token_id: &str, millis: i64) {
    store
        .touch_last_used(slot, token_id, Timestamp(millis))
        .await
        .unwrap();
}

async fn join_all<T: 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

async fn team_settings_change_and_unknown_teams_are_not_found(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let team = store.create_team("acme", "dev").await.unwrap();
    assert!(
        team.allow_member_token_management,
        "members manage tokens by default"
    );
    let changed = store
        .set_member_token_management(&team.id, false)
        .await
        .unwrap();
    assert!(!changed.allow_member_token_management);
    assert_eq!(store.team(&team.id).await.unwrap(), Some(changed));
    expect_err!(
        store.set_member_token_management("team-nope", true).await,
        NotFound
    );
    expect_err!(
        store.set_member_token_management("../x", true).await,
        NotFound
    );
}

async fn audit_events_are_kept_in_order_and_filtered_by_time(store: Arc<dyn Store>) {
    use tokengate::store::AuditEvent;
    assert!(store.audit_events(None, 10).await.unwrap().is_empty());
    let event = |time: i64, action: &str| AuditEvent {
        time: Timestamp(time),
        org: "acme".into(),
        actor: "user-1".into(),
        action: action.into(),
        target: "team:team-1".into(),
        token_id: Some("at-x".into()),
        detail: None,
    };
    // Two events in the same millisecond keep their order.
    for e in [
        event(1_000, "generate"),
        event(2_000, "regenerate"),
        event(2_000, "revoke"),
        event(3_000, "generate_refused"),
    ] {
        store.append_audit(&e).await.unwrap();
    }
    let all = store.audit_events(None, 100).await.unwrap();
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["generate", "regenerate", "revoke", "generate_refused"]
    );
    assert_eq!(all[0], event(1_000, "generate"));
    let since: Vec<String> = store
        .audit_events(Some(Timestamp(2_000)), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(since, ["regenerate", "revoke", "generate_refused"]);
    assert_eq!(store.audit_events(None, 2).await.unwrap().len(), 2);
    assert!(store
        .audit_events(Some(Timestamp(3_001)), 100)
        .await
        .unwrap()
        .is_empty());
}

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

async fn orgs_are_created_with_their_owners_team(store: Arc<dyn Store>) {
    let org = store.create_org("acme").await.unwrap();
    assert_eq!(org.name, "acme");
    assert_eq!(store.org("acme").await.unwrap(), Some(org.clone()));
    let owners = store
        .team(&org.owners_team_id)
        .await
        .unwrap()
        .expect("creating an organization creates its owners team");
    assert_eq!(owners.name, "owners");
    assert_eq!(owners.organization, "acme");
    assert!(owners.allow_member_token_management);
    assert_eq!(
        expect_err!(store.create_org("acme").await, AlreadyExists),
        "organization `acme` already exists"
    );
    assert_eq!(store.org("acme").await.unwrap(), Some(org.clone()));
    expect_err!(store.create_team("acme", "owners").await, AlreadyExists);
    let other = store.create_org("globex").await.unwrap();
    assert_ne!(other.owners_team_id, org.owners_team_id);
    assert_eq!(store.org("initech").await.unwrap(), None);
}

async fn names_are_validated(store: Arc<dyn Store>) {
    let too_long = "a".repeat(65);
    for bad in [
        "",
        "has space",
        "slash/name",
        "dot.ted",
        "ünïcode",
        "{tag}",
        "colon:name",
        too_long.as_str(),
    ] {
        let message = expect_err!(store.create_org(bad).await, Invalid);
        assert!(message.contains("1 to 64 letters"), "{message}");
        assert_eq!(store.org(bad).await.unwrap(), None);
    }
    store.create_org(&"a".repeat(64)).await.unwrap();
    store.create_org("Mixed_case-09").await.unwrap();
    expect_err!(
        store.create_team("Mixed_case-09", "bad name").await,
        Invalid
    );
    expect_err!(store.create_team("Mixed_case-09", "").await, Invalid);
    expect_err!(
        store.create_user("Mixed_case-09", "bad/name", &[]).await,
        Invalid
    );
    // Validation comes before any lookup.
    expect_err!(store.create_team("missing", "bad name").await, Invalid);
}

async fn team_names_are_unique_per_organization(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    store.create_org("globex").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    assert!(dev.id.starts_with("team-"), "{}", dev.id);
    assert_eq!(
        (dev.name.as_str(), dev.organization.as_str()),
        ("dev", "acme")
    );
    assert!(dev.allow_member_token_management);
    assert_eq!(store.team(&dev.id).await.unwrap(), Some(dev.clone()));
    assert_eq!(
        expect_err!(store.create_team("acme", "dev").await, AlreadyExists),
        "team `dev` in organization `acme` already exists"
    );
    let globex_dev = store.create_team("globex", "dev").await.unwrap();
    assert_ne!(globex_dev.id, dev.id);
    assert_eq!(store.team(&dev.id).await.unwrap(), Some(dev));
    assert_eq!(
        expect_err!(store.create_team("initech", "dev").await, NotFound),
        "organization `initech` not found"
    );
}

async fn users_join_only_teams_of_their_organization(store: Arc<dyn Store>) {
    let acme = store.create_org("acme").await.unwrap();
    store.create_org("globex").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let ops = store.create_team("globex", "ops").await.unwrap();

    let asked = [dev.id.clone(), acme.owners_team_id.clone(), dev.id.clone()];
    let alice = store.create_user("acme", "alice", &asked).await.unwrap();
    assert!(alice.id.starts_with("user-"), "{}", alice.id);
    assert_eq!(
        (alice.name.as_str(), alice.organization.as_str()),
        ("alice", "acme")
    );
    let mut teams = vec![dev.id.clone(), acme.owners_team_id.clone()];
    teams.sort();
    assert_eq!(alice.team_ids, teams, "each team once, sorted");
    assert_eq!(store.user(&alice.id).await.unwrap(), Some(alice.clone()));

    assert_eq!(
        expect_err!(
            store
                .create_user("acme", "bob", &[dev.id.clone(), ops.id.clone()])
                .await,
            Invalid
        ),
        format!("team `{}` belongs to another organization", ops.id)
    );
    assert_eq!(
        expect_err!(
            store
                .create_user("acme", "bob", &["team-doesnotexist".into()])
                .await,
            NotFound
        ),
        "team `team-doesnotexist` not found"
    );
    expect_err!(
        store
            .create_user("acme", "bob", &["not/a-team".into()])
            .await,
        NotFound
    );
    expect_err!(store.create_user("initech", "bob", &[]).await, NotFound);
    let loner = store.create_user("acme", "carol", &[]).await.unwrap();
    assert!(loner.team_ids.is_empty());
    assert_ne!(loner.id, alice.id);
}

async fn malformed_or_unknown_ids_find_nothing(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    for id in [
        "team-doesnotexist",
        "user-doesnotexist",
        "team-",
        "team-a/b",
        "team-{x}",
        "",
        "acme",
    ] {
        assert_eq!(store.team(id).await.unwrap(), None, "{id}");
        assert_eq!(store.user(id).await.unwrap(), None, "{id}");
    }
}

async fn each_owner_gets_one_slot_of_its_own(store: Arc<dyn Store>) {
    let acme = store.create_org("acme").await.unwrap();
    store.create_org("globex").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let alice = store.create_user("acme", "alice", &[]).await.unwrap();
    let owners = [
        team_owner(&dev),
        Owner::Team {
            org: "acme".into(),
            team_id: acme.owners_team_id,
        },
        org_owner("acme"),
        org_owner("globex"),
        Owner::User {
            org: "acme".into(),
            user_id: alice.id,
        },
    ];
    let mut slots = HashSet::new();
    for owner in &owners {
        assert_eq!(store.slot_of(owner).await.unwrap(), None);
        let slot = store.ensure_slot(owner).await.unwrap();
        tokengate::store::validate_slot(&slot).unwrap();
        assert_eq!(store.ensure_slot(owner).await.unwrap(), slot);
        assert_eq!(store.slot_of(owner).await.unwrap(), Some(slot.clone()));
        assert!(slots.insert(slot), "two owners got the same slot");
    }
}

async fn concurrent_ensure_slot_gives_one_slot_per_owner(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let owner = org_owner("acme");
    let same_owner = (0..20)
        .map(|_| {
            let (store, owner) = (store.clone(), owner.clone());
            tokio::spawn(async move { store.ensure_slot(&owner).await.unwrap() })
        })
        .collect();
    let slots: HashSet<String> = join_all(same_owner).await.into_iter().collect();
    assert_eq!(slots.len(), 1, "concurrent callers got different slots");
    assert_eq!(
        store.slot_of(&owner).await.unwrap(),
        slots.into_iter().next()
    );

    let mut teams = Vec::new();
    for i in 0..20 {
        teams.push(store.create_team("acme", &format!("t{i}")).await.unwrap());
    }
    let many_owners = teams
        .iter()
        .map(|team| {
            let (store, owner) = (store.clone(), team_owner(team));
            tokio::spawn(async move { store.ensure_slot(&owner).await.unwrap() })
        })
        .collect();
    let slots: HashSet<String> = join_all(many_owners).await.into_iter().collect();
    assert_eq!(slots.len(), 20, "two owners got the same slot");
}

async fn malformed_slots_are_refused(store: Arc<dyn Store>) {
    let (owner, slot) = acme_slot(store.as_ref()).await;
    for bad in [
        "",
        "short",
        "toolong12",
        "abc/defg",
        "{abcdef}",
        "ab cdefg",
        "abcdéfg",
    ] {
        expect_err!(store.credential(bad).await, Invalid);
        expect_err!(store.delete_credential(bad).await, Invalid);
        expect_err!(store.last_used(bad).await, Invalid);
        expect_err!(
            store.touch_last_used(bad, "at-x", Timestamp::now()).await,
            Invalid
        );
        let mut credential = credential_in(&slot, &owner);
        credential.slot = bad.to_owned();
        expect_err!(store.put_credential(&credential).await, Invalid);
    }
    assert_eq!(store.credential(&slot).await.unwrap(), None);
}

async fn put_credential_replaces_the_previous_one(store: Arc<dyn Store>) {
    let (owner, slot) = acme_slot(store.as_ref()).await;
    assert_eq!(store.credential(&slot).await.unwrap(), None);
    let first = credential_in(&slot, &owner);
    store.put_credential(&first).await.unwrap();
    assert_eq!(store.credential(&slot).await.unwrap(), Some(first.clone()));
    touch(store.as_ref(), &slot, &first.token_id, 1_000).await;
    assert_eq!(
        store.last_used(&slot).await.unwrap(),
        Some(Timestamp(1_000))
    );

    // Writing even the same credential again forgets its last use.
    store.put_credential(&first).await.unwrap();
    assert_eq!(store.last_used(&slot).await.unwrap(), None);
    touch(store.as_ref(), &slot, &first.token_id, 1_500).await;

    let mut second = credential_in(&slot, &owner);
    second.expired_at = Some(Timestamp(4_102_444_800_000));
    second.description = Some("ci".into());
    second.created_by = None;
    store.put_credential(&second).await.unwrap();
    assert_eq!(
        store.credential(&slot).await.unwrap(),
        Some(second),
        "the new credential, every field as written, and nothing of the old one"
    );
    assert_eq!(
        store.last_used(&slot).await.unwrap(),
        None,
        "a new token has not been used yet"
    );
}

async fn delete_credential_returns_what_it_deleted(store: Arc<dyn Store>) {
    let (owner, slot) = acme_slot(store.as_ref()).await;
    assert_eq!(store.delete_credential(&slot).await.unwrap(), None);
    let first = credential_in(&slot, &owner);
    store.put_credential(&first).await.unwrap();
    touch(store.as_ref(), &slot, &first.token_id, 1_000).await;
    assert_eq!(store.delete_credential(&slot).await.unwrap(), Some(first));
    assert_eq!(store.credential(&slot).await.unwrap(), None);
    assert_eq!(store.last_used(&slot).await.unwrap(), None);
    assert_eq!(store.delete_credential(&slot).await.unwrap(), None);
    assert_eq!(
        store.slot_of(&owner).await.unwrap(),
        Some(slot.clone()),
        "the owner keeps its slot"
    );
    let second = credential_in(&slot, &owner);
    store.put_credential(&second).await.unwrap();
    assert_eq!(store.credential(&slot).await.unwrap(), Some(second));
    assert_eq!(store.last_used(&slot).await.unwrap(), None);
}

async fn last_used_belongs_to_the_current_token(store: Arc<dyn Store>) {
    let (owner, slot) = acme_slot(store.as_ref()).await;
    touch(store.as_ref(), &slot, "at-nothinghere0", 500).await;
    assert_eq!(store.last_used(&slot).await.unwrap(), None, "no token");

    let first = credential_in(&slot, &owner);
    store.put_credential(&first).await.unwrap();
    assert_eq!(store.last_used(&slot).await.unwrap(), None, "never used");
    for millis in [1_000, 2_000] {
        touch(store.as_ref(), &slot, &first.token_id, millis).await;
        assert_eq!(
            store.last_used(&slot).await.unwrap(),
            Some(Timestamp(millis))
        );
    }

    let second = credential_in(&slot, &owner);
    store.put_credential(&second).await.unwrap();
    touch(store.as_ref(), &slot, &first.token_id, 3_000).await;
    assert_eq!(
        store.last_used(&slot).await.unwrap(),
        None,
        "a touch by the replaced token is not the new token's use"
    );
    touch(store.as_ref(), &slot, &second.token_id, 4_000).await;
    assert_eq!(
        store.last_used(&slot).await.unwrap(),
        Some(Timestamp(4_000))
    );
}

async fn a_late_touch_by_a_replaced_token_changes_nothing(store: Arc<dyn Store>) {
    let (owner, slot) = acme_slot(store.as_ref()).await;
    let first = credential_in(&slot, &owner);
    store.put_credential(&first).await.unwrap();
    let second = credential_in(&slot, &owner);
    store.put_credential(&second).await.unwrap();
    touch(store.as_ref(), &slot, &second.token_id, 4_000).await;
    // A request with the old token, authenticated just before the
    // regenerate, records its use late.
    touch(store.as_ref(), &slot, &first.token_id, 5_000).await;
    assert_eq!(
        store.last_used(&slot).await.unwrap(),
        Some(Timestamp(4_000))
    );
}

async fn a_rehash_replaces_only_the_credential_it_was_computed_for(store: Arc<dyn Store>) {
    let (owner, slot) = acme_slot(store.as_ref()).await;
    let first = credential_in(&slot, &owner);
    store.put_credential(&first).await.unwrap();
    assert!(store
        .replace_secret_hash(&first, "$sha256$ab")
        .await
        .unwrap());
    let rehashed = store.credential(&slot).await.unwrap().unwrap();
    assert_eq!(rehashed.secret_hash, "$sha256$ab");
    assert_eq!(
        Credential {
            secret_hash: first.secret_hash.clone(),
            ..rehashed.clone()
        },
        first,
        "nothing else changed"
    );
    // Computed for the record before the re-hash: refused, nothing changes.
    assert!(!store
        .replace_secret_hash(&first, "$sha256$cd")
        .await
        .unwrap());
    // A regenerate in between: the new token is never overwritten.
    let replaced = Credential {
        generation: "ZZZZZZ".into(),
        ..first.clone()
    };
    store.put_credential(&replaced).await.unwrap();
    assert!(!store
        .replace_secret_hash(&rehashed, "$sha256$ef")
        .await
        .unwrap());
    assert_eq!(
        store.credential(&slot).await.unwrap(),
        Some(replaced.clone())
    );
    // A revoke in between: nothing comes back.
    store.delete_credential(&slot).await.unwrap();
    assert!(!store
        .replace_secret_hash(&replaced, "$sha256$01")
        .await
        .unwrap());
    assert_eq!(store.credential(&slot).await.unwrap(), None);
}

async fn issue_then_revoke(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let owner = team_owner(&dev);
    assert_eq!(tokens::current(store.as_ref(), &owner).await.unwrap(), None);
    let first = tokens::issue(store.as_ref(), owner.clone(), TEST_SECRETS, None, None)
        .await
        .unwrap();
    let presented = PresentedToken::parse(&first.token.secret_token).unwrap();
    assert_eq!(presented.slot(), first.credential.slot);
    assert_eq!(presented.generation(), first.credential.generation);
    assert_eq!(presented.public_id(), first.credential.token_id);
    assert_eq!(
        store.credential(presented.slot()).await.unwrap(),
        Some(first.credential.clone())
    );
    assert!(tokengate::token::secret_hash::verify_token(
        &first.token.secret_token,
        &first.credential.secret_hash
    ));

    let second = tokens::issue(store.as_ref(), owner.clone(), TEST_SECRETS, None, None)
        .await
        .unwrap();
    assert_eq!(second.credential.slot, first.credential.slot);
    assert_ne!(second.credential.generation, first.credential.generation);
    assert_eq!(
        tokens::current(store.as_ref(), &owner).await.unwrap(),
        Some(second.credential.clone())
    );

    assert_eq!(
        tokens::revoke(store.as_ref(), &owner).await.unwrap(),
        Some(second.credential.clone())
    );
    assert_eq!(store.credential(presented.slot()).await.unwrap(), None);
    assert_eq!(tokens::current(store.as_ref(), &owner).await.unwrap(), None);
    assert_eq!(tokens::revoke(store.as_ref(), &owner).await.unwrap(), None);
}

async fn concurrent_issues_leave_exactly_one_credential(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let owner = team_owner(&dev);
    let tasks = (0..50)
        .map(|_| {
            let (store, owner) = (store.clone(), owner.clone());
            tokio::spawn(async move {
                tokens::issue(store.as_ref(), owner, TEST_SECRETS, None, None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let issued = join_all(tasks).await;
    let slots: HashSet<&str> = issued.iter().map(|i| i.credential.slot.as_str()).collect();
    assert_eq!(slots.len(), 1, "one owner, one slot");
    let token_ids: HashSet<&str> = issued
        .iter()
        .map(|i| i.credential.token_id.as_str())
        .collect();
    assert_eq!(token_ids.len(), 50);

    let stored = tokens::current(store.as_ref(), &owner)
        .await
        .unwrap()
        .expect("one credential is left");
    let winner = issued
        .iter()
        .find(|i| i.credential.token_id == stored.token_id)
        .expect("the stored token is one of those issued");
    assert_eq!(stored, winner.credential);
    assert_eq!(stored.generation, winner.token.generation);
    assert_eq!(
        PresentedToken::parse(&winner.token.secret_token)
            .unwrap()
            .generation(),
        stored.generation
    );
}

async fn data_survives_a_restart(backend: Backend) -> Backend {
    let store = backend.store.clone();
    let acme = store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let alice = store
        .create_user("acme", "alice", std::slice::from_ref(&dev.id))
        .await
        .unwrap();
    let owner = team_owner(&dev);
    let issued = tokens::issue(store.as_ref(), owner.clone(), TEST_SECRETS, None, None)
        .await
        .unwrap();
    let slot = issued.credential.slot.clone();
    let used_at = Timestamp(1_700_000_000_000);
    store
        .touch_last_used(&slot, &issued.credential.token_id, used_at)
        .await
        .unwrap();
    drop(store);

    let backend = backend.restart().await;
    let store = backend.store.as_ref();
    assert_eq!(store.org("acme").await.unwrap(), Some(acme.clone()));
    assert!(store.team(&acme.owners_team_id).await.unwrap().is_some());
    assert_eq!(store.team(&dev.id).await.unwrap(), Some(dev));
    assert_eq!(store.user(&alice.id).await.unwrap(), Some(alice));
    assert_eq!(store.slot_of(&owner).await.unwrap(), Some(slot.clone()));
    assert_eq!(
        store.credential(&slot).await.unwrap(),
        Some(issued.credential)
    );
    assert_eq!(store.last_used(&slot).await.unwrap(), Some(used_at));
    expect_err!(store.create_org("acme").await, AlreadyExists);
    expect_err!(store.create_team("acme", "dev").await, AlreadyExists);
    backend
}

async fn corrupt_records_are_reported_as_corrupt(backend: Backend) -> Backend {
    let (owner, slot) = acme_slot(backend.store.as_ref()).await;
    backend
        .store
        .put_credential(&credential_in(&slot, &owner))
        .await
        .unwrap();
    let backend = backend.corrupt_credential(&slot).await;
    let store = backend.store.as_ref();
    match store.credential(&slot).await {
        Err(StoreError::Corrupt { key, .. }) => assert!(key.contains(&slot), "{key}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        matches!(
            store.delete_credential(&slot).await,
            Err(StoreError::Corrupt { .. })
        ),
        "deleting reports what it could not decode"
    );
    assert_eq!(
        store.credential(&slot).await.unwrap(),
        None,
        "and deletes it all the same"
    );
    backend
}

// What only the embedded backend has.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_creates_its_directories_and_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/tokengate.db");
    let store = EmbeddedStore::open(&path).unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.path(), path);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file holds token hashes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_file_is_refused_to_a_second_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_embedded_config(dir.path(), "http://127.0.0.1:9", "./data/tg.db", "");
    let path = dir.path().join("data/tg.db");
    let store = EmbeddedStore::open(&path).unwrap();

    let message = expect_err!(EmbeddedStore::open(&path), Unavailable);
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("already in use"), "{message}");

    let cli = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["org", "create", "--config"])
            .arg(&config)
            .arg("acme")
            .output()
    };
    let output = cli().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("already in use") && stderr.contains("tg.db"),
        "{stderr}"
    );

    drop(store);
    let output = cli().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let store = EmbeddedStore::open(&path).unwrap();
    assert!(store.org("acme").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_gateway_forwards_team_tokens_and_refuses_org_applies() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = TestGateway::start_embedded(dir.path(), &upstream.url()).await;
    assert!(dir.path().join("data/tokengate.db").exists());
    let store = gateway.store();
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    manage_all_workspaces(store, &dev.id).await;

    let team_token = gateway.issue(team_owner(&dev)).await;
    let response = send_raw(
        gateway.addr,
        RawRequest::new("GET", "/api/v2/workspaces/ws-1").token(&team_token),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = upstream.last();
    assert_eq!(seen.target, "/api/v2/workspaces/ws-1");
    assert_eq!(seen.header("x-tokengate-kind"), Some("team"));
    assert_eq!(seen.header("x-tokengate-team"), Some(dev.id.as_str()));
    assert_eq!(seen.header("authorization"), None);

    let org_token = gateway.issue(org_owner("acme")).await;
    let response = send_raw(
        gateway.addr,
        RawRequest::new("POST", "/api/v2/runs/run-abc/actions/apply")
            .token(&org_token)
            .body(b"{}"),
    )
    .await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(
        upstream.count(),
        1,
        "the upstream must never see an org apply"
    );

    tokens::revoke(store, &team_owner(&dev)).await.unwrap();
    let response = send_raw(
        gateway.addr,
        RawRequest::new("GET", "/api/v2/workspaces/ws-1").token(&team_token),
    )
    .await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(upstream.count(), 1);
    gateway.stop().await;
}

// --- Token API (issue 12) -------------------------------------------------

async fn tokens_with_their_own_slot_coexist_and_are_listed(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    store.create_org("globex").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let ops = store.create_team("acme", "ops").await.unwrap();
    let alice = store.create_user("acme", "alice", &[]).await.unwrap();
    assert_eq!(store.org_tokens("acme").await.unwrap(), Vec::new());

    let legacy = tokens::issue(store.as_ref(), team_owner(&dev), TEST_SECRETS, None, None)
        .await
        .unwrap()
        .credential;
    let org_token = tokens::issue(store.as_ref(), org_owner("acme"), TEST_SECRETS, None, None)
        .await
        .unwrap()
        .credential;
    let a = own_token(&team_owner(&dev), Some("ci"));
    let b = own_token(&team_owner(&dev), Some("deploy"));
    let c = own_token(&team_owner(&ops), Some("ci"));
    let user = Owner::User {
        org: "acme".into(),
        user_id: alice.id.clone(),
    };
    let u1 = own_token(&user, None);
    let u2 = own_token(&user, Some("laptop"));
    for token in [&a, &b, &c, &u1, &u2] {
        store.insert_token(token).await.unwrap();
        assert_eq!(
            store.credential(&token.slot).await.unwrap().as_ref(),
            Some(token),
            "stored as written"
        );
    }
    // A slot is claimed once, by anyone.
    let mut again = own_token(&team_owner(&ops), Some("other"));
    again.slot = a.slot.clone();
    expect_err!(store.insert_token(&again).await, Invalid);
    again.slot = legacy.slot.clone();
    expect_err!(store.insert_token(&again).await, Invalid);
    // Only tokens with their own slot, never the organization's.
    let mut not_own = own_token(&team_owner(&ops), Some("x"));
    not_own.own_slot = false;
    expect_err!(store.insert_token(&not_own).await, Invalid);
    expect_err!(
        store
            .insert_token(&own_token(&org_owner("acme"), None))
            .await,
        Invalid
    );
    assert_eq!(store.credential(&a.slot).await.unwrap(), Some(a.clone()));

    assert_eq!(
        listed(store.as_ref(), "acme").await,
        sorted(&[&legacy, &org_token, &a, &b, &c, &u1, &u2])
    );
    assert_eq!(listed(store.as_ref(), "globex").await, Vec::<String>::new());
    assert_eq!(
        listed(store.as_ref(), "no-such-org").await,
        Vec::<String>::new()
    );
    assert_eq!(listed(store.as_ref(), "{bad}").await, Vec::<String>::new());

    // Last use is listed per token.
    touch(store.as_ref(), &b.slot, &b.token_id, 5_000).await;
    let tokens = store.org_tokens("acme").await.unwrap();
    for token in tokens {
        let expected = (token.credential.token_id == b.token_id).then_some(Timestamp(5_000));
        assert_eq!(token.last_used, expected, "{}", token.credential.token_id);
    }
    // Regenerating the legacy token leaves the described ones alone.
    let regenerated = tokens::issue(store.as_ref(), team_owner(&dev), TEST_SECRETS, None, None)
        .await
        .unwrap()
        .credential;
    assert_eq!(
        listed(store.as_ref(), "acme").await,
        sorted(&[&regenerated, &org_token, &a, &b, &c, &u1, &u2])
    );
}

async fn descriptions_are_unique_per_team_and_freed_by_a_delete(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let ops = store.create_team("acme", "ops").await.unwrap();
    let first = own_token(&team_owner(&dev), Some("ci"));
    store.insert_token(&first).await.unwrap();
    let duplicate = own_token(&team_owner(&dev), Some("ci"));
    let message = expect_err!(store.insert_token(&duplicate).await, AlreadyExists);
    assert!(message.contains("`ci`"), "{message}");
    assert_eq!(
        store.credential(&duplicate.slot).await.unwrap(),
        None,
        "nothing of a refused token is stored"
    );
    assert_eq!(listed(store.as_ref(), "acme").await, sorted(&[&first]));
    // Another team may use the same description; an empty one is a description too.
    store
        .insert_token(&own_token(&team_owner(&ops), Some("ci")))
        .await
        .unwrap();
    store
        .insert_token(&own_token(&team_owner(&dev), Some("")))
        .await
        .unwrap();
    expect_err!(
        store
            .insert_token(&own_token(&team_owner(&dev), Some("")))
            .await,
        AlreadyExists
    );
    // Deleting the token frees its description.
    store
        .delete_token(&first.slot, &first.token_id)
        .await
        .unwrap()
        .unwrap();
    let reuse = own_token(&team_owner(&dev), Some("ci"));
    store.insert_token(&reuse).await.unwrap();

    // Concurrent creations with one description: exactly one wins.
    let tasks = (0..10)
        .map(|_| {
            let (store, owner) = (store.clone(), team_owner(&ops));
            tokio::spawn(async move {
                store
                    .insert_token(&own_token(&owner, Some("race")))
                    .await
                    .is_ok()
            })
        })
        .collect();
    let won = join_all(tasks).await.into_iter().filter(|ok| *ok).count();
    assert_eq!(won, 1, "one description, one token");
}

async fn delete_token_deletes_only_the_token_it_names(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let a = own_token(&team_owner(&dev), Some("a"));
    let b = own_token(&team_owner(&dev), Some("b"));
    store.insert_token(&a).await.unwrap();
    store.insert_token(&b).await.unwrap();
    touch(store.as_ref(), &a.slot, &a.token_id, 1_000).await;
    // Another token's id, or an unknown slot: nothing happens.
    assert_eq!(
        store.delete_token(&a.slot, &b.token_id).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_token(&tokengate::token::format::new_slot(), &a.token_id)
            .await
            .unwrap(),
        None
    );
    expect_err!(store.delete_token("bad/slot", &a.token_id).await, Invalid);
    assert_eq!(store.credential(&a.slot).await.unwrap(), Some(a.clone()));

    assert_eq!(
        store.delete_token(&a.slot, &a.token_id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.credential(&a.slot).await.unwrap(), None);
    assert_eq!(store.last_used(&a.slot).await.unwrap(), None);
    assert_eq!(store.credential(&b.slot).await.unwrap(), Some(b.clone()));
    assert_eq!(listed(store.as_ref(), "acme").await, sorted(&[&b]));
    assert_eq!(
        store.delete_token(&a.slot, &a.token_id).await.unwrap(),
        None
    );

    // A legacy token by id: only the generation named.
    let old = tokens::issue(store.as_ref(), team_owner(&dev), TEST_SECRETS, None, None)
        .await
        .unwrap()
        .credential;
    let new = tokens::issue(store.as_ref(), team_owner(&dev), TEST_SECRETS, None, None)
        .await
        .unwrap()
        .credential;
    assert_eq!(
        store.delete_token(&old.slot, &old.token_id).await.unwrap(),
        None,
        "a replaced token's id deletes nothing"
    );
    assert_eq!(
        store.delete_token(&new.slot, &new.token_id).await.unwrap(),
        Some(new.clone())
    );
    assert_eq!(store.credential(&new.slot).await.unwrap(), None);
    assert_eq!(listed(store.as_ref(), "acme").await, sorted(&[&b]));
}

async fn clamp_expiry_only_shortens_the_current_token(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let token = own_token(&team_owner(&dev), Some("ci"));
    store.insert_token(&token).await.unwrap();
    assert!(store.clamp_expiry(&token, Timestamp(9_000)).await.unwrap());
    let clamped = store.credential(&token.slot).await.unwrap().unwrap();
    assert_eq!(clamped.expired_at, Some(Timestamp(9_000)));
    assert_eq!(
        Credential {
            expired_at: None,
            ..clamped.clone()
        },
        token,
        "nothing else changes"
    );
    // Not against a stale copy, never later, and not a deleted token.
    assert!(!store.clamp_expiry(&token, Timestamp(8_000)).await.unwrap());
    assert!(!store
        .clamp_expiry(&clamped, Timestamp(10_000))
        .await
        .unwrap());
    assert!(store
        .clamp_expiry(&clamped, Timestamp(8_000))
        .await
        .unwrap());
    let current = store.credential(&token.slot).await.unwrap().unwrap();
    store
        .delete_token(&current.slot, &current.token_id)
        .await
        .unwrap();
    assert!(!store.clamp_expiry(&current, Timestamp(1)).await.unwrap());
    assert_eq!(store.credential(&token.slot).await.unwrap(), None);
}

async fn token_settings_are_replaced_only_when_unchanged(store: Arc<dyn Store>) {
    let acme = store.create_org("acme").await.unwrap();
    let defaults = tokengate::store::TokenSettings::default();
    assert_eq!(acme.token_settings, defaults);
    assert!(defaults.user_tokens_enabled);
    let mut stricter = defaults.clone();
    stricter.user_tokens_enabled = false;
    stricter
        .max_ttl_ms
        .set(tokengate::store::TokenType::Team, Some(60_000));
    assert!(store
        .replace_token_settings("acme", &defaults, &stricter)
        .await
        .unwrap());
    let read = store.org("acme").await.unwrap().unwrap();
    assert_eq!(read.token_settings, stricter);
    assert_eq!(read.owners_team_id, acme.owners_team_id);
    // A writer that read the old settings loses.
    assert!(!store
        .replace_token_settings("acme", &defaults, &defaults)
        .await
        .unwrap());
    assert_eq!(
        store.org("acme").await.unwrap().unwrap().token_settings,
        stricter
    );
    expect_err!(
        store
            .replace_token_settings("nope", &defaults, &stricter)
            .await,
        NotFound
    );
}

async fn organization_access_is_set_per_team(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let ops = store.create_team("acme", "ops").await.unwrap();
    assert_eq!(dev.organization_access, Default::default());
    let access = tokengate::store::OrganizationAccess {
        manage_teams: true,
        ..Default::default()
    };
    let changed = store
        .set_organization_access(&dev.id, access)
        .await
        .unwrap();
    assert!(changed.organization_access.manage_teams);
    assert_eq!(store.team(&dev.id).await.unwrap(), Some(changed));
    assert_eq!(store.team(&ops.id).await.unwrap(), Some(ops));
    expect_err!(
        store
            .set_organization_access("team-doesnotexist", access)
            .await,
        NotFound
    );
}

async fn own_slot_tokens_survive_a_restart(backend: Backend) -> Backend {
    let store = backend.store.clone();
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let a = own_token(&team_owner(&dev), Some("ci"));
    store.insert_token(&a).await.unwrap();
    drop(store);
    let backend = backend.restart().await;
    let store = backend.store.as_ref();
    assert_eq!(store.credential(&a.slot).await.unwrap(), Some(a.clone()));
    assert_eq!(listed(store, "acme").await, sorted(&[&a]));
    expect_err!(
        store
            .insert_token(&own_token(&team_owner(&dev), Some("ci")))
            .await,
        AlreadyExists
    );
    backend
}

/// Two gateways sharing one Redis: deleting one described token of a
/// team's several fails exactly it, on the very next request, on both;
/// the team's other tokens keep working on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_described_token_of_several_deleted_fails_at_once_on_every_replica() {
    let world = World::new().await;
    let config = world.dir.path().join("tokengate.yaml");
    let second = TestGateway::start(&config).await;
    let owner = world.team_owner();
    let issue = |description: &str| {
        let owner = owner.clone();
        let description = description.to_owned();
        let store = world.store();
        async move {
            tokens::issue_own(store, owner, TEST_SECRETS, None, None, Some(description))
                .await
                .unwrap()
        }
    };
    let a = issue("a").await;
    let b = issue("b").await;
    let c = issue("c").await;
    let legacy = world.gateway.issue(owner.clone()).await;
    let status = |addr, token: String| async move {
        send_raw(
            addr,
            RawRequest::new("GET", "/api/v2/workspaces").token(&token),
        )
        .await
        .status
    };
    let replicas = [world.gateway.addr, second.addr];
    for addr in replicas {
        for token in [&a, &b, &c] {
            assert_eq!(status(addr, token.token.secret_token.clone()).await, 200);
        }
    }
    // Deleted through the first replica's token API, by id.
    let user = world
        .store()
        .create_user("acme", "mia", std::slice::from_ref(&world.team_id))
        .await
        .unwrap();
    let user_token = world
        .gateway
        .issue(Owner::User {
            org: "acme".into(),
            user_id: user.id,
        })
        .await;
    let deleted = send_raw(
        world.gateway.addr,
        RawRequest::new(
            "DELETE",
            &format!("/api/v2/authentication-tokens/{}", b.credential.token_id),
        )
        .token(&user_token),
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    for addr in replicas.into_iter().rev() {
        assert_eq!(
            status(addr, b.token.secret_token.clone()).await,
            401,
            "the deleted token fails on the next request on {addr}"
        );
        for token in [&a.token.secret_token, &c.token.secret_token, &legacy] {
            assert_eq!(status(addr, token.clone()).await, 200, "on {addr}");
        }
    }
    second.stop().await;
}

/// The same on the embedded store (one process: one gateway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_described_token_of_several_deleted_fails_at_once_on_the_embedded_store() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = TestGateway::start_embedded(dir.path(), &upstream.url()).await;
    let store = gateway.store();
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let mut issued = Vec::new();
    for description in ["a", "b", "c"] {
        issued.push(
            tokens::issue_own(
                store,
                team_owner(&dev),
                TEST_SECRETS,
                None,
                None,
                Some(description.into()),
            )
            .await
            .unwrap(),
        );
    }
    let status = |token: &str| {
        let token = token.to_owned();
        async move {
            send_raw(
                gateway.addr,
                RawRequest::new("GET", "/api/v2/workspaces").token(&token),
            )
            .await
            .status
        }
    };
    for token in &issued {
        assert_eq!(status(&token.token.secret_token).await, 200);
    }
    tokens::delete_audited(store, &issued[1].credential, "test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(&issued[1].token.secret_token).await, 401);
    assert_eq!(status(&issued[0].token.secret_token).await, 200);
    assert_eq!(status(&issued[2].token.secret_token).await, 200);
    gateway.stop().await;
}
