//! Criterion benchmarks of the per-request work inside the process, without
//! sockets: canonicalization, token shape check, verify-cache hit, policy
//! evaluation, and all of them together as one request would run them; and
//! header stripping, for a typical request and for a hostile one.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tokengate::auth::Verification;
use tokengate::canonical::canonicalize;
use tokengate::config::{Argon2Params, HashingConfig, SecretScheme, VerifyCacheConfig};
use tokengate::policy::{Body, Caller, Facts, Outcome, Policy};
use tokengate::token::format::{self as token, PresentedToken};

fn default_policy() -> Policy {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy.yaml");
    Policy::load(std::path::Path::new(path)).expect("the default policy loads")
}

fn hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy = default_policy();
    let issued = token::generate(&token::new_slot());
    let secret = issued.secret_token.clone();
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
    let verifier = tokengate::auth::CachedVerifier::new(&VerifyCacheConfig {
        capacity: 10_000,
        ttl: std::time::Duration::from_secs(600),
        max_concurrent_verifies: 2,
    });
    // Warm the cache: the one argon2 run.
    assert_eq!(
        runtime.block_on(verifier.verify(PresentedToken::parse(&secret).unwrap(), &phc)),
        Verification::Valid
    );

    c.bench_function("canonicalize", |b| {
        b.iter(|| canonicalize(black_box("/api/v2/workspaces/ws-1/./runs//x/../")).unwrap())
    });
    c.bench_function("token_shape_check", |b| {
        b.iter(|| PresentedToken::parse(black_box(&secret)).unwrap())
    });
    c.bench_function("verify_sha256", |b| {
        b.iter(|| {
            let token = PresentedToken::parse(black_box(&secret)).unwrap();
            assert_eq!(
                runtime.block_on(verifier.verify(token, &digest)),
                Verification::Valid
            );
        })
    });
    c.bench_function("verify_argon2_cache_hit", |b| {
        b.iter(|| {
            let token = PresentedToken::parse(black_box(&secret)).unwrap();
            assert_eq!(
                runtime.block_on(verifier.verify(token, &phc)),
                Verification::Valid
            );
        })
    });
    let path = canonicalize("/api/v2/workspaces/ws-1").unwrap();
    let apply = canonicalize("/api/v2/runs/run-1/actions/apply").unwrap();
    let method = http::Method::GET;
    let post = http::Method::POST;
    c.bench_function("policy_allow_team_get", |b| {
        let facts = Facts {
            caller: Caller::Team,
            org: Some("acme"),
            team_id: Some("team-1"),
            user_id: None,
            method: &method,
            path: &path,
        };
        b.iter(|| {
            matches!(
                policy.evaluate(black_box(&facts), Body::NotRead),
                Outcome::Decided(_)
            )
        })
    });
    c.bench_function("policy_deny_org_apply", |b| {
        let facts = Facts {
            caller: Caller::Org,
            org: Some("acme"),
            team_id: None,
            user_id: None,
            method: &post,
            path: &apply,
        };
        b.iter(|| {
            matches!(
                policy.evaluate(black_box(&facts), Body::NotRead),
                Outcome::Decided(_)
            )
        })
    });
    c.bench_function("request_hot_path", |b| {
        b.iter(|| {
            let path = canonicalize(black_box("/api/v2/workspaces/ws-1")).unwrap();
            let token = PresentedToken::parse(black_box(&secret)).unwrap();
            assert_eq!(
                runtime.block_on(verifier.verify(token, &phc)),
                Verification::Valid
            );
            let facts = Facts {
                caller: Caller::Team,
                org: Some("acme"),
                team_id: Some("team-1"),
                user_id: None,
                method: &method,
                path: &path,
            };
            matches!(policy.evaluate(&facts, Body::NotRead), Outcome::Decided(_))
        })
    });
}

/// A request with a 62 KiB `Connection` list and ~100 headers: the most
/// work one request's headers can ask of the hop-by-hop stripping.
fn hostile_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for i in 0..98 {
        headers.insert(
            http::HeaderName::from_bytes(format!("x-h{i:02}").as_bytes()).unwrap(),
            http::HeaderValue::from_static("1"),
        );
    }
    let list = "a,".repeat(31 * 1024);
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_str(&list).unwrap(),
    );
    headers
}

fn header_stripping(c: &mut Criterion) {
    let typical = {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, "gateway.test".parse().unwrap());
        headers.insert(http::header::AUTHORIZATION, "Bearer x".parse().unwrap());
        headers.insert(
            http::header::ACCEPT,
            "application/vnd.api+json".parse().unwrap(),
        );
        headers.insert(http::header::USER_AGENT, "terraform/1.9".parse().unwrap());
        headers
    };
    let upstream_host = http::HeaderValue::from_static("127.0.0.1:9000");
    let context = tokengate::upstream::headers::ForwardContext {
        principal: None,
        client_addr: "127.0.0.1:50000".parse().unwrap(),
        forward_authorization: false,
        client_host: Some("gateway.test"),
        client_proto: Default::default(),
    };
    c.bench_function("strip_headers_typical", |b| {
        b.iter_batched(
            || typical.clone(),
            |mut headers| {
                tokengate::upstream::headers::rewrite_request_headers(
                    &mut headers,
                    &context,
                    &upstream_host,
                );
                headers
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let hostile = hostile_headers();
    c.bench_function("strip_headers_hostile_connection", |b| {
        b.iter_batched(
            || hostile.clone(),
            |mut headers| {
                tokengate::upstream::headers::remove_hop_by_hop(&mut headers);
                headers
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, hot_path, header_stripping);
criterion_main!(benches);
