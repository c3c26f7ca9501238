//! The connection every store call goes through: [`Link`] (one per worker)
//! keeps one live connection to the node that must answer (the single node,
//! the primary the sentinels name, or a Cluster connection), and [`Conn`]
//! is the handle one store call sends its commands through
//! (`redis::aio::ConnectionLike`, so `query_async(&mut conn)` works as on
//! any connection).
//!
//! What it guarantees:
//!
//! - **A dead connection never serves.** Connections speak RESP3, so the
//!   crate tells the link as soon as the socket closes (a Redis restart, a
//!   killed primary) and the next call connects afresh instead of failing
//!   on the dead socket. A connection that was idle for
//!   `RedisOptions::idle_check` (`store.redis.idle_check_ms`), or whose last
//!   command gave no answer in time, is checked with `PING` (one round trip)
//!   before it serves; when the check fails or does not answer within half
//!   the call's time limit (a connection silently dropped by a NAT or a load
//!   balancer), the connection is replaced and the call goes on with the
//!   other half.
//! - **Reads are retried once, writes never blindly.** A read-only command
//!   (see [`is_read_only`]) that fails because its connection broke is sent
//!   again once on a fresh connection, inside the caller's time limit. A
//!   write is sent again only when the error proves it was not executed
//!   (`READONLY`, `MASTERDOWN`, `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`):
//!   a write whose connection broke may have been applied, and is reported
//!   as a failure instead.
//! - **Under Sentinel, only a confirmed primary serves.** A connection is
//!   opened to the address the sentinels report and must answer `ROLE` with
//!   `master`; every [`Topology::Sentinel`] `check_interval` (and after any
//!   error) the sentinels are asked again and `ROLE` is checked again before
//!   the connection serves, so a primary demoted or cut off by a failover
//!   stops serving within that interval. When no sentinel answers, nothing
//!   is served (fail closed).
//! - **One call, one connection.** A [`Conn`] sends all its commands over
//!   the connection it first used, so a script's `SCRIPT LOAD` and
//!   `EVALSHA`, or a write and its `WAIT`, meet the same server.

use super::fast_reads::FastReads;
use super::options::{RedisOptions, Topology};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// How to reach the node(s) of one [`Link`].
enum Target {
    Node(redis::Client),
    Sentinel(super::sentinel::Resolver),
    Cluster(redis::cluster::ClusterClient),
}

/// One worker's connection to Redis, replaced when it dies.
pub struct Link {
    options: Arc<RedisOptions>,
    target: Target,
    current: Mutex<Option<Arc<Live>>>,
    /// Held while the connection is checked or replaced, so that the
    /// requests that find it unfit wait for one check instead of each
    /// opening a connection.
    gate: tokio::sync::Mutex<()>,
    /// Connections opened so far (for tests and logs).
    opened: AtomicU64,
    /// The request path's plain reads on a connection of their own, on a
    /// single node over plain TCP (see [`FastReads`]).
    fast: Option<Arc<FastReads>>,
}

/// A connection as it is.
struct Live {
    raw: Raw,
    id: u64,
    /// `host:port` of the node (the primary, under Sentinel).
    addr: String,
    /// Set by the crate when the socket closed, or by a call that saw it break.
    dead: Arc<AtomicBool>,
    /// A command on it got no answer in time: check it before it serves.
    suspect: AtomicBool,
    /// When a command last succeeded on it, and when its role was last
    /// confirmed (milliseconds since [`epoch`]).
    last_ok: AtomicU64,
    confirmed: AtomicU64,
}

#[derive(Clone)]
enum Raw {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Live {
    fn dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// True when it may serve without a check.
    fn fit(&self, options: &RedisOptions) -> bool {
        if self.dead() || self.suspect.load(Ordering::Acquire) {
            return false;
        }
        let now = now_ms();
        let idle = now.saturating_sub(self.last_ok.load(Ordering::Acquire));
        if matches!(self.raw, Raw::Node(_)) && idle >= options.idle_check.as_millis() as u64 {
            return false;
        }
        match &options.topology {
            Topology::Sentinel { check_interval, .. } => {
                now.saturating_sub(self.confirmed.load(Ordering::Acquire))
                    < check_interval.as_millis() as u64
            }
            _ => true,
        }
    }

    fn touch(&self) {
        self.last_ok.store(now_ms(), Ordering::Release);
    }
}

impl Link {
    pub fn new(options: Arc<RedisOptions>) -> RedisResult<Link> {
        super::options::install_crypto_provider();
        let target = match &options.topology {
            Topology::Single { url } => Target::Node(options.node_client(url)?),
            Topology::Sentinel { .. } => {
                Target::Sentinel(super::sentinel::Resolver::new(&options)?)
            }
            Topology::Cluster { urls } => Target::Cluster(options.cluster_client(urls)?),
        };
        let fast = match &target {
            Target::Node(client) => FastReads::for_node(&options, client),
            _ => None,
        };
        Ok(Link {
            fast,
            options,
            target,
            current: Mutex::new(None),
            gate: tokio::sync::Mutex::new(()),
            opened: AtomicU64::new(0),
        })
    }

    /// Connections this link has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The fast reads of this link, when its Redis allows them.
    pub fn fast_reads(&self) -> Option<&Arc<FastReads>> {
        self.fast.as_ref()
    }

    fn current(&self) -> Option<Arc<Live>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets `live` if it is still the current connection.
    fn discard(&self, live: &Live) {
        live.dead.store(true, Ordering::Release);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|c| c.id == live.id) {
            *current = None;
        }
    }

    /// A connection fit to serve: the current one, checked if needed, or a
    /// new one. Bounded by the caller's time limit.
    async fn ready(&self) -> RedisResult<Arc<Live>> {
        if let Some(live) = self.current() {
            if live.fit(&self.options) {
                return Ok(live);
            }
        }
        let _gate = self.gate.lock().await;
        if let Some(live) = self.current() {
            if live.fit(&self.options) {
                return Ok(live);
            }
            if !live.dead() {
                let check = tokio::time::timeout(self.options.timeout / 2, self.check(&live));
                let outcome = match check.await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(RedisError::from((
                        ErrorKind::Io,
                        "no answer to the connection check",
                    ))),
                };
                match outcome {
                    Ok(()) => {
                        live.suspect.store(false, Ordering::Release);
                        live.touch();
                        return Ok(live);
                    }
                    Err(err) => {
                        tracing::debug!(target: "tokengate::store", addr = %live.addr, error = %err, "Redis connection failed its check; replacing it");
                        self.discard(&live);
                    }
                }
            }
        }
        let fresh = Arc::new(self.connect().await?);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    /// The cheap check before an idle, suspect or unconfirmed connection serves.
    async fn check(&self, live: &Live) -> RedisResult<()> {
        let mut raw = live.raw.clone();
        match &self.target {
            Target::Node(_) | Target::Cluster(_) => {
                let _: String = redis::cmd("PING").query_async(&mut raw).await?;
            }
            Target::Sentinel(resolver) => {
                let primary = resolver.primary().await?;
                if primary != live.addr {
                    return Err(not_primary(format!(
                        "the sentinels now name {primary} as the primary, not {}",
                        live.addr
                    )));
                }
                confirm_primary(&mut raw, &live.addr).await?;
                live.confirmed.store(now_ms(), Ordering::Release);
            }
        }
        Ok(())
    }

    /// Opens a connection to the node that must answer.
    async fn connect(&self) -> RedisResult<Live> {
        let dead = Arc::new(AtomicBool::new(false));
        let flag = dead.clone();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout()))
            .set_response_timeout(None)
            .set_push_sender(move |info: redis::PushInfo| {
                if info.kind == redis::PushKind::Disconnection {
                    flag.store(true, Ordering::Release);
                }
                Ok::<(), redis::aio::SendError>(())
            });
        let (raw, addr) = match &self.target {
            Target::Node(client) => {
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                (
                    Raw::Node(conn),
                    client.get_connection_info().addr().to_string(),
                )
            }
            Target::Sentinel(resolver) => {
                let addr = resolver.primary().await?;
                let client = resolver.node_client(&addr)?;
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                confirm_primary(&mut conn, &addr).await?;
                (Raw::Node(conn), addr)
            }
            Target::Cluster(client) => {
                let conn = client.get_async_connection().await?;
                (Raw::Cluster(conn), "cluster".to_owned())
            }
        };
        let id = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(target: "tokengate::store", %addr, id, "Redis connection opened");
        let now = now_ms();
        Ok(Live {
            raw,
            id,
            addr,
            dead,
            suspect: AtomicBool::new(false),
            last_ok: AtomicU64::new(now),
            confirmed: AtomicU64::new(now),
        })
    }

    /// A handle for one store call.
    pub fn conn(self: &Arc<Self>) -> Conn {
        Conn {
            link: self.clone(),
            pinned: None,
            wrote: false,
            retried: false,
        }
    }
}

/// Checks with `ROLE` that the server behind `conn` is a primary.
async fn confirm_primary(conn: &mut impl ConnectionLike, addr: &str) -> RedisResult<()> {
    let role: Vec<Value> = redis::cmd("ROLE").query_async(conn).await?;
    match role.first() {
        Some(Value::BulkString(kind)) if kind == b"master" => Ok(()),
        Some(Value::SimpleString(kind)) if kind == "master" => Ok(()),
        _ => Err(not_primary(format!(
            "{addr} is not a primary (ROLE answered {role:?})"
        ))),
    }
}

fn not_primary(detail: String) -> RedisError {
    RedisError::from((
        ErrorKind::Server(ServerErrorKind::ReadOnly),
        "not the primary",
        detail,
    ))
}

/// What a failed command tells about its connection and about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The connection is broken; the command may or may not have run.
    Broken,
    /// The server refused the command without running it, because it is not
    /// (or no longer) the node to ask: replace the connection, then it may
    /// be sent again.
    WrongNode,
    /// Refused without running it, for a moment (Cluster redirects and
    /// reconfiguration): it may be sent again on the same connection.
    NotRun,
    /// Anything else: the answer stands.
    Final,
}

fn classify(err: &RedisError) -> Failure {
    match err.kind() {
        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown) => {
            Failure::WrongNode
        }
        ErrorKind::Server(
            ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown,
        ) => Failure::NotRun,
        // A transaction refused while queueing (e.g. READONLY): nothing ran.
        ErrorKind::Server(ServerErrorKind::ExecAbort) if err.to_string().contains("READONLY") => {
            Failure::WrongNode
        }
        ErrorKind::Io | ErrorKind::Parse | ErrorKind::ClusterConnectionNotFound => Failure::Broken,
        _ if err.is_connection_dropped() || err.is_unrecoverable_error() => Failure::Broken,
        _ => Failure::Final,
    }
}

/// Commands that change nothing, and so may be sent twice.
pub fn is_read_only(cmd: &Cmd) -> bool {
    let Some(redis::Arg::Simple(name)) = cmd.args_iter().next() else {
        return false;
    };
    const READS: &[&[u8]] = &[
        b"GET",
        b"MGET",
        b"EXISTS",
        b"STRLEN",
        b"TTL",
        b"PTTL",
        b"TYPE",
        b"HGET",
        b"HMGET",
        b"HGETALL",
        b"HEXISTS",
        b"HKEYS",
        b"HVALS",
        b"HLEN",
        b"HSCAN",
        b"SMEMBERS",
        b"SISMEMBER",
        b"SMISMEMBER",
        b"SCARD",
        b"SSCAN",
        b"ZRANGE",
        b"ZRANGEBYSCORE",
        b"ZREVRANGE",
        b"ZSCORE",
        b"ZCARD",
        b"ZSCAN",
        b"LRANGE",
        b"LLEN",
        b"LINDEX",
        b"XRANGE",
        b"XREVRANGE",
        b"XLEN",
        b"SCAN",
        b"PING",
        b"ROLE",
        b"EVALSHA_RO",
        b"EVAL_RO",
    ];
    READS.iter().any(|read| name.eq_ignore_ascii_case(read))
}

/// One store call's way to Redis (see the module documentation).
pub struct Conn {
    link: Arc<Link>,
    /// The connection this call has used so far.
    pinned: Option<Arc<Live>>,
    /// Whether a command that may write was sent on `pinned`.
    wrote: bool,
    /// Whether this call's one retry was spent.
    retried: bool,
}

/// Marks its connection suspect when the command it guards is abandoned
/// (the caller's time limit ran out) before an answer came.
struct Pending<'a> {
    live: &'a Live,
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.live.suspect.store(true, Ordering::Release);
        }
    }
}

enum Request<'a> {
    One(&'a Cmd),
    Many(&'a Pipeline, usize, usize),
}

enum Reply {
    One(Value),
    Many(Vec<Value>),
}

impl Request<'_> {
    fn read_only(&self) -> bool {
        match self {
            Request::One(cmd) => is_read_only(cmd),
            Request::Many(pipeline, ..) => pipeline.cmd_iter().all(is_read_only),
        }
    }

    async fn send(&self, raw: &mut Raw) -> RedisResult<Reply> {
        match self {
            Request::One(cmd) => raw.req_packed_command(cmd).await.map(Reply::One),
            Request::Many(pipeline, offset, count) => raw
                .req_packed_commands(pipeline, *offset, *count)
                .await
                .map(Reply::Many),
        }
    }
}

impl ConnectionLike for Raw {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Raw::Node(c) => c.req_packed_command(cmd),
            Raw::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Raw::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Raw::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Conn {
    /// The connection for the next command: the pinned one while it lives
    /// (always, once this call may have written on it), else a ready one.
    async fn connection(&mut self) -> RedisResult<Arc<Live>> {
        match &self.pinned {
            Some(live) if self.wrote || !live.dead() => Ok(live.clone()),
            _ => {
                let live = self.link.ready().await?;
                self.pinned = Some(live.clone());
                Ok(live)
            }
        }
    }

    async fn run(&mut self, request: Request<'_>) -> RedisResult<Reply> {
        let read_only = request.read_only();
        loop {
            let live = self.connection().await?;
            if !read_only {
                self.wrote = true;
            }
            let mut raw = live.raw.clone();
            let mut pending = Pending {
                live: &live,
                answered: false,
            };
            let result = request.send(&mut raw).await;
            pending.answered = true;
            // A refusal comes back either as an error or as an error value
            // inside the reply; both say the same about retrying.
            let (failure, outcome) = match result {
                Ok(reply) => {
                    live.touch();
                    match refusal(&reply) {
                        Some(failure) => (failure, Ok(reply)),
                        None => return Ok(reply),
                    }
                }
                Err(err) => (classify(&err), Err(err)),
            };
            if matches!(failure, Failure::Broken | Failure::WrongNode) {
                self.link.discard(&live);
            }
            let may_retry = match failure {
                Failure::Broken => read_only,
                Failure::WrongNode | Failure::NotRun => true,
                Failure::Final => false,
            };
            if !may_retry || self.retried {
                return outcome;
            }
            tracing::debug!(target: "tokengate::store", addr = %live.addr, ?failure, "Redis command sent again on a fresh connection");
            self.retried = true;
            // Nothing ran (or it was a read): the retry may use any connection.
            self.pinned = None;
            self.wrote = false;
        }
    }
}

/// The first error value in a reply that proves the command did not run
/// on the right node.
fn refusal(reply: &Reply) -> Option<Failure> {
    let values = match reply {
        Reply::One(value) => std::slice::from_ref(value),
        Reply::Many(values) => values.as_slice(),
    };
    values.iter().find_map(|value| match value {
        Value::ServerError(_) => {
            let err = value.clone().extract_error().err()?;
            let failure = classify(&err);
            matches!(failure, Failure::WrongNode | Failure::NotRun).then_some(failure)
        }
        _ => None,
    })
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.run(Request::One(cmd)).await? {
                Reply::One(value) => Ok(value),
                Reply::Many(_) => unreachable!("one command has one reply"),
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.run(Request::Many(pipeline, offset, count)).await? {
                Reply::Many(values) => Ok(values),
                Reply::One(_) => unreachable!("a pipeline has many replies"),
            }
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_commands_that_change_nothing_are_reads() {
        assert!(is_read_only(&redis::cmd("GET")));
        assert!(is_read_only(&redis::cmd("mget")));
        assert!(is_read_only(&redis::cmd("XRANGE")));
        for write in [
            "SET", "DEL", "EVALSHA", "XADD", "HSETNX", "SADD", "WAIT", "MULTI",
        ] {
            assert!(!is_read_only(&redis::cmd(write)), "{write}");
        }
    }

    #[test]
    fn errors_are_classified_by_what_they_prove() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(classify(&io), Failure::Broken);
        assert_eq!(classify(&not_primary("x".into())), Failure::WrongNode);
        let other = RedisError::from((ErrorKind::Client, "nope"));
        assert_eq!(classify(&other), Failure::Final);
    }
}
