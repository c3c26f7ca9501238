//! The store contract of the web UI's records: the lists its pages show
//! (an organization's teams, a team's members, users by name), sign-ins
//! (a sign-in name is held by one user), sessions (expire, end one by one
//! or all of a user's at once, survive a restart) and the shown-once
//! flash (taken by exactly one of many concurrent readers). Run on both
//! backends by `contract_tests!` in the parent.

use std::sync::Arc;
use tokengate::store::{Login, Store, StoreError, Timestamp, UiSession};

fn key(n: u8) -> String {
    format!("{:064x}", u64::from(n) + 0xfeed)
}

fn session(user_id: &str, ttl_ms: u64) -> UiSession {
    let now = Timestamp::now();
    UiSession {
        user_id: user_id.to_owned(),
        created_at: now,
        last_seen: now,
        expires_at: now.plus_millis(ttl_ms),
        csrf: "csrf-token".into(),
    }
}

fn login(name: &str, user_id: &str, hash: &str) -> Login {
    Login {
        name: name.to_owned(),
        user_id: user_id.to_owned(),
        password_hash: hash.to_owned(),
        updated_at: Timestamp::now(),
    }
}

pub async fn teams_and_members_are_listed_by_name(store: Arc<dyn Store>) {
    let org = store.create_org("acme").await.unwrap();
    store.create_org("initech").await.unwrap();
    let ops = store.create_team("acme", "ops").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    store.create_team("initech", "elsewhere").await.unwrap();
    let names: Vec<String> = store
        .org_teams("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["dev", "ops", "owners"]);
    assert!(store.org_teams("nobody").await.unwrap().is_empty());
    assert!(store.org_teams("bad/name").await.unwrap().is_empty());

    let zoe = store
        .create_user("acme", "zoe", &[dev.id.clone(), ops.id.clone()])
        .await
        .unwrap();
    let amy = store
        .create_user("acme", "amy", std::slice::from_ref(&dev.id))
        .await
        .unwrap();
    store
        .create_user("acme", "owner", std::slice::from_ref(&org.owners_team_id))
        .await
        .unwrap();
    let members = store.team_members(&dev.id).await.unwrap();
    assert_eq!(members, [amy, zoe.clone()]);
    assert_eq!(store.team_members(&ops.id).await.unwrap(), [zoe]);
    assert!(store.team_members("team-unknown").await.unwrap().is_empty());
    assert!(store.team_members("not/a-team").await.unwrap().is_empty());
}

pub async fn users_are_found_by_name_in_any_organization(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    store.create_org("initech").await.unwrap();
    let a = store.create_user("acme", "Alice", &[]).await.unwrap();
    let b = store.create_user("initech", "alice", &[]).await.unwrap();
    store.create_user("acme", "bob", &[]).await.unwrap();
    let found = store.users_named("ALICE").await.unwrap();
    assert_eq!(found, [a, b]);
    assert!(store.users_named("carol").await.unwrap().is_empty());
    assert!(store.users_named("bad name").await.unwrap().is_empty());
}

pub async fn a_sign_in_name_belongs_to_one_user(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let alice = store.create_user("acme", "alice", &[]).await.unwrap();
    let other = store.create_user("acme", "Alice", &[]).await.unwrap();
    assert_eq!(store.login("alice").await.unwrap(), None);
    store
        .set_login(&login("Alice", &alice.id, "$argon2id$one"))
        .await
        .unwrap();
    // Names are compared without case and kept in lower case.
    let stored = store.login("ALICE").await.unwrap().unwrap();
    assert_eq!(stored.name, "alice");
    assert_eq!(stored.user_id, alice.id);
    assert_eq!(stored.password_hash, "$argon2id$one");
    // The same user replaces their hash; another user cannot take the name.
    store
        .set_login(&login("alice", &alice.id, "$argon2id$two"))
        .await
        .unwrap();
    match store
        .set_login(&login("alice", &other.id, "$argon2id$theirs"))
        .await
    {
        Err(StoreError::AlreadyExists(what)) => assert!(what.contains(&alice.id), "{what}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let stored = store.login("alice").await.unwrap().unwrap();
    assert_eq!(
        (stored.user_id.as_str(), stored.password_hash.as_str()),
        (alice.id.as_str(), "$argon2id$two")
    );
    assert!(matches!(
        store.set_login(&login("bad name", &alice.id, "x")).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.login("bad name").await.unwrap(), None);
}

pub async fn sessions_expire_and_end_one_by_one_or_all_at_once(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let alice = store.create_user("acme", "alice", &[]).await.unwrap();
    let bob = store.create_user("acme", "bob", &[]).await.unwrap();
    let (a1, a2, b1, short) = (key(1), key(2), key(3), key(4));
    let long = session(&alice.id, 60_000);
    store.put_ui_session(&a1, &long).await.unwrap();
    store.put_ui_session(&a2, &long).await.unwrap();
    store
        .put_ui_session(&b1, &session(&bob.id, 60_000))
        .await
        .unwrap();
    store
        .put_ui_session(&short, &session(&alice.id, 150))
        .await
        .unwrap();
    assert_eq!(store.ui_session(&a1).await.unwrap(), Some(long.clone()));
    assert!(store.ui_session(&short).await.unwrap().is_some());
    // Replacing a session (a touch) keeps it under the same key.
    let touched = UiSession {
        last_seen: Timestamp::now(),
        ..long.clone()
    };
    store.put_ui_session(&a1, &touched).await.unwrap();
    assert_eq!(store.ui_session(&a1).await.unwrap(), Some(touched));

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(store.ui_session(&short).await.unwrap(), None, "expired");

    assert!(store.delete_ui_session(&a2).await.unwrap());
    assert!(!store.delete_ui_session(&a2).await.unwrap());
    assert_eq!(store.ui_session(&a2).await.unwrap(), None);
    store.put_ui_session(&a2, &long).await.unwrap();
    // Signing out everywhere ends every session of alice, none of bob's.
    assert_eq!(store.delete_user_ui_sessions(&alice.id).await.unwrap(), 2);
    assert_eq!(store.ui_session(&a1).await.unwrap(), None);
    assert_eq!(store.ui_session(&a2).await.unwrap(), None);
    assert!(store.ui_session(&b1).await.unwrap().is_some());
    assert_eq!(store.delete_user_ui_sessions(&alice.id).await.unwrap(), 0);

    // Malformed keys and ids find nothing and are refused for writes.
    assert_eq!(store.ui_session("nothex").await.unwrap(), None);
    assert!(!store.delete_ui_session("../x").await.unwrap());
    assert!(matches!(
        store.put_ui_session("short", &long).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.delete_user_ui_sessions("nobody").await.unwrap(), 0);
}

pub async fn a_flash_is_taken_once(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let alice = store.create_user("acme", "alice", &[]).await.unwrap();
    let k = key(7);
    store
        .put_ui_session(&k, &session(&alice.id, 60_000))
        .await
        .unwrap();
    assert_eq!(store.take_ui_flash(&k).await.unwrap(), None);
    let later = Timestamp::now().plus_millis(60_000);
    store.put_ui_flash(&k, "first", later).await.unwrap();
    store.put_ui_flash(&k, "second", later).await.unwrap();
    // Ten concurrent readers: exactly one gets the value.
    let takers: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move { store.take_ui_flash(&k).await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for taker in takers {
        got.extend(taker.await.unwrap());
    }
    assert_eq!(got, ["second"]);
    // An expired value is never given out.
    store
        .put_ui_flash(&k, "stale", Timestamp::now().plus_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(store.take_ui_flash(&k).await.unwrap(), None);
    // Ending the session drops its value.
    store.put_ui_flash(&k, "kept", later).await.unwrap();
    store.delete_ui_session(&k).await.unwrap();
    assert_eq!(store.take_ui_flash(&k).await.unwrap(), None);
}

pub async fn sign_ins_and_sessions_survive_a_restart(backend: super::Backend) -> super::Backend {
    let store = backend.store.clone();
    store.create_org("acme").await.unwrap();
    let alice = store.create_user("acme", "alice", &[]).await.unwrap();
    store
        .set_login(&login("alice", &alice.id, "$argon2id$h"))
        .await
        .unwrap();
    let s = session(&alice.id, 60_000);
    store.put_ui_session(&key(9), &s).await.unwrap();
    drop(store);
    let backend = backend.restart().await;
    let store = backend.store.clone();
    assert_eq!(
        store.login("alice").await.unwrap().map(|l| l.user_id),
        Some(alice.id.clone())
    );
    assert_eq!(store.ui_session(&key(9)).await.unwrap(), Some(s));
    assert_eq!(store.users_named("alice").await.unwrap(), [alice]);
    drop(store);
    backend
}
