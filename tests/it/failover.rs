//! Failover drills on Redis Sentinel (1 primary, 1 replica, 3 sentinels
//! that fail over 500 ms after losing the primary), with two real gateway
//! processes and a recording upstream:
//!
//! - the primary is killed while a client keeps sending requests: only 200
//!   or 503 is ever answered, every forwarded request carries the right
//!   team, nothing is forwarded without a verified token, both gateways
//!   recover without a restart, and a regenerate made just before the kill
//!   (`wait_replicas: 1`) stays effective after it; the 503 window is
//!   measured and printed (`FAILOVER` lines, see docs/DEPLOY.md);
//! - the primary is frozen (a partition), the sentinels promote the replica,
//!   the token is regenerated on the new primary, then the old primary comes
//!   back still believing it is the primary, with the old token: the
//!   gateways never read from it;
//! - on a Cluster (3 primaries, 3 replicas), the primary holding a
//!   credential is killed while the store reads it back to back: reads fail
//!   closed (fast) until the replica takes over, then succeed, always with
//!   the right credential.
//!
//! Windows are measured and printed, never asserted.

use crate::harness::*;
use crate::redis_harness::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokengate::store::{Owner, Store};

/// Two gateway processes on one Sentinel set, an upstream, a team and its token.
struct Drill {
    set: SentinelSet,
    upstream: RecordingUpstream,
    _dir: tempfile::TempDir,
    config: PathBuf,
    gateways: Vec<GatewayProcess>,
    store: Arc<dyn Store>,
    hashing: tokengate::config::HashingConfig,
    owner: Owner,
    team_id: String,
}

impl Drill {
    /// The drill, or `None` (said on stderr) when Redis is not installed.
    async fn start(wait_replicas: u32) -> Option<Drill> {
        if let Some(why) = missing_redis_commands("sentinel") {
            eprintln!("{why}");
            return None;
        }
        let set = SentinelSet::start(Duration::from_millis(500));
        set.wait_ready_for_failover();
        let upstream = RecordingUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let store_yaml = sentinel_store_yaml(
            &set,
            &format!("    timeout_ms: 250\n    wait_replicas: {wait_replicas}\n    wait_timeout_ms: 1000"),
        );
        let config = write_config_with_store(
            dir.path(),
            &upstream.url(),
            &store_yaml,
            "workers: 2\nlog: { level: info, format: json }",
        );
        let loaded = tokengate::config::Config::load(&config).unwrap();
        let store = tokengate::gateway::open_store(&loaded).unwrap();
        store.create_org("acme").await.unwrap();
        let team_id = store.create_team("acme", "dev").await.unwrap().id;
        manage_all_workspaces(store.as_ref(), &team_id).await;
        let gateways = (0..2).map(|_| GatewayProcess::start(&config)).collect();
        Some(Drill {
            set,
            upstream,
            _dir: dir,
            config,
            gateways,
            store,
            hashing: loaded.hashing,
            owner: Owner::Team {
                org: "acme".into(),
                team_id: team_id.clone(),
            },
            team_id,
        })
    }

    /// Generates (or regenerates) the team's token through the store. Right
    /// after a failover the test's own store may not have found the new
    /// primary yet and fail closed (unavailable): it tries again, for up to
    /// 10 s, as a client would.
    async fn regenerate(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let issued = tokengate::token::lifecycle::issue(
                self.store.as_ref(),
                self.owner.clone(),
                self.hashing,
                None,
                None,
            )
            .await;
            match issued {
                Ok(issued) => return issued.token.secret_token,
                Err(err) if Instant::now() < deadline => {
                    eprintln!("regenerate failed, trying again: {err}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("regenerate failed for 10 s: {err}"),
            }
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.gateways.iter().map(|g| g.addr).collect()
    }

    fn primary(&self) -> String {
        self.set
            .primary_addr()
            .expect("no sentinel names a primary")
    }

    /// Waits (up to 20 s) until every sentinel names the same primary, not `old`.
    fn wait_promoted(&self, old: &str) -> String {
        let mut now = String::new();
        assert!(
            wait_until(Duration::from_secs(20), || {
                let named = self.set.primaries_named();
                now = named.first().cloned().unwrap_or_default();
                named.len() == self.set.sentinels.len()
                    && named.iter().all(|addr| *addr == now)
                    && now != old
            }),
            "no failover within 20 s"
        );
        now
    }
}

/// What one request got, and with which token.
#[derive(Clone, Debug)]
struct Answer {
    at: Instant,
    status: u16,
    token: String,
}

/// Sends requests with the current token, round robin over `gateways`,
/// until `stop` is set; one request at a time.
fn load(
    gateways: Vec<SocketAddr>,
    token: Arc<Mutex<String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    tokio::spawn(async move {
        let mut answers = Vec::new();
        let mut n = 0usize;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && answers.len() < 20_000 {
            let addr = gateways[n % gateways.len()];
            n += 1;
            let token = token.lock().unwrap().clone();
            let status = send_raw(
                addr,
                RawRequest::new("GET", &format!("/api/v2/workspaces/ws-{n}")).token(&token),
            )
            .await
            .status;
            answers.push(Answer {
                at: Instant::now(),
                status,
                token,
            });
        }
        answers
    })
}

/// The 503s of `answers` after `fault`: how many, and from the fault to the
/// first 200 after the last 503.
fn window(answers: &[Answer], fault: Instant) -> (usize, Duration, Duration) {
    let after: Vec<&Answer> = answers.iter().filter(|a| a.at >= fault).collect();
    let refused = after.iter().filter(|a| a.status == 503).count();
    let last_503 = after.iter().rev().find(|a| a.status == 503).map(|a| a.at);
    let first_503 = after.iter().find(|a| a.status == 503).map(|a| a.at);
    let recovered = after
        .iter()
        .find(|a| a.status == 200 && last_503.is_none_or(|l| a.at > l))
        .map_or(Duration::ZERO, |a| a.at - fault);
    let span = match (first_503, last_503) {
        (Some(first), Some(last)) => last - first,
        _ => Duration::ZERO,
    };
    (refused, span, recovered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_under_load_only_delays_and_a_regenerate_survives() {
    let Some(drill) = Drill::start(1).await else {
        return;
    };
    let old_token = drill.regenerate().await;
    let token = Arc::new(Mutex::new(old_token.clone()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = load(drill.addrs(), token.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Regenerate (confirmed by the replica), then kill the primary at once.
    let new_token = drill.regenerate().await;
    *token.lock().unwrap() = new_token.clone();
    let old_primary = drill.primary();
    let index = drill.set.node_at(&old_primary);
    let fault = Instant::now();
    let mut drill = drill;
    drill.set.nodes[index].kill();
    let new_primary = drill.wait_promoted(&old_primary);
    let promoted = fault.elapsed();

    // Keep the load on until 40 answers in a row were 200 (or 20 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let probe = burst(drill.gateways[0].addr, &new_token, 20).await;
        let probe2 = burst(drill.gateways[1].addr, &new_token, 20).await;
        if probe.iter().chain(&probe2).all(|&s| s == 200) || Instant::now() > deadline {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let all = client.await.unwrap();
    // Requests sent with the old token while the regenerate ran (the
    // client switches tokens once it returned) get 200 before it is
    // applied and 401 after; the one in flight at the kill may get 503.
    assert!(
        all.iter()
            .filter(|a| a.token == old_token)
            .all(|a| matches!(a.status, 200 | 401 | 503)),
        "unexpected answers to the old token"
    );
    let answers: Vec<Answer> = all.into_iter().filter(|a| a.token == new_token).collect();

    let statuses: std::collections::BTreeMap<u16, usize> =
        answers.iter().fold(Default::default(), |mut m, a| {
            *m.entry(a.status).or_default() += 1;
            m
        });
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 503),
        "only 200 or 503 may be answered to the current token: {statuses:?}"
    );
    // Every forwarded request was verified and carries the right team.
    let forwarded = drill.upstream.requests();
    assert!(forwarded
        .iter()
        .all(|r| r.header("x-tokengate-team") == Some(drill.team_id.as_str())));
    let ok_load = statuses.get(&200).copied().unwrap_or(0);
    assert!(
        forwarded.len() >= ok_load,
        "a 200 was not forwarded: {} forwarded, {ok_load} answered 200",
        forwarded.len()
    );

    // Both gateways recovered without a restart; the regenerate survived.
    for addr in drill.addrs() {
        let fresh = send_raw(
            addr,
            RawRequest::new("GET", "/api/v2/workspaces").token(&new_token),
        )
        .await;
        assert_eq!(fresh.status, 200, "{}", fresh.body);
        let old = send_raw(
            addr,
            RawRequest::new("GET", "/api/v2/workspaces").token(&old_token),
        )
        .await;
        assert_eq!(
            old.status, 401,
            "the token replaced before the failover came back"
        );
    }

    let (refused, span, recovered) = window(&answers, fault);
    eprintln!(
        "FAILOVER kill: sentinels promoted {new_primary} after {} ms; {refused} × 503 over {} ms; first 200 after the last 503 at {} ms after the kill; answers {statuses:?}",
        promoted.as_millis(),
        span.as_millis(),
        recovered.as_millis()
    );

    // The killed primary comes back (as a primary, until the sentinels
    // demote it): the old token never works meanwhile.
    drill.set.nodes[index].restart();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for addr in drill.addrs() {
            let old = send_raw(
                addr,
                RawRequest::new("GET", "/api/v2/workspaces").token(&old_token),
            )
            .await;
            assert_ne!(old.status, 200, "the old token was accepted");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_old_primary_is_never_read_from() {
    let Some(drill) = Drill::start(0).await else {
        return;
    };
    let old_token = drill.regenerate().await;
    for addr in drill.addrs() {
        let warm = burst(addr, &old_token, 12).await;
        assert!(warm.iter().all(|&s| s == 200), "{warm:?}");
    }
    let before = drill.upstream.count();

    // Cut the primary off (frozen: it neither answers nor learns anything),
    // while the gateways idle with their connections to it open.
    let old_primary = drill.primary();
    let index = drill.set.node_at(&old_primary);
    let fault = Instant::now();
    drill.set.nodes[index].signal("STOP");
    let new_primary = drill.wait_promoted(&old_primary);
    let promoted = fault.elapsed();

    // The token is replaced on the new primary; the old one still holds
    // the old token and, when it comes back, believes it is the primary.
    let new_token = drill.regenerate().await;
    drill.set.nodes[index].signal("CONT");
    let back = Instant::now();
    let old_url = drill.set.nodes[index].url();
    let mut old_role_master_for = Duration::ZERO;
    let mut answers = Vec::new();
    while back.elapsed() < Duration::from_secs(4) {
        let role = info(&old_url, "replication")
            .get("role")
            .cloned()
            .unwrap_or_default();
        if role == "master" {
            old_role_master_for = back.elapsed();
        }
        for addr in drill.addrs() {
            let old = send_raw(
                addr,
                RawRequest::new("GET", "/api/v2/workspaces").token(&old_token),
            )
            .await
            .status;
            let new = send_raw(
                addr,
                RawRequest::new("GET", "/api/v2/workspaces").token(&new_token),
            )
            .await
            .status;
            answers.push((role.clone(), old, new));
        }
    }
    assert!(
        answers.iter().all(|(_, old, _)| *old != 200),
        "the old token was accepted (read from the old primary): {answers:?}"
    );
    assert!(
        answers.iter().all(|(_, _, new)| *new != 401),
        "the new token was refused (read from the old primary): {answers:?}"
    );
    let forwarded: Vec<Recorded> = drill.upstream.requests()[before..].to_vec();
    assert!(forwarded
        .iter()
        .all(|r| r.header("x-tokengate-team") == Some(drill.team_id.as_str())));
    let new_ok = answers.iter().filter(|(_, _, new)| *new == 200).count();
    eprintln!(
        "FAILOVER freeze: sentinels promoted {new_primary} after {} ms; the old primary still said `master` {} ms after it came back; {} probes, new token 200 in {new_ok}, old token never accepted",
        promoted.as_millis(),
        old_role_master_for.as_millis(),
        answers.len()
    );
    let _ = &drill.config;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_killed_under_load_is_replaced_by_its_replica() {
    use tokengate::store::redis::{RedisOptions, RedisStore, Topology};
    if let Some(why) = missing_redis_commands("cluster") {
        eprintln!("{why}");
        return;
    }
    let mut cluster = ClusterSet::start();
    let store = RedisStore::open(RedisOptions {
        topology: Topology::Cluster {
            urls: cluster.urls(),
        },
        // The credential must be on the replica before its primary is
        // killed (replication is asynchronous otherwise, and the promoted
        // replica could rightly not know the token).
        wait_replicas: 1,
        wait_timeout: Duration::from_secs(5),
        ..RedisOptions::single("redis://unused", Duration::from_millis(250))
    })
    .unwrap();
    store.create_org("acme").await.unwrap();
    let issued = tokengate::token::lifecycle::issue(
        &store,
        Owner::Org { org: "acme".into() },
        TEST_SECRETS,
        None,
        None,
    )
    .await
    .unwrap();
    let slot = issued.credential.slot.clone();
    let key = format!("tg:cred:{{{slot}}}");
    // The primary that holds the credential (the others answer MOVED).
    let owner = cluster
        .nodes
        .iter()
        .position(|node| query::<i64>(&node.url(), &["EXISTS", &key]).is_ok_and(|n| n == 1))
        .expect("no node holds the credential");

    let fault = Instant::now();
    cluster.nodes[owner].kill();
    let mut answers = Vec::new();
    let mut in_a_row = 0;
    while in_a_row < 50 && fault.elapsed() < Duration::from_secs(20) {
        let started = Instant::now();
        let answer = store.credential(&slot).await;
        if let Ok(found) = &answer {
            assert_eq!(
                found.as_ref(),
                Some(&issued.credential),
                "a wrong credential"
            );
            in_a_row += 1;
        } else {
            in_a_row = 0;
            // Fail closed, never a hang past the time limit (with room for
            // a loaded machine).
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        answers.push((Instant::now(), answer.is_ok()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(in_a_row >= 50, "the store did not recover within 20 s");
    let failed = answers.iter().filter(|(_, ok)| !ok).count();
    let last_failure = answers
        .iter()
        .rev()
        .find(|(_, ok)| !ok)
        .map_or(Duration::ZERO, |(at, _)| *at - fault);
    eprintln!(
        "FAILOVER cluster: {failed} of {} reads failed (503), the last {} ms after the kill",
        answers.len(),
        last_failure.as_millis()
    );
}
