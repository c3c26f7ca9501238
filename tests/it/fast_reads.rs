//! The request path's fast reads (`src/store/redis/fast_reads.rs`) against
//! a real redis-server: many reads in flight on one worker each get their
//! own values, also when some are abandoned mid-flight; a read never gets
//! the answer to a command sent before it began; a restarted or frozen
//! Redis costs no more than on the usual path, and the fast connection
//! comes back; ACL user, password and database are used as the usual
//! connection uses them; reads started together reach Redis in one write.

use crate::harness::*;
use crate::redis_harness::*;
use std::time::{Duration, Instant};
use tokengate::access::model::{AccessLevel, Permissions};
use tokengate::store::redis::{RedisOptions, RedisStore, Secret, Topology};
use tokengate::store::{Credential, Owner, Store, StoreError, TeamAccess};
use tokengate::token::lifecycle as tokens;

/// Polls `call` once (so that it sends its read), then drops it; false
/// when it answered at once.
async fn abandon<F: std::future::Future>(call: F) -> bool {
    let mut call = std::pin::pin!(call);
    std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx).is_pending())).await
}

/// Reads `slot` until a read is answered on a fast connection after at
/// least `opened` of them were opened (the first read of a worker opens
/// one in the background).
async fn until_fast(store: &RedisStore, slot: &str, opened: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let before = store.fast_reads_opened_and_served();
        store.credential(slot).await.unwrap();
        let after = store.fast_reads_opened_and_served();
        if before.0 >= opened && after.1 > before.1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no fast read within 10 s: {:?}",
        store.fast_reads_opened_and_served()
    );
}

/// `count` tokens, each in a slot of its own: every other one a described
/// token of a team with access to "ws-1" (whose reads include the team's
/// access), the others of organizations of their own.
async fn tokens_of_their_own(store: &RedisStore, count: usize) -> Vec<Credential> {
    store.create_org("acme").await.unwrap();
    let team = store.create_team("acme", "dev").await.unwrap();
    store
        .add_team_access(&TeamAccess::new(
            &team.id,
            "ws-1",
            "acme",
            AccessLevel::Read,
            Permissions::CUSTOM_DEFAULT,
        ))
        .await
        .unwrap();
    let mut credentials = Vec::new();
    for i in 0..count {
        let issued = if i % 2 == 0 {
            let owner = Owner::Team {
                org: "acme".into(),
                team_id: team.id.clone(),
            };
            let description = Some(format!("t{i}"));
            tokens::issue_own(store, owner, TEST_SECRETS, None, None, description).await
        } else {
            let org = format!("org{i}");
            store.create_org(&org).await.unwrap();
            tokens::issue(store, Owner::Org { org }, TEST_SECRETS, None, None).await
        };
        credentials.push(issued.unwrap().credential);
    }
    credentials
}

#[tokio::test]
async fn reads_in_flight_together_on_one_worker_each_get_their_own_values() {
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url(), Duration::from_secs(5)).unwrap();
    let credentials = tokens_of_their_own(&store, 12).await;
    until_fast(&store, &credentials[0].slot, 1).await;
    // The team's slots are learned (a script), then read as one pipeline
    // of three reads (credential, team, access).
    for credential in &credentials {
        store
            .credential_with_access(&credential.slot, "ws-1")
            .await
            .unwrap();
    }
    let (opened, served) = store.fast_reads_opened_and_served();

    let mut reads = tokio::task::JoinSet::new();
    let mut answered = 0;
    for round in 0..20 {
        for (i, credential) in credentials.iter().enumerate() {
            let (store, credential) = (store.clone(), credential.clone());
            let kind = (round + i) % 3;
            if kind == 0 {
                answered += 1;
            }
            reads.spawn(async move {
                match kind {
                    // Read to the end.
                    0 => {
                        let read = store
                            .credential_with_access(&credential.slot, "ws-1")
                            .await
                            .unwrap();
                        let facts = read.team_facts.map(|facts| facts[0].access.is_some());
                        let expected = matches!(credential.owner, Owner::Team { .. });
                        assert_eq!(facts, expected.then_some(true), "{}", credential.slot);
                        assert_eq!(read.credential, Some(credential));
                        true
                    }
                    1 => {
                        let read = store.credential(&credential.slot).await.unwrap();
                        assert_eq!(read, Some(credential));
                        true
                    }
                    // Abandoned once sent, before its answer can come.
                    _ => {
                        let read = store.credential_with_access(&credential.slot, "ws-1");
                        !abandon(read).await
                    }
                }
            });
        }
    }
    let mut completed = 0;
    while let Some(done) = reads.join_next().await {
        if done.unwrap() {
            completed += 1;
        }
    }
    assert!(completed >= answered, "{completed} of {answered}");
    for credential in &credentials {
        assert_eq!(
            store.credential(&credential.slot).await.unwrap(),
            Some(credential.clone())
        );
    }
    let (opened_after, served_after) = store.fast_reads_opened_and_served();
    assert_eq!(
        opened_after, opened,
        "abandoned reads cost no fast connection"
    );
    assert!(
        served_after - served >= completed as u64 + credentials.len() as u64,
        "every read was answered on the fast connection: {served} -> {served_after}, {completed} completed"
    );
}

/// Reads that start in the same scheduler tick go to Redis in one write:
/// Redis reads them together (its own `total_reads_processed` counts one
/// read event per socket read) and answers them together.
#[tokio::test]
async fn reads_started_together_reach_redis_in_one_write() {
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url(), Duration::from_secs(5)).unwrap();
    let credentials = tokens_of_their_own(&store, 4).await;
    until_fast(&store, &credentials[0].slot, 1).await;
    let socket_reads = || -> u64 {
        info(&redis.url(), "stats")["total_reads_processed"]
            .parse()
            .unwrap()
    };
    let before = socket_reads();
    let served = store.fast_reads_opened_and_served();
    let mut reads = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (store, credential) = (store.clone(), credentials[i % 4].clone());
        reads.spawn(async move {
            assert_eq!(
                store.credential(&credential.slot).await.unwrap(),
                Some(credential)
            );
        });
    }
    while let Some(done) = reads.join_next().await {
        done.unwrap();
    }
    // Two of these are the `INFO` connections' own (each a new connection).
    let socket_reads = socket_reads() - before;
    assert!(
        socket_reads <= 12,
        "200 reads started together took {socket_reads} socket reads in Redis (fast connections opened and calls served: {served:?} before, {:?} after)",
        store.fast_reads_opened_and_served()
    );
}

#[tokio::test]
async fn a_read_never_gets_the_answer_to_a_command_sent_before_it() {
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url(), Duration::from_secs(5)).unwrap();
    let credentials = tokens_of_their_own(&store, 1).await;
    let slot = &credentials[0].slot;
    let key = format!("tg:cred:{{{slot}}}");
    let json: String = query(&redis.url(), &["GET", &key]).unwrap();
    until_fast(&store, slot, 1).await;
    for round in 0..10 {
        // A read sent (Redis stopped: it cannot be answered at once), then
        // abandoned; Redis goes on and its answer (the credential) waits
        // in the socket, unread.
        redis.signal("STOP");
        let abandoned = abandon(store.credential(slot)).await;
        redis.signal("CONT");
        assert!(abandoned, "round {round}: the read answered at once");
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The credential is deleted after Redis answered that read...
        let _: i64 = query(&redis.url(), &["DEL", &key]).unwrap();
        // ...so a read that begins now finds nothing.
        assert_eq!(store.credential(slot).await.unwrap(), None, "round {round}");
        let _: () = query(&redis.url(), &["SET", &key, &json]).unwrap();
        let again = store.credential(slot).await.unwrap();
        assert_eq!(again.as_ref(), Some(&credentials[0]), "round {round}");
    }
    assert_eq!(store.fast_reads_opened_and_served().0, 1);
}

#[tokio::test]
async fn after_a_redis_restart_reads_succeed_and_the_fast_connection_comes_back() {
    let mut redis = RedisServer::start();
    let store = RedisStore::new(&redis.url(), Duration::from_secs(2)).unwrap();
    let credentials = tokens_of_their_own(&store, 2).await;
    until_fast(&store, &credentials[0].slot, 1).await;
    for restarts in 1..=2 {
        redis.restart();
        // The dead fast connection is noticed and the read is served on
        // the usual path: no error.
        for credential in &credentials {
            assert_eq!(
                store.credential(&credential.slot).await.unwrap(),
                Some(credential.clone())
            );
        }
        until_fast(&store, &credentials[1].slot, 1 + restarts).await;
    }
}

#[tokio::test]
async fn a_redis_that_stops_answering_fails_the_read_in_time_then_serves_again() {
    let redis = RedisServer::start();
    let limit = Duration::from_millis(500);
    let store = RedisStore::new(&redis.url(), limit).unwrap();
    let credentials = tokens_of_their_own(&store, 1).await;
    let slot = &credentials[0].slot;
    until_fast(&store, slot, 1).await;
    let (_, served) = store.fast_reads_opened_and_served();

    redis.signal("STOP");
    let started = Instant::now();
    let frozen = store.credential(slot).await;
    let took = started.elapsed();
    redis.signal("CONT");
    assert!(
        matches!(frozen, Err(StoreError::Unavailable(_))),
        "{frozen:?}"
    );
    assert!(
        took >= limit && took < limit + Duration::from_secs(1),
        "failed after {took:?}"
    );
    assert_eq!(store.fast_reads_opened_and_served().1, served);

    // Redis answers again: so does the store, and soon on a fast
    // connection again (the same one, once the late answer is read, or a
    // new one).
    assert_eq!(
        store.credential(slot).await.unwrap(),
        Some(credentials[0].clone())
    );
    until_fast(&store, slot, 1).await;
}

#[tokio::test]
async fn the_fast_connection_uses_the_acl_user_password_and_database() {
    let redis = RedisServer::start_with(
        &[
            "--requirepass".to_owned(),
            ADMIN_PASSWORD.to_owned(),
            "--user".to_owned(),
            ACL_USER.to_owned(),
            "on".to_owned(),
            format!(">{ACL_PASSWORD}"),
            "~tg:*".to_owned(),
            "+@all".to_owned(),
        ],
        Some(ADMIN_PASSWORD),
    );
    let options = |password: &str| RedisOptions {
        username: Some(ACL_USER.to_owned()),
        password: Some(Secret::new(password)),
        ..RedisOptions::single(
            &format!("redis://127.0.0.1:{}/3", redis.port),
            Duration::from_secs(2),
        )
    };
    assert!(matches!(
        options("x").topology,
        Topology::Single { ref url } if url.ends_with("/3")
    ));
    let store = RedisStore::open(options(ACL_PASSWORD)).unwrap();
    let credentials = tokens_of_their_own(&store, 1).await;
    let slot = &credentials[0].slot;
    until_fast(&store, slot, 1).await;
    assert_eq!(
        store.credential(slot).await.unwrap(),
        Some(credentials[0].clone())
    );
    // The credential is in database 3 only: the fast read selected it.
    let key = format!("tg:cred:{{{slot}}}");
    let admin = |db: u8| format!("redis://:{ADMIN_PASSWORD}@127.0.0.1:{}/{db}", redis.port);
    assert_eq!(query::<i64>(&admin(3), &["EXISTS", &key]).unwrap(), 1);
    assert_eq!(query::<i64>(&admin(0), &["EXISTS", &key]).unwrap(), 0);

    // A wrong password: no fast connection, and the reads fail closed.
    let wrong = RedisStore::open(options("wrong")).unwrap();
    for _ in 0..5 {
        let read = wrong.credential(slot).await;
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(wrong.fast_reads_opened_and_served(), (0, 0));
}

#[tokio::test]
async fn the_gateways_workers_read_credentials_on_fast_connections() {
    let world = World::with_config("workers: 2\nlog: { level: debug, format: json }\n").await;
    let token = world.gateway.issue(world.team_owner()).await;
    let process = GatewayProcess::start(&world.dir.path().join("tokengate.yaml"));
    let opened = |process: &GatewayProcess| {
        process
            .log_lines()
            .iter()
            .filter(|line| line.contains("fast Redis read connection opened"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while opened(&process) == 0 && Instant::now() < deadline {
        let statuses = burst(process.addr, &token, 16).await;
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(opened(&process) > 0, "no fast connection opened");
    let statuses = burst(process.addr, &token, 50).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let after = opened(&process);
    assert!(after <= 2, "{after} fast connections for 2 workers");
}
