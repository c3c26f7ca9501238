//! Redis backend of the [`Store`]: one connection per worker thread,
//! shared by that worker's requests, every call bounded by a timeout; single
//! node, Sentinel or Cluster, with TLS and ACL users ([`RedisOptions`]).
//! How a connection is kept alive, checked and replaced, and when a command
//! is sent twice, is [`link`]'s business; every command of this file goes
//! through it (`self.conn()`), except the request path's plain reads
//! (`GET`, and `GET, GET, HGET`), which take the worker's fast connection
//! on a single node over plain TCP when it is fit to serve, and the link
//! otherwise (`fast_reads.rs`, `RedisStore::get_now`).
//!
//! Credential writes (`put_credential`, `delete_credential`,
//! `replace_secret_hash`, and any new write of a `tg:cred:` key) go through
//! [`RedisStore::credential_write`]: one `MULTI`/`EXEC` or one script, then,
//! with `store.redis.wait_replicas: N`, `WAIT N` in the same round trip on
//! a connection of their own (so a slow `WAIT` never holds up the reads);
//! fewer confirmations than N fail the call ([`StoreError::Unavailable`]).
//!
//! Nothing is cached on this side: every credential read asks Redis (the
//! `redis` crate's client-side cache is not enabled; it would keep
//! answering from memory while Redis is frozen instead of failing closed).
//!
//! Key layout (the `{…}` part is the Redis Cluster hash tag, so every
//! multi-key transaction and script stays in one slot):
//!
//! | key | value |
//! |---|---|
//! | `tg:org:{NAME}` | JSON [`Organization`] |
//! | `tg:org:{NAME}:teams` | hash team name → team id |
//! | `tg:team:{ID}` | JSON [`Team`] |
//! | `tg:team:{ID}:members` | set of user ids |
//! | `tg:user:{ID}` | JSON [`User`] |
//! | `tg:slotof:{OWNER}` | the owner's credential slot |
//! | `tg:cred:{SLOT}` | JSON [`Credential`] — read once per request |
//! | `tg:cred:{SLOT}:owner` | claim on the slot name (uniqueness) |
//! | `tg:cred:{SLOT}:used` | `TOKEN_ID|MILLIS`, last use of the current token |
//! | `tg:org:{NAME}:tokens` | set of the slots of the organization's tokens that have a slot of their own |
//! | `tg:team:{ID}:descriptions` | hash description → `SLOT|MILLIS`: a described token's claim on its description |
//! | `tg:audit` | stream of JSON [`AuditEvent`]s (capped near 1,000,000 entries) |
//! | `tg:team:{ID}:ws` | hash workspace id → JSON [`TeamAccess`] — read with the team per request |
//! | `tg:tws:{ID}` | `TEAM_ID|WORKSPACE_ID` of the team access `tws-…` |
//! | `tg:wsteams:{WS}` | set of the team ids with access to workspace `WS` |
//! | `tg:uploadgrant:{KEY}` | an upload URL issued through the gateway (`redis/grants.rs`) |
//!
//! A token with a slot of its own is written in this order: the claim on
//! the slot, the claim on its description, the organization index, and
//! last the credential (with its last-used time, in one `MULTI` on the
//! slot's hash tag); deleting it goes the other way round, the credential
//! first. So a valid token is always listed, and a crash leaves at most an
//! index entry without a credential (skipped when listing) or a claim on a
//! description whose token never appeared (taken over after
//! [`DESCRIPTION_CLAIM_MS`](super::DESCRIPTION_CLAIM_MS)).

mod fast_reads;
mod grants;
pub mod link;
mod memo;
pub mod options;
mod sentinel;
mod ui;

use super::access::{access_exists, access_not_found, validate_access, validate_workspace_id};
use super::{
    check_member_team, check_own_slot, clamped, credential_then_access, decode_record,
    description_taken, encode_record, new_org, new_team, new_user, org_exists, org_not_found,
    slot_taken, team_description, team_exists, validate_id, validate_name, validate_slot,
    AuditEvent, Credential, CredentialRead, Organization, OrganizationAccess, Owner, Store,
    StoreError, StoredToken, Team, TeamAccess, TeamFacts, Timestamp, TokenSettings, User,
    DESCRIPTION_CLAIM_MS,
};
use crate::per_worker::{NearCache, PerWorker};
use crate::token_format as token;
use async_trait::async_trait;
use link::{Conn, Link};
use memo::DecodeMemo;
pub use options::{RedisOptions, Secret, TlsMaterial, Topology};
use redis::aio::ConnectionLike;
use redis::Value;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The Redis store. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct RedisStore {
    /// One connection per worker thread, so that a request's read is written,
    /// answered and handed back on the thread serving the request; code
    /// outside the workers shares one.
    links: Arc<PerWorker<Arc<Link>>>,
    /// Connections for credential writes that wait for replicas (`WAIT`
    /// blocks its connection), made only when `wait_replicas` > 0.
    durable: Arc<PerWorker<Arc<Link>>>,
    options: Arc<RedisOptions>,
    timeout: Duration,
    /// The team owning each credential slot seen, `None` for a slot of an
    /// organization or a user (a slot's owner is written once, before its
    /// first credential): with it, the request path's credential and team
    /// access are one plain pipeline (or a plain `GET`) instead of a script
    /// that first looks the owner up.
    /// Each worker keeps its own copy (a slot's owner never changes).
    slot_teams: Arc<NearCache<String, Option<Arc<SlotTeam>>>>,
    /// The request path's records, decoded again only when their text
    /// changed: credentials by slot, teams and their access by team id.
    decoded: Arc<RequestPathMemos>,
}

/// See [`RedisStore::decoded`].
struct RequestPathMemos {
    credentials: DecodeMemo<Credential>,
    teams: DecodeMemo<Team>,
    team_access: DecodeMemo<TeamAccess>,
}

/// The team owning a credential slot, with the keys of its records (built
/// once, not per request).
#[derive(Debug)]
struct SlotTeam {
    id: String,
    record_key: String,
    access_key: String,
}

impl SlotTeam {
    fn new(id: &str) -> SlotTeam {
        SlotTeam {
            id: id.to_owned(),
            record_key: format!("tg:team:{{{id}}}"),
            access_key: team_access_key(id),
        }
    }
}

/// One credential write, atomic on its own.
enum CredentialWrite<'a> {
    /// Commands run in one `MULTI`/`EXEC`; the answer is `EXEC`'s.
    Transaction(Vec<redis::Cmd>),
    /// A Lua script with its keys and arguments; the answer is the script's.
    Script {
        source: &'static str,
        keys: Vec<String>,
        args: Vec<&'a str>,
    },
}

impl RedisStore {
    /// One Redis node at `url`, no password or TLS material, no `WAIT`:
    /// [`RedisStore::open`] with [`RedisOptions::single`].
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        Self::open(RedisOptions::single(url, timeout))
    }

    /// Prepares a lazily connecting store: starting never waits for Redis,
    /// and connections are re-established by themselves after an outage.
    pub fn open(options: RedisOptions) -> Result<Self, StoreError> {
        let options = Arc::new(options);
        let links = Self::links(&options)?;
        let durable = Self::links(&options)?;
        Ok(Self {
            links,
            durable,
            timeout: options.timeout,
            options,
            slot_teams: Arc::new(NearCache::new(100_000)),
            decoded: Arc::new(RequestPathMemos {
                credentials: DecodeMemo::new(),
                teams: DecodeMemo::new(),
                team_access: DecodeMemo::new(),
            }),
        })
    }

    fn links(options: &Arc<RedisOptions>) -> Result<Arc<PerWorker<Arc<Link>>>, StoreError> {
        let shared = Arc::new(
            Link::new(options.clone())
                .map_err(|e| StoreError::Invalid(format!("bad Redis settings: {e}")))?,
        );
        let options = options.clone();
        Ok(Arc::new(PerWorker::new(move || {
            // The same options were just accepted for `shared`.
            Link::new(options.clone())
                .map(Arc::new)
                .unwrap_or_else(|_| shared.clone())
        })))
    }

    /// The connection for the calling thread (see [`PerWorker`] and [`link`]).
    fn conn(&self) -> Conn {
        self.links.get().conn()
    }

    /// Connections the calling thread's link has opened so far (tests).
    pub fn connections_opened(&self) -> u64 {
        self.links.get().connections_opened()
    }

    /// Fast read connections the calling thread's link has opened so far,
    /// and the calls they answered (tests; see `fast_reads.rs`).
    pub fn fast_reads_opened_and_served(&self) -> (u64, u64) {
        self.links
            .get()
            .fast_reads()
            .map_or((0, 0), |fast| (fast.opened(), fast.served()))
    }

    /// `GET key` for the request path, sent when this is called: on the
    /// calling worker's fast connection when there is one fit to serve,
    /// else (or when it cannot answer) as [`RedisStore::get_string`] does,
    /// within one time limit.
    async fn get_now(&self, key: &str) -> Result<Option<String>, StoreError> {
        let link = self.links.get();
        self.bounded(async {
            if let Some(fast) = link.fast_reads() {
                if let Some([value]) = fast.read([&[b"GET", key.as_bytes()]]).await {
                    return Ok(value);
                }
            }
            let mut conn = link.conn();
            redis::cmd("GET").arg(key).query_async(&mut conn).await
        })
        .await
    }

    /// Runs one store call under the configured timeout.
    async fn bounded<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        Self::within(self.timeout, call).await
    }

    async fn within<T, F>(limit: Duration, call: F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        keep_timer_floor(limit);
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(StoreError::Unavailable(err.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                limit.as_millis()
            ))),
        }
    }

    /// Runs a credential write and, with `store.redis.wait_replicas: N`,
    /// `WAIT N` right after it on the same connection: the call succeeds
    /// only when N replicas confirmed the write, so that it survives a
    /// failover. The answer is the transaction's `EXEC` reply or the
    /// script's reply.
    ///
    /// When fewer replicas confirm, the write has been applied on the
    /// primary but may be lost if the primary fails now; the call fails
    /// with [`StoreError::Unavailable`] (the caller answers 503 and the
    /// client repeats the regenerate or revoke).
    async fn credential_write(&self, write: CredentialWrite<'_>) -> Result<Value, StoreError> {
        let replicas = self.options.wait_replicas;
        let mut pipe = redis::pipe();
        match write {
            CredentialWrite::Transaction(commands) => {
                pipe.cmd("MULTI");
                for command in commands {
                    pipe.add_command(command);
                }
                pipe.cmd("EXEC");
            }
            CredentialWrite::Script { source, keys, args } => {
                pipe.cmd("EVAL")
                    .arg(source)
                    .arg(keys.len())
                    .arg(keys)
                    .arg(args);
            }
        }
        let wait_ms = self.options.wait_timeout.as_millis() as u64;
        let (mut conn, limit) = if replicas > 0 {
            pipe.cmd("WAIT").arg(replicas).arg(wait_ms);
            (
                self.durable.get().conn(),
                self.timeout + self.options.wait_timeout,
            )
        } else {
            (self.conn(), self.timeout)
        };
        let mut replies: Vec<Value> = Self::within(limit, async {
            let replies: Vec<Value> = conn.req_packed_commands(&pipe, 0, pipe.len()).await?;
            Ok(replies)
        })
        .await?;
        if let Some(error) = replies.iter().find_map(|v| v.clone().extract_error().err()) {
            return Err(StoreError::Unavailable(error.to_string()));
        }
        if replicas > 0 {
            let confirmed = match replies.pop() {
                Some(Value::Int(n)) => n,
                other => return Err(StoreError::Unavailable(format!("WAIT answered {other:?}"))),
            };
            if confirmed < i64::from(replicas) {
                return Err(StoreError::Unavailable(format!(
                    "the credential write was confirmed by {confirmed} of {replicas} replica(s) within {wait_ms} ms (store.redis.wait_replicas); it may not survive a failover"
                )));
            }
        }
        replies
            .pop()
            .ok_or_else(|| StoreError::Unavailable("no reply to the credential write".into()))
    }

    async fn get_string(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn();
        self.bounded(redis::cmd("GET").arg(key).query_async(&mut conn))
            .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_string(key)
            .await?
            .map(|text| decode_record(key, text.as_bytes()))
            .transpose()
    }

    /// `SET key value NX`; true when the key was created.
    async fn set_new(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let reply: Option<String> = self
            .bounded(
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .query_async(&mut conn),
            )
            .await?;
        Ok(reply.is_some())
    }
}

/// A command with its arguments, to hand to [`RedisStore::credential_write`].
fn command(name: &str, args: &[&str]) -> redis::Cmd {
    let mut command = redis::cmd(name);
    for arg in args {
        command.arg(*arg);
    }
    command
}

fn cred_key(slot: &str) -> String {
    // By hand rather than `format!` (read on every request): a third of the cost.
    let mut key = String::with_capacity(slot.len() + 10);
    key.push_str("tg:cred:{");
    key.push_str(slot);
    key.push('}');
    key
}

fn slot_of_key(owner: &Owner) -> String {
    format!("tg:slotof:{{{}}}", owner.describe())
}

fn org_tokens_key(org: &str) -> String {
    format!("tg:org:{{{org}}}:tokens")
}

fn descriptions_key(team_id: &str) -> String {
    format!("tg:team:{{{team_id}}}:descriptions")
}

#[async_trait]
impl Store for RedisStore {
    async fn credential(&self, slot: &str) -> Result<Option<Credential>, StoreError> {
        validate_slot(slot)?;
        let key = cred_key(slot);
        let Some(text) = self.get_now(&key).await? else {
            return Ok(None);
        };
        self.decoded
            .credentials
            .decode(slot, &text, || key)
            .map(Some)
    }

    async fn credential_with_access(
        &self,
        slot: &str,
        workspace_id: &str,
    ) -> Result<CredentialRead, StoreError> {
        validate_slot(slot)?;
        if self.is_cluster() || validate_workspace_id(workspace_id).is_err() {
            // On a Cluster the team's keys live in other hash slots than
            // the credential's, which one script may not touch.
            return credential_then_access(self, slot, workspace_id).await;
        }
        let key = cred_key(slot);
        let link = self.links.get();
        let known_team = self.slot_teams.get(slot);
        let (text, owner, team, access) = match &known_team {
            // Not a team's slot: the credential alone.
            Some(None) => (self.get_now(&key).await?, SlotOwner::Other, None, None),
            // The slot's team is known: one pipeline of three reads (on
            // the fast connection when there is one, see `get_now`).
            Some(Some(team)) => {
                let [text, team_record, access] = self
                    .bounded(async {
                        if let Some(fast) = link.fast_reads() {
                            let (record, access) = (&team.record_key, &team.access_key);
                            if let Some(values) = fast
                                .read([
                                    &[b"GET", key.as_bytes()],
                                    &[b"GET", record.as_bytes()],
                                    &[b"HGET", access.as_bytes(), workspace_id.as_bytes()],
                                ])
                                .await
                            {
                                return Ok(values);
                            }
                        }
                        let mut pipe = redis::pipe();
                        pipe.cmd("GET").arg(&key);
                        pipe.cmd("GET").arg(&team.record_key);
                        pipe.cmd("HGET").arg(&team.access_key).arg(workspace_id);
                        let (text, team_record, access): (
                            Option<String>,
                            Option<String>,
                            Option<String>,
                        ) = pipe.query_async(&mut link.conn()).await?;
                        Ok([text, team_record, access])
                    })
                    .await?;
                (text, SlotOwner::Team(team.clone()), team_record, access)
            }
            // Not yet: a script finds the owner, and says it.
            None => {
                let replies: Vec<Option<String>> = self
                    .bounded(
                        CREDENTIAL_WITH_ACCESS
                            .key(&key)
                            .arg(workspace_id)
                            .invoke_async(&mut link.conn()),
                    )
                    .await?;
                // Missing keys are nil: each position is read as it is.
                let mut replies = replies.into_iter();
                let mut next = move || replies.next().flatten();
                let text = next();
                let owner = SlotOwner::Described(next().unwrap_or_default());
                (text, owner, next(), next())
            }
        };
        let Some(text) = text else {
            return Ok(CredentialRead {
                credential: None,
                team_facts: None,
            });
        };
        let credential = self.decoded.credentials.decode(slot, &text, || key)?;
        let (team, access) = (team.unwrap_or_default(), access.unwrap_or_default());
        // The facts count only when they are about the credential's own
        // team (as they always are: a slot's owner is written once).
        let team_facts = match (&credential.owner, &owner) {
            (Owner::Team { team_id, .. }, SlotOwner::Team(known)) if known.id == *team_id => {
                Some(self.decode_team_facts(team_id, &team, &access)?)
            }
            (Owner::Team { team_id, .. }, SlotOwner::Described(owner))
                if owner.strip_prefix("team:") == Some(team_id) =>
            {
                self.slot_teams
                    .insert(slot.to_owned(), Some(Arc::new(SlotTeam::new(team_id))));
                Some(self.decode_team_facts(team_id, &team, &access)?)
            }
            (Owner::Org { .. } | Owner::User { .. }, SlotOwner::Described(owner))
                if *owner == credential.owner.describe() =>
            {
                self.slot_teams.insert(slot.to_owned(), None);
                None
            }
            _ => None,
        };
        Ok(CredentialRead {
            credential: Some(credential),
            team_facts,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    async fn create_org(&self, name: &str) -> Result<Organization, StoreError> {
        validate_name("organization", name)?;
        let (org, owners) = new_org(name);
        // The organization record is written first and only once; its owners
        // team follows. A crash in between leaves an organization whose
        // owners team is missing, never a team without an organization.
        if !self
            .set_new(&format!("tg:org:{{{name}}}"), &encode_record(&org))
            .await?
        {
            return Err(org_exists(name));
        }
        self.insert_team(&owners).await?;
        Ok(org)
    }

    async fn org(&self, name: &str) -> Result<Option<Organization>, StoreError> {
        if validate_name("organization", name).is_err() {
            return Ok(None);
        }
        self.get_json(&format!("tg:org:{{{name}}}")).await
    }

    async fn create_team(&self, org: &str, name: &str) -> Result<Team, StoreError> {
        validate_name("team", name)?;
        if self.org(org).await?.is_none() {
            return Err(org_not_found(org));
        }
        let team = new_team(org, name);
        self.insert_team(&team).await?;
        Ok(team)
    }

    async fn team(&self, team_id: &str) -> Result<Option<Team>, StoreError> {
        if validate_id("team-", team_id).is_err() {
            return Ok(None);
        }
        self.get_json(&format!("tg:team:{{{team_id}}}")).await
    }

    async fn create_user(
        &self,
        org: &str,
        name: &str,
        team_ids: &[String],
    ) -> Result<User, StoreError> {
        validate_name("user", name)?;
        let organization = self.org(org).await?.ok_or_else(|| org_not_found(org))?;
        for team_id in team_ids {
            let team = self.team(team_id).await?;
            check_member_team(&organization.name, team_id, team.as_ref())?;
        }
        let user = new_user(org, name, team_ids);
        self.set_new(&format!("tg:user:{{{}}}", user.id), &encode_record(&user))
            .await?;
        // Sign-in names are looked up by name (the web UI, `user set-password`).
        let mut conn = self.conn();
        let _: i64 = self
            .bounded(
                redis::cmd("SADD")
                    .arg(ui::usernames_key(&user.name))
                    .arg(&user.id)
                    .query_async(&mut conn),
            )
            .await?;
        for team_id in &user.team_ids {
            let mut conn = self.conn();
            let _: i64 = self
                .bounded(
                    redis::cmd("SADD")
                        .arg(format!("tg:team:{{{team_id}}}:members"))
                        .arg(&user.id)
                        .query_async(&mut conn),
                )
                .await?;
        }
        Ok(user)
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        if validate_id("user-", user_id).is_err() {
            return Ok(None);
        }
        self.get_json(&format!("tg:user:{{{user_id}}}")).await
    }

    async fn ensure_slot(&self, owner: &Owner) -> Result<String, StoreError> {
        let key = slot_of_key(owner);
        loop {
            if let Some(slot) = self.get_string(&key).await? {
                return Ok(slot);
            }
            let candidate = token::new_slot();
            // Claim the slot name first so two owners can never share one.
            if !self
                .set_new(
                    &format!("{}:owner", cred_key(&candidate)),
                    &owner.describe(),
                )
                .await?
            {
                continue;
            }
            if self.set_new(&key, &candidate).await? {
                return Ok(candidate);
            }
            // Another caller assigned a slot first: use theirs on the next turn.
        }
    }

    async fn slot_of(&self, owner: &Owner) -> Result<Option<String>, StoreError> {
        self.get_string(&slot_of_key(owner)).await
    }

    async fn put_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        validate_slot(&credential.slot)?;
        let key = cred_key(&credential.slot);
        // One MULTI on keys of one hash slot: the new token and the reset
        // last-used time land together, and the old token is gone with it.
        self.credential_write(CredentialWrite::Transaction(vec![
            command("SET", &[&key, &encode_record(credential)]),
            command("DEL", &[&format!("{key}:used")]),
        ]))
        .await?;
        Ok(())
    }

    async fn replace_secret_hash(
        &self,
        current: &Credential,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        validate_slot(&current.slot)?;
        let key = cred_key(&current.slot);
        let Some(stored) = self.get_string(&key).await? else {
            return Ok(false);
        };
        let decoded: Credential = decode_record(&key, stored.as_bytes())?;
        if decoded != *current {
            return Ok(false);
        }
        let replaced = encode_record(&Credential {
            secret_hash: new_hash.to_owned(),
            ..decoded
        });
        // Compare-and-set on the record's exact bytes, in one script.
        let reply = self
            .credential_write(CredentialWrite::Script {
                source: SET_IF_UNCHANGED,
                keys: vec![key],
                args: vec![&stored, &replaced],
            })
            .await?;
        Ok(reply == Value::Int(1))
    }

    async fn delete_credential(&self, slot: &str) -> Result<Option<Credential>, StoreError> {
        validate_slot(slot)?;
        let key = cred_key(slot);
        let reply = self
            .credential_write(CredentialWrite::Transaction(vec![
                command("GET", &[&key]),
                command("DEL", &[&key]),
                command("DEL", &[&format!("{key}:used")]),
            ]))
            .await?;
        let (old, _, _): (Option<String>, i64, i64) = redis::from_redis_value(reply)
            .map_err(|e| StoreError::Unavailable(format!("unexpected reply to a delete: {e}")))?;
        old.map(|text| decode_record(&key, text.as_bytes()))
            .transpose()
    }

    async fn touch_last_used(
        &self,
        slot: &str,
        token_id: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        validate_slot(slot)?;
        let key = cred_key(slot);
        let mut conn = self.conn();
        // Compare-and-set in one script on keys of one hash slot: a late
        // touch by a token that was replaced in the meantime changes nothing.
        let script = redis::Script::new(TOUCH_IF_CURRENT);
        let _: i64 = self
            .bounded(
                script
                    .key(&key)
                    .key(format!("{key}:used"))
                    .arg(token_id)
                    .arg(at.0)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn last_used(&self, slot: &str) -> Result<Option<Timestamp>, StoreError> {
        validate_slot(slot)?;
        let key = cred_key(slot);
        let mut conn = self.conn();
        let (current, used): (Option<String>, Option<String>) = self
            .bounded(
                redis::cmd("MGET")
                    .arg(&key)
                    .arg(format!("{key}:used"))
                    .query_async(&mut conn),
            )
            .await?;
        let (Some(current), Some(used)) = (current, used) else {
            return Ok(None);
        };
        let current: Credential = decode_record(&key, current.as_bytes())?;
        Ok(parse_last_used(&used, &current.token_id))
    }

    async fn set_member_token_management(
        &self,
        team_id: &str,
        allowed: bool,
    ) -> Result<Team, StoreError> {
        let mut team = self
            .team(team_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("team `{team_id}`")))?;
        team.allow_member_token_management = allowed;
        let mut conn = self.conn();
        self.bounded(
            redis::cmd("SET")
                .arg(format!("tg:team:{{{team_id}}}"))
                .arg(encode_record(&team))
                .arg("XX")
                .query_async::<()>(&mut conn),
        )
        .await?;
        Ok(team)
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: String = self
            .bounded(
                redis::cmd("XADD")
                    .arg(AUDIT_KEY)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(AUDIT_MAX_LEN)
                    .arg("*")
                    .arg("event")
                    .arg(encode_record(event))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn audit_events(
        &self,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        // Stream ids carry the append time, which can differ from the event's
        // own time by the clock skew between replicas: start a minute early
        // and filter on the event's time.
        let mut start = since.map_or_else(
            || "-".to_owned(),
            |t| format!("{}-0", (t.0 - AUDIT_SKEW_MS).max(0)),
        );
        let mut events = Vec::new();
        while events.len() < limit {
            let mut conn = self.conn();
            let page: Vec<(String, Vec<(String, String)>)> = self
                .bounded(
                    redis::cmd("XRANGE")
                        .arg(AUDIT_KEY)
                        .arg(&start)
                        .arg("+")
                        .arg("COUNT")
                        .arg(AUDIT_PAGE)
                        .query_async(&mut conn),
                )
                .await?;
            let Some((last_id, _)) = page.last() else {
                break;
            };
            start = format!("({last_id}");
            let full_page = page.len() == AUDIT_PAGE;
            for (_, fields) in page {
                for (_, json) in fields.into_iter().filter(|(name, _)| name == "event") {
                    let event: AuditEvent = decode_record(AUDIT_KEY, json.as_bytes())?;
                    if since.is_none_or(|since| event.time >= since) && events.len() < limit {
                        events.push(event);
                    }
                }
            }
            if !full_page {
                break;
            }
        }
        Ok(events)
    }

    // --- Team workspace access -------------------------------------------

    async fn add_team_access(&self, access: &TeamAccess) -> Result<(), StoreError> {
        validate_access(access)?;
        let (team, ws) = (&access.team_id, &access.workspace_id);
        let mut conn = self.conn();
        // Indexes first, the access itself last: a crash in between leaves
        // an index entry that leads nowhere (skipped when read), never an
        // access that cannot be found to be removed.
        let _: i64 = self
            .bounded(
                redis::cmd("SADD")
                    .arg(ws_teams_key(ws))
                    .arg(team)
                    .query_async(&mut conn),
            )
            .await?;
        if !self
            .set_new(&access_id_key(&access.id), &format!("{team}|{ws}"))
            .await?
        {
            return Err(access_exists(access));
        }
        let created: bool = self
            .bounded(
                redis::cmd("HSETNX")
                    .arg(team_access_key(team))
                    .arg(ws)
                    .arg(encode_record(access))
                    .query_async(&mut conn),
            )
            .await?;
        if !created {
            let _: i64 = self
                .bounded(
                    redis::cmd("DEL")
                        .arg(access_id_key(&access.id))
                        .query_async(&mut conn),
                )
                .await?;
            return Err(access_exists(access));
        }
        Ok(())
    }

    async fn update_team_access(&self, access: &TeamAccess) -> Result<(), StoreError> {
        validate_access(access)?;
        let mut conn = self.conn();
        // Compare-and-set on one key: only the record with this id is replaced.
        let replaced: i64 = self
            .bounded(
                redis::Script::new(REPLACE_ACCESS_IF_SAME_ID)
                    .key(team_access_key(&access.team_id))
                    .arg(&access.workspace_id)
                    .arg(&access.id)
                    .arg(encode_record(access))
                    .invoke_async(&mut conn),
            )
            .await?;
        if replaced == 1 {
            Ok(())
        } else {
            Err(access_not_found(&access.id))
        }
    }

    async fn team_access(&self, id: &str) -> Result<Option<TeamAccess>, StoreError> {
        if validate_id("tws-", id).is_err() {
            return Ok(None);
        }
        let Some((team, ws)) = self.access_location(id).await? else {
            return Ok(None);
        };
        Ok(self
            .access_of(&team, &ws)
            .await?
            .filter(|access| access.id == id))
    }

    async fn remove_team_access(&self, id: &str) -> Result<Option<TeamAccess>, StoreError> {
        if validate_id("tws-", id).is_err() {
            return Ok(None);
        }
        let Some((team, ws)) = self.access_location(id).await? else {
            return Ok(None);
        };
        let mut conn = self.conn();
        let removed: Option<String> = self
            .bounded(
                redis::Script::new(REMOVE_ACCESS_IF_SAME_ID)
                    .key(team_access_key(&team))
                    .arg(&ws)
                    .arg(id)
                    .invoke_async(&mut conn),
            )
            .await?;
        // The access is gone with the call above; the indexes follow.
        let _: i64 = self
            .bounded(
                redis::cmd("DEL")
                    .arg(access_id_key(id))
                    .query_async(&mut conn),
            )
            .await?;
        let Some(removed) = removed else {
            return Ok(None);
        };
        let _: i64 = self
            .bounded(
                redis::cmd("SREM")
                    .arg(ws_teams_key(&ws))
                    .arg(&team)
                    .query_async(&mut conn),
            )
            .await?;
        decode_record(&team_access_key(&team), removed.as_bytes()).map(Some)
    }

    async fn workspace_team_accesses(
        &self,
        workspace_id: &str,
    ) -> Result<Vec<TeamAccess>, StoreError> {
        if validate_workspace_id(workspace_id).is_err() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let mut teams: Vec<String> = self
            .bounded(
                redis::cmd("SMEMBERS")
                    .arg(ws_teams_key(workspace_id))
                    .query_async(&mut conn),
            )
            .await?;
        teams.sort();
        if teams.is_empty() {
            return Ok(Vec::new());
        }
        // Each team's accesses are in its own hash slot: one pipeline, or
        // one command per team on a Cluster (a pipeline across slots is
        // refused there).
        let mut pipes: Vec<redis::Pipeline> = Vec::new();
        for team in &teams {
            if pipes.is_empty() || self.is_cluster() {
                pipes.push(redis::pipe());
            }
            if let Some(pipe) = pipes.last_mut() {
                pipe.cmd("HGET")
                    .arg(team_access_key(team))
                    .arg(workspace_id);
            }
        }
        let mut records: Vec<Option<String>> = Vec::with_capacity(teams.len());
        for pipe in pipes {
            let replies: Vec<Option<String>> = self.bounded(pipe.query_async(&mut conn)).await?;
            records.extend(replies);
        }
        teams
            .iter()
            .zip(records)
            .filter_map(|(team, record)| {
                record.map(|r| decode_record(&team_access_key(team), r.as_bytes()))
            })
            .collect()
    }

    async fn team_accesses(&self, team_id: &str) -> Result<Vec<TeamAccess>, StoreError> {
        if validate_id("team-", team_id).is_err() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let key = team_access_key(team_id);
        let mut records: Vec<(String, String)> = self
            .bounded(redis::cmd("HGETALL").arg(&key).query_async(&mut conn))
            .await?;
        records.sort();
        records
            .iter()
            .map(|(_, record)| decode_record(&key, record.as_bytes()))
            .collect()
    }

    async fn access_facts(
        &self,
        team_ids: &[String],
        workspace_id: Option<&str>,
    ) -> Result<Vec<TeamFacts>, StoreError> {
        let workspace_id = workspace_id.filter(|ws| validate_workspace_id(ws).is_ok());
        let teams: Vec<&String> = team_ids
            .iter()
            .filter(|t| validate_id("team-", t).is_ok())
            .collect();
        if teams.is_empty() {
            return Ok(Vec::new());
        }
        // One pipeline, one round trip: each team's record and its access
        // (one slot per team, so on a Cluster one pipeline per team).
        let mut pipes: Vec<redis::Pipeline> = Vec::new();
        for team in &teams {
            if pipes.is_empty() || self.is_cluster() {
                pipes.push(redis::pipe());
            }
            if let Some(pipe) = pipes.last_mut() {
                pipe.cmd("GET").arg(format!("tg:team:{{{team}}}"));
                if let Some(ws) = workspace_id {
                    pipe.cmd("HGET").arg(team_access_key(team)).arg(ws);
                }
            }
        }
        let mut conn = self.conn();
        let mut replies: Vec<Option<String>> = Vec::new();
        for pipe in pipes {
            let part: Vec<Option<String>> = self.bounded(pipe.query_async(&mut conn)).await?;
            replies.extend(part);
        }
        let per_team = if workspace_id.is_some() { 2 } else { 1 };
        let mut facts = Vec::with_capacity(teams.len());
        for (team_id, replies) in teams.iter().zip(replies.chunks(per_team)) {
            let empty = String::new();
            let text = |i: usize| replies.get(i).and_then(Option::as_ref).unwrap_or(&empty);
            facts.extend(self.decode_team_facts(team_id, text(0), text(1))?);
        }
        Ok(facts)
    }

    async fn insert_token(&self, credential: &Credential) -> Result<(), StoreError> {
        check_own_slot(credential)?;
        let key = cred_key(&credential.slot);
        if !self
            .set_new(&format!("{key}:owner"), &credential.owner.describe())
            .await?
        {
            return Err(slot_taken(&credential.slot));
        }
        if let Some((team_id, description)) = team_description(credential) {
            self.claim_description(team_id, description, &credential.slot)
                .await?;
        }
        let mut conn = self.conn();
        let _: i64 = self
            .bounded(
                redis::cmd("SADD")
                    .arg(org_tokens_key(credential.owner.org()))
                    .arg(&credential.slot)
                    .query_async(&mut conn),
            )
            .await?;
        self.put_credential(credential).await
    }

    async fn delete_token(
        &self,
        slot: &str,
        token_id: &str,
    ) -> Result<Option<Credential>, StoreError> {
        validate_slot(slot)?;
        let key = cred_key(slot);
        // A credential write: durable (`WAIT`) like a revoke.
        let reply = self
            .credential_write(CredentialWrite::Script {
                source: DELETE_IF_TOKEN,
                keys: vec![key.clone(), format!("{key}:used")],
                args: vec![token_id],
            })
            .await?;
        let old: Option<String> = redis::from_redis_value(reply)
            .map_err(|e| StoreError::Unavailable(format!("unexpected reply to a delete: {e}")))?;
        let Some(old) = old else {
            return Ok(None);
        };
        let mut conn = self.conn();
        let old: Credential = decode_record(&key, old.as_bytes())?;
        if old.own_slot {
            if let Some((team_id, description)) = team_description(&old) {
                let script = redis::Script::new(RELEASE_DESCRIPTION);
                let _: i64 = self
                    .bounded(
                        script
                            .key(descriptions_key(team_id))
                            .arg(description)
                            .arg(slot)
                            .invoke_async(&mut conn),
                    )
                    .await?;
            }
            let _: i64 = self
                .bounded(
                    redis::cmd("SREM")
                        .arg(org_tokens_key(old.owner.org()))
                        .arg(slot)
                        .query_async(&mut conn),
                )
                .await?;
        }
        Ok(Some(old))
    }

    async fn org_tokens(&self, org: &str) -> Result<Vec<StoredToken>, StoreError> {
        if validate_name("organization", org).is_err() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let (own, teams): (Vec<String>, Vec<(String, String)>) = self
            .bounded(
                redis::pipe()
                    .cmd("SMEMBERS")
                    .arg(org_tokens_key(org))
                    .cmd("HGETALL")
                    .arg(format!("tg:org:{{{org}}}:teams"))
                    .query_async(&mut conn),
            )
            .await?;
        let mut owners = vec![Owner::Org {
            org: org.to_owned(),
        }];
        owners.extend(teams.into_iter().map(|(_, team_id)| Owner::Team {
            org: org.to_owned(),
            team_id,
        }));
        let legacy = self
            .get_each(owners.iter().map(slot_of_key).collect())
            .await?;
        let mut slots: Vec<String> = legacy.into_iter().flatten().chain(own).collect();
        slots.sort();
        slots.dedup();
        slots.retain(|slot| validate_slot(slot).is_ok());
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let values = self
            .get_each(
                slots
                    .iter()
                    .flat_map(|slot| {
                        let key = cred_key(slot);
                        let used = format!("{key}:used");
                        [key, used]
                    })
                    .collect(),
            )
            .await?;
        let mut tokens = Vec::new();
        for (slot, pair) in slots.iter().zip(values.chunks(2)) {
            let [record, used] = pair else { continue };
            let Some(record) = record else { continue };
            let credential: Credential = decode_record(&cred_key(slot), record.as_bytes())?;
            let last_used = used
                .as_deref()
                .and_then(|used| parse_last_used(used, &credential.token_id));
            tokens.push(StoredToken {
                credential,
                last_used,
            });
        }
        Ok(tokens)
    }

    async fn clamp_expiry(&self, current: &Credential, at: Timestamp) -> Result<bool, StoreError> {
        validate_slot(&current.slot)?;
        let Some(replacement) = clamped(current, at) else {
            return Ok(false);
        };
        let key = cred_key(&current.slot);
        let Some(stored) = self.get_string(&key).await? else {
            return Ok(false);
        };
        let decoded: Credential = decode_record(&key, stored.as_bytes())?;
        if decoded != *current {
            return Ok(false);
        }
        // A credential write: durable (`WAIT`), so a shortened lifetime
        // survives a failover.
        let replacement = encode_record(&replacement);
        let reply = self
            .credential_write(CredentialWrite::Script {
                source: SET_IF_UNCHANGED,
                keys: vec![key],
                args: vec![&stored, &replacement],
            })
            .await?;
        Ok(reply == Value::Int(1))
    }

    async fn replace_token_settings(
        &self,
        org: &str,
        current: &TokenSettings,
        new: &TokenSettings,
    ) -> Result<bool, StoreError> {
        if validate_name("organization", org).is_err() || self.org(org).await?.is_none() {
            return Err(org_not_found(org));
        }
        let key = format!("tg:org:{{{org}}}");
        self.replace_if_decoded(&key, |stored: &Organization| {
            (stored.token_settings == *current).then(|| Organization {
                token_settings: new.clone(),
                ..stored.clone()
            })
        })
        .await
    }

    async fn set_organization_access(
        &self,
        team_id: &str,
        access: OrganizationAccess,
    ) -> Result<Team, StoreError> {
        let mut team = self
            .team(team_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("team `{team_id}`")))?;
        team.organization_access = access;
        let mut conn = self.conn();
        self.bounded(
            redis::cmd("SET")
                .arg(format!("tg:team:{{{team_id}}}"))
                .arg(encode_record(&team))
                .arg("XX")
                .query_async::<()>(&mut conn),
        )
        .await?;
        Ok(team)
    }

    // Web UI (issue 14): src/store/redis/ui.rs.

    async fn org_teams(&self, org: &str) -> Result<Vec<Team>, StoreError> {
        self.ui_org_teams(org).await
    }

    async fn team_members(&self, team_id: &str) -> Result<Vec<User>, StoreError> {
        self.ui_team_members(team_id).await
    }

    async fn users_named(&self, name: &str) -> Result<Vec<User>, StoreError> {
        self.ui_users_named(name).await
    }

    async fn set_login(&self, login: &super::Login) -> Result<(), StoreError> {
        self.ui_set_login(login).await
    }

    async fn login(&self, name: &str) -> Result<Option<super::Login>, StoreError> {
        self.ui_login(name).await
    }

    async fn put_ui_session(
        &self,
        key: &str,
        session: &super::UiSession,
    ) -> Result<(), StoreError> {
        self.ui_put_session(key, session).await
    }

    async fn ui_session(&self, key: &str) -> Result<Option<super::UiSession>, StoreError> {
        self.ui_get_session(key).await
    }

    async fn delete_ui_session(&self, key: &str) -> Result<bool, StoreError> {
        self.ui_delete_session(key).await
    }

    async fn delete_user_ui_sessions(&self, user_id: &str) -> Result<usize, StoreError> {
        self.ui_delete_user_sessions(user_id).await
    }

    async fn put_ui_flash(
        &self,
        key: &str,
        value: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.ui_put_flash(key, value, expires_at).await
    }

    async fn take_ui_flash(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.ui_take_flash(key).await
    }

    async fn put_upload_grant(&self, key: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        self.put_grant(key, expires_at).await
    }

    async fn upload_granted(&self, key: &str) -> Result<bool, StoreError> {
        self.grant_exists(key).await
    }

    async fn end_upload_grant(&self, key: &str) -> Result<(), StoreError> {
        self.grant_end(key).await
    }
}

/// Replaces field `ARGV[1]` of hash `KEYS[1]` with `ARGV[3]` only while it
/// holds the access whose id is `ARGV[2]`.
const REPLACE_ACCESS_IF_SAME_ID: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local ok, record = pcall(cjson.decode, current)
if not ok or record['id'] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"#;

/// Deletes field `ARGV[1]` of hash `KEYS[1]` only while it holds the access
/// whose id is `ARGV[2]`; returns the deleted record.
const REMOVE_ACCESS_IF_SAME_ID: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return false end
local ok, record = pcall(cjson.decode, current)
if not ok or record['id'] ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return current
"#;

/// A credential slot's owner, as the request path's read found it.
enum SlotOwner {
    /// Known from an earlier read to be this team.
    Team(Arc<SlotTeam>),
    /// Known from an earlier read not to be a team.
    Other,
    /// As the slot's `:owner` key says (`team:…`, `org:…`, `user:…`;
    /// empty when missing).
    Described(String),
}

impl RedisStore {
    /// One team's [`TeamFacts`] from its record and its access record as
    /// stored (empty strings for missing keys): none when the team is gone.
    fn decode_team_facts(
        &self,
        team_id: &str,
        team: &str,
        access: &str,
    ) -> Result<Vec<TeamFacts>, StoreError> {
        if team.is_empty() {
            return Ok(Vec::new());
        }
        let team = self
            .decoded
            .teams
            .decode(team_id, team, || format!("tg:team:{{{team_id}}}"))?;
        let access = if access.is_empty() {
            None
        } else {
            Some(
                self.decoded
                    .team_access
                    .decode(team_id, access, || team_access_key(team_id))?,
            )
        };
        Ok(vec![TeamFacts { team, access }])
    }
}

/// The request path's read when it knows the workspace before
/// authenticating: the credential in `KEYS[1]` and, when the slot's owner
/// (`KEYS[1]:owner`, written once with the slot) is a team, the team's
/// record and its access to workspace `ARGV[1]`. Answers `{credential,
/// owner}`, or `{credential, owner, team, access}` for a team (missing keys
/// as nil). The team's keys are not declared (they are found from the
/// owner), so this runs on a single node or Sentinel's primary, never on a
/// Cluster.
static CREDENTIAL_WITH_ACCESS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local credential = redis.call('GET', KEYS[1])
if not credential then return {false} end
local owner = redis.call('GET', KEYS[1] .. ':owner')
if not owner or string.sub(owner, 1, 5) ~= 'team:' then return {credential, owner} end
local team = 'tg:team:{' .. string.sub(owner, 6) .. '}'
return {credential, owner, redis.call('GET', team), redis.call('HGET', team .. ':ws', ARGV[1])}
"#,
    )
});

/// A team's workspace accesses: hash workspace id → JSON [`TeamAccess`]
/// (read by the request path together with the team's record: same slot).
fn team_access_key(team_id: &str) -> String {
    format!("tg:team:{{{team_id}}}:ws")
}

/// `TEAM_ID|WORKSPACE_ID` of an access, by its id.
fn access_id_key(id: &str) -> String {
    format!("tg:tws:{{{id}}}")
}

/// The teams with access to a workspace.
fn ws_teams_key(workspace_id: &str) -> String {
    format!("tg:wsteams:{{{workspace_id}}}")
}

thread_local! {
    /// True while this worker has a [`keep_timer_floor`] timer pending.
    static TIMER_FLOOR_ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps a timer due within `limit` on this worker's runtime while store
/// calls are made, so that the deadline of a call (`limit` from now) is
/// never the earliest timer of the runtime.
///
/// Why: tokio's timer driver wakes its own thread (a write to the runtime's
/// eventfd, and one more pass through `epoll_wait`) whenever a timer is
/// registered that is due before every timer it knew of when it last
/// parked. A store call's deadline is the earliest timer of a worker
/// (connection timeouts are seconds away) whenever no other call was in
/// flight when the worker parked, which under load is once per request
/// that reads alone: a refused request with an unknown token id made one
/// such write per request. With the floor pending, the driver's next
/// wake-up is never later than a new call's deadline, so registering it
/// wakes nothing. The floor costs one short task per `limit` while the
/// worker makes store calls, and nothing when it makes none. Every call
/// keeps its own deadline: timeouts are exactly as before.
fn keep_timer_floor(limit: Duration) {
    // Only on the workers: their runtime lives as long as their thread.
    if crate::per_worker::current().is_none() {
        return;
    }
    let armed = TIMER_FLOOR_ARMED.with(|armed| armed.replace(true));
    if !armed {
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            TIMER_FLOOR_ARMED.with(|armed| armed.set(false));
        });
    }
}

impl RedisStore {
    /// True on a Redis Cluster, where one pipeline may touch one hash slot only.
    fn is_cluster(&self) -> bool {
        matches!(self.options.topology, Topology::Cluster { .. })
    }

    /// `GET` of each key, in order. The keys may lie in different hash
    /// slots: one pipeline on a single node or Sentinel's primary; one
    /// command at a time on a Cluster, whose nodes each own some slots (a
    /// pipeline across slots is refused there).
    async fn get_each(&self, keys: Vec<String>) -> Result<Vec<Option<String>>, StoreError> {
        let mut conn = self.conn();
        if self.is_cluster() {
            let mut values = Vec::with_capacity(keys.len());
            for key in &keys {
                values.push(
                    self.bounded(redis::cmd("GET").arg(key).query_async(&mut conn))
                        .await?,
                );
            }
            return Ok(values);
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("GET").arg(key);
        }
        self.bounded(pipe.query_async(&mut conn)).await
    }

    /// Reads the JSON record under `key`, lets `change` decide on its
    /// replacement, and writes that only if the key still holds exactly the
    /// bytes read (compare and set). False when nothing was written.
    async fn replace_if_decoded<T, F>(&self, key: &str, change: F) -> Result<bool, StoreError>
    where
        T: serde::de::DeserializeOwned + serde::Serialize,
        F: FnOnce(&T) -> Option<T>,
    {
        let Some(stored) = self.get_string(key).await? else {
            return Ok(false);
        };
        let decoded: T = decode_record(key, stored.as_bytes())?;
        let Some(replacement) = change(&decoded) else {
            return Ok(false);
        };
        let mut conn = self.conn();
        let script = redis::Script::new(SET_IF_UNCHANGED);
        let set: i64 = self
            .bounded(
                script
                    .key(key)
                    .arg(&stored)
                    .arg(encode_record(&replacement))
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(set == 1)
    }

    /// Claims `description` within the team for the token in `slot`. A
    /// claim held by a live token is `AlreadyExists`; one whose token is
    /// gone, or never appeared within the claim time, is taken over.
    async fn claim_description(
        &self,
        team_id: &str,
        description: &str,
        slot: &str,
    ) -> Result<(), StoreError> {
        let key = descriptions_key(team_id);
        let now = Timestamp::now();
        let value = format!("{slot}|{}", now.0);
        let mut expected = String::new();
        for _ in 0..8 {
            let mut conn = self.conn();
            let script = redis::Script::new(CLAIM_DESCRIPTION);
            let holder: Option<String> = self
                .bounded(
                    script
                        .key(&key)
                        .arg(description)
                        .arg(&value)
                        .arg(&expected)
                        .invoke_async(&mut conn),
                )
                .await?;
            let Some(holder) = holder else {
                return Ok(());
            };
            let Some((holder_slot, millis)) = holder.split_once('|') else {
                expected = holder;
                continue;
            };
            let claimed_at: i64 = millis.parse().unwrap_or(0);
            let live = validate_slot(holder_slot).is_ok()
                && self.get_string(&cred_key(holder_slot)).await?.is_some();
            if live || now.0 - claimed_at < DESCRIPTION_CLAIM_MS {
                return Err(description_taken(description));
            }
            expected = holder;
        }
        Err(description_taken(description))
    }
}

/// Deletes `KEYS[1]` (a credential) and `KEYS[2]` (its last use) only
/// while the credential is the token `ARGV[1]`; returns what was deleted.
const DELETE_IF_TOKEN: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current then return false end
local ok, record = pcall(cjson.decode, current)
if not ok or record['token_id'] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1], KEYS[2])
return current
"#;

/// Sets field `ARGV[1]` of hash `KEYS[1]` to `ARGV[2]` when it holds
/// `ARGV[3]` (`""`: when it is unset); otherwise returns what it holds.
const CLAIM_DESCRIPTION: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current == false and ARGV[3] == '') or current == ARGV[3] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return false
end
if current == false then return '' end
return current
"#;

/// Removes field `ARGV[1]` of hash `KEYS[1]` when it is claimed by slot `ARGV[2]`.
const RELEASE_DESCRIPTION: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and string.sub(current, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#;

/// Sets `KEYS[2]` to `TOKEN_ID|MILLIS` only while the credential in
/// `KEYS[1]` is still that token.
const TOUCH_IF_CURRENT: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, record = pcall(cjson.decode, current)
if not ok or record['token_id'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1] .. '|' .. ARGV[2])
return 1
"#;

/// Sets `KEYS[1]` to `ARGV[2]` only while it still holds exactly `ARGV[1]`.
const SET_IF_UNCHANGED: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// The audit stream's key and its approximate cap.
const AUDIT_KEY: &str = "tg:audit";
const AUDIT_MAX_LEN: u64 = 1_000_000;
/// Events read per `XRANGE` call.
const AUDIT_PAGE: usize = 1_000;
/// How far an event's time may precede its stream id (replica clock skew).
const AUDIT_SKEW_MS: i64 = 60_000;

/// `TOKEN_ID|MILLIS` → the time, if it belongs to the current token.
fn parse_last_used(value: &str, current_token_id: &str) -> Option<Timestamp> {
    let (token_id, millis) = value.split_once('|')?;
    (token_id == current_token_id)
        .then(|| millis.parse().ok().map(Timestamp))
        .flatten()
}

impl RedisStore {
    /// Where the access `id` is kept: (team id, workspace id).
    async fn access_location(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .get_string(&access_id_key(id))
            .await?
            .and_then(|location| {
                let (team, ws) = location.split_once('|')?;
                Some((team.to_owned(), ws.to_owned()))
            }))
    }

    /// The access of `team` to `ws`, if any.
    async fn access_of(&self, team: &str, ws: &str) -> Result<Option<TeamAccess>, StoreError> {
        let mut conn = self.conn();
        let key = team_access_key(team);
        let record: Option<String> = self
            .bounded(redis::cmd("HGET").arg(&key).arg(ws).query_async(&mut conn))
            .await?;
        record
            .map(|r| decode_record(&key, r.as_bytes()))
            .transpose()
    }

    async fn insert_team(&self, team: &Team) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let index = format!("tg:org:{{{}}}:teams", team.organization);
        let created: bool = self
            .bounded(
                redis::cmd("HSETNX")
                    .arg(&index)
                    .arg(&team.name)
                    .arg(&team.id)
                    .query_async(&mut conn),
            )
            .await?;
        if !created {
            return Err(team_exists(team));
        }
        self.set_new(&format!("tg:team:{{{}}}", team.id), &encode_record(team))
            .await?;
        Ok(())
    }
}
