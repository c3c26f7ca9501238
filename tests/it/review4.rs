//! Fourth review: header stripping in one pass (`forward.rs`, ca0c00b) and
//! the log writer thread (`logging.rs`, e5cfee8/efab663) with its wiring in
//! `serve` and `workers`.

use crate::harness::*;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------
// logging.rs / serve: lines at exit
// ---------------------------------------------------------------------------

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
async fn review4_every_access_line_answered_before_sigterm_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "workers: 4\nlog:\n  format: json\n");
    let rounds: usize = std::env::var("REVIEW4_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let conns: usize = std::env::var("REVIEW4_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    for round in 0..rounds {
        let addr = free_addr();
        let log_path = dir.path().join(format!("log-{round}.txt"));
        let log_file = std::fs::File::create(&log_path).unwrap();
        let mut child = Killed(
            Command::new(env!("CARGO_BIN_EXE_tokengate"))
                .args(["serve", "--config"])
                .arg(&config)
                .args(["--listen", &addr.to_string()])
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .unwrap(),
        );
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
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
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
