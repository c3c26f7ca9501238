//! The HTTP/1.1 server: strict framing (every ambiguity is a 400 that
//! closes the connection, and the upstream never sees the request), head
//! and body limits, `Expect: 100-continue`, keep-alive and pipelining,
//! timeouts that free connection slots, and the graceful drain of the real
//! binary through restarts on the same port (`SO_REUSEPORT`).

use crate::harness::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// A raw client that reads responses one by one from a kept connection.
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A JSON:API error document of this response's status.
    fn assert_json_api_error(&self) {
        assert_eq!(
            self.header("content-type"),
            Some("application/vnd.api+json"),
            "{self:?}"
        );
        let doc = self.json();
        assert_eq!(doc["errors"][0]["status"], self.status.to_string(), "{doc}");
        assert!(doc["errors"][0]["detail"].is_string(), "{doc}");
    }
}

/// One connection, read response by response.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes; false at the end of the stream (or on an error).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response (`None` when the connection ends first), within 10 s.
    async fn response(&mut self) -> Option<Response> {
        tokio::time::timeout(Duration::from_secs(10), self.read_response(false))
            .await
            .expect("no response within 10 s")
    }

    /// The next response to a HEAD request (no body).
    async fn head_response(&mut self) -> Option<Response> {
        tokio::time::timeout(Duration::from_secs(10), self.read_response(true))
            .await
            .expect("no response within 10 s")
    }

    async fn read_response(&mut self, head_request: bool) -> Option<Response> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status: u16 = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || status / 100 == 1 {
            return Some(response);
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().unwrap();
            while self.buf.len() < length {
                if !self.fill().await {
                    return None;
                }
            }
            response.body = self.buf.drain(..length).collect();
        } else if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    if !self.fill().await {
                        return None;
                    }
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                        .unwrap();
                while self.buf.len() < line_end + 2 + size + 2 {
                    if !self.fill().await {
                        return None;
                    }
                }
                response
                    .body
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
        } else {
            while self.fill().await {}
            response.body = std::mem::take(&mut self.buf);
        }
        Some(response)
    }

    /// True when the server closes the connection within 10 s (nothing
    /// more than what is buffered arrives).
    async fn closed(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.fill()).await {
                Ok(false) => return true,
                Ok(true) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Sends `bytes` on a new connection; the response and whether the server
/// then closed the connection. With `half_close`, the client ends its
/// sending side after the bytes.
async fn exchange(addr: SocketAddr, bytes: &[u8], half_close: bool) -> (Option<Response>, bool) {
    let mut client = Client::connect(addr).await;
    client.send(bytes).await;
    if half_close {
        client.stream.shutdown().await.unwrap();
    }
    let response = client.response().await;
    let closed = client.closed().await;
    (response, closed)
}

/// A world whose team token can PATCH a workspace (forwarded as is).
async fn world_with(extra: &str) -> (World, String) {
    let world = World::with_config(extra).await;
    let token = world.gateway.issue(world.team_owner()).await;
    (world, token)
}

fn patch_head(token: &str, framing: &str) -> String {
    format!(
        "PATCH /api/v2/workspaces/ws-1 HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/vnd.api+json\r\n{framing}\r\n"
    )
}

async fn metrics(addr: SocketAddr) -> String {
    let mut client = Client::connect(addr).await;
    client
        .send(b"GET /_tokengate/metrics HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
        .await;
    let response = client.response().await.unwrap();
    assert_eq!(response.status, 200);
    String::from_utf8(response.body).unwrap()
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_ambiguous_framing_is_a_400_that_closes_and_never_reaches_the_upstream() {
    let (world, token) = world_with("").await;
    let addr = world.gateway.addr;
    let smuggled = "GET /api/v2/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    // The same request, well framed, reaches the upstream.
    let body = r#"{"data":{}}"#;
    let good = format!(
        "{}{body}",
        patch_head(
            &token,
            &format!("Content-Length: {}\r\nConnection: close\r\n", body.len())
        )
    );
    let (response, _) = exchange(addr, good.as_bytes(), false).await;
    assert_eq!(response.unwrap().status, 200);
    assert_eq!(world.upstream.count(), 1);

    let head = |framing: &str| patch_head(&token, framing);
    let chunked = "Transfer-Encoding: chunked\r\n";
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "CL then TE",
            format!(
                "{}0\r\n\r\n{smuggled}",
                head("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n")
            ),
            false,
        ),
        (
            "TE then CL",
            format!(
                "{}0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n")
            ),
            false,
        ),
        (
            "two TE lines",
            format!("{}0\r\n\r\n", head(&format!("{chunked}{chunked}"))),
            false,
        ),
        (
            "chunked, identity",
            format!(
                "{}0\r\n\r\n",
                head("Transfer-Encoding: chunked, identity\r\n")
            ),
            false,
        ),
        (
            "xchunked",
            format!("{}0\r\n\r\n", head("Transfer-Encoding: xchunked\r\n")),
            false,
        ),
        (
            "two equal CL",
            format!(
                "{}{body}",
                head(&format!(
                    "Content-Length: {0}\r\nContent-Length: {0}\r\n",
                    body.len()
                ))
            ),
            false,
        ),
        (
            "two different CL",
            format!(
                "{}{body}",
                head(&format!(
                    "Content-Length: {}\r\nContent-Length: 4\r\n",
                    body.len()
                ))
            ),
            false,
        ),
        (
            "CL +5",
            format!("{}hello", head("Content-Length: +5\r\n")),
            false,
        ),
        (
            "CL 1,1",
            format!("{}x", head("Content-Length: 1,1\r\n")),
            false,
        ),
        (
            "bare LF line endings",
            format!(
                "PATCH /api/v2/workspaces/ws-1 HTTP/1.1\nHost: gateway.test\nAuthorization: Bearer {token}\nContent-Length: 0\n\n"
            ),
            false,
        ),
        (
            "a bare LF in one line",
            format!(
                "PATCH /api/v2/workspaces/ws-1 HTTP/1.1\r\nHost: gateway.test\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
            ),
            false,
        ),
        (
            "bare CR",
            format!(
                "PATCH /api/v2/workspaces/ws-1 HTTP/1.1\r\nHost: gateway.test\rAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
            ),
            false,
        ),
        (
            "obs-fold",
            format!(
                "{}{body}",
                head(&format!("X-Folded: a\r\n b\r\nContent-Length: {}\r\n", body.len()))
            ),
            false,
        ),
        (
            "absolute-form target",
            format!(
                "PATCH http://gateway.test/api/v2/workspaces/ws-1 HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
            ),
            false,
        ),
        (
            "chunk size zz",
            format!("{}zz\r\nhello\r\n0\r\n\r\n", head(chunked)),
            false,
        ),
        (
            "chunk size of 17 hex digits",
            format!("{}00000000000000005\r\nhello\r\n0\r\n\r\n", head(chunked)),
            false,
        ),
        (
            "trailer fields",
            format!(
                "{}2\r\n{{}}\r\n0\r\nX-Trailer: 1\r\n\r\n",
                head(chunked)
            ),
            false,
        ),
        (
            "HTTP/1.0 with TE",
            format!(
                "PATCH /api/v2/workspaces/ws-1 HTTP/1.0\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/vnd.api+json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
            ),
            false,
        ),
        (
            "missing final CRLF, then close",
            format!(
                "PATCH /api/v2/workspaces/ws-1 HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n"
            ),
            true,
        ),
    ];
    for (name, raw, half_close) in &cases {
        let (response, closed) = exchange(addr, raw.as_bytes(), *half_close).await;
        let response = response.unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(response.status, 400, "{name}: {response:?}");
        response.assert_json_api_error();
        assert!(response.closes(), "{name}: no Connection: close");
        assert!(closed, "{name}: the connection stayed open");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        world.upstream.count(),
        1,
        "the upstream saw a refused request: {:?}",
        world.upstream.requests()
    );
    assert!(world
        .upstream
        .requests()
        .iter()
        .all(|r| !r.target.contains("smuggled")));
    let text = metrics(addr).await;
    assert!(
        metric(&text, "tokengate_http_errors_total{reason=\"framing\"}") >= 9,
        "{text}"
    );
}

#[tokio::test]
async fn a_version_other_than_1_0_and_1_1_is_a_505_and_other_expectations_a_417() {
    let (world, token) = world_with("").await;
    let addr = world.gateway.addr;
    let (response, closed) = exchange(
        addr,
        b"GET /api/v2/ping HTTP/1.2\r\nHost: gateway.test\r\n\r\n",
        false,
    )
    .await;
    let response = response.unwrap();
    assert_eq!(response.status, 505);
    response.assert_json_api_error();
    assert!(closed);
    let raw = format!(
        "{}{{}}",
        patch_head(&token, "Expect: something-else\r\nContent-Length: 2\r\n")
    );
    let (response, closed) = exchange(addr, raw.as_bytes(), false).await;
    let response = response.unwrap();
    assert_eq!(response.status, 417);
    response.assert_json_api_error();
    assert!(closed);
    assert_eq!(world.upstream.count(), 0);
}

// ---------------------------------------------------------------------------
// Limits on the head and the body
// ---------------------------------------------------------------------------

/// A request head of exactly `size` bytes (request line to the final CRLF).
fn head_of_size(size: usize) -> String {
    let start = "GET /api/v2/ping HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\nX-Pad: ";
    let pad = size - start.len() - 4;
    let text = format!("{start}{}\r\n\r\n", "p".repeat(pad));
    assert_eq!(text.len(), size);
    text
}

#[tokio::test]
async fn the_head_may_be_exactly_max_header_bytes_and_not_one_more() {
    let (world, _) =
        world_with("limits:\n  max_header_bytes: 8192\n  max_header_count: 20\n").await;
    let addr = world.gateway.addr;
    let (response, _) = exchange(addr, head_of_size(8192).as_bytes(), false).await;
    assert_eq!(response.unwrap().status, 200, "exactly the limit");
    let (response, closed) = exchange(addr, head_of_size(8193).as_bytes(), false).await;
    let response = response.unwrap();
    assert_eq!(response.status, 431, "one byte more");
    response.assert_json_api_error();
    assert!(closed);
    // Header lines: 20 accepted, 21 refused.
    let with_lines = |count: usize| {
        let mut text = String::from(
            "GET /api/v2/ping HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n",
        );
        for i in 2..count {
            text.push_str(&format!("X-{i}: v\r\n"));
        }
        text.push_str("\r\n");
        text
    };
    let (response, _) = exchange(addr, with_lines(20).as_bytes(), false).await;
    assert_eq!(response.unwrap().status, 200, "20 header lines");
    let (response, closed) = exchange(addr, with_lines(21).as_bytes(), false).await;
    let response = response.unwrap();
    assert_eq!(response.status, 431, "21 header lines");
    response.assert_json_api_error();
    assert!(closed);
    assert_eq!(world.upstream.count(), 2);
}

#[tokio::test]
async fn chunked_bodies_are_bounded_and_forwarded_with_their_length() {
    let (world, token) = world_with("limits: { max_body_bytes: 1024 }\n").await;
    let addr = world.gateway.addr;
    let part = "x".repeat(600);
    let raw = format!(
        "{}258\r\n{part}\r\n258\r\n{part}\r\n0\r\n\r\n",
        patch_head(&token, "Transfer-Encoding: chunked\r\n")
    );
    let (response, closed) = exchange(addr, raw.as_bytes(), false).await;
    let response = response.unwrap();
    assert_eq!(response.status, 413);
    response.assert_json_api_error();
    assert!(closed);
    // Declared too large: refused before the body is read.
    let raw = patch_head(&token, "Content-Length: 1025\r\n");
    let (response, closed) = exchange(addr, raw.as_bytes(), false).await;
    assert_eq!(response.unwrap().status, 413);
    assert!(closed);
    assert_eq!(world.upstream.count(), 0, "nothing refused is forwarded");

    let body = r#"{"data":{"attributes":{"name":"chunked"}}}"#;
    let raw = format!(
        "{}5;ext=1\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        patch_head(
            &token,
            "Transfer-Encoding: chunked\r\nConnection: close\r\n"
        ),
        &body[..5],
        body.len() - 5,
        &body[5..]
    );
    let (response, _) = exchange(addr, raw.as_bytes(), false).await;
    assert_eq!(response.unwrap().status, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(
        seen.header("content-length"),
        Some(&*body.len().to_string())
    );
    assert_eq!(seen.header("transfer-encoding"), None);
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let (world, token) = world_with("limits: { max_body_bytes: 1024 }\n").await;
    let addr = world.gateway.addr;
    let body = r#"{"data":{"attributes":{"name":"expect"}}}"#;
    let mut client = Client::connect(addr).await;
    client
        .send(
            patch_head(
                &token,
                &format!("Expect: 100-continue\r\nContent-Length: {}\r\n", body.len()),
            )
            .as_bytes(),
        )
        .await;
    let interim = client.response().await.unwrap();
    assert_eq!(interim.status, 100);
    client.send(body.as_bytes()).await;
    let response = client.response().await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(world.upstream.last().body, body.as_bytes());
    assert_eq!(world.upstream.last().header("expect"), None);

    // Too large: 413 at once, no 100 Continue, nothing forwarded.
    let mut client = Client::connect(addr).await;
    client
        .send(patch_head(&token, "Expect: 100-continue\r\nContent-Length: 5000\r\n").as_bytes())
        .await;
    let response = client.response().await.unwrap();
    assert_eq!(response.status, 413);
    assert!(client.closed().await);
    assert_eq!(world.upstream.count(), 1);

    // curl waits for the 100 (up to 10 s here) before it sends the body.
    let file = world.dir.path().join("body.json");
    std::fs::write(&file, body).unwrap();
    let started = Instant::now();
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--expect100-timeout", "10", "-X", "PATCH"])
        .args(["-H", "Expect: 100-continue"])
        .args(["-H", "Content-Type: application/vnd.api+json"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("http://{addr}/api/v2/workspaces/ws-2"))
        .output()
        .await
        .expect("curl must be installed (scripts/install-deps.sh test)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.ends_with("\n200"), "{stdout} {:?}", output.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "curl waited for its expect timeout: no 100 Continue"
    );
    assert_eq!(world.upstream.count(), 2);
    assert_eq!(world.upstream.last().body, body.as_bytes());
}

/// Nobody without a valid token makes the gateway take in a body: no
/// `100 Continue`, no body read, the answer at once and the connection
/// closed, whether the token is missing, malformed or unknown.
#[tokio::test]
async fn a_body_is_not_read_before_its_sender_is_authenticated() {
    let (world, token) = world_with("limits: { max_body_bytes: 2097152 }\n").await;
    let addr = world.gateway.addr;
    let forged = forge(&token[..14]);
    let body_len = 1_048_576;
    for (who, authorization) in [
        ("no token", String::new()),
        (
            "a malformed token",
            "Authorization: Bearer garbage\r\n".to_owned(),
        ),
        (
            "an unknown token",
            format!("Authorization: Bearer {forged}\r\n"),
        ),
    ] {
        let mut client = Client::connect(addr).await;
        client
            .send(
                format!(
                    "PATCH /api/v2/workspaces/ws-2 HTTP/1.1\r\nHost: gateway.test\r\n{authorization}Content-Type: application/vnd.api+json\r\nExpect: 100-continue\r\nContent-Length: {body_len}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
        // The answer comes without a byte of the body sent.
        let response = client.response().await.unwrap();
        assert_eq!(response.status, 401, "{who}: {:?}", response.body);
        assert!(client.closed().await, "{who}: the connection stays open");
    }
    // Without `Expect`, a client that sends its body anyway: still refused
    // from the head, the body never held.
    let mut client = Client::connect(addr).await;
    let mut raw = format!(
        "PATCH /api/v2/workspaces/ws-2 HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/vnd.api+json\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    raw.extend(std::iter::repeat_n(b' ', 4096));
    client.send(&raw).await;
    let response = client.response().await.unwrap();
    assert_eq!(response.status, 401, "{:?}", response.body);
    assert_eq!(world.upstream.count(), 0, "nothing refused is forwarded");
    // A valid token: 100 Continue, then the body is read and judged.
    let body = r#"{"data":{"attributes":{"name":"ok"}}}"#;
    let mut client = Client::connect(addr).await;
    client
        .send(
            patch_head(
                &token,
                &format!("Expect: 100-continue\r\nContent-Length: {}\r\n", body.len()),
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(client.response().await.unwrap().status, 100);
    client.send(body.as_bytes()).await;
    assert_eq!(client.response().await.unwrap().status, 200);
    assert_eq!(world.upstream.last().body, body.as_bytes());
}

// ---------------------------------------------------------------------------
// Keep-alive and pipelining
// ---------------------------------------------------------------------------

/// The connection loop is generic over the stream (TLS will wrap it): here
/// an in-memory pipe, no socket.
#[tokio::test]
async fn the_connection_loop_serves_any_stream() {
    use tokengate::runtime::connection::{self, Phase};
    let (world, token) = world_with("").await;
    let gateway = world.gateway.gateway.clone();
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (_phase, watched) = tokio::sync::watch::channel(Phase::Serving);
    let serving = tokio::spawn(async move {
        let upstream = gateway.forwarder.lease();
        let limits = connection::limits(&gateway.config.limits);
        connection::serve(
            server,
            "127.0.0.1:1".parse().unwrap(),
            &gateway,
            &upstream,
            limits,
            watched,
        )
        .await;
    });
    let (mut read, mut write) = tokio::io::split(client);
    write
        .write_all(
            format!(
                "GET /api/v2/workspaces HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {token}\r\n\r\nGET /api/v2/workspaces HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut text = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut text))
        .await
        .expect("the loop did not close after Connection: close")
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "{text}");
    assert!(text.contains("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
    assert_eq!(world.upstream.count(), 1);
    drop((read, write));
    serving.await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_a_kept_connection() {
    let (world, token) = world_with("").await;
    let mut client = Client::connect(world.gateway.addr).await;
    // Three requests in one write, each with a different answer.
    let pipelined = format!(
        "GET /api/v2/workspaces HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {token}\r\n\r\n\
         GET /_tokengate/health HTTP/1.1\r\nHost: g\r\n\r\n\
         GET /api/v2/workspaces HTTP/1.1\r\nHost: g\r\n\r\n"
    );
    client.send(pipelined.as_bytes()).await;
    let first = client.response().await.unwrap();
    assert_eq!(
        (first.status, first.body.as_slice()),
        (200, &br#"{"upstream":true}"#[..])
    );
    let second = client.response().await.unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["status"], "ok");
    let third = client.response().await.unwrap();
    assert_eq!(third.status, 401);
    assert!(!third.closes());
    // Still open: a fourth request, later, and a HEAD (no body).
    client
        .send(b"HEAD /_tokengate/health HTTP/1.1\r\nHost: g\r\n\r\n")
        .await;
    let head = client.head_response().await.unwrap();
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some());
    client
        .send(b"GET /_tokengate/health HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
        .await;
    let last = client.response().await.unwrap();
    assert_eq!(last.status, 200);
    assert!(last.closes());
    assert!(client.closed().await);
    assert_eq!(world.upstream.count(), 1);
}

#[tokio::test]
async fn http_1_0_keeps_the_connection_only_when_asked() {
    let (world, _) = world_with("").await;
    let addr = world.gateway.addr;
    let (response, closed) =
        exchange(addr, b"GET /_tokengate/health HTTP/1.0\r\n\r\n", false).await;
    let response = response.unwrap();
    assert_eq!(response.status, 200);
    assert!(response.closes());
    assert!(closed);
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        client
            .send(b"GET /_tokengate/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let response = client.response().await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
}

// ---------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn stalled_bodies_time_out_and_free_their_connection_slots() {
    let (world, token) = world_with(
        "limits:\n  max_connections: 50\n  body_read_timeout_ms: 300\n  body_idle_timeout_ms: 300\n",
    )
    .await;
    let addr = world.gateway.addr;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut client = Client::connect(addr).await;
        client
            .send(
                format!(
                    "{}0123456789",
                    patch_head(&token, "Content-Length: 100\r\n")
                )
                .as_bytes(),
            )
            .await;
        stalled.push(client);
    }
    // A new client is served once the body timeouts fire.
    let started = Instant::now();
    let (response, _) = exchange(
        addr,
        b"GET /api/v2/ping HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
        false,
    )
    .await;
    assert_eq!(response.unwrap().status, 200);
    assert!(started.elapsed() < Duration::from_secs(10));
    for client in &mut stalled {
        let response = client.response().await.expect("a 408");
        assert_eq!(response.status, 408);
        response.assert_json_api_error();
        assert!(client.closed().await);
    }
    assert_eq!(
        world.upstream.count(),
        1,
        "no stalled request was forwarded"
    );
    let text = metrics(addr).await;
    assert_eq!(
        metric(&text, "tokengate_timeouts_total{kind=\"body\"}")
            + metric(&text, "tokengate_timeouts_total{kind=\"body_idle\"}"),
        50,
        "{text}"
    );
}

#[tokio::test]
async fn a_stalled_head_is_a_408_and_an_idle_connection_is_closed() {
    let (world, _) =
        world_with("limits:\n  header_read_timeout_ms: 300\n  keep_alive_timeout_ms: 300\n").await;
    let addr = world.gateway.addr;
    let (response, closed) =
        exchange(addr, b"GET /api/v2/ping HTTP/1.1\r\nHost: g\r\n", false).await;
    let response = response.unwrap();
    assert_eq!(response.status, 408);
    response.assert_json_api_error();
    assert!(closed);
    // Kept between requests, then closed without a word once idle.
    let mut client = Client::connect(addr).await;
    for _ in 0..2 {
        client
            .send(b"GET /_tokengate/health HTTP/1.1\r\nHost: g\r\n\r\n")
            .await;
        assert_eq!(client.response().await.unwrap().status, 200);
    }
    assert!(client.closed().await);
    assert!(client.buf.is_empty(), "no unasked response");
    // A connection that never sends a byte is closed too.
    let mut silent = Client::connect(addr).await;
    assert!(silent.closed().await);
}

/// An upstream that answers every request with `size` bytes.
async fn big_upstream(size: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = bytes::Bytes::from(vec![b'x'; size]);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            let service = hyper::service::service_fn(move |_request| {
                let body = body.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(body),
                    ))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_at_the_write_timeout() {
    let big = big_upstream(16 * 1024 * 1024).await;
    let world = World::with_config_file(|dir, _, redis| {
        write_config(
            dir,
            &format!("http://{big}"),
            redis,
            "limits: { write_timeout_ms: 300 }\n",
        )
    })
    .await;
    let token = world.gateway.issue(world.team_owner()).await;
    let addr = world.gateway.addr;
    // A small receive buffer, and no reads.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let std_stream: std::net::TcpStream = socket.into();
    std_stream.set_nonblocking(true).unwrap();
    let mut slow = TcpStream::from_std(std_stream).unwrap();
    slow.write_all(
        format!(
            "GET /api/v2/workspaces HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Others are served meanwhile.
    for _ in 0..3 {
        let (response, _) = exchange(
            addr,
            b"GET /_tokengate/health HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(response.unwrap().status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(addr).await;
        if metric(&text, "tokengate_timeouts_total{kind=\"write\"}") == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no write timeout: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The slow client gets less than the whole body, then the end.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut got))
        .await
        .expect("the slow connection was not closed");
    assert!(got.len() < 16 * 1024 * 1024, "{} bytes", got.len());
}

// ---------------------------------------------------------------------------
// The real binary: access log, and the graceful drain through restarts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn refusals_are_in_the_access_log_and_failed_tokens_are_logged_as_invalid() {
    let world = World::with_config("log:\n  format: json\n").await;
    let process = GatewayProcess::start(&world.dir.path().join("tokengate.yaml"));
    let (response, _) = exchange(
        process.addr,
        b"POST /api/v2/ping HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        false,
    )
    .await;
    assert_eq!(response.unwrap().status, 400);
    let bogus = tokengate::token::format::assemble(
        "abcdefghijklmn",
        &tokengate::token::format::random_string(64),
    );
    let response = send_raw(
        process.addr,
        RawRequest::new("GET", "/api/v2/workspaces").token(&bogus),
    )
    .await;
    assert_eq!(response.status, 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (refused, failed) = loop {
        let access: Vec<serde_json::Value> = process
            .log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["target"] == "tokengate::access")
            .collect();
        let refused = access.iter().find(|v| v["status"] == 400).cloned();
        let failed = access.iter().find(|v| v["status"] == 401).cloned();
        if let (Some(refused), Some(failed)) = (refused, failed) {
            break (refused, failed);
        }
        assert!(Instant::now() < deadline, "{:?}", process.log_lines());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not both")),
        "{refused}"
    );
    assert_eq!(failed["kind"], "invalid", "{failed}");
    assert_eq!(world.upstream.count(), 0);
}

/// `tokengate serve` on `addr`, logging to a file; killed on drop.
struct Served {
    child: Killed,
    log: std::path::PathBuf,
}

impl Served {
    /// Starts it and waits until it logs that it listens.
    async fn start(config: &Path, addr: SocketAddr, name: &str) -> Served {
        let log = config.with_file_name(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &addr.to_string()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut served = Served {
            child: Killed(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !served.log().contains("tokengate listening") {
            if let Ok(Some(status)) = served.child.0.try_wait() {
                panic!("{name} exited with {status}: {}", served.log());
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen: {}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        served
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&self) {
        Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the exit; its status.
    async fn exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit: {}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What the continuously sending clients saw.
#[derive(Default)]
struct Tally {
    answered: AtomicUsize,
    /// Written, and no complete response came back.
    lost: AtomicUsize,
    /// Not a 200.
    unexpected: AtomicUsize,
    reconnects: AtomicUsize,
    connect_failures: AtomicUsize,
}

/// One client connection after another, sending `GET /api/v2/ping` as fast
/// as answers come, until `stop`. A `Connection: close` answer means "open
/// a new connection"; a request written without a complete answer is lost.
async fn keep_sending(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let request = b"GET /api/v2/ping HTTP/1.1\r\nHost: gateway.test\r\n\r\n";
    let mut sent = 0;
    'connections: while !stop.load(Ordering::Relaxed) && sent < 100_000 {
        let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
        else {
            tally.connect_failures.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tally.reconnects.fetch_add(1, Ordering::Relaxed);
        let mut client = Client {
            stream,
            buf: Vec::new(),
        };
        while !stop.load(Ordering::Relaxed) {
            sent += 1;
            if client.stream.write_all(request).await.is_err() {
                tally.lost.fetch_add(1, Ordering::Relaxed);
                continue 'connections;
            }
            let response =
                tokio::time::timeout(Duration::from_secs(10), client.read_response(false)).await;
            match response {
                Ok(Some(response)) => {
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                    if response.status != 200 {
                        tally.unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                    if response.closes() {
                        continue 'connections;
                    }
                }
                _ => {
                    tally.lost.fetch_add(1, Ordering::Relaxed);
                    continue 'connections;
                }
            }
        }
    }
}

/// One request on a kept connection; its status.
async fn status_on(client: &mut Client, path: &str) -> u16 {
    client
        .send(format!("GET {path} HTTP/1.1\r\nHost: g\r\n\r\n").as_bytes())
        .await;
    client.response().await.expect("an answer").status
}

#[tokio::test]
async fn restarts_on_the_same_port_lose_no_request() {
    let world = World::with_config(
        "workers: 2\nlisten_reuse_port: true\nshutdown:\n  drain_delay_ms: 1500\n  grace_period_ms: 8000\n",
    )
    .await;
    let config = world.dir.path().join("tokengate.yaml");
    let addr = free_addr();
    let mut old = Served::start(&config, addr, "first").await;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..32)
        .map(|_| tokio::spawn(keep_sending(addr, stop.clone(), tally.clone())))
        .collect();
    for cycle in ["second", "third"] {
        // A connection to the old process (the only one listening now).
        let mut probe = Client::connect(addr).await;
        assert_eq!(status_on(&mut probe, "/_tokengate/ready").await, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let new = Served::start(&config, addr, cycle).await;
        let before = tally.answered.load(Ordering::Relaxed);
        old.terminate();
        // Draining: not ready (once the signal is handled), still serving.
        let deadline = Instant::now() + Duration::from_secs(1);
        while status_on(&mut probe, "/_tokengate/ready").await != 503 {
            assert!(
                Instant::now() < deadline,
                "{cycle}: still ready after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status_on(&mut probe, "/api/v2/ping").await, 200);
        drop(probe);
        let status = old.exit(Duration::from_secs(15)).await;
        assert!(
            status.success(),
            "{cycle}: the old process exited with {status}: {}",
            old.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            tally.answered.load(Ordering::Relaxed) > before,
            "the clients made no progress"
        );
        old = new;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    old.terminate();
    assert!(old.exit(Duration::from_secs(15)).await.success());
    let (answered, lost) = (
        tally.answered.load(Ordering::Relaxed),
        tally.lost.load(Ordering::Relaxed),
    );
    eprintln!(
        "answered {answered}, lost {lost}, connections {}",
        tally.reconnects.load(Ordering::Relaxed)
    );
    assert_eq!(lost, 0, "lost {lost} of {} requests", answered + lost);
    assert_eq!(tally.unexpected.load(Ordering::Relaxed), 0);
    assert_eq!(tally.connect_failures.load(Ordering::Relaxed), 0);
    assert!(answered > 100, "{answered}");
    assert!(
        tally.reconnects.load(Ordering::Relaxed) >= 64,
        "every connection moved twice"
    );
}

#[tokio::test]
async fn without_reuse_port_a_second_process_cannot_bind_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "");
    let addr = free_addr();
    let _first = Served::start(&config, addr, "first").await;
    let output = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen_reuse_port"), "{stderr}");
}
