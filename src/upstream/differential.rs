//! Differential tests of the byte-level client ([`super::client`]): the
//! same request, sent to an upstream that answers with the same bytes,
//! by this client and by hyper's HTTP/1 client. Both must read the same
//! answer (status, headers, body) or both fail, and the upstream must
//! receive the same request from both. The answers are generated from a
//! seeded grammar (framings, chunkings, statuses, malformed variants), so
//! a failure names a case that can be replayed.

use super::connect::Connector;
use super::lease::UpstreamLease;
use super::pool::UpstreamPool;
use super::request::UpstreamRequest;
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a client made of an answer.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Answer {
        status: u16,
        /// Lowercase names, in order, without the connection's own headers
        /// and without `Content-Length` (checked on its own).
        headers: Vec<(String, Vec<u8>)>,
        body: Result<Vec<u8>, ()>,
    },
    /// No answer could be read.
    Failed,
}

/// An outcome in a line: the body by its length and its start.
fn summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed => "failed".into(),
        Outcome::Answer {
            status,
            headers,
            body,
        } => {
            let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
            let body = match body {
                Ok(body) => format!(
                    "{} bytes: {:?}",
                    body.len(),
                    String::from_utf8_lossy(&body[..body.len().min(24)])
                ),
                Err(()) => "failed".into(),
            };
            format!("{status} {names:?}, body {body}")
        }
    }
}

/// The request as the upstream read it.
#[derive(Debug, PartialEq, Eq)]
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// An upstream that reads one request per connection, records it, writes
/// `answer` byte for byte and closes.
async fn scripted_upstream(answer: Vec<u8>) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else {
                    return;
                };
                log.lock().unwrap().push(request);
                let _ = socket.write_all(&answer).await;
                let _ = socket.shutdown().await;
                // Drain until the client closes, so the close is clean.
                let mut sink = [0u8; 1024];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, received)
}

async fn read_request(socket: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut lines = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut lines);
        let httparse::Status::Complete(head) = request.parse(&buf).ok()? else {
            continue;
        };
        let length: usize = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map_or(0, |h| {
                std::str::from_utf8(h.value).unwrap().parse().unwrap()
            });
        if buf.len() < head + length {
            continue;
        }
        return Some(Received {
            method: request.method?.to_owned(),
            target: request.path?.to_owned(),
            headers: request
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect(),
            body: buf[head..head + length].to_vec(),
        });
    }
}

fn headers_of(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut headers = headers.clone();
    super::headers::remove_hop_by_hop(&mut headers);
    headers.remove(http::header::CONTENT_LENGTH);
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

fn request_parts(method: &Method, body: &[u8]) -> http::request::Parts {
    let mut request = Request::builder()
        .method(method.clone())
        .uri("/api/v2/workspaces/ws-1?include=a%2Cb")
        .header("host", "upstream.test")
        .header("content-type", "application/vnd.api+json")
        .header("x-tokengate-team-id", "team-1")
        .header("accept", "*/*");
    if !body.is_empty() {
        request = request.header("content-length", body.len());
    }
    request.body(()).unwrap().into_parts().0
}

async fn with_ours(addr: SocketAddr, method: &Method, body: &[u8]) -> Outcome {
    let pool = UpstreamPool::new(
        Connector::new(addr.to_string(), None, Duration::from_secs(5)),
        Duration::from_secs(30),
        8,
    );
    let lease = UpstreamLease::new(Arc::new(pool));
    let request = UpstreamRequest::new(request_parts(method, body), Bytes::copy_from_slice(body));
    let Ok(response) = lease.send(&request, Duration::from_secs(5)).await else {
        return Outcome::Failed;
    };
    if let Some(length) = response.headers().get("content-length") {
        assert_eq!(
            response.headers().get_all("content-length").iter().count(),
            1
        );
        assert!(length.to_str().unwrap().parse::<u64>().is_ok());
    }
    outcome(response).await
}

async fn with_hyper(addr: SocketAddr, method: &Method, body: &[u8]) -> Outcome {
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return Outcome::Failed;
    };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await
    else {
        return Outcome::Failed;
    };
    tokio::spawn(connection);
    let parts = request_parts(method, body);
    let request = Request::from_parts(parts, Full::new(Bytes::copy_from_slice(body)));
    let Ok(response) = sender.send_request(request).await else {
        return Outcome::Failed;
    };
    outcome(response).await
}

/// The outcome of an answer whose head was read: its body read whole.
async fn outcome<B: http_body::Body>(response: http::Response<B>) -> Outcome {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .map_err(|_| ());
    Outcome::Answer {
        status: parts.status.as_u16(),
        headers: headers_of(&parts.headers),
        body,
    }
}

/// A chunked encoding of `body` in random pieces, with random extensions
/// and trailers.
fn chunked(rng: &mut StdRng, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let take = rng.random_range(1..=rest.len().min(700));
        let size = if rng.random_bool(0.5) {
            format!("{take:x}")
        } else {
            format!("{take:X}")
        };
        out.extend_from_slice(size.as_bytes());
        if rng.random_bool(0.2) {
            out.extend_from_slice(b";ext=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..take]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[take..];
    }
    out.extend_from_slice(b"0\r\n");
    if rng.random_bool(0.2) {
        out.extend_from_slice(b"X-Trailer: t\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A random answer: a status, some headers, and a body framed one of the
/// ways an upstream may frame it, sometimes wrongly.
fn answer(rng: &mut StdRng) -> (String, Vec<u8>) {
    let status = [200, 201, 202, 204, 304, 404, 422, 500][rng.random_range(0..8)];
    let length = [0, 1, 17, 600, 5000, 40_000][rng.random_range(0..6)];
    let body: Vec<u8> = (0..length).map(|_| rng.random_range(b' '..=b'~')).collect();
    let mut head = format!("HTTP/1.1 {status} X\r\ncontent-type: application/vnd.api+json\r\n");
    if rng.random_bool(0.3) {
        head.push_str("X-Request-Id: abc\r\nx-multi: 1\r\nX-Multi: 2\r\n");
    }
    let interim = if rng.random_bool(0.1) {
        b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()
    } else {
        Vec::new()
    };
    let framing = rng.random_range(0..9);
    let (label, framed_head, framed_body) = match framing {
        0 => (
            "length",
            format!("content-length: {length}\r\n"),
            body.clone(),
        ),
        1 => (
            "length twice",
            format!("content-length: {length}\r\nContent-Length: {length}\r\n"),
            body.clone(),
        ),
        2 => (
            "chunked",
            "transfer-encoding: chunked\r\n".into(),
            chunked(rng, &body),
        ),
        3 => ("until close", String::new(), body.clone()),
        4 => (
            "short body",
            format!("content-length: {}\r\n", length + 10),
            body.clone(),
        ),
        5 => (
            "two lengths",
            format!(
                "content-length: {length}\r\ncontent-length: {}\r\n",
                length + 1
            ),
            body.clone(),
        ),
        6 => (
            "bad chunk size",
            "transfer-encoding: chunked\r\n".into(),
            b"zz\r\nabc\r\n0\r\n\r\n".to_vec(),
        ),
        7 => (
            "chunked cut short",
            "transfer-encoding: chunked\r\n".into(),
            chunked(rng, &body)[..(length / 2).min(3)].to_vec(),
        ),
        _ => (
            "connection close",
            format!("content-length: {length}\r\nconnection: close\r\n"),
            body.clone(),
        ),
    };
    let mut bytes = interim;
    bytes.extend_from_slice(head.as_bytes());
    bytes.extend_from_slice(framed_head.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(&framed_body);
    (format!("{status} {label} ({length} bytes)"), bytes)
}

/// Cases where this client is stricter than hyper on purpose, by label.
fn stricter_on_purpose(label: &str) -> bool {
    // Two different lengths: hyper may pick one; this client refuses to
    // guess (RFC 9112 §6.3 item 5).
    label.contains("two lengths")
}

#[tokio::test]
async fn the_byte_level_client_reads_every_answer_as_hyper_does_and_sends_the_same_request() {
    let mut framings = std::collections::BTreeSet::new();
    for seed in 0..240u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (label, bytes) = answer(&mut rng);
        let method = [Method::GET, Method::POST, Method::HEAD, Method::PATCH]
            [rng.random_range(0..4)]
        .clone();
        let body: &[u8] = if matches!(method, Method::POST | Method::PATCH) {
            b"{\"data\":{\"attributes\":{\"name\":\"x\"}}}"
        } else {
            b""
        };
        let (addr, received) = scripted_upstream(bytes).await;
        let ours = with_ours(addr, &method, body).await;
        let theirs = with_hyper(addr, &method, body).await;
        let case = format!("seed {seed}: {method} answered {label}");
        framings.insert(
            label
                .split(['('])
                .next()
                .unwrap_or("")
                .split_once(' ')
                .map(|(_, f)| f.trim().to_owned()),
        );
        if ours != theirs {
            assert!(
                stricter_on_purpose(&label) && ours == Outcome::Failed,
                "{case}\n ours:  {}\n hyper: {}",
                summary(&ours),
                summary(&theirs)
            );
        }
        let received = received.lock().unwrap();
        assert_eq!(received.len(), 2, "{case}: both requests arrived");
        let (mine, hypers) = (&received[0], &received[1]);
        assert_eq!(mine.method, hypers.method, "{case}");
        assert_eq!(mine.target, hypers.target, "{case}");
        assert_eq!(mine.body, hypers.body, "{case}");
        let without_length = |headers: &[(String, Vec<u8>)]| {
            headers
                .iter()
                .filter(|(name, _)| name != "content-length")
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            without_length(&mine.headers),
            without_length(&hypers.headers),
            "{case}"
        );
        if !mine.body.is_empty() {
            let length = mine.headers.iter().find(|(n, _)| n == "content-length");
            assert_eq!(
                length.map(|(_, v)| v.clone()),
                Some(mine.body.len().to_string().into_bytes()),
                "{case}"
            );
        }
    }
    // The grammar reaches every framing it is meant to reach.
    assert_eq!(framings.len(), 9, "{framings:?}");
}
