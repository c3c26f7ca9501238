//! Logging: the log writer and access lines. A log nobody reads costs log
//! lines, never answers or shutdown; every request answered before SIGTERM
//! has its access line in the log; every access line names the rule, its
//! mode and the decision, and shadow matches are logged.

use crate::harness::*;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request on a fresh connection (`Connection: close`); its status line,
/// or `None` when no whole answer came within `within`.
async fn status_within(addr: SocketAddr, path: &str, within: Duration) -> Option<String> {
    tokio::time::timeout(within, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw);
        text.lines().next().map(str::to_owned)
    })
    .await
    .ok()
    .flatten()
}

/// `tokengate serve` on two workers, listening, whose stderr is a pipe that
/// is never read: like a log shipper that stalled. Killed on drop.
struct UnreadStderr {
    addr: SocketAddr,
    child: Killed,
    _stderr: std::process::ChildStderr,
    _dir: tempfile::TempDir,
}

impl UnreadStderr {
    async fn start() -> UnreadStderr {
        let dir = tempfile::tempdir().unwrap();
        let config = offline_config(dir.path(), "workers: 2\n");
        let addr = free_addr();
        let mut child = spawn_serve(&config, Some(addr), Stdio::piped());
        let stderr = child.0.stderr.take().unwrap();
        wait_listening(addr, &mut child.0).await;
        UnreadStderr {
            addr,
            child,
            _stderr: stderr,
            _dir: dir,
        }
    }
}

/// Nobody reads the gateway's stderr (a stuck log shipper, a full pipe):
/// that costs log lines, not the gateway. A worker never blocks on its log,
/// so every request on every worker is still answered.
#[tokio::test]
async fn unread_stderr_does_not_stop_the_gateway_answering() {
    let served = UnreadStderr::start().await;
    let addr = served.addr;

    // Each request logs one ~300-byte access line; the pipe holds 64 KiB.
    for i in 0..1500 {
        let status = status_within(
            addr,
            &format!("/api/v2/workspaces/ws-{i}"),
            Duration::from_secs(3),
        )
        .await;
        assert!(
            status.as_deref().is_some_and(|s| s.contains(" 401 ")),
            "request {i} got no answer within 3 s ({status:?}): the gateway is blocked writing its log"
        );
    }
}

/// With stderr unread and its pipe full, SIGTERM still stops the gateway:
/// only the log writer thread waits on stderr, so the main thread logs
/// "shutdown requested" and tells the workers to stop.
#[tokio::test]
async fn sigterm_stops_the_gateway_even_when_stderr_is_not_read() {
    let mut served = UnreadStderr::start().await;
    let addr = served.addr;
    // Fill the pipe (~64 KiB of access lines); stop at the first request
    // that is not answered.
    for i in 0..600 {
        let path = format!("/api/v2/workspaces/ws-{i}");
        if status_within(addr, &path, Duration::from_millis(500))
            .await
            .is_none()
        {
            break;
        }
    }
    served.child.signal("TERM");
    let status = served.child.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM did not stop the gateway within 10 s (status {status:?})"
    );
}

/// `count` keep-alive requests on one connection; every one answered 401.
async fn keep_alive_requests(addr: SocketAddr, tag: &str, count: usize) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 8192];
    for i in 0..count {
        let request =
            format!("GET /api/v2/workspaces/{tag}-{i} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        // Each 401 fits one read; read until its (JSON) body ends.
        let mut got = Vec::new();
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("no answer")
                .unwrap();
            assert!(n > 0, "connection closed");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= length {
                    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
                    break;
                }
            }
        }
    }
    stream
}

/// Every access line of a request answered before SIGTERM is in the log
/// after a normal exit: several workers, connections left open (idle
/// keep-alive) at SIGTERM, SIGTERM right after the last answer.
#[tokio::test]
async fn every_access_line_answered_before_sigterm_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "workers: 4\nlog:\n  format: json\n");
    let rounds: usize = std::env::var("TOKENGATE_TEST_SIGTERM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let conns: usize = std::env::var("TOKENGATE_TEST_SIGTERM_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    for round in 0..rounds {
        let addr = free_addr();
        let log_path = dir.path().join(format!("log-{round}.txt"));
        let log_file = std::fs::File::create(&log_path).unwrap();
        let mut child = spawn_serve(&config, Some(addr), log_file);
        wait_listening(addr, &mut child.0).await;
        let mut set = tokio::task::JoinSet::new();
        for c in 0..conns {
            set.spawn(keep_alive_requests(
                addr,
                Box::leak(format!("r{round}c{c}").into_boxed_str()),
                40,
            ));
        }
        let open = set.join_all().await;
        child.signal("TERM");
        let status = child
            .wait_exit(Duration::from_secs(20))
            .expect("no exit within 20 s of SIGTERM");
        drop(open);
        assert!(status.success(), "{status}");
        let log = std::fs::read_to_string(&log_path).unwrap();
        let access = log
            .lines()
            .filter(|l| l.contains("\"tokengate::access\""))
            .count();
        assert_eq!(
            access,
            conns * 40,
            "round {round}: access lines in the log:\n{log}"
        );
        assert!(log.contains("tokengate stopped"), "{log}");
    }
}

#[tokio::test]
async fn every_request_logs_its_rule_mode_and_decision_and_shadow_matches() {
    let served = PolicyProcess::start(&default_with(SHADOW_RULES), true).await;
    let addr = served.process.addr;
    let response = send_raw(
        addr,
        RawRequest::new("POST", "/api/v2/runs/r/actions/apply").token(&served.org),
    )
    .await;
    assert_eq!(response.status, 403);
    let response = send_raw(
        addr,
        RawRequest::new("DELETE", "/api/v2/workspaces/ws-1").token(&served.org),
    )
    .await;
    assert_eq!(response.status, 200);

    let denied = served
        .log_where(|v| v["target"] == "tokengate::access" && v["method"] == "POST")
        .await;
    assert_eq!(denied.len(), 1, "{:?}", served.process.log_lines());
    let line = &denied[0];
    assert_eq!(line["rule"], "org-no-run-actions");
    assert_eq!(line["mode"], "enforce");
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["status"], 403);
    assert!(
        line["reason"].as_str().unwrap().contains("cannot apply"),
        "{line}"
    );
    assert!(line["token_id"].as_str().unwrap().starts_with("at-"));
    let all = served.process.log_lines().join("\n");
    assert!(!all.contains(&served.org), "a token must never be logged");

    let allowed = served
        .log_where(|v| v["target"] == "tokengate::access" && v["method"] == "DELETE")
        .await;
    assert_eq!(allowed[0]["decision"], "allow");
    assert_eq!(allowed[0]["rule"], "workspace-admin");
    assert_eq!(
        allowed[0]["access"], "admin on workspace ws-1: granted (organization_token)",
        "the access check is on the request's line"
    );
    assert!(
        allowed[0]["shadow"]
            .as_str()
            .unwrap()
            .contains("watch-org-deletes"),
        "{}",
        allowed[0]
    );
    let shadow = served
        .log_where(|v| v["target"] == "tokengate::shadow")
        .await;
    assert_eq!(shadow.len(), 1);
    assert_eq!(shadow[0]["rule"], "watch-org-deletes");
    assert_eq!(shadow[0]["outcome"], "would_deny");
    assert_eq!(served.upstream.count(), 1);
}

/// A request without a token that the policy refuses from its head, before
/// its body is read, is logged like any denial: its rule, and the shadow
/// rules it matched.
#[tokio::test]
async fn an_anonymous_request_refused_before_its_body_logs_its_shadow_matches() {
    let watch_anonymous = "  - id: watch-anonymous-writes
    effect: deny
    principals: [anonymous]
    methods: [PATCH]
    paths: [\"/api/**\"]
    mode: shadow
";
    let served = PolicyProcess::start(&default_with(watch_anonymous), true).await;
    let body = br#"{"data":{"attributes":{"name":"x"}}}"#;
    let response = send_raw(
        served.process.addr,
        RawRequest::new("PATCH", "/api/v2/workspaces/ws-1")
            .headers(&[("content-type", "application/vnd.api+json")])
            .body(body),
    )
    .await;
    assert_eq!(response.status, 401);
    let denied = served
        .log_where(|v| v["target"] == "tokengate::access" && v["method"] == "PATCH")
        .await;
    assert_eq!(denied.len(), 1, "{:?}", served.process.log_lines());
    assert_eq!(denied[0]["decision"], "deny");
    assert!(
        denied[0]["shadow"]
            .as_str()
            .is_some_and(|s| s.contains("watch-anonymous-writes")),
        "{}",
        denied[0]
    );
    let shadow = served
        .log_where(|v| v["target"] == "tokengate::shadow")
        .await;
    assert_eq!(shadow.len(), 1, "{:?}", served.process.log_lines());
    assert_eq!(shadow[0]["rule"], "watch-anonymous-writes");
    assert_eq!(served.upstream.count(), 0);
}
