//! Criterion micro-benchmarks of the per-request work inside the process,
//! without sockets: one group per stage of the request path, each
//! benchmark with its **budget** written next to it.
//!
//! | group | what one iteration does |
//! |---|---|
//! | `canonicalize` | the canonical request: target (path + query check), `Host` and `Connection` checks; body content headers and `parse_normalized` of a typical and of a 4 KiB JSON:API body |
//! | `authenticate` | the warm path: `Authorization` parsing, shape check, `CachedVerifier::verify` (SHA-256, constant-time; and an argon2id cache hit) |
//! | `policy` | `policy::decide` with the default policy: an allowed team GET, a denied org apply, an org PATCH that a body rule reads |
//! | `header_rewrite` | the upstream request's headers (typical: a keep-alive connection's later request, and its first; and a hostile `Connection` list) |
//! | `access_line` | one access line formatted from a `RequestContext` into a buffer, as the gateway's text log does it (through `tracing`, and by hand as the gateway does since issue 15) |
//! | `request` | the stages above together for one team GET |
//!
//! A budget is about twice the median expected on an idle machine when it
//! was set (docs/PERFORMANCE.md, "Micro-benchmark budgets", says how it was
//! estimated): generous enough for ordinary noise, tight enough that a real
//! regression crosses it. After the run the bench prints each benchmark's median next to
//! its budget (from Criterion's `estimates.json`) and marks the ones over
//! budget; it does not fail. Change a budget only with a reason in the
//! commit, and update the table in docs/PERFORMANCE.md with it.
//!
//! ```sh
//! cargo bench --bench hot_path                      # all
//! cargo bench --bench hot_path -- policy            # one group
//! cargo bench --bench hot_path -- --warm-up-time 1 --measurement-time 3
//! ```

#[path = "support/criterion_results.rs"]
mod criterion_results;
#[path = "support/ready.rs"]
mod ready;

use criterion::{BatchSize, Criterion};
use criterion_results::criterion_dir;
use http::header::{self, HeaderMap, HeaderValue};
use ready::ready;
use std::hint::black_box;
use std::path::PathBuf;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokengate::auth::{bearer_token, CachedVerifier, Principal, Verification};
use tokengate::canonical::{canonical_target, canonicalize, headers as canonical_headers, json};
use tokengate::config::{Argon2Params, Config, HashingConfig, SecretScheme, VerifyCacheConfig};
use tokengate::context::{Decision, RequestContext, RuleMode};
use tokengate::gateway::Gateway;
use tokengate::policy::{decide, Caller, Facts, Judgement, Policy};
use tokengate::store::PrincipalKind;
use tokengate::token::format::{self as token, PresentedToken};
use tokengate::upstream::headers::{
    remove_hop_by_hop, rewrite_request_headers, ConnectionHeaderValues, ForwardContext,
};

/// The gateway's allocator (`src/main.rs`), so that allocation costs what it
/// costs in the gateway.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Budgets registered by [`stage`], reported after the run.
static BUDGETS: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());

/// Benchmarks `routine` as `group/name` and records its budget.
fn stage(
    c: &mut Criterion,
    group: &str,
    name: &str,
    budget: Duration,
    routine: impl FnMut(&mut criterion::Bencher),
) {
    BUDGETS
        .lock()
        .unwrap()
        .push((format!("{group}/{name}"), budget));
    c.benchmark_group(group).bench_function(name, routine);
}

const fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

const fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn default_policy() -> Arc<Policy> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy.yaml");
    Arc::new(Policy::load(std::path::Path::new(path)).expect("the default policy loads"))
}

/// The headers of a typical API request, as a TFE client sends them.
fn typical_headers(authorization: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, "gateway.test".parse().unwrap());
    headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
    headers.insert(header::ACCEPT, "application/vnd.api+json".parse().unwrap());
    headers.insert(header::USER_AGENT, "go-tfe".parse().unwrap());
    headers
}

/// A workspace update as TFE clients send it (auto-apply off: allowed).
const TYPICAL_BODY: &str = r#"{"data":{"type":"workspaces","attributes":{"name":"ws-1","auto-apply":false,"terraform-version":"1.9.8","working-directory":"infra","execution-mode":"remote","description":"network"}}}"#;

/// The body of the `POST_BODY` load profile: the same attributes padded to
/// 4 KiB in `description`.
fn body_4k() -> String {
    let padded = |pad: usize| {
        format!(
            r#"{{"data":{{"type":"workspaces","attributes":{{"name":"ws-bench","auto-apply":false,"terraform-version":"1.9.8","execution-mode":"remote","description":"{}"}}}}}}"#,
            "x".repeat(pad)
        )
    };
    let body = padded(4096 - padded(0).len());
    assert_eq!(body.len(), 4096);
    body
}

fn team_principal(token_id: &str) -> Principal {
    Principal {
        kind: PrincipalKind::Team,
        org: "acme".into(),
        team_id: Some("team-bench".into()),
        user_id: None,
        token_id: token_id.into(),
    }
}

fn canonicalize_stage(c: &mut Criterion, policy: &Policy) {
    let headers = typical_headers("Bearer x");
    let get = http::Method::GET;
    let write_query = &policy.write_query_parameters;
    stage(c, "canonicalize", "get_target_and_headers", ns(500), |b| {
        b.iter(|| {
            let path = canonical_target(
                &get,
                black_box("/api/v2/workspaces/ws-1"),
                None,
                write_query,
            )
            .unwrap();
            let host =
                canonical_headers::check_host(black_box(&headers), None, http::Version::HTTP_11)
                    .unwrap();
            canonical_headers::check_connection(&headers).unwrap();
            (path, host)
        })
    });
    stage(c, "canonicalize", "dot_segments", ns(500), |b| {
        b.iter(|| canonicalize(black_box("/api/v2/workspaces/ws-1/./runs//x/../")).unwrap())
    });
    let mut body_headers = headers.clone();
    body_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.api+json"),
    );
    let bodies = [
        ("json_typical", TYPICAL_BODY.to_owned(), us(8)),
        ("json_4k", body_4k(), us(8)),
    ];
    for (name, body, budget) in bodies {
        stage(c, "canonicalize", name, budget, |b| {
            b.iter(|| {
                canonical_headers::check_body_headers(black_box(&body_headers)).unwrap();
                json::parse_normalized(black_box(body.as_bytes()))
                    .unwrap()
                    .unwrap()
            })
        });
    }
}

fn authenticate_stage(c: &mut Criterion) {
    let issued = token::generate(&token::new_slot());
    let secret = issued.secret_token.clone();
    let header = HeaderValue::from_str(&format!("Bearer {secret}")).unwrap();
    let digest =
        tokengate::token::secret_hash::hash_token(&secret, &HashingConfig::default()).unwrap();
    let phc = tokengate::token::secret_hash::hash_token(
        &secret,
        &HashingConfig {
            scheme: SecretScheme::Argon2id,
            argon2: Argon2Params::default(),
        },
    )
    .unwrap();
    let verifier = CachedVerifier::new(&VerifyCacheConfig {
        capacity: 10_000,
        ttl: Duration::from_secs(600),
        max_concurrent_verifies: 2,
    });
    // The one argon2 run, so that the argon2 benchmark measures a cache hit.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = PresentedToken::parse(&secret).unwrap();
    assert_eq!(
        runtime.block_on(verifier.verify(token, &phc)),
        Verification::Valid
    );

    stage(c, "authenticate", "shape_check", ns(150), |b| {
        b.iter(|| PresentedToken::parse(black_box(&secret)).unwrap())
    });
    // What the gateway does per request besides the store read (measured
    // by the load benchmark): the header, the shape, the digest compare.
    stage(c, "authenticate", "warm_sha256", ns(1_000), |b| {
        b.iter(|| {
            let raw = bearer_token(black_box(&header)).unwrap();
            let token = PresentedToken::parse(raw).unwrap();
            assert_eq!(ready(verifier.verify(token, &digest)), Verification::Valid);
        })
    });
    stage(c, "authenticate", "warm_argon2_cache_hit", ns(1_500), |b| {
        b.iter(|| {
            let raw = bearer_token(black_box(&header)).unwrap();
            let token = PresentedToken::parse(raw).unwrap();
            assert_eq!(ready(verifier.verify(token, &phc)), Verification::Valid);
        })
    });
}

fn policy_stage(c: &mut Criterion, policy: &Policy) {
    let workspace = canonicalize("/api/v2/workspaces/ws-1").unwrap();
    let apply = canonicalize("/api/v2/runs/run-1/actions/apply").unwrap();
    let list = canonicalize("/api/v2/organizations/acme/workspaces").unwrap();
    let (get, post, patch) = (http::Method::GET, http::Method::POST, http::Method::PATCH);
    let body = json::parse_normalized(TYPICAL_BODY.as_bytes())
        .unwrap()
        .unwrap();
    let team_get = Facts {
        caller: Caller::Team,
        org: Some("acme"),
        team_id: Some("team-1"),
        user_id: None,
        method: &get,
        path: &workspace,
        query: None,
    };
    let org_apply = Facts {
        caller: Caller::Org,
        org: Some("acme"),
        team_id: None,
        user_id: None,
        method: &post,
        path: &apply,
        query: None,
    };
    let org_patch = Facts {
        caller: Caller::Org,
        org: Some("acme"),
        team_id: None,
        user_id: None,
        method: &patch,
        path: &workspace,
        query: None,
    };
    // A list with an `include` the `query` condition reads (and finds
    // harmless) on the way to `organization-members`, ~66 rules down
    // (measured 2.6 µs median, 1.8 µs fastest 10 %, on a loaded 2-core
    // machine at load 5.8).
    let team_list_include = Facts {
        caller: Caller::Team,
        org: Some("acme"),
        team_id: Some("team-1"),
        user_id: None,
        method: &get,
        path: &list,
        query: Some("include=organization%2Cproject&page%5Bsize%5D=100"),
    };
    let cases = [
        ("allow_team_get", team_get, None, true, ns(500)),
        (
            "allow_team_list_include",
            team_list_include,
            None,
            true,
            us(2),
        ),
        ("deny_org_apply", org_apply, None, false, ns(600)),
        ("org_patch_body_rule", org_patch, Some(&body), true, us(8)),
    ];
    for (name, facts, body, allowed, budget) in cases {
        // The case must decide as named, or the benchmark measures another path.
        assert_eq!(
            matches!(decide(policy, &facts, body), Judgement::Allow(_)),
            allowed,
            "{name}"
        );
        stage(c, "policy", name, budget, |b| {
            b.iter(|| matches!(decide(policy, black_box(&facts), body), Judgement::Allow(_)))
        });
    }
}

/// A request with a 62 KiB `Connection` list and ~100 headers: the most
/// work one request's headers can ask of the hop-by-hop stripping.
fn hostile_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for i in 0..98 {
        headers.insert(
            http::HeaderName::from_bytes(format!("x-h{i:02}").as_bytes()).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    let list = "a,".repeat(31 * 1024);
    headers.insert(header::CONNECTION, HeaderValue::from_str(&list).unwrap());
    headers
}

fn header_rewrite_stage(c: &mut Criterion) {
    let typical = typical_headers("Bearer x");
    let upstream_host = HeaderValue::from_static("127.0.0.1:9000");
    let principal = team_principal("at-benchbenchbench");
    let context = ForwardContext {
        principal: Some(&principal),
        client_addr: "127.0.0.1:50000".parse().unwrap(),
        forward_authorization: false,
        client_host: Some("gateway.test"),
        client_proto: Default::default(),
    };
    // A keep-alive connection's later requests: its header values are built.
    let mut values = ConnectionHeaderValues::default();
    stage(c, "header_rewrite", "typical", ns(1_500), |b| {
        b.iter_batched(
            || typical.clone(),
            |mut headers| {
                rewrite_request_headers(&mut headers, &context, &upstream_host, &mut values);
                headers
            },
            BatchSize::SmallInput,
        )
    });
    // A connection's first request: every value built.
    stage(c, "header_rewrite", "typical_first", ns(2_000), |b| {
        b.iter_batched(
            || (typical.clone(), ConnectionHeaderValues::default()),
            |(mut headers, mut values)| {
                rewrite_request_headers(&mut headers, &context, &upstream_host, &mut values);
                headers
            },
            BatchSize::SmallInput,
        )
    });
    let hostile = hostile_headers();
    stage(c, "header_rewrite", "hostile_connection", us(1_200), |b| {
        b.iter_batched(
            || hostile.clone(),
            |mut headers| {
                remove_hop_by_hop(&mut headers);
                headers
            },
            BatchSize::SmallInput,
        )
    });
}

thread_local! {
    /// Where the benchmark's access lines go: a batch like a worker's.
    static LINES: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1 << 17));
}

/// Appends each formatted line to [`LINES`], emptied past 64 KiB (where a
/// worker hands its batch to the writer thread).
struct BufferWriter;

impl std::io::Write for BufferWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        LINES.with(|lines| {
            let mut lines = lines.borrow_mut();
            if lines.len() >= 64 * 1024 {
                lines.clear();
            }
            lines.extend_from_slice(line);
        });
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the gateway's text log format (as `observe::log_writer::init`
/// builds it for `log.format: text`, level `info`) writing into [`LINES`].
fn install_text_log() {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(|| BufferWriter)
        .with_target(true)
        .with_ansi(false)
        .fmt_fields(tokengate::observe::log_writer::plain_fields())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
}

fn access_line_stage(c: &mut Criterion, policy: &Arc<Policy>) {
    install_text_log();
    let mut ctx = RequestContext::new(
        http::Method::GET,
        "127.0.0.1:50000".parse().unwrap(),
        policy.clone(),
    );
    ctx.facts.path = Some(canonicalize("/api/v2/workspaces/ws-1").unwrap());
    ctx.facts.principal = Some(team_principal("at-benchbenchbench"));
    ctx.record.decision = Some(Decision::Allow);
    ctx.record.rule = Some("api-for-authenticated".into());
    ctx.record.rule_mode = Some(RuleMode::Enforce);
    // The line must be written, or the benchmark measures a filtered event.
    tokengate::observe::access_log::log_request(&ctx, http::StatusCode::OK);
    let line = LINES.with(|lines| String::from_utf8_lossy(&lines.borrow()).into_owned());
    assert!(
        line.contains("tokengate::access") && line.contains("token_id=\"at-benchbenchbench\""),
        "{line}"
    );
    stage(c, "access_line", "team_get_allowed", us(2), |b| {
        b.iter(|| {
            tokengate::observe::access_log::log_request(black_box(&ctx), http::StatusCode::OK)
        })
    });
    // What the gateway does since issue 15: the same line formatted by
    // hand straight into the worker's batch (identical bytes, see the
    // access_log tests), without tracing's per-event machinery.
    let mut batch = Vec::with_capacity(64 * 1024);
    stage(c, "access_line", "team_get_allowed_direct", ns(500), |b| {
        b.iter(|| {
            if batch.len() > 60 * 1024 {
                batch.clear();
            }
            tokengate::observe::access_log::format_access_line(
                black_box(&ctx),
                http::StatusCode::OK,
                1234,
                tokengate::config::LogFormat::Text,
                &mut batch,
            )
        })
    });
}

fn request_stage(c: &mut Criterion, policy: &Arc<Policy>) {
    let secret = token::generate(&token::new_slot()).secret_token;
    let digest =
        tokengate::token::secret_hash::hash_token(&secret, &HashingConfig::default()).unwrap();
    let verifier = CachedVerifier::new(&VerifyCacheConfig {
        capacity: 10_000,
        ttl: Duration::from_secs(600),
        max_concurrent_verifies: 2,
    });
    let request_headers = typical_headers(&format!("Bearer {secret}"));
    let upstream_host = HeaderValue::from_static("127.0.0.1:9000");
    let get = http::Method::GET;
    // The client connection's header values (one keep-alive connection).
    let mut values = ConnectionHeaderValues::default();
    // Every stage of a team GET but the sockets and the store read.
    stage(c, "request", "team_get_all_stages", us(7), |b| {
        b.iter_batched(
            || request_headers.clone(),
            |mut headers| {
                let path = canonical_target(
                    &get,
                    "/api/v2/workspaces/ws-1",
                    None,
                    &policy.write_query_parameters,
                )
                .unwrap();
                let host =
                    canonical_headers::check_host(&headers, None, http::Version::HTTP_11).unwrap();
                canonical_headers::check_connection(&headers).unwrap();
                let raw = bearer_token(headers.get(header::AUTHORIZATION).unwrap()).unwrap();
                let token = PresentedToken::parse(raw).unwrap();
                assert_eq!(ready(verifier.verify(token, &digest)), Verification::Valid);
                let principal = team_principal(&token.public_id());
                let facts = Facts {
                    caller: Caller::Team,
                    org: Some(&principal.org),
                    team_id: principal.team_id.as_deref(),
                    user_id: None,
                    method: &get,
                    path: &path,
                    query: None,
                };
                assert!(matches!(decide(policy, &facts, None), Judgement::Allow(_)));
                let mut ctx = RequestContext::new(
                    get.clone(),
                    "127.0.0.1:50000".parse().unwrap(),
                    policy.clone(),
                );
                rewrite_request_headers(
                    &mut headers,
                    &ForwardContext {
                        principal: Some(&principal),
                        client_addr: ctx.facts.client_addr,
                        forward_authorization: false,
                        client_host: host.as_deref(),
                        client_proto: Default::default(),
                    },
                    &upstream_host,
                    &mut values,
                );
                ctx.facts.path = Some(path);
                ctx.facts.principal = Some(principal);
                ctx.record.decision = Some(Decision::Allow);
                ctx.record.rule = Some("api-for-authenticated".into());
                ctx.record.rule_mode = Some(RuleMode::Enforce);
                let mut line = Vec::with_capacity(512);
                tokengate::observe::access_log::format_access_line(
                    &ctx,
                    http::StatusCode::OK,
                    1234,
                    tokengate::config::LogFormat::Text,
                    &mut line,
                );
                (headers, line)
            },
            BatchSize::SmallInput,
        )
    });
}

/// This run's result for `id`, if it ran (see [`criterion_results::result_of`]).
fn result_of(dir: &std::path::Path, id: &str, since: SystemTime) -> Option<(Duration, Duration)> {
    let (median, fast) = criterion_results::result_of(&dir.join(id).join("new"), since)?;
    let nanos = |n: f64| Duration::from_secs_f64(n / 1e9);
    Some((nanos(median), nanos(fast)))
}

fn report_budgets(since: SystemTime) {
    let Some(dir) = criterion_dir() else { return };
    let budgets = BUDGETS.lock().unwrap();
    let rows: Vec<_> = budgets
        .iter()
        .filter_map(|(id, budget)| result_of(&dir, id, since).map(|r| (id, *budget, r)))
        .collect();
    if rows.is_empty() {
        return;
    }
    println!("\nbudgets: the median of this run against each budget (fastest 10 %: the");
    println!("time per iteration of the fastest tenth of the samples, less disturbed by");
    println!("other processes; a median over budget with a fastest 10 % within it is");
    println!("likely noise: measure again on an idle machine)");
    println!("| benchmark | budget | median | fastest 10 % | |");
    println!("|---|--:|--:|--:|---|");
    for (id, budget, (median, fast)) in rows {
        let mark = match (median > budget, fast > budget) {
            (false, _) => "",
            (true, false) => "over budget (noise?)",
            (true, true) => "OVER BUDGET",
        };
        println!("| {id} | {budget:?} | {median:.2?} | {fast:.2?} | {mark} |");
    }
}

fn main() {
    let started = SystemTime::now();
    let policy = default_policy();
    let mut c = Criterion::default().configure_from_args();
    canonicalize_stage(&mut c, &policy);
    authenticate_stage(&mut c);
    policy_stage(&mut c, &policy);
    header_rewrite_stage(&mut c);
    access_line_stage(&mut c, &policy);
    request_stage(&mut c, &policy);
    c.final_summary();
    report_budgets(started);
    report_request_future_size();
}

/// The largest a request's future may be in a release build. Every move of
/// it (into its span, under a timeout, into the connection's future) copies
/// all of it; when the web UI's, the token API's and the resolver's
/// upstream lookups were inline it was 64 KiB, and the copies cost more
/// instructions than the rest of the request (docs/PERFORMANCE.md).
const REQUEST_FUTURE_BUDGET: usize = 8 * 1024;

/// Prints the size of `Gateway::handle`'s future for a plain request in
/// this build (sizes differ between debug and release builds, so this is
/// measured here, not in the debug test suite), against its budget.
fn report_request_future_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tokengate.yaml");
    let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/policy.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:9\nstore:\n  embedded:\n    path: {}\npolicy:\n  file: {}\n",
            dir.path().join("tokengate.db").display(),
            policy.display()
        ),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let gateway = Gateway::build(Config::load(&config).unwrap()).unwrap();
        let request = http::Request::get("/api/v2/workspaces/ws-1")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let lease = gateway.forwarder.lease();
        let future = gateway.handle(request, ([127, 0, 0, 1], 40000).into(), &lease);
        let size = std::mem::size_of_val(&future);
        let verdict = if size <= REQUEST_FUTURE_BUDGET {
            "within budget"
        } else {
            "OVER BUDGET: box the large, rare branch that grew it"
        };
        println!("\nrequest future: {size} bytes (budget {REQUEST_FUTURE_BUDGET}): {verdict}");
    });
}
