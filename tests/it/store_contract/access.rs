//! The store contract of team workspace access (`team-workspaces`): one
//! access per team and workspace, by id, per workspace and per team; the
//! request path's one read (`access_facts`); organization-level
//! permissions. Run on both backends by `contract_tests!` in the parent.

use std::sync::Arc;
use tokengate::access::model::{AccessLevel, Permissions, Runs, StateVersions};
use tokengate::store::{OrganizationAccess, Store, StoreError, TeamAccess};

fn read_access(team: &str, ws: &str) -> TeamAccess {
    TeamAccess::new(
        team,
        ws,
        "acme",
        AccessLevel::Read,
        Permissions::CUSTOM_DEFAULT,
    )
}

pub async fn team_access_is_kept_once_per_team_and_workspace(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let ops = store.create_team("acme", "ops").await.unwrap();
    let access = read_access(&dev.id, "ws-1");
    store.add_team_access(&access).await.unwrap();
    assert_eq!(
        store.team_access(&access.id).await.unwrap(),
        Some(access.clone())
    );
    // A second access of the same team to the same workspace is refused,
    // and leaves the first one as it was.
    let again = read_access(&dev.id, "ws-1");
    match store.add_team_access(&again).await {
        Err(StoreError::AlreadyExists(what)) => assert!(what.contains(&dev.id), "{what}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.team_access(&again.id).await.unwrap(), None);
    assert_eq!(
        store.team_access(&access.id).await.unwrap(),
        Some(access.clone())
    );
    // Other teams and other workspaces are separate.
    let ops_access = read_access(&ops.id, "ws-1");
    let other_ws = read_access(&dev.id, "ws-2");
    store.add_team_access(&ops_access).await.unwrap();
    store.add_team_access(&other_ws).await.unwrap();
    let on_ws1 = store.workspace_team_accesses("ws-1").await.unwrap();
    let mut expected = vec![access.clone(), ops_access.clone()];
    expected.sort_by(|a, b| a.team_id.cmp(&b.team_id));
    assert_eq!(on_ws1, expected);
    assert_eq!(
        store.team_accesses(&dev.id).await.unwrap(),
        vec![access.clone(), other_ws.clone()]
    );
    assert!(store
        .workspace_team_accesses("ws-9")
        .await
        .unwrap()
        .is_empty());
    assert!(store.team_accesses("team-nobody").await.unwrap().is_empty());
}

pub async fn team_access_is_updated_and_removed_by_id(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let access = read_access(&dev.id, "ws-1");
    store.add_team_access(&access).await.unwrap();
    let custom = TeamAccess {
        access: AccessLevel::Custom,
        permissions: Permissions {
            runs: Runs::Plan,
            state_versions: StateVersions::ReadOutputs,
            ..Permissions::CUSTOM_DEFAULT
        },
        ..access.clone()
    };
    store.update_team_access(&custom).await.unwrap();
    assert_eq!(
        store.team_access(&access.id).await.unwrap(),
        Some(custom.clone())
    );
    let removed = store.remove_team_access(&access.id).await.unwrap();
    assert_eq!(removed, Some(custom.clone()));
    assert_eq!(store.team_access(&access.id).await.unwrap(), None);
    assert!(store
        .workspace_team_accesses("ws-1")
        .await
        .unwrap()
        .is_empty());
    assert!(store.team_accesses(&dev.id).await.unwrap().is_empty());
    assert_eq!(store.remove_team_access(&access.id).await.unwrap(), None);
    // Updating what was removed is NotFound, and does not bring it back.
    match store.update_team_access(&custom).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.team_access(&access.id).await.unwrap(), None);
    // After a removal the team can be given access again, under a new id;
    // the old id does not reach it.
    let fresh = read_access(&dev.id, "ws-1");
    store.add_team_access(&fresh).await.unwrap();
    assert_eq!(store.team_access(&access.id).await.unwrap(), None);
    assert_eq!(store.remove_team_access(&access.id).await.unwrap(), None);
    assert_eq!(store.team_access(&fresh.id).await.unwrap(), Some(fresh));
    // Malformed ids find nothing and are refused before any key is built.
    assert_eq!(store.team_access("tws-../x").await.unwrap(), None);
    assert_eq!(store.remove_team_access("nope").await.unwrap(), None);
    let mut bad = read_access(&dev.id, "ws-1}");
    assert!(matches!(
        store.add_team_access(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    bad.workspace_id = "ws-1".into();
    bad.team_id = "team-{x}".into();
    assert!(matches!(
        store.add_team_access(&bad).await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn access_facts_are_each_teams_record_and_access(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let ops = store.create_team("acme", "ops").await.unwrap();
    let access = read_access(&dev.id, "ws-1");
    store.add_team_access(&access).await.unwrap();
    let managers = OrganizationAccess {
        manage_workspaces: true,
        ..OrganizationAccess::default()
    };
    let ops = store
        .set_organization_access(&ops.id, managers)
        .await
        .unwrap();
    assert!(ops.organization_access.manage_workspaces);
    assert_eq!(store.team(&ops.id).await.unwrap(), Some(ops.clone()));
    let teams = vec![
        dev.id.clone(),
        ops.id.clone(),
        "team-gone".to_owned(),
        "../x".to_owned(),
    ];
    let facts = store.access_facts(&teams, Some("ws-1")).await.unwrap();
    assert_eq!(
        facts.len(),
        2,
        "unknown and malformed teams are left out: {facts:?}"
    );
    assert_eq!(facts[0].team, dev);
    assert_eq!(facts[0].access, Some(access.clone()));
    assert_eq!(facts[1].team, ops);
    assert_eq!(facts[1].access, None);
    let elsewhere = store.access_facts(&teams, Some("ws-2")).await.unwrap();
    assert!(elsewhere.iter().all(|f| f.access.is_none()));
    let teams_only = store.access_facts(&teams, None).await.unwrap();
    assert_eq!(teams_only.len(), 2);
    assert!(teams_only.iter().all(|f| f.access.is_none()));
    assert!(store
        .access_facts(&[], Some("ws-1"))
        .await
        .unwrap()
        .is_empty());
    match store.set_organization_access("team-nope", managers).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

pub async fn concurrent_adds_leave_one_access(store: Arc<dyn Store>) {
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let access = read_access(&dev.id, "ws-1");
        tasks.push(tokio::spawn(async move {
            store.add_team_access(&access).await.map(|()| access.id)
        }));
    }
    let mut added = Vec::new();
    for task in tasks {
        if let Ok(id) = task.await.unwrap() {
            added.push(id);
        }
    }
    assert_eq!(added.len(), 1, "{added:?}");
    let kept = store.workspace_team_accesses("ws-1").await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id, added[0]);
}

/// The request path's combined read gives exactly what its two reads give:
/// the credential, and for a team's (legacy or described) token the team's
/// facts for the workspace; for other tokens and unknown slots no facts. A
/// change of access shows in the next read.
pub async fn a_credential_read_with_its_team_access_agrees_with_the_two_reads(
    store: Arc<dyn Store>,
) {
    use tokengate::store::Owner;
    use tokengate::token::lifecycle as tokens;
    let secrets = crate::harness::TEST_SECRETS;
    store.create_org("acme").await.unwrap();
    let dev = store.create_team("acme", "dev").await.unwrap();
    let ops = store.create_team("acme", "ops").await.unwrap();
    let access = read_access(&dev.id, "ws-1");
    store.add_team_access(&access).await.unwrap();
    let team = |team_id: &str| Owner::Team {
        org: "acme".into(),
        team_id: team_id.to_owned(),
    };
    let dev_token = tokens::issue(&*store, team(&dev.id), secrets, None, None)
        .await
        .unwrap();
    let ops_token = tokens::issue_own(
        &*store,
        team(&ops.id),
        secrets,
        None,
        None,
        Some("ci".into()),
    )
    .await
    .unwrap();
    let org_token = tokens::issue(
        &*store,
        Owner::Org { org: "acme".into() },
        secrets,
        None,
        None,
    )
    .await
    .unwrap();
    for issued in [&dev_token, &ops_token, &org_token] {
        let slot = &issued.credential.slot;
        for workspace in ["ws-1", "ws-2", "../x"] {
            let read = store.credential_with_access(slot, workspace).await.unwrap();
            assert_eq!(read.credential, store.credential(slot).await.unwrap());
            let expected = match &issued.credential.owner {
                Owner::Team { team_id, .. } => Some(
                    store
                        .access_facts(std::slice::from_ref(team_id), Some(workspace))
                        .await
                        .unwrap(),
                ),
                _ => None,
            };
            assert_eq!(read.team_facts, expected, "{slot} {workspace}");
        }
    }
    let dev_read = store
        .credential_with_access(&dev_token.credential.slot, "ws-1")
        .await
        .unwrap();
    let facts = dev_read.team_facts.unwrap();
    assert_eq!(facts.len(), 1);
    assert_eq!(facts[0].team, dev);
    assert_eq!(facts[0].access, Some(access.clone()));
    // Removed: the next read sees no access.
    store.remove_team_access(&access.id).await.unwrap();
    let after = store
        .credential_with_access(&dev_token.credential.slot, "ws-1")
        .await
        .unwrap();
    assert_eq!(after.team_facts.unwrap()[0].access, None);
    // Unknown and malformed slots.
    let unknown = store
        .credential_with_access("AAAAAAAA", "ws-1")
        .await
        .unwrap();
    assert_eq!((unknown.credential, unknown.team_facts), (None, None));
    assert!(store.credential_with_access("../x", "ws-1").await.is_err());
}
