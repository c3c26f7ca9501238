//! The Redis store across reconnects: after Redis restarts while the
//! gateway idles, the real binary answers a burst of requests without a
//! single 503; a read whose connection breaks under it is sent again once
//! on a fresh connection, a write never (it may have been applied); the
//! `store.redis` keys for TLS, ACL users and secrets work from a config
//! file.

use crate::harness::*;
use crate::redis_harness::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokengate::store::redis::RedisStore;
use tokengate::store::{AuditEvent, Owner, Store, StoreError, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn redis_restarted_while_idle_then_a_burst_gets_no_503() {
    let mut world = World::with_config("workers: 2\nlog:\n  format: json\n").await;
    let token = world.gateway.issue(world.team_owner()).await;
    let process = GatewayProcess::start(&world.dir.path().join("tokengate.yaml"));
    // Every worker has its connection.
    let warm = burst(process.addr, &token, 24).await;
    assert!(warm.iter().all(|&s| s == 200), "{warm:?}");

    world.redis.restart();
    // Redis accepts connections again (the harness saw PONG): from now on,
    // nothing may be refused.
    let mut sequential = Vec::new();
    for _ in 0..8 {
        sequential.push(
            send_raw(
                process.addr,
                RawRequest::new("GET", "/api/v2/workspaces").token(&token),
            )
            .await
            .status,
        );
    }
    assert_eq!(
        sequential, [200; 8],
        "8 sequential requests after the restart"
    );

    world.redis.restart();
    let statuses = burst(process.addr, &token, 100).await;
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert_eq!(
        refused, 0,
        "503s in a burst of 100 after a restart: {statuses:?}"
    );
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");

    // A token write right after a restart is not refused either: the dead
    // connection is noticed before the write is sent.
    world.redis.restart();
    let fresh = world.gateway.issue(world.team_owner()).await;
    let response = send_raw(
        process.addr,
        RawRequest::new("GET", "/api/v2/workspaces").token(&fresh),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
}

/// A TCP relay between the store and Redis. When armed, it cuts the
/// connection right after relaying a client chunk containing `marker`
/// (before Redis's answer comes back), once; it counts the chunks with the
/// marker it relayed. [`CuttingRelay::blackhole`] makes every connection
/// open so far go silent (nothing relayed, nothing closed), as a NAT that
/// forgot a connection does; new connections work.
struct CuttingRelay {
    addr: std::net::SocketAddr,
    armed: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
    /// Connections accepted before this epoch are silent.
    epoch: Arc<AtomicUsize>,
}

impl CuttingRelay {
    async fn start(redis_port: u16, marker: &'static [u8]) -> CuttingRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let epoch = Arc::new(AtomicUsize::new(0));
        let (arm, count, epochs) = (armed.clone(), seen.clone(), epoch.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", redis_port)).await
                else {
                    continue;
                };
                let (arm, count, epochs) = (arm.clone(), count.clone(), epochs.clone());
                let mine = epochs.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let back_epochs = epochs.clone();
                    let back = tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = server_read.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            if back_epochs.load(Ordering::SeqCst) != mine {
                                continue;
                            }
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if epochs.load(Ordering::SeqCst) != mine {
                            continue;
                        }
                        let chunk = &buf[..n];
                        let marked = chunk.windows(marker.len()).any(|w| w == marker);
                        if marked {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        let cut = marked && arm.swap(false, Ordering::SeqCst);
                        if cut {
                            // Nothing more goes back to the store...
                            back.abort();
                        }
                        if server_write.write_all(chunk).await.is_err() {
                            break;
                        }
                        if cut {
                            // ...once Redis has the command.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            break;
                        }
                    }
                    back.abort();
                });
            }
        });
        CuttingRelay {
            addr,
            armed,
            seen,
            epoch,
        }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    fn blackhole(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_is_sent_again_once_a_write_never() {
    let redis = RedisServer::start();
    let relay = CuttingRelay::start(redis.port, b"tg:cred:").await;
    let audit_relay = CuttingRelay::start(redis.port, b"marker-event").await;
    let store =
        RedisStore::new(&format!("redis://{}", relay.addr), Duration::from_secs(5)).unwrap();
    let direct = RedisStore::new(&redis.url(), Duration::from_secs(5)).unwrap();
    direct.create_org("acme").await.unwrap();
    let owner = Owner::Org { org: "acme".into() };
    let issued = tokengate::token::lifecycle::issue(&direct, owner, TEST_SECRETS, None, None)
        .await
        .unwrap();
    let slot = issued.credential.slot.clone();

    // The read reached Redis, its answer was lost with the connection: it is
    // sent again, once, on a new connection, and answers.
    store.ping().await.unwrap();
    relay.arm();
    let before = relay.seen();
    let read = store.credential(&slot).await.unwrap();
    assert_eq!(read, Some(issued.credential.clone()));
    assert_eq!(relay.seen() - before, 2, "the read was sent twice");

    // The write reached Redis (and was applied), its answer was lost: it is
    // not sent again, and the caller is told it failed.
    let writer = RedisStore::new(
        &format!("redis://{}", audit_relay.addr),
        Duration::from_secs(5),
    )
    .unwrap();
    writer.ping().await.unwrap();
    audit_relay.arm();
    let event = AuditEvent {
        time: Timestamp(1_000),
        org: "acme".into(),
        actor: "user-1".into(),
        action: "marker-event".into(),
        target: "org:acme".into(),
        token_id: None,
    };
    let result = writer.append_audit(&event).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(audit_relay.seen(), 1, "the write was sent once");
    let stored = direct.audit_events(None, 10).await.unwrap();
    assert_eq!(stored, [event], "applied exactly once");
    // And the store serves on a fresh connection afterwards.
    writer.ping().await.unwrap();
}

#[tokio::test]
async fn a_gateway_on_rediss_with_an_acl_user_serves_and_never_logs_the_password() {
    let ca = TestCa::new();
    let redis = TlsRedis::start(&ca);
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_yaml = tls_store_yaml(dir.path(), &redis, &ca);
    let config = write_config_with_store(
        dir.path(),
        &upstream.url(),
        &store_yaml,
        "log: { level: debug, format: json }",
    );
    let loaded = tokengate::config::Config::load(&config).unwrap();
    assert!(
        !format!("{loaded:?}").contains(ACL_PASSWORD),
        "the config's Debug shows the password"
    );
    let store = tokengate::gateway::open_store(&loaded).unwrap();
    store.create_org("acme").await.unwrap();
    let team = store.create_team("acme", "dev").await.unwrap();
    let token = tokengate::token::lifecycle::issue(
        store.as_ref(),
        Owner::Team {
            org: "acme".into(),
            team_id: team.id.clone(),
        },
        loaded.hashing,
        None,
        None,
    )
    .await
    .unwrap()
    .token
    .secret_token;
    let process = GatewayProcess::start(&config);
    let response = send_raw(
        process.addr,
        RawRequest::new("GET", "/api/v2/workspaces").token(&token),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        upstream.last().header("x-tokengate-team"),
        Some(team.id.as_str())
    );
    let log = process.log_lines().join("\n");
    assert!(!log.contains(ACL_PASSWORD), "the log shows the password");

    // The wrong password: the store fails closed.
    std::fs::write(dir.path().join("redis-password"), "wrong\n").unwrap();
    let wrong = tokengate::config::Config::load(&config).unwrap();
    let store = tokengate::gateway::open_store(&wrong).unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("wrong"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_write_no_replica_confirms_fails_closed() {
    use tokengate::store::redis::RedisOptions;
    let redis = RedisServer::start();
    let store = RedisStore::open(RedisOptions {
        wait_replicas: 1,
        wait_timeout: Duration::from_millis(100),
        ..RedisOptions::single(&redis.url(), Duration::from_secs(2))
    })
    .unwrap();
    store.create_org("acme").await.unwrap();
    let owner = Owner::Org { org: "acme".into() };
    let err = tokengate::token::lifecycle::issue(&store, owner, TEST_SECRETS, None, None)
        .await
        .err()
        .expect("a write no replica confirmed must fail");
    let text = err.to_string();
    assert!(text.contains("confirmed by 0 of 1 replica"), "{text}");
    assert!(text.contains("wait_replicas"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_dropped_without_a_word_is_replaced_before_it_serves() {
    use tokengate::store::redis::RedisOptions;
    let redis = RedisServer::start();
    let relay = CuttingRelay::start(redis.port, b"unused-marker").await;
    let store = RedisStore::open(RedisOptions {
        idle_check: Duration::from_millis(200),
        ..RedisOptions::single(&format!("redis://{}", relay.addr), Duration::from_secs(1))
    })
    .unwrap();
    store.create_org("acme").await.unwrap();
    assert_eq!(store.connections_opened(), 1);

    // The connection goes silent while idle: the next call checks it, gets
    // no answer within half its time, and is served on a new connection.
    relay.blackhole();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.org("acme").await.unwrap().is_some());
    assert_eq!(store.connections_opened(), 2);

    // Silent while busy (not idle): that call fails closed, and the next one
    // checks the connection that did not answer and replaces it.
    relay.blackhole();
    let err = store.org("acme").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(store.org("acme").await.unwrap().is_some());
    assert_eq!(store.connections_opened(), 3);
}
