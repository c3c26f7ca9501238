//! How the gateway reads the upstream's answers: an upstream that writes
//! exact bytes (answers in pieces, answers that stall, bytes past the end
//! of an answer), and what the client receives and whether the upstream
//! connection is used again. The upstream is a raw socket here, so the
//! framing is exactly what each test writes.

use crate::harness::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the raw upstream writes for the n-th request of a connection
/// (pieces written with a pause between them).
type Answer = fn(usize) -> Vec<Vec<u8>>;

/// A raw upstream: reads each request head (the tests send no bodies),
/// writes the answer's pieces, and counts the connections it accepted.
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(answer: Answer) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket, answer));
            }
        });
        RawUpstream { addr, connections }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(mut socket: TcpStream, answer: Answer) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    for n in 0.. {
        while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => pending.extend_from_slice(&chunk[..read]),
            }
        }
        let end = pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        pending.drain(..end);
        for (i, piece) in answer(n).into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            if socket.write_all(&piece).await.is_err() {
                return;
            }
        }
    }
}

struct Rig {
    upstream: RawUpstream,
    front: GatewayInFront,
}

impl Rig {
    async fn start(answer: Answer, upstream_keys: &str) -> Rig {
        let upstream = RawUpstream::start(answer).await;
        let front = GatewayInFront::start(&upstream.url(), upstream_keys).await;
        Rig { upstream, front }
    }
}

/// A path whose rule requires no access check (no lookup): the only upstream
/// traffic is the test's own requests.
const TARGET: &str = "/api/v2/ping";

#[tokio::test]
async fn a_chunked_answer_arriving_in_pieces_reaches_the_client_whole_and_the_connection_is_used_again(
) {
    let rig = Rig::start(
        |n| {
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec(),
                b"6;x=1\r\n{\"n\":\"\r\n".to_vec(),
                format!("1\r\n{n}\r\n").into_bytes(),
                b"2\r\n\"}\r\n0\r\nX-Trailer: dropped\r\n\r\n".to_vec(),
            ]
        },
        "",
    )
    .await;
    let mut client = KeepAliveClient::connect(rig.front.gateway.addr).await;
    for n in 0..3 {
        let answer = client.send("GET", TARGET, &rig.front.token, "r", b"").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, format!("{{\"n\":\"{n}\"}}"));
    }
    assert_eq!(
        rig.upstream.connections(),
        1,
        "one upstream connection for all three"
    );
}

#[tokio::test]
async fn bytes_past_the_end_of_an_answer_are_never_read_as_the_next_answer() {
    // One write: the answer, then a second "answer" nobody asked for.
    let rig = Rig::start(
        |n| {
            vec![format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ngenuine{n}HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
            )
            .into_bytes()]
        },
        "",
    )
    .await;
    let mut client = KeepAliveClient::connect(rig.front.gateway.addr).await;
    for _ in 0..2 {
        let answer = client.send("GET", TARGET, &rig.front.token, "r", b"").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "genuine0", "each request its own answer");
    }
    assert_eq!(
        rig.upstream.connections(),
        2,
        "the connection with stray bytes was not used again"
    );
}

#[tokio::test]
async fn an_answer_that_stalls_mid_body_ends_the_client_connection_after_the_response_timeout() {
    let rig = Rig::start(
        |_| {
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec(),
                // ... and nothing more, ever.
            ]
        },
        "  response_timeout_ms: 300",
    )
    .await;
    let mut socket = TcpStream::connect(rig.front.gateway.addr).await.unwrap();
    let request = format!(
        "GET {TARGET} HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {}\r\n\r\n",
        rig.front.token
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut received))
        .await
        .expect("the gateway ended the connection");
    let text = String::from_utf8_lossy(&received);
    assert!(read.is_ok() || !received.is_empty(), "{read:?}");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-length: 100\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\n0123456789"),
        "the ten bytes that came, no more: {text}"
    );
}

#[tokio::test]
async fn an_answer_with_two_different_lengths_is_502_and_never_guessed_at() {
    let rig = Rig::start(
        |_| {
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 12\r\n\r\nokHTTP/1.1 2"
                    .to_vec(),
            ]
        },
        "",
    )
    .await;
    let mut client = KeepAliveClient::connect(rig.front.gateway.addr).await;
    let answer = client.send("GET", TARGET, &rig.front.token, "r", b"").await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(!answer.body.contains("HTTP/1.1"), "{}", answer.body);
}
