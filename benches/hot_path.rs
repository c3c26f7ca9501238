//! Criterion benchmarks of the per-request work inside the process, without
//! sockets: canonicalization, token shape check, verify-cache hit, policy
//! evaluation, and all of them together as one request would run them.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tokengate::auth::Verification;
use tokengate::canonical::canonicalize;
use tokengate::config::{Argon2Params, VerifyCacheConfig};
use tokengate::policy::{Body, Caller, Facts, Outcome, Policy};
use tokengate::token::{self, PresentedToken};

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
    let phc = tokengate::hashing::hash_token(&secret, Argon2Params::default()).unwrap();
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
    c.bench_function("verify_cache_hit", |b| {
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

criterion_group!(benches, hot_path);
criterion_main!(benches);
