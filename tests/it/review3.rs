//! Third review: the per-CPU workers (`workers.rs`), the batched log writer
//! (`logging.rs`) and their wiring in `serve`. Each test runs the real
//! binary.

use crate::harness::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
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

// ---------------------------------------------------------------------------
// Finding: the whole gateway stops answering when nobody reads its stderr.
// ---------------------------------------------------------------------------

/// The previous writer (tracing-appender, lossy) dropped lines when the log
/// reader fell behind; the batching writer blocks the worker (in
/// `on_thread_park`, holding stderr's lock) and so every connection of
/// every worker, and the main thread. A stuck log shipper (or a full pipe)
/// must cost log lines, not the gateway.
#[tokio::test]
async fn review3_unread_stderr_does_not_stop_the_gateway_answering() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "workers: 2\n");
    let addr = free_addr();
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &addr.to_string()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            // A pipe that is never read: like a log shipper that stalled.
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let _unread_stderr = child.0.stderr.take().unwrap();
    wait_listening(addr, &mut child.0).await;

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

/// Same cause: once a worker is blocked writing to stderr it holds stderr's
/// lock, so the main thread blocks logging "shutdown requested" and never
/// tells the workers to stop: SIGTERM no longer stops the gateway.
#[tokio::test]
async fn review3_sigterm_stops_the_gateway_even_when_stderr_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "workers: 2\n");
    let addr = free_addr();
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &addr.to_string()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let _unread_stderr = child.0.stderr.take().unwrap();
    wait_listening(addr, &mut child.0).await;
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
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM did not stop the gateway within 10 s (status {status:?})"
    );
}

// ---------------------------------------------------------------------------
// Finding: a SIGTERM soon after "tokengate listening" kills the process.
// ---------------------------------------------------------------------------

/// `serve` logs "tokengate listening", then starts the workers (which accept
/// at once), and only then polls `shutdown_signal()`, which is what installs
/// the SIGTERM/Ctrl-C handlers. Until then SIGTERM's default action kills the
/// process mid-request, without drain. With many workers the window is
/// several milliseconds.
#[test]
fn review3_sigterm_right_after_listening_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "workers: 256\nlog:\n  format: json\n");
    for attempt in 0..2 {
        let mut child = Killed(
            Command::new(env!("CARGO_BIN_EXE_tokengate"))
                .args(["serve", "--config"])
                .arg(&config)
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id().to_string();
        let stderr = child.0.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let listening = line.contains("tokengate listening");
            seen.push(line);
            if listening {
                // What a supervisor does once the gateway says it is up.
                Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                break;
            }
        }
        // Keep draining stderr so the process can write its last lines.
        let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        seen.extend(rest.join().unwrap());
        assert!(
            status.success(),
            "attempt {attempt}: SIGTERM after `tokengate listening` must drain and exit 0, got {status}; log: {seen:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Finding: a worker thread that cannot be spawned panics the process.
// ---------------------------------------------------------------------------

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

/// `start_worker` builds the worker's runtime on the calling (async) thread
/// and moves it into the thread closure; when `std::thread::Builder::spawn`
/// fails (thread/pid limits: RLIMIT_NPROC, a cgroup's pids.max) the closure,
/// and the runtime in it, are dropped inside the main runtime, and tokio
/// panics ("Cannot drop a runtime in a context where blocking is not
/// allowed") instead of `serve` returning `WorkersError::Start`.
#[test]
fn review3_worker_thread_limit_is_a_clean_start_error_not_a_panic() {
    let has_setpriv = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !is_root() || !has_setpriv {
        // RLIMIT_NPROC does not bind root; the test drops to an unused uid.
        eprintln!("skipped: needs root and setpriv(1)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "workers: 64\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = Command::new("setpriv")
        .args([
            "--reuid=64999",
            "--regid=64999",
            "--clear-groups",
            "prlimit",
            "--nproc=12",
        ])
        .arg(env!("CARGO_BIN_EXE_tokengate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "a thread limit must not panic the gateway:\n{stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot start worker"), "{stderr}");
}

/// `WorkersError::Start` both prints its `source` and returns it as the
/// source, so `{:#}` (how `main` prints errors) says the cause twice:
/// "cannot start worker 1: Too many open files (os error 24): Too many open
/// files (os error 24)".
#[test]
fn review3_worker_start_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "workers: 64\n");
    let output = Command::new("prlimit")
        .arg("--nofile=40")
        .arg(env!("CARGO_BIN_EXE_tokengate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(error.contains("cannot start worker"), "{error}");
    assert_eq!(
        error.matches("Too many open files").count(),
        1,
        "the cause is repeated: {error}"
    );
}

// ---------------------------------------------------------------------------
// Checked and fine (guards for the fix).
// ---------------------------------------------------------------------------

/// Sends one keep-alive request on `stream`; true when a response head came
/// back within `within`.
async fn answered_on(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let request = "GET /api/v2/workspaces/x HTTP/1.1\r\nHost: gateway.test\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 4096];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 401")
    )
}

/// `limits.max_connections` bounds the process, not each worker: with 3
/// workers and a limit of 2, a third connection waits until one closes.
#[tokio::test]
async fn review3_max_connections_bounds_the_process_across_workers() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "workers: 3\nlimits:\n  max_connections: 2\n");
    let addr = free_addr();
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Readiness probe without holding a connection.
    wait_listening(addr, &mut child.0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(answered_on(&mut first, Duration::from_secs(5)).await);
    assert!(answered_on(&mut second, Duration::from_secs(5)).await);
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        !answered_on(&mut third, Duration::from_secs(1)).await,
        "a third connection was served with max_connections: 2"
    );
    drop(first);
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("the third connection was not served after one closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 401"));
    assert!(answered_on(&mut second, Duration::from_secs(5)).await);
}

/// Redis down when the gateway starts (every worker's first connection
/// attempt fails): it fails closed, then every worker recovers.
#[tokio::test]
async fn review3_redis_down_at_start_then_every_worker_recovers() {
    let mut world = World::with_config("workers: 3\nlog:\n  format: json\n").await;
    let token = world.gateway.issue(world.team_owner()).await;
    world.redis.kill();
    let process = GatewayProcess::start(&world.dir.path().join("tokengate.yaml"));
    let statuses = burst(process.addr, &token, 12).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
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
