//! Live reload: `POST /_tokengate/reload` swaps the policy (and the config
//! keys that can change live) and keeps the last good policy when the new one
//! is invalid; a request in flight keeps the policy it arrived under;
//! reloading under load fails and misdecides nothing; `tokengate serve`
//! reloads when the policy file is replaced or rewritten (never loading a
//! half-written one) and on SIGHUP.

use crate::harness::*;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn reload_swaps_the_policy_and_keeps_the_old_one_when_the_new_is_invalid() {
    let world = PolicyWorld::start(DEFAULT_POLICY, "").await;
    let (team, _) = world.tokens().await;
    let marker = || world.send(RawRequest::new("GET", "/api/v2/marker").token(&team));
    assert_eq!(marker().await.status, 200);

    let closed = default_with(DENY_MARKER);
    replace_file(&world.policy, &closed);
    let response = world.reload().await;
    assert_eq!(response.status, 200, "{}", response.body);
    let report = &response.json()["reloaded"];
    assert_eq!(report["changed"], true);
    assert_eq!(report["sha256"], sha256_hex(&closed));
    assert_eq!(report["previous_sha256"], sha256_hex(DEFAULT_POLICY));
    let refused = marker().await;
    assert_eq!(refused.status, 403);
    assert!(refused.error_detail().contains("deny-marker"));

    let broken = default_with(
        "  - { id: broken, effect: deny, principals: [robots], methods: [GET], paths: [\"/api/{}\"] }\n",
    );
    replace_file(&world.policy, &broken);
    let response = world.reload().await;
    assert_eq!(response.status, 422, "{}", response.body);
    let problems = response.json()["errors"][0]["meta"]["problems"].clone();
    let keys: Vec<&str> = problems
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["rules[0] (broken).principals", "rules[0] (broken).paths[0]"],
        "{problems}"
    );
    assert!(response
        .error_detail()
        .contains("previous policy keeps serving"));
    assert_eq!(
        marker().await.status,
        403,
        "the last good policy keeps serving"
    );

    let status = world
        .send(RawRequest::new("GET", "/_tokengate/status"))
        .await
        .json();
    let policy = &status["policy"];
    assert_eq!(policy["sha256"], sha256_hex(&closed));
    let rules = tokengate::policy::Policy::from_yaml(&closed)
        .unwrap()
        .rules
        .len();
    assert_eq!(policy["rules"], rules);
    assert!(
        policy["loaded_at"].as_str().unwrap().ends_with('Z'),
        "{policy}"
    );
    assert_eq!(policy["reloads_succeeded"], 1);
    assert_eq!(policy["reloads_failed"], 1);
    assert_eq!(policy["last_result"], "failure");
    assert_eq!(
        policy["last_error"]["problems"][0]["key"],
        "rules[0] (broken).principals"
    );

    std::fs::remove_file(&world.policy).unwrap();
    let response = world.reload().await;
    assert_eq!(
        response.status, 500,
        "an unreadable file: {}",
        response.body
    );
    assert_eq!(marker().await.status, 403);

    // Keys that cannot change live are reported, the rest still reloads.
    std::fs::write(&world.policy, DEFAULT_POLICY).unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap();
    replace_file(
        &world.config,
        &config.replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1"),
    );
    let response = world.reload().await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json()["reloaded"]["restart_required"],
        serde_json::json!(["listen"])
    );
    assert_eq!(marker().await.status, 200);

    let metrics = world.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "tokengate_policy_reloads_total{outcome=\"success\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "tokengate_policy_reloads_total{outcome=\"failure\"}"
        ),
        2.0
    );
    assert_eq!(world.upstream.count(), 2);
}

#[tokio::test]
async fn a_request_in_flight_keeps_the_policy_it_arrived_under() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = PolicyWorld::start(DEFAULT_POLICY, "").await;
    let (_, org) = world.tokens().await;
    let allow_all = "default: allow\nrules: []\n";
    let body = br#"{"data":{"attributes":{"auto-apply":true}}}"#;
    let patch = |ws: &str| {
        format!(
        "PATCH /api/v2/workspaces/{ws} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {org}\r\nContent-Type: application/vnd.api+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    };
    async fn response_of(mut stream: tokio::net::TcpStream) -> String {
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    }

    // 1. Arrived, still authenticating (Redis paused) when the policy changes.
    world.redis.signal("STOP");
    let mut stream = tokio::net::TcpStream::connect(world.gateway.addr)
        .await
        .unwrap();
    stream.write_all(patch("ws-1").as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    replace_file(&world.policy, allow_all);
    assert_eq!(world.reload().await.status, 200);
    world.redis.signal("CONT");
    let text = response_of(stream).await;
    assert!(
        text.starts_with("HTTP/1.1 403") && text.contains("org-no-auto-apply"),
        "{text}"
    );

    // 2. Arrived, still sending its body when the policy changes back and forth.
    replace_file(&world.policy, DEFAULT_POLICY);
    assert_eq!(world.reload().await.status, 200);
    let mut stream = tokio::net::TcpStream::connect(world.gateway.addr)
        .await
        .unwrap();
    stream.write_all(patch("ws-2").as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    replace_file(&world.policy, allow_all);
    assert_eq!(world.reload().await.status, 200);
    let now = world
        .send(
            RawRequest::new("PATCH", "/api/v2/workspaces/ws-9")
                .token(&org)
                .body(body),
        )
        .await;
    assert_eq!(now.status, 200, "new requests get the new policy");
    stream.write_all(&body[10..]).await.unwrap();
    let text = response_of(stream).await;
    assert!(
        text.starts_with("HTTP/1.1 403") && text.contains("org-no-auto-apply"),
        "{text}"
    );
    assert_eq!(world.upstream.count(), 1);
    assert_eq!(world.upstream.last().target, "/api/v2/workspaces/ws-9");
}

/// Loops × requests per loop in the reload-under-load test.
const LOOPS: usize = 8;

const REQUESTS_PER_LOOP: usize = 200;

const RELOADS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_under_load_fails_and_misdecides_nothing() {
    let open = DEFAULT_POLICY.to_owned();
    let closed = default_with(DENY_MARKER);
    let world = PolicyWorld::start(&open, "").await;
    let (team, org) = world.tokens().await;
    let base = format!("http://{}", world.gateway.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(LOOPS)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let mut loops = Vec::new();
    for worker in 0..LOOPS {
        let (client, base, team, org) = (client.clone(), base.clone(), team.clone(), org.clone());
        loops.push(tokio::spawn(async move {
            let mut problems = Vec::new();
            let mut forwarded = 0usize;
            for i in 0..REQUESTS_PER_LOOP {
                let kind = (worker + i) % 3;
                let request = match kind {
                    0 => client
                        .get(format!("{base}/api/v2/workspaces/ws-{i}"))
                        .bearer_auth(&team),
                    1 => client
                        .post(format!("{base}/api/v2/runs/run-{i}/actions/apply"))
                        .bearer_auth(&org),
                    _ => client
                        .get(format!("{base}/api/v2/marker"))
                        .bearer_auth(&team),
                };
                let response = match request.send().await {
                    Ok(response) => response,
                    Err(err) => {
                        problems.push(format!("request failed: {err}"));
                        continue;
                    }
                };
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                let ok = match (kind, status) {
                    (0, 200) => true,
                    (1, 403) => body.contains("org-no-run-actions"),
                    (2, 200) => true,
                    (2, 403) => body.contains("deny-marker"),
                    _ => false,
                };
                if status == 200 {
                    forwarded += 1;
                }
                if !ok {
                    problems.push(format!("kind {kind}: {status} {body}"));
                }
            }
            (problems, forwarded)
        }));
    }

    let gateway = world.gateway.gateway.clone();
    let (policy, open_text, closed_text) = (world.policy.clone(), open.clone(), closed.clone());
    let reloader = tokio::spawn(async move {
        for round in 0..RELOADS {
            let text = if round % 2 == 0 {
                &closed_text
            } else {
                &open_text
            };
            replace_file(&policy, text);
            let report = tokengate::runtime::reload::reload_async(gateway.clone())
                .await
                .unwrap_or_else(|e| panic!("reload {round}: {e}"));
            assert!(report.changed, "reload {round} swapped nothing");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    let mut problems = Vec::new();
    let mut forwarded = 0;
    for handle in loops {
        let (p, f) = handle.await.unwrap();
        problems.extend(p);
        forwarded += f;
    }
    reloader.await.unwrap();
    assert!(
        problems.is_empty(),
        "{} problems, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert_eq!(
        world.upstream.count(),
        forwarded,
        "exactly the allowed requests were forwarded"
    );
    assert!(world.upstream.requests().iter().all(
        |r| !r.target.contains("actions/apply") && r.header("x-tokengate-kind") == Some("team")
    ));
    let status = world
        .send(RawRequest::new("GET", "/_tokengate/status"))
        .await
        .json();
    assert_eq!(status["policy"]["reloads_succeeded"], RELOADS);
    assert_eq!(status["policy"]["reloads_failed"], 0);
}

// --- `tokengate serve`: file watching and SIGHUP ----------------------------

#[tokio::test]
async fn serve_reloads_when_the_policy_file_is_replaced_or_rewritten() {
    let served = PolicyProcess::start(DEFAULT_POLICY, true).await;
    assert_eq!(served.marker().await, 200);
    replace_file(&served.policy, &default_with(DENY_MARKER));
    assert!(
        served.marker_becomes(403).await,
        "the file watcher did not reload: {:?}",
        served.process.log_lines()
    );
    // A broken file keeps the last good policy and logs where it is broken.
    replace_file(
        &served.policy,
        &default_with(
            "  - { id: bad, effect: deny, principals: [org], methods: [GET], paths: [nope] }\n",
        ),
    );
    let problems = served.log_where(|v| v["message"] == "reload problem").await;
    assert_eq!(problems.len(), 1, "{:?}", served.process.log_lines());
    assert_eq!(problems[0]["key"], "rules[0] (bad).paths[0]");
    assert_eq!(served.marker().await, 403);
    replace_file(&served.policy, DEFAULT_POLICY);
    assert!(served.marker_becomes(200).await);
    // Written in place (same inode), as `echo >` or an editor without
    // atomic saves does.
    std::fs::write(&served.policy, default_with(DENY_MARKER)).unwrap();
    assert!(
        served.marker_becomes(403).await,
        "an in-place write was not noticed"
    );
}

/// A policy written in two steps (a writer that pauses, or a file copied in
/// pieces) must not be loaded in between: its first half can be a valid
/// policy without the rule that comes later. Here the "half" lacks the deny
/// rule; the gateway must never allow the marker while the file is written.
#[tokio::test]
async fn serve_does_not_load_a_policy_file_while_it_is_still_being_written() {
    let served = PolicyProcess::start(&default_with(DENY_MARKER), true).await;
    assert_eq!(served.marker().await, 403);
    let finished = format!("{}# written in two steps\n", default_with(DENY_MARKER));
    // The watcher polls every 500 ms from its start, just before the gateway
    // listened: start writing ~300 ms into a poll period, so that a poll
    // sees the first half and the next one the finished file.
    tokio::time::sleep(Duration::from_millis(250)).await;
    std::fs::write(&served.policy, DEFAULT_POLICY).unwrap();
    let writing = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&served.policy, &finished).unwrap();
    };
    let watching = async {
        let deadline = Instant::now() + Duration::from_millis(2500);
        let mut allowed = 0;
        while Instant::now() < deadline {
            if served.marker().await == 200 {
                allowed += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        allowed
    };
    let ((), allowed) = tokio::join!(writing, watching);
    assert_eq!(allowed, 0, "the half-written policy was served");
    // The finished file was loaded.
    let want = sha256_hex(&finished);
    let reloaded = served
        .log_where(|v| v["message"] == "policy reloaded" && v["sha256"] == want.as_str())
        .await;
    assert_eq!(reloaded.len(), 1, "{:?}", served.process.log_lines());
    assert_eq!(served.marker().await, 403);
}

#[tokio::test]
async fn serve_reloads_on_sighup() {
    let served = PolicyProcess::start(DEFAULT_POLICY, false).await;
    replace_file(&served.policy, &default_with(DENY_MARKER));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        served.marker().await,
        200,
        "with policy.watch off, only a signal reloads"
    );
    served.process.signal("HUP");
    assert!(
        served.marker_becomes(403).await,
        "SIGHUP did not reload: {:?}",
        served.process.log_lines()
    );
    let reloaded = served
        .log_where(|v| v["message"] == "SIGHUP received; reloading")
        .await;
    assert_eq!(reloaded.len(), 1);
}
