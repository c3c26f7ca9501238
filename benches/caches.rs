//! Criterion micro-benchmarks that choose the gateway's in-process caches and
//! its rate limiter by measurement (issue 15): `moka` against
//! `pingora-memory-cache` for the verification-result cache, and `governor`
//! against `pingora-limits` for the sign-in throttle.
//!
//! The shapes are the gateway's own:
//!
//! | group | what one iteration does |
//! |---|---|
//! | `verify_cache` | a lookup in a cache shaped as `CachedVerifier`'s (`[u8; 32]` keys, `bool` values, the default capacity 100,000 and TTL 600 s), 4,096 entries present: a hit (`*_hit`), or a miss followed by the insert of a new key (`*_miss_insert`); `moka_future_get_with_hit` is the verifier's own call (`get_with`, polled once) |
//! | `verify_cache_2threads` | the hits again, two threads at once on one cache (time per lookup of each thread) |
//! | `signin_throttle` | one failed sign-in counted against a name's quota (`String` keys, 4,096 names, as `SignIn::failed` does) and against a client address's (`IpAddr`): `governor`'s keyed GCRA limiter (`check_key`), and `pingora-limits`' `Rate` (`observe` and a compare with a limit) |
//! | `signin_throttle_2threads` | the same, two threads at once |
//!
//! `pingora-memory-cache` and `pingora-limits` are dev-dependencies only:
//! the binary keeps what won (docs/PERFORMANCE.md, "2026-12-02: moka
//! against pingora-memory-cache, governor against pingora-limits").
//!
//! ```sh
//! cargo bench --bench caches
//! cargo bench --bench caches -- verify_cache/     # one group
//! cargo bench --bench caches -- --warm-up-time 1 --measurement-time 3
//! ```

#[path = "support/criterion_results.rs"]
mod criterion_results;
#[path = "support/ready.rs"]
mod ready;

use criterion::Criterion;
use criterion_results::criterion_dir;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ready::ready;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;

use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime};

/// The gateway's allocator (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `verify_cache.capacity` and `verify_cache.ttl_s` by default.
const CAPACITY: u64 = 100_000;
const TTL: Duration = Duration::from_secs(600);

/// Entries present in the caches, and distinct keys of the throttle.
const PRESENT: usize = 4_096;

/// The `n`th key: 32 bytes as spread as the verifier's SHA-256 keys.
fn key(n: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    let mut x = n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in key.chunks_mut(8) {
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    key
}

fn present_keys() -> Vec<[u8; 32]> {
    (0..PRESENT as u64).map(key).collect()
}

fn moka_future() -> moka::future::Cache<[u8; 32], bool> {
    let cache = moka::future::Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(TTL)
        .build();
    for k in present_keys() {
        ready(cache.insert(k, true));
    }
    ready(cache.run_pending_tasks());
    cache
}

fn moka_sync() -> moka::sync::Cache<[u8; 32], bool> {
    let cache = moka::sync::Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(TTL)
        .build();
    for k in present_keys() {
        cache.insert(k, true);
    }
    cache.run_pending_tasks();
    cache
}

fn pingora() -> pingora_memory_cache::MemoryCache<[u8; 32], bool> {
    let cache = pingora_memory_cache::MemoryCache::new(CAPACITY as usize);
    for k in present_keys() {
        cache.put(&k, true, Some(TTL));
    }
    cache
}

/// Runs `op(thread, i)` `iters` times on each of two threads at once and
/// returns the time one thread took (the slower), so that the result is the
/// time per operation of each thread under contention.
fn two_threads(iters: u64, op: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(2);
    let times: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|thread| {
                let (barrier, op) = (&barrier, &op);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        op(thread, i);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    times.into_iter().max().unwrap_or_default()
}

fn verify_cache(c: &mut Criterion) {
    let keys = present_keys();
    let at = |i: u64| &keys[(i as usize) % PRESENT];

    let mut group = c.benchmark_group("verify_cache");
    let cache = moka_future();
    group.bench_function("moka_future_get_with_hit", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let found = ready(cache.get_with(*at(i), async { unreachable!("a hit") }));
            assert!(black_box(found));
        })
    });
    group.bench_function("moka_future_get_hit", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            assert_eq!(ready(cache.get(black_box(at(i)))), Some(true));
        })
    });
    let sync = moka_sync();
    group.bench_function("moka_sync_get_hit", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            assert_eq!(sync.get(black_box(at(i))), Some(true));
        })
    });
    let memory = pingora();
    group.bench_function("pingora_get_hit", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let (found, status) = memory.get(black_box(at(i)));
            assert!(found == Some(true) && status.is_hit());
        })
    });

    // Misses: a new key each time, looked up, then inserted (what a first
    // verification does around its argon2 run). The caches fill to their
    // capacity and then evict, as under a flood of new tokens.
    let cache = moka_future();
    // Criterion calls each routine more than once: the key counters live
    // outside, so that every key is new.
    let mut n = PRESENT as u64;
    group.bench_function("moka_future_get_with_miss_insert", |b| {
        b.iter(|| {
            n += 1;
            assert!(ready(cache.get_with(key(n), async { true })));
        })
    });
    let sync = moka_sync();
    group.bench_function("moka_sync_miss_insert", |b| {
        b.iter(|| {
            n += 1;
            let k = key(n);
            assert_eq!(sync.get(&k), None);
            sync.insert(k, true);
        })
    });
    let memory = pingora();
    group.bench_function("pingora_miss_insert", |b| {
        b.iter(|| {
            n += 1;
            let k = key(n);
            assert_eq!(memory.get(&k).0, None);
            memory.put(&k, true, Some(TTL));
        })
    });
    group.finish();

    // Two threads on one cache; each starts at another key.
    let at2 = |thread: usize, i: u64| &keys[(thread * PRESENT / 2 + i as usize) % PRESENT];
    let mut group = c.benchmark_group("verify_cache_2threads");
    let cache = moka_future();
    group.bench_function("moka_future_get_with_hit", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, i| {
                let found = ready(cache.get_with(*at2(t, i), async { unreachable!("a hit") }));
                assert!(black_box(found));
            })
        })
    });
    let sync = moka_sync();
    group.bench_function("moka_sync_get_hit", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, i| {
                assert_eq!(sync.get(black_box(at2(t, i))), Some(true));
            })
        })
    });
    let memory = pingora();
    group.bench_function("pingora_get_hit", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, i| {
                let (found, status) = memory.get(black_box(at2(t, i)));
                assert!(found == Some(true) && status.is_hit());
            })
        })
    });
    group.finish();
}

/// `SignIn`'s quotas (src/ui/signin.rs): per name 3 a minute after a burst
/// of 5; per address 20 a minute.
fn user_quota() -> Quota {
    Quota::per_minute(NonZeroU32::new(3).unwrap()).allow_burst(NonZeroU32::new(5).unwrap())
}

fn address_quota() -> Quota {
    Quota::per_minute(NonZeroU32::new(20).unwrap())
}

/// What a fixed-window estimator can express of those quotas: at most so
/// many events in the current minute.
const USER_LIMIT: isize = 5;
const ADDRESS_LIMIT: isize = 20;

fn signin_throttle(c: &mut Criterion) {
    let names: Vec<String> = (0..PRESENT).map(|n| format!("user-{n:05}")).collect();
    let addresses: Vec<IpAddr> = (0..PRESENT as u32)
        .map(|n| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)))
        .collect();
    let name = |i: u64| names[(i as usize) % PRESENT].as_str();
    let address = |i: u64| addresses[(i as usize) % PRESENT];

    let mut group = c.benchmark_group("signin_throttle");
    let users: DefaultKeyedRateLimiter<String> = RateLimiter::keyed(user_quota());
    group.bench_function("governor_check_key_name", |b| {
        let mut i = 0u64;
        // As `SignIn::failed`: the name is copied into the key.
        b.iter(|| {
            i += 1;
            black_box(users.check_key(&name(i).to_owned()).is_ok())
        })
    });
    let addrs: DefaultKeyedRateLimiter<IpAddr> = RateLimiter::keyed(address_quota());
    group.bench_function("governor_check_key_address", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(addrs.check_key(&address(i)).is_ok())
        })
    });
    let rate = pingora_limits::rate::Rate::new(Duration::from_secs(60));
    group.bench_function("pingora_rate_observe_name", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(rate.observe(&name(i), 1) <= USER_LIMIT)
        })
    });
    let rate = pingora_limits::rate::Rate::new(Duration::from_secs(60));
    group.bench_function("pingora_rate_observe_address", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(rate.observe(&address(i), 1) <= ADDRESS_LIMIT)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("signin_throttle_2threads");
    let users: DefaultKeyedRateLimiter<String> = RateLimiter::keyed(user_quota());
    group.bench_function("governor_check_key_name", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, i| {
                let key = name(i + (t * PRESENT / 2) as u64).to_owned();
                black_box(users.check_key(&key).is_ok());
            })
        })
    });
    let rate = pingora_limits::rate::Rate::new(Duration::from_secs(60));
    group.bench_function("pingora_rate_observe_name", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, i| {
                let key = name(i + (t * PRESENT / 2) as u64);
                black_box(rate.observe(&key, 1) <= USER_LIMIT);
            })
        })
    });
    group.finish();
}

fn report(since: SystemTime) {
    let Some(dir) = criterion_dir() else { return };
    let mut rows = Vec::new();
    for group in [
        "verify_cache",
        "verify_cache_2threads",
        "signin_throttle",
        "signin_throttle_2threads",
    ] {
        let Ok(entries) = std::fs::read_dir(dir.join(group)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name != "report")
            .collect();
        names.sort();
        for name in names {
            if let Some((median, fast)) =
                criterion_results::result_of(&dir.join(group).join(&name).join("new"), since)
            {
                rows.push(format!("| {group}/{name} | {median:.1} | {fast:.1} |"));
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    println!("\n| benchmark | median ns | fastest 10 % ns |");
    println!("|---|--:|--:|");
    for row in rows {
        println!("{row}");
    }
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    verify_cache(&mut c);
    signin_throttle(&mut c);
    c.final_summary();
    report(started);
}
