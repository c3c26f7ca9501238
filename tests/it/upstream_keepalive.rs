//! Keep-alive connections to the upstream: real sockets, a scripted upstream
//! that closes connections after N answers or when idle, and resets or
//! closes them after reading a request. What counts is what the upstream
//! received: a request it never received is never answered 502, a POST or
//! PATCH arrives at most once, an idempotent request is sent again at most
//! once.
//!
//! The requests go to paths no rule checks access on (`/api/v2/widgets`,
//! not a Terraform Enterprise resource, forwarded by
//! `api-for-authenticated`), so the only upstream traffic is the scripted
//! requests themselves, never a resolver lookup (`docs/ACCESS.md`).

use crate::harness::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokengate::config::Config;
use tokengate::upstream::{Forwarder, UpstreamRequest};

/// A scripted upstream, and Redis and an in-process gateway in front of it
/// with a team token.
struct Rig {
    upstream: ScriptedUpstream,
    front: GatewayInFront,
}

impl Rig {
    /// `upstream_keys`: more keys of the `upstream:` section, one per line.
    async fn start(script: Script, upstream_keys: &str) -> Rig {
        let upstream = ScriptedUpstream::start(script);
        let front = GatewayInFront::start(&upstream.url(), upstream_keys).await;
        Rig { upstream, front }
    }

    async fn client(&self) -> KeepAliveClient {
        KeepAliveClient::connect(self.front.gateway.addr).await
    }

    /// What the upstream received with request id `id`, in order.
    fn received(&self, id: &str) -> Vec<Received> {
        self.upstream
            .received()
            .into_iter()
            .filter(|r| r.request_id.as_deref() == Some(id))
            .collect()
    }
}

#[tokio::test]
async fn a_post_or_patch_whose_connection_breaks_after_sending_is_502_and_arrives_once() {
    let rig = Rig::start(Script::default(), "").await;
    let mut client = rig.client().await;
    for (how, method, target) in [
        (Break::Reset, "POST", "/api/v2/widgets"),
        (Break::Close, "POST", "/api/v2/widgets"),
        (Break::Reset, "PATCH", "/api/v2/widgets/widget-1"),
        (Break::Close, "PATCH", "/api/v2/widgets/widget-1"),
    ] {
        rig.upstream.break_next(target, how, usize::MAX);
        let id = format!("{method}-{how:?}");
        let answer = client
            .send(method, target, &rig.front.token, &id, b"{\"data\":{}}")
            .await;
        assert_eq!(answer.status, 502, "{id}: {}", answer.body);
        let received = rig.received(&id);
        assert_eq!(
            received.len(),
            1,
            "{id} must arrive exactly once: {received:?}"
        );
        assert_eq!(received[0].method, method);
        assert_eq!(received[0].body, b"{\"data\":{}}");
        assert!(!received[0].answered);
        // The same client connection is served again once the upstream is.
        rig.upstream.clear_breaks();
        let after = format!("{id}-after");
        let answer = client
            .send("GET", target, &rig.front.token, &after, b"")
            .await;
        assert_eq!(answer.status, 200, "{after}: {}", answer.body);
        assert_eq!(rig.received(&after).len(), 1);
    }
}

#[tokio::test]
async fn an_idempotent_request_reset_before_any_answer_is_sent_again_once() {
    let rig = Rig::start(Script::default(), "").await;
    let mut client = rig.client().await;
    for (method, target, body) in [
        ("GET", "/api/v2/widgets/widget-get", &b""[..]),
        ("PUT", "/api/v2/widgets/widget-put", b"{\"data\":{}}"),
        ("DELETE", "/api/v2/widgets/widget-delete", b""),
    ] {
        rig.upstream.break_next(target, Break::Reset, 1);
        let answer = client
            .send(method, target, &rig.front.token, method, body)
            .await;
        assert_eq!(answer.status, 200, "{method}: {}", answer.body);
        assert_eq!(answer.body, format!("{{\"id\":\"{method}\"}}"));
        let received = rig.received(method);
        assert_eq!(received.len(), 2, "{method}: sent once more: {received:?}");
        assert!(
            !received[0].answered && received[1].answered,
            "{received:?}"
        );
        assert_ne!(
            received[0].conn, received[1].conn,
            "{method}: sent again on a new connection"
        );
        assert_eq!(received[1].body, body);
    }
}

#[tokio::test]
async fn an_idempotent_request_is_sent_again_only_once() {
    let rig = Rig::start(Script::default(), "").await;
    let mut client = rig.client().await;
    let target = "/api/v2/widgets/widget-1";
    rig.upstream.break_next(target, Break::Reset, 3);
    let answer = client
        .send("GET", target, &rig.front.token, "twice", b"")
        .await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    let received = rig.received("twice");
    assert_eq!(received.len(), 2, "one retry, no more: {received:?}");
}

#[tokio::test]
async fn an_upstream_connection_idle_past_the_pool_timeout_is_not_used_again() {
    let rig = Rig::start(Script::default(), "  pool_idle_timeout_ms: 100").await;
    let mut client = rig.client().await;
    let target = "/api/v2/widgets/widget-1";
    for id in ["first", "second"] {
        let answer = client.send("GET", target, &rig.front.token, id, b"").await;
        assert_eq!(answer.status, 200, "{id}: {}", answer.body);
        let answer = client
            .send("GET", target, &rig.front.token, &format!("{id}-again"), b"")
            .await;
        assert_eq!(answer.status, 200, "{id}: {}", answer.body);
        // Idle for longer than pool_idle_timeout_ms (the client connection
        // stays open and keeps its upstream connection meanwhile).
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let conn = |id: &str| rig.received(id)[0].conn;
    assert_eq!(conn("first"), conn("first-again"), "kept alive while busy");
    assert_eq!(conn("second"), conn("second-again"));
    assert_ne!(conn("first"), conn("second"), "not used again after idling");
}

/// The gateway's event loop is busy (here: blocked) while the upstream
/// closes an idle connection, so the event loop has not yet seen the close
/// when the next request goes out on it. Sends `request("before")`, lets
/// the upstream close the idle connection unseen, sends
/// `request("after")`: it must be answered, arrive once, and arrive on a
/// new connection.
async fn answered_once_across_an_unseen_close(request: impl Fn(&str) -> UpstreamRequest) {
    let upstream = ScriptedUpstream::start(Script {
        idle_close: Some(Duration::from_millis(50)),
        ..Script::default()
    });
    let yaml = format!(
        "upstream: {{ url: \"{}\", pool_idle_timeout_ms: 60000 }}\nstore: {{ redis: {{ url: redis://127.0.0.1:1 }} }}\npolicy: {{ file: p.yaml }}\n",
        upstream.url()
    );
    let config = Config::from_yaml(&yaml, &PathBuf::from(".")).unwrap();
    let forwarder = Forwarder::new(config.upstream);
    let lease = forwarder.lease();
    let answer = forwarder.send(&lease, request("before")).await.unwrap();
    assert_eq!(answer.status(), 200);
    http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap();
    // Block this event loop while the upstream closes the idle connection.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(upstream.closes().1, 1, "the upstream closed it meanwhile");
    let answer = forwarder.send(&lease, request("after")).await.unwrap();
    assert_eq!(answer.status(), 200);
    let received = upstream.received();
    let after: Vec<&Received> = received
        .iter()
        .filter(|r| r.request_id.as_deref() == Some("after"))
        .collect();
    assert_eq!(after.len(), 1, "{received:?}");
    assert_eq!(after[0].conn, 1, "on a new connection: {received:?}");
}

/// A POST across an unseen close: the socket is checked (`recv`) right
/// before the first byte is written, so the POST provably was not sent and
/// goes out on a new connection. (Without that check it is written into a
/// closed connection, and a POST that may have arrived is answered 502.)
#[tokio::test]
async fn a_post_on_a_connection_the_upstream_closed_unseen_goes_out_on_a_new_one() {
    answered_once_across_an_unseen_close(|id| {
        let request = http::Request::builder()
            .method("POST")
            .uri("/api/v2/widgets")
            .header("host", "upstream.test")
            .header("x-request-id", id)
            .header("content-length", "2")
            .body(())
            .unwrap();
        UpstreamRequest::new(request.into_parts().0, bytes::Bytes::from_static(b"{}"))
    })
    .await;
}

/// A GET across an unseen close: a request that is sent again when its
/// connection breaks before any answer is not worth a `recv` on every
/// request, so the socket is only checked when the event loop has seen it
/// become readable (`Probe::IfSignalled`). Here it has not: the GET is
/// written into the closed connection, breaks before any answer, and goes
/// out once more on a new connection.
#[tokio::test]
async fn a_get_on_a_connection_the_upstream_closed_unseen_is_sent_again_on_a_new_one() {
    answered_once_across_an_unseen_close(|id| {
        let request = http::Request::builder()
            .method("GET")
            .uri("/api/v2/widgets/widget-1")
            .header("host", "upstream.test")
            .header("x-request-id", id)
            .body(())
            .unwrap();
        UpstreamRequest::new(request.into_parts().0, bytes::Bytes::new())
    })
    .await;
}

/// What a load run saw: every answer (request id, method, answer) and
/// how many times the upstream received each request id.
struct Load {
    answers: Vec<(String, &'static str, Answered)>,
    arrivals: HashMap<String, usize>,
}

impl Load {
    /// `clients` keep-alive clients, each sending `per_client` requests
    /// through the real binary (two workers, `upstream.pool_idle_timeout_ms`
    /// = `pool_idle_ms`) to `upstream`, cycling through `methods`; every
    /// 25th request comes after `pause` idle, every 50th on a new client
    /// connection (its upstream connection goes back to the pool).
    async fn run(
        upstream: &ScriptedUpstream,
        (clients, per_client): (usize, usize),
        methods: &'static [&'static str],
        pool_idle_ms: u64,
        pause: Duration,
    ) -> Load {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let config = write_config_with_upstream(
            dir.path(),
            &format!(
                "  url: {}\n  pool_idle_timeout_ms: {pool_idle_ms}",
                upstream.url()
            ),
            &redis.url(),
            "workers: 2\nlog: { level: info, format: json }",
        );
        let token = team_token_for(&config).await;
        let gateway = GatewayProcess::start(&config);
        let addr = gateway.addr;
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let token = token.clone();
            tasks.spawn(async move {
                let mut answers = Vec::with_capacity(per_client);
                let mut client = KeepAliveClient::connect(addr).await;
                for i in 0..per_client {
                    if i % 50 == 49 {
                        client = KeepAliveClient::connect(addr).await;
                    }
                    if i % 25 == 24 {
                        tokio::time::sleep(pause).await;
                    }
                    let method = methods[i % methods.len()];
                    let (target, body) = match method {
                        "POST" => ("/api/v2/widgets".to_owned(), format!("{{\"n\":{i}}}")),
                        "GET" | "DELETE" => (format!("/api/v2/widgets/widget-{c}"), String::new()),
                        _ => (
                            format!("/api/v2/widgets/widget-{c}"),
                            format!("{{\"n\":{i}}}"),
                        ),
                    };
                    let id = format!("c{c}-r{i}");
                    let answer = client
                        .send(method, &target, &token, &id, body.as_bytes())
                        .await;
                    answers.push((id, method, answer));
                }
                answers
            });
        }
        let answers: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
        assert_eq!(answers.len(), clients * per_client);
        let mut arrivals: HashMap<String, usize> = HashMap::new();
        for received in upstream.received() {
            *arrivals
                .entry(received.request_id.unwrap_or_default())
                .or_default() += 1;
        }
        Load { answers, arrivals }
    }

    /// No request the upstream never received was answered 502, every
    /// request was answered 200 with its own answer, and no POST or PATCH
    /// arrived twice.
    fn assert_all_answered(&self) {
        let never_received_502: Vec<&String> = self
            .answers
            .iter()
            .filter(|(id, _, answer)| answer.status == 502 && !self.arrivals.contains_key(id))
            .map(|(id, _, _)| id)
            .collect();
        assert!(
            never_received_502.is_empty(),
            "{} × 502 for requests the upstream never received: {never_received_502:?}",
            never_received_502.len()
        );
        let failed: Vec<_> = self
            .answers
            .iter()
            .filter(|(_, _, answer)| answer.status != 200)
            .collect();
        assert!(
            failed.is_empty(),
            "{} not answered 200: {failed:?}",
            failed.len()
        );
        for (id, method, answer) in &self.answers {
            assert_eq!(
                answer.body,
                format!("{{\"id\":\"{id}\"}}"),
                "the answer to {id}"
            );
            if matches!(*method, "POST" | "PATCH") {
                assert_eq!(
                    self.arrivals.get(id),
                    Some(&1),
                    "{method} {id} arrived once"
                );
            }
        }
    }
}

/// Under a continuous load, an upstream that closes every connection right
/// after its third answer (without `Connection: close`) and whenever it
/// idles 300 ms, with the gateway's pool timeout below that, as
/// `config/tokengate.yaml` advises: every request of every method is
/// answered 200, and each POST and PATCH arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_closes_by_the_upstream_never_turn_into_502s() {
    let upstream = ScriptedUpstream::start(Script {
        close_after: Some(3),
        idle_close: Some(Duration::from_millis(300)),
        ..Script::default()
    });
    let methods = &["GET", "POST", "PATCH", "PUT", "DELETE"];
    let pause = Duration::from_millis(500);
    let load = Load::run(&upstream, (8, 250), methods, 100, pause).await;
    load.assert_all_answered();
    let (after_n, idle) = upstream.closes();
    assert!(
        after_n > 0 && idle > 0,
        "the upstream closed connections after 3 answers ({after_n}) and when idle ({idle})"
    );
}

/// Under a continuous load of idempotent requests, an upstream that closes
/// every connection after its third answer just as the next request
/// arrives, without reading it (the race no check can see coming), and
/// closes idle connections after 100 ms while the gateway's pool timeout is
/// a minute (so the gateway also meets connections already closed): every
/// request is sent again as needed and answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_crossing_an_upstream_close_are_sent_again() {
    let upstream = ScriptedUpstream::start(Script {
        close_after: Some(3),
        close_how: CloseHow::WhenNextArrives,
        idle_close: Some(Duration::from_millis(100)),
    });
    let methods = &["GET", "PUT", "DELETE"];
    let pause = Duration::from_millis(300);
    let load = Load::run(&upstream, (4, 250), methods, 60_000, pause).await;
    load.assert_all_answered();
    assert!(upstream.crossed() > 0, "requests crossed a close");
}

/// A POST that crosses an upstream close (written, then reset, never read)
/// may have arrived as far as the gateway can tell: it is answered 502 and
/// not sent again; a GET in the same place is sent again.
#[tokio::test]
async fn a_post_crossing_an_upstream_close_is_502_and_not_sent_again() {
    let rig = Rig::start(
        Script {
            close_after: Some(1),
            close_how: CloseHow::WhenNextArrives,
            ..Script::default()
        },
        "",
    )
    .await;
    let mut client = rig.client().await;
    let target = "/api/v2/widgets/widget-1";
    let answer = client
        .send("GET", target, &rig.front.token, "first", b"")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = client
        .send(
            "POST",
            "/api/v2/widgets",
            &rig.front.token,
            "crossing",
            b"{}",
        )
        .await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(rig.upstream.crossed(), 1);
    assert!(
        rig.received("crossing").is_empty(),
        "never read, never sent again"
    );
    let answer = client
        .send("GET", target, &rig.front.token, "second", b"")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = client
        .send("GET", target, &rig.front.token, "third", b"")
        .await;
    assert_eq!(answer.status, 200, "sent again: {}", answer.body);
    assert_eq!(rig.upstream.crossed(), 2);
    assert_eq!(rig.received("third").len(), 1);
}
