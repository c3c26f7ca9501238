//! Properties of the request path over arbitrary requests (bounded
//! property tests; `fuzz/` has the longer-running `cargo fuzz` targets):
//!
//! * nothing panics, and every refusal is a JSON:API error document;
//! * whatever reaches the upstream is exactly what was judged: judging the
//!   request *as the upstream received it* gives the same decision (allow),
//!   its path is already canonical, its body is the bytes sent;
//! * an organization token never gets a request to the upstream that a
//!   Rails upstream would read as an apply.
//!
//! The gateway runs in process (no sockets on the client side) in front of
//! a recording upstream.

use crate::harness::{write_embedded_config, RecordingUpstream};
use crate::rails;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use std::sync::Arc;
use tokengate::canonical::json::parse_normalized;
use tokengate::config::Config;
use tokengate::gateway::Gateway;
use tokengate::policy::{self, Caller, Facts, Judgement};
use tokengate::store::Owner;

struct Bench {
    /// Requests the gateway handled (generated ones a client could send).
    handled: std::sync::atomic::AtomicUsize,
    runtime: tokio::runtime::Runtime,
    upstream: RecordingUpstream,
    gateway: Arc<Gateway>,
    org: String,
    team: String,
    _dir: tempfile::TempDir,
}

fn bench() -> Bench {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (upstream, gateway, org, team, dir) = runtime.block_on(async {
        let upstream = RecordingUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_embedded_config(dir.path(), &upstream.url(), "t.db", "");
        let gateway = Gateway::build(Config::load(&path).unwrap()).unwrap();
        let store = gateway.store.clone();
        store.create_org("acme").await.unwrap();
        let team_id = store.create_team("acme", "dev").await.unwrap().id;
        let hashing = gateway.config.hashing;
        let issue = |owner| {
            let store = store.clone();
            async move {
                tokengate::token::lifecycle::issue(store.as_ref(), owner, hashing, None, None)
                    .await
                    .unwrap()
                    .token
                    .secret_token
            }
        };
        let org = issue(Owner::Org { org: "acme".into() }).await;
        let team = issue(Owner::Team {
            org: "acme".into(),
            team_id,
        })
        .await;
        (upstream, gateway, org, team, dir)
    });
    Bench {
        handled: Default::default(),
        runtime,
        upstream,
        gateway,
        org,
        team,
        _dir: dir,
    }
}

/// A path segment: often a real one, sometimes escapes, dots or oddities.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "api", "v2", "runs", "run-1", "actions", "apply", "APPLY", "workspaces", "ws-1",
            "state-versions", "organizations", "acme", "configuration-versions", "apply.json",
            "force-execute", "teams", "authentication-token", "_tokengate", "health",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            ".", "..", "", "%61pply", "%2e%2e", "%2F", "%23", "%3F", "%3B", "%20", "%C0%AF",
            "%25", "%C3%A9", "a;b", "%00", "%7E", "~", "%E2%80%AE",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z0-9%._~!$&'()*+,=:@-]{0,12}",
    ]
}

/// The paths an apply goes through, often spelled oddly; random paths
/// under `/api/v2/` (where requests are allowed); sometimes anywhere.
fn path() -> impl Strategy<Value = String> {
    let templates = prop::sample::select(vec![
        "/api/v2/workspaces/ws-1",
        "/api/v2/organizations/acme/workspaces",
        "/api/v2/organizations/acme/workspaces/prod",
        "/api/v2/runs/run-1/actions/apply",
        "/api/v2/runs",
        "/api/v2/workspaces/ws-1/state-versions",
        "/api/v2/workspaces/ws-1/configuration-versions",
    ]);
    let spelling = prop::sample::select(vec![
        "", "", "/", "//", "/.", ".json", ".xml", "/x/..", "UPPER", "%61",
    ]);
    let odd = (templates, spelling).prop_map(|(path, spelling)| match spelling {
        "UPPER" => path.to_ascii_uppercase(),
        "%61" => path.replacen('a', "%61", 1),
        "//" => path.replacen('/', "//", 2),
        other => format!("{path}{other}"),
    });
    let prefix = prop::sample::select(vec!["/api/v2/", "/api/v2/", "/"]);
    let random = (prefix, prop::collection::vec(segment(), 0..6))
        .prop_map(|(prefix, segments)| format!("{prefix}{}", segments.join("/")));
    prop_oneof![3 => odd, 2 => random]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => prop::sample::select(vec![
            "data[attributes][auto-apply]=true", "token=audit-trails", "include=x", "page[number]=2",
            "_method=patch", "a=1;b=2", "%74oken=x", "x=%zz", "token=a&token=b", "q=a+b",
        ])
        .prop_map(|q| Some(q.to_owned())),
        1 => "[a-z\\[\\]=&%0-9;+_-]{0,20}".prop_map(Some),
    ]
}

/// JSON bodies with attribute keys in many spellings and values Rails
/// reads as true or false; or bytes that are not JSON.
fn body() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "auto-apply",
        "autoApply",
        "AUTO-APPLY",
        "auto_apply",
        "Auto-Apply",
        "name",
        "auto-apply-run-trigger",
        "autoDestroyAt",
        "auto-destroy-at",
        "vcs-repo",
        "execution-mode",
    ]);
    let value = prop::sample::select(vec![
        "true",
        "false",
        "1",
        "0",
        "\"on\"",
        "\"off\"",
        "\"t\"",
        "\"f\"",
        "null",
        "\"\"",
        "\"2030-01-01T00:00:00Z\"",
        "[true]",
        "{}",
        "1.0",
        "0.0",
    ]);
    let attributes = prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let envelope = prop::sample::select(vec!["data", "data", "Data", "DATA"]);
    let attrs_key = prop::sample::select(vec!["attributes", "attributes", "Attributes"]);
    prop_oneof![
        1 => Just(String::new()),
        4 => (envelope, attrs_key, attributes)
            .prop_map(|(d, a, attrs)| format!("{{\"{d}\":{{\"{a}\":{{{attrs}}}}}}}")),
        1 => "[ -~]{0,30}",
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        Some("application/vnd.api+json"),
        Some("application/vnd.api+json"),
        Some("application/json; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        None,
    ])
}

fn extra_header() -> impl Strategy<Value = (String, String)> {
    (
        prop::sample::select(vec![
            "connection",
            "x-http-method-override",
            "x-tokengate-kind",
            "client-ip",
            "x-forwarded-host",
            "host",
            "content-encoding",
            "x-custom",
            "forwarded",
        ]),
        prop::sample::select(vec![
            "content-type",
            "PATCH",
            "org",
            "10.0.0.1",
            "evil.test",
            "gzip",
            "keep-alive, x-custom",
            "a b",
            "for=1.2.3.4",
        ]),
    )
        .prop_map(|(n, v)| (n.to_owned(), v.to_owned()))
}

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    path: String,
    query: Option<String>,
    body: String,
    content_type: Option<&'static str>,
    headers: Vec<(String, String)>,
    org: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
        ]),
        path(),
        query(),
        body(),
        content_type(),
        prop::collection::vec(extra_header(), 0..2),
        any::<bool>(),
    )
        .prop_map(
            |(method, path, query, body, content_type, headers, org)| Case {
                method,
                path,
                query,
                body,
                content_type,
                headers,
                org,
            },
        )
}

fn run(bench: &Bench, case: &Case) -> Result<(), TestCaseError> {
    let target = match &case.query {
        Some(query) => format!("{}?{query}", case.path),
        None => case.path.clone(),
    };
    let Ok(uri) = target.parse::<http::Uri>() else {
        return Ok(()); // not a request target a client can send
    };
    let token = if case.org { &bench.org } else { &bench.team };
    let mut builder = Request::builder()
        .method(case.method)
        .uri(uri)
        .header("host", "gateway.test")
        .header("authorization", format!("Bearer {token}"));
    if let Some(content_type) = case.content_type {
        builder = builder.header("content-type", content_type);
    }
    for (name, value) in &case.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let Ok(request) = builder.body(Full::new(Bytes::from(case.body.clone()))) else {
        return Ok(());
    };
    bench
        .handled
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let before = bench.upstream.count();
    let (status, content_type, body) = bench.runtime.block_on(async {
        let lease = bench.gateway.forwarder.lease();
        let response = bench
            .gateway
            .handle(request, ([127, 0, 0, 1], 5000).into(), &lease)
            .await;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, body)
    });
    let forwarded = bench.upstream.count() > before;
    if !forwarded {
        prop_assert!(status.as_u16() >= 400, "{case:?}: {status} not forwarded");
        prop_assert_eq!(content_type.as_deref(), Some("application/vnd.api+json"));
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        prop_assert!(doc["errors"][0]["detail"].is_string(), "{case:?}: {doc}");
        return Ok(());
    }
    prop_assert_eq!(status.as_u16(), 200, "{:?}", case);
    let seen = bench.upstream.last();
    // The body the upstream got is the body sent, unchanged.
    prop_assert_eq!(&seen.body, case.body.as_bytes());
    // Judged again as the upstream received it: the same answer, allow.
    let (path, query) = match seen.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (seen.target.as_str(), None),
    };
    let policy = bench.gateway.live.policy();
    let method: http::Method = seen.method.parse().unwrap();
    let canonical = tokengate::canonical::canonical_target(
        &method,
        path,
        query,
        &policy.write_query_parameters,
    )
    .map_err(|e| TestCaseError::fail(format!("{case:?}: forwarded {path} is refused: {e}")))?;
    prop_assert_eq!(canonical.as_str(), path, "the forwarded path is canonical");
    let json = parse_normalized(&seen.body)
        .map_err(|e| TestCaseError::fail(format!("{case:?}: forwarded body refused: {e}")))?;
    let facts = Facts {
        caller: if case.org { Caller::Org } else { Caller::Team },
        org: Some("acme"),
        team_id: None,
        user_id: None,
        method: &method,
        path: &canonical,
        query,
    };
    prop_assert!(
        matches!(
            policy::decide(&policy, &facts, json.as_ref()),
            Judgement::Allow(_)
        ),
        "{case:?}: forwarded, but judged again it is refused"
    );
    if case.org {
        let view = rails::read(&seen);
        prop_assert_eq!(view.apply_by_an_org_token(), None, "{:?} {:?}", case, seen);
    }
    Ok(())
}

#[test]
fn whatever_is_forwarded_is_what_was_judged_and_never_an_org_apply() {
    let bench = bench();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 1000,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(&case(), |case| run(&bench, &case))
        .unwrap_or_else(|err| panic!("{err}"));
    // The generator must reach both outcomes for the property to mean much.
    let handled = bench.handled.load(std::sync::atomic::Ordering::Relaxed);
    let forwarded = bench.upstream.count();
    eprintln!("{handled} requests handled, {forwarded} forwarded");
    assert!(handled > 700, "only {handled} requests were sendable");
    assert!(
        forwarded > 50 && forwarded < handled - 50,
        "{forwarded} of {handled} forwarded"
    );
}

proptest! {
    #![proptest_config(RunnerConfig { cases: 2000, failure_persistence: None, ..RunnerConfig::default() })]

    /// Canonical forms are stable: a canonical path canonicalizes to itself,
    /// and a normalized key normalizes to itself (what `fuzz/` checks at length).
    #[test]
    fn canonical_forms_are_stable(path in "[/a-zA-Z0-9%._~!$&'()*+,=:@;-]{0,40}", key in "[a-zA-Z0-9_:-]{0,16}") {
        if let Ok(canonical) = tokengate::canonical::canonicalize(&path) {
            let again = tokengate::canonical::canonicalize(canonical.as_str());
            prop_assert_eq!(again.as_ref().map(|p| p.as_str()), Ok(canonical.as_str()));
        }
        let once = tokengate::canonical::json::normalize_key(&key);
        prop_assert_eq!(tokengate::canonical::json::normalize_key(&once), once.clone());
        prop_assert_eq!(rails::underscore(&key), once);
    }
}
