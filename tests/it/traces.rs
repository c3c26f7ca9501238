//! Traces: the real binary exports its spans over OTLP/HTTP to a test
//! receiver (a small HTTP server here that decodes the protobuf export),
//! one trace per request with the stage spans under the request's span; the
//! upstream receives a `traceparent` of the same trace whose parent is the
//! forward span. A client's well-formed `traceparent` is continued, a
//! malformed one replaced and never forwarded; with traces off (the
//! default) a well-formed one passes unchanged and a malformed one is
//! dropped.

use crate::harness::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One exported span and the `service.name` of the export it came in.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: Span,
}

impl Exported {
    fn attribute(&self, key: &str) -> Option<String> {
        let value = self
            .span
            .attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()?;
        Some(match value {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            Value::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
    }

    /// An integer attribute (not a string that looks like one).
    fn int_attribute(&self, key: &str) -> Option<i64> {
        let value = self.span.attributes.iter().find(|kv| kv.key == key)?;
        match value.value.as_ref()?.value.as_ref()? {
            Value::IntValue(i) => Some(*i),
            _ => None,
        }
    }

    fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap()
    }
}

/// An OTLP/HTTP traces receiver on 127.0.0.1:0: decodes every
/// `POST /v1/traces` (protobuf) and keeps the spans.
struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Exported>>>,
    /// Requests that were not a protobuf export to `/v1/traces`.
    refused: Arc<Mutex<Vec<String>>>,
}

impl OtlpReceiver {
    async fn start() -> OtlpReceiver {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let (kept, odd) = (spans.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (kept, odd) = (kept.clone(), odd.clone());
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let (kept, odd) = (kept.clone(), odd.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let protobuf = parts
                                .headers
                                .get("content-type")
                                .is_some_and(|v| v == "application/x-protobuf");
                            let decoded = ExportTraceServiceRequest::decode(body);
                            let status = match decoded {
                                Ok(export)
                                    if protobuf
                                        && parts.method == "POST"
                                        && parts.uri.path() == "/v1/traces" =>
                                {
                                    let mut kept = kept.lock().unwrap();
                                    for resource in export.resource_spans {
                                        let service = resource
                                            .resource
                                            .iter()
                                            .flat_map(|r| &r.attributes)
                                            .find(|kv| kv.key == "service.name")
                                            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                                            .map(|v| format!("{v:?}"))
                                            .unwrap_or_default();
                                        for scope in resource.scope_spans {
                                            for span in scope.spans {
                                                kept.push(Exported {
                                                    service: service.clone(),
                                                    span,
                                                });
                                            }
                                        }
                                    }
                                    200
                                }
                                other => {
                                    odd.lock().unwrap().push(format!(
                                        "{} {} {:?} {other:?}",
                                        parts.method, parts.uri, parts.headers
                                    ));
                                    400
                                }
                            };
                            let mut response = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(
                                    ExportTraceServiceResponse::default().encode_to_vec(),
                                ),
                            ));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            response
                                .headers_mut()
                                .insert("content-type", "application/x-protobuf".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        OtlpReceiver {
            addr,
            spans,
            refused,
        }
    }

    /// Spans by trace id (hex), each trace's spans in arrival order.
    fn traces(&self) -> BTreeMap<String, Vec<Exported>> {
        let mut traces: BTreeMap<String, Vec<Exported>> = BTreeMap::new();
        for exported in self.spans.lock().unwrap().iter() {
            traces
                .entry(hex(&exported.span.trace_id))
                .or_default()
                .push(exported.clone());
        }
        traces
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one span named `name` in `trace`.
fn one<'a>(trace: &'a [Exported], name: &str) -> &'a Exported {
    let found: Vec<&Exported> = trace.iter().filter(|e| e.span.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span in {trace:#?}");
    found[0]
}

/// Checks the shape every forwarded request's trace has, and returns the
/// `request` and `forward` spans: the stages (with the access check) are children of the request,
/// the store read a child of authenticate.
fn forwarded_trace(trace: &[Exported]) -> (&Exported, &Exported) {
    let names: Vec<&str> = trace.iter().map(|e| e.span.name.as_str()).collect();
    // The requests here need workspace access (`requires: runs:read`), so
    // the access stage has a span too.
    assert_eq!(trace.len(), 7, "{names:?}");
    let request = one(trace, "GET");
    assert_eq!(request.kind(), SpanKind::Server);
    for stage in [
        "canonicalize",
        "authenticate",
        "authorize",
        "access",
        "forward",
    ] {
        assert_eq!(
            one(trace, stage).span.parent_span_id,
            request.span.span_id,
            "{stage} is a child of the request span"
        );
    }
    assert_eq!(
        one(trace, "store.read").span.parent_span_id,
        one(trace, "authenticate").span.span_id
    );
    let forward = one(trace, "forward");
    assert_eq!(forward.kind(), SpanKind::Client);
    assert_eq!(
        forward.int_attribute("http.response.status_code"),
        Some(200)
    );
    assert_eq!(
        request.int_attribute("http.response.status_code"),
        Some(200)
    );
    for exported in trace {
        assert_eq!(exported.service, "StringValue(\"tokengate-test\")");
    }
    (request, forward)
}

/// The `traceparent` the upstream should have received: `forward`'s span as
/// the parent, sampled.
fn expected_traceparent(forward: &Exported) -> String {
    format!(
        "00-{}-{}-01",
        hex(&forward.span.trace_id),
        hex(&forward.span.span_id)
    )
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";

// Two threads: the receiver answers the export while this one waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_exported_trace_and_the_upstream_is_a_child_of_its_forward_span() {
    let receiver = OtlpReceiver::start().await;
    let world = World::with_config(&format!(
        "log:\n  format: json\ntracing:\n  otlp_endpoint: http://{}\n  service_name: tokengate-test\n  sample_ratio: 1.0\n",
        receiver.addr
    ))
    .await;
    let team = world.gateway.issue(world.team_owner()).await;
    let org = world.gateway.issue(world.org_owner()).await;
    let mut process = GatewayProcess::start(&world.dir.path().join("tokengate.yaml"));
    let client_traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01");
    let get = |headers| {
        RawRequest::new("GET", "/api/v2/workspaces/ws-1")
            .token(&team)
            .headers(headers)
    };

    // 1. The client's trace is continued, its tracestate kept.
    let continued = [
        ("traceparent", client_traceparent.as_str()),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ];
    assert_eq!(send_raw(process.addr, get(&continued)).await.status, 200);
    // 2. No trace context: the gateway starts a trace.
    assert_eq!(send_raw(process.addr, get(&[])).await.status, 200);
    // 3. A malformed traceparent (upper case) is replaced, its tracestate dropped.
    let malformed_value = client_traceparent.to_uppercase();
    let malformed = [
        ("traceparent", malformed_value.as_str()),
        ("tracestate", "rojo=1"),
    ];
    assert_eq!(send_raw(process.addr, get(&malformed)).await.status, 200);
    // 4. An organization token's apply: refused, never forwarded.
    let apply = RawRequest::new("POST", "/api/v2/runs/run-1/actions/apply").token(&org);
    assert_eq!(send_raw(process.addr, apply).await.status, 403);
    // 5. A forged secret: 401 (refused from the last read of its record).
    let forged = forge(&team[..14]);
    let refused = RawRequest::new("GET", "/api/v2/workspaces/ws-1").token(&forged);
    assert_eq!(send_raw(process.addr, refused).await.status, 401);

    // SIGTERM: the gateway drains and exports what is queued before it exits.
    process.signal("TERM");
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        receiver.refused.lock().unwrap().is_empty(),
        "{:?}",
        receiver.refused.lock().unwrap()
    );

    let traces = receiver.traces();
    assert_eq!(
        traces.len(),
        5,
        "one trace per request: {traces:#?}\nlog: {:#?}",
        process.log_lines()
    );
    for trace in traces.values() {
        let roots = trace
            .iter()
            .filter(|e| e.kind() == SpanKind::Server)
            .count();
        assert_eq!(roots, 1, "one request span per trace: {trace:#?}");
    }
    let seen = world.upstream.requests();
    assert_eq!(seen.len(), 3, "only the three GETs were forwarded");

    // 1: same trace as the client's, the request span's parent is the client's span.
    let trace = &traces[CLIENT_TRACE];
    let (request, forward) = forwarded_trace(trace);
    assert_eq!(hex(&request.span.parent_span_id), CLIENT_PARENT);
    assert_eq!(
        seen[0].header("traceparent"),
        Some(expected_traceparent(forward).as_str())
    );
    assert_eq!(seen[0].header("tracestate"), Some("rojo=00f067aa0ba902b7"));
    let attributes = |span: &Exported| {
        [
            "http.request.method",
            "url.path",
            "http.response.status_code",
            "tokengate.decision",
            "tokengate.principal.kind",
        ]
        .map(|key| span.attribute(key).unwrap_or_default())
    };
    assert_eq!(
        attributes(request),
        ["GET", "/api/v2/workspaces/ws-1", "200", "allow", "team"]
    );
    assert!(request.attribute("tokengate.rule").is_some());
    assert_eq!(
        request.attribute("tokengate.token_id").as_deref(),
        Some(seen[0].header("x-tokengate-token-id").unwrap())
    );

    // 2 and 3: new traces, named by the traceparent the upstream received.
    for (upstream, what) in [(&seen[1], "no traceparent"), (&seen[2], "malformed")] {
        let sent = upstream.header("traceparent").expect(what);
        assert_ne!(sent, malformed_value, "{what}: never forwarded as is");
        let trace_id = &sent[3..35];
        assert_ne!(trace_id, CLIENT_TRACE, "{what}");
        let (request, forward) = forwarded_trace(&traces[trace_id]);
        assert!(
            request.span.parent_span_id.is_empty(),
            "{what}: a root span"
        );
        assert_eq!(sent, expected_traceparent(forward), "{what}");
        assert_eq!(upstream.header("tracestate"), None, "{what}");
    }

    // 4 and 5: refused requests are traces too, without a forward span.
    let refused: Vec<&Vec<Exported>> = traces
        .values()
        .filter(|trace| !trace.iter().any(|e| e.span.name == "forward"))
        .collect();
    assert_eq!(refused.len(), 2);
    let by_status = |status: &str| {
        refused
            .iter()
            .find(|trace| {
                trace.iter().any(|e| {
                    e.kind() == SpanKind::Server
                        && e.attribute("http.response.status_code").as_deref() == Some(status)
                })
            })
            .unwrap_or_else(|| panic!("a {status} trace in {refused:#?}"))
    };
    let denied = by_status("403");
    let denied_request = one(denied, "POST");
    assert_eq!(
        denied_request.attribute("tokengate.decision").as_deref(),
        Some("deny")
    );
    assert_eq!(
        denied_request
            .attribute("tokengate.principal.kind")
            .as_deref(),
        Some("org")
    );
    assert!(denied_request.attribute("tokengate.rule").is_some());
    one(denied, "authorize");
    let unauthorized = by_status("401");
    assert_eq!(
        one(unauthorized, "GET")
            .attribute("tokengate.auth_failure")
            .as_deref(),
        Some("bad_secret")
    );
    one(unauthorized, "authenticate");
    // The team token's record was read by the requests before: a wrong
    // secret of its generation is refused without a store read.
    assert!(
        unauthorized.iter().all(|e| e.span.name != "store.read"),
        "a known generation's wrong secret read the store: {unauthorized:#?}"
    );

    // Never a token or a secret in a span; the log lines carry no span context.
    let secrets = [&team, &org, &forged];
    for exported in receiver.spans.lock().unwrap().iter() {
        let text = format!("{:?}", exported.span);
        assert!(!text.contains(".atlasv1."), "{text}");
        for secret in secrets {
            assert!(!text.contains(&secret[14..]), "{text}");
        }
    }
    let access: Vec<serde_json::Value> = process
        .log_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "tokengate::access")
        .collect();
    assert_eq!(access.len(), 5);
    for line in access {
        assert!(
            line.get("span").is_none() && line.get("spans").is_none(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn with_traces_off_a_valid_traceparent_passes_unchanged_and_a_malformed_one_is_dropped() {
    let world = World::new().await;
    let team = world.gateway.issue(world.team_owner()).await;
    let valid = format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01");
    let send = |headers: &[(&str, &str)]| {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let (world, team) = (&world, &team);
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            world
                .send(
                    RawRequest::new("GET", "/api/v2/workspaces/ws-1")
                        .token(team)
                        .headers(&headers),
                )
                .await
        }
    };
    let sent = [("traceparent", valid.as_str()), ("tracestate", "rojo=1")];
    assert_eq!(send(&sent).await.status, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.header("traceparent"), Some(valid.as_str()));
    assert_eq!(seen.header("tracestate"), Some("rojo=1"));

    let bad_state = [("traceparent", valid.as_str()), ("tracestate", "Rojo=1")];
    assert_eq!(send(&bad_state).await.status, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.header("traceparent"), Some(valid.as_str()));
    assert_eq!(seen.header("tracestate"), None);

    let zero = format!("00-{}-{CLIENT_PARENT}-01", "0".repeat(32));
    for traceparent in [
        valid.to_uppercase(),
        zero,
        format!("{valid}-x"),
        "garbage".into(),
    ] {
        let headers = [
            ("traceparent", traceparent.as_str()),
            ("tracestate", "rojo=1"),
        ];
        assert_eq!(send(&headers).await.status, 200);
        let seen = world.upstream.last();
        assert_eq!(seen.header("traceparent"), None, "{traceparent}");
        assert_eq!(seen.header("tracestate"), None, "{traceparent}");
    }

    assert_eq!(send(&[]).await.status, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.header("traceparent"), None, "off: no trace is started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_never_holds_up_a_request_and_is_reported_in_the_log() {
    let world = World::with_config(&format!(
        "log:\n  format: json\ntracing:\n  otlp_endpoint: http://{}\n",
        free_addr()
    ))
    .await;
    let team = world.gateway.issue(world.team_owner()).await;
    let mut process = GatewayProcess::start(&world.dir.path().join("tokengate.yaml"));
    let request = RawRequest::new("GET", "/api/v2/workspaces/ws-1").token(&team);
    assert_eq!(send_raw(process.addr, request).await.status, 200);
    let sent = world.upstream.last();
    assert!(sent.header("traceparent").is_some(), "a trace is started");
    process.signal("TERM");
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let errors: Vec<String> = process
        .log_lines()
        .into_iter()
        .filter(|line| line.contains("ExportError"))
        .collect();
    assert!(!errors.is_empty(), "{:#?}", process.log_lines());
    for line in errors {
        assert!(!line.contains(&team[14..]), "{line}");
    }
}

/// A request with a body is judged by its head before the body is read
/// (`src/proxy/admit.rs`): that authentication is still one trace with the
/// rest of the request, refused or forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_judged_before_its_body_is_one_trace_with_its_authentication_inside() {
    let receiver = OtlpReceiver::start().await;
    let world = World::with_config(&format!(
        "log:\n  format: json\ntracing:\n  otlp_endpoint: http://{}\n  service_name: tokengate-test\n  sample_ratio: 1.0\n",
        receiver.addr
    ))
    .await;
    let org = world.gateway.issue(world.org_owner()).await;
    let mut process = GatewayProcess::start(&world.dir.path().join("tokengate.yaml"));
    let body =
        br#"{"data":{"type":"vars","attributes":{"key":"k","value":"v","category":"terraform"}}}"#;
    fn create<'a>(token: &'a str, body: &'a [u8]) -> RawRequest<'a> {
        RawRequest::new("POST", "/api/v2/workspaces/ws-1/vars")
            .token(token)
            .headers(&[("content-type", "application/vnd.api+json")])
            .body(body)
    }
    assert_eq!(send_raw(process.addr, create(&org, body)).await.status, 200);
    let forged = forge(&org[..14]);
    assert_eq!(
        send_raw(process.addr, create(&forged, body)).await.status,
        401
    );
    process.signal("TERM");
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let traces = receiver.traces();
    assert_eq!(traces.len(), 2, "one trace per request: {traces:#?}");
    for trace in traces.values() {
        let request = one(trace, "POST");
        assert_eq!(request.kind(), SpanKind::Server);
        assert_eq!(
            one(trace, "authenticate").span.parent_span_id,
            request.span.span_id,
            "the authentication before the body is a child of the request: {trace:#?}"
        );
    }
    let (forwarded, refused): (Vec<_>, Vec<_>) = traces
        .values()
        .partition(|trace| trace.iter().any(|e| e.span.name == "forward"));
    let forwarded = forwarded[0];
    for stage in ["canonicalize", "authorize", "access", "forward"] {
        assert_eq!(
            one(forwarded, stage).span.parent_span_id,
            one(forwarded, "POST").span.span_id,
            "{stage}"
        );
    }
    assert_eq!(
        one(forwarded, "POST")
            .attribute("http.response.status_code")
            .as_deref(),
        Some("200")
    );
    let refused = one(refused[0], "POST");
    assert_eq!(
        refused.attribute("http.response.status_code").as_deref(),
        Some("401")
    );
    assert!(refused.attribute("tokengate.auth_failure").is_some());
    assert_eq!(world.upstream.requests().len(), 1);
}
