//! The real binary serving on several worker threads: every worker answers,
//! access lines arrive whole and without waiting for more traffic, each
//! worker's own Redis connection fails closed and recovers, and SIGTERM
//! stops every worker.

use crate::harness::*;
use std::time::{Duration, Instant};

const WORKERS: usize = 3;

/// A World whose config asks for `WORKERS` workers and JSON logs, plus the
/// real binary serving that config and a team token.
async fn served() -> (World, GatewayProcess, String) {
    let world = World::with_config(&format!("workers: {WORKERS}\nlog:\n  format: json\n")).await;
    let token = world.gateway.issue(world.team_owner()).await;
    let process = GatewayProcess::start(&world.dir.path().join("tokengate.yaml"));
    (world, process, token)
}

/// Names of the process's threads that are tokengate workers.
fn worker_threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("tokengate-worke"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn workers_serve_concurrent_clients_and_log_whole_lines_promptly() {
    let (world, process, token) = served().await;
    assert_eq!(
        worker_threads(process.pid()).len(),
        WORKERS,
        "one thread per configured worker"
    );

    let statuses = burst(process.addr, &token, 48).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let seen = world.upstream.requests();
    assert_eq!(seen.len(), 48);
    assert!(seen
        .iter()
        .all(|r| r.header("x-tokengate-team") == Some(world.team_id.as_str())));

    // Workers batch their access lines and write them when they run out of
    // work: all 48 arrive without further traffic, each one whole JSON line.
    let deadline = Instant::now() + Duration::from_secs(5);
    let access = loop {
        let lines = process.log_lines();
        let access: Vec<serde_json::Value> = lines
            .iter()
            .filter(|line| line.contains("tokengate::access"))
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a log line is not whole JSON ({e}): {line}"))
            })
            .collect();
        if access.len() >= 48 || Instant::now() > deadline {
            break access;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(access.len(), 48, "{:?}", process.log_lines());
    let mut paths: Vec<&str> = access.iter().map(|v| v["path"].as_str().unwrap()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 48, "each request logged once");
}

#[tokio::test]
async fn every_worker_fails_closed_without_redis_and_recovers() {
    let (mut world, process, token) = served().await;
    assert!(burst(process.addr, &token, 12)
        .await
        .iter()
        .all(|&s| s == 200));
    let before = world.upstream.count();

    world.redis.kill();
    let statuses = burst(process.addr, &token, 12).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    assert_eq!(
        world.upstream.count(),
        before,
        "nothing forwarded without Redis"
    );

    world.redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let statuses = burst(process.addr, &token, 12).await;
        if statuses.iter().all(|&s| s == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every worker recovered: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sigterm_stops_every_worker_and_exits_cleanly() {
    let (_world, mut process, token) = served().await;
    assert!(burst(process.addr, &token, 6)
        .await
        .iter()
        .all(|&s| s == 200));
    process.signal("TERM");
    let status = process
        .wait_exit(Duration::from_secs(20))
        .expect("tokengate did not exit within 20 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(process
        .log_lines()
        .iter()
        .any(|line| line.contains("tokengate stopped")));
}
