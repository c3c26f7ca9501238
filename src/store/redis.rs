//! Redis backend of the [`Store`]: one multiplexed, self-reconnecting
//! connection per worker thread, shared by that worker's requests, every
//! call bounded by a timeout.
//!
//! Key layout (the `{…}` part is the Redis Cluster hash tag, so every
//! multi-key transaction stays in one slot):
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
//! | `tg:audit` | stream of JSON [`AuditEvent`]s (capped near 1,000,000 entries) |
//! | `tg:team:{ID}:ws` | hash workspace id → JSON [`TeamAccess`] — read with the team per request |
//! | `tg:tws:{ID}` | `TEAM_ID|WORKSPACE_ID` of the team access `tws-…` |
//! | `tg:wsteams:{WS}` | set of the team ids with access to workspace `WS` |

use super::access::{access_exists, access_not_found, validate_access, validate_workspace_id};
use super::{
    check_member_team, decode_record, encode_record, new_org, new_team, new_user, org_exists,
    org_not_found, team_exists, validate_id, validate_name, validate_slot, AuditEvent, Credential,
    Organization, OrganizationAccess, Owner, Store, StoreError, Team, TeamAccess, TeamFacts,
    Timestamp, User,
};
use crate::per_worker::PerWorker;
use crate::token::format as token;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The Redis store. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct RedisStore {
    /// One connection per worker thread, so that a request's read is written,
    /// answered and handed back on the thread serving the request; code
    /// outside the workers shares one.
    connections: Arc<PerWorker<ConnectionManager>>,
    timeout: Duration,
}

impl RedisStore {
    /// Prepares a lazily connecting store: starting never waits for Redis,
    /// and the connection is re-established by itself after an outage.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Invalid(format!("bad Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let shared = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let connections = PerWorker::new(move || {
            // The same client and config were just accepted for `shared`.
            ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .unwrap_or_else(|_| shared.clone())
        });
        Ok(Self {
            connections: Arc::new(connections),
            timeout,
        })
    }

    /// The connection for the calling thread (see [`PerWorker`]).
    fn conn(&self) -> ConnectionManager {
        self.connections.get().clone()
    }

    /// Runs one store call under the configured timeout.
    async fn bounded<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(StoreError::Unavailable(err.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
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

fn cred_key(slot: &str) -> String {
    format!("tg:cred:{{{slot}}}")
}

fn slot_of_key(owner: &Owner) -> String {
    format!("tg:slotof:{{{}}}", owner.describe())
}

#[async_trait]
impl Store for RedisStore {
    async fn credential(&self, slot: &str) -> Result<Option<Credential>, StoreError> {
        validate_slot(slot)?;
        self.get_json(&cred_key(slot)).await
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
        let mut conn = self.conn();
        // One MULTI on keys of one hash slot: the new token and the reset
        // last-used time land together, and the old token is gone with it.
        self.bounded(
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg(encode_record(credential))
                .ignore()
                .cmd("DEL")
                .arg(format!("{key}:used"))
                .ignore()
                .query_async::<()>(&mut conn),
        )
        .await
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
        let replaced = Credential {
            secret_hash: new_hash.to_owned(),
            ..decoded
        };
        let mut conn = self.conn();
        // Compare-and-set on the record's exact bytes, in one script.
        let script = redis::Script::new(SET_IF_UNCHANGED);
        let set: i64 = self
            .bounded(
                script
                    .key(&key)
                    .arg(&stored)
                    .arg(encode_record(&replaced))
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(set == 1)
    }

    async fn delete_credential(&self, slot: &str) -> Result<Option<Credential>, StoreError> {
        validate_slot(slot)?;
        let key = cred_key(slot);
        let mut conn = self.conn();
        let (old, _, _): (Option<String>, i64, i64) = self
            .bounded(
                redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("DEL")
                    .arg(&key)
                    .cmd("DEL")
                    .arg(format!("{key}:used"))
                    .query_async(&mut conn),
            )
            .await?;
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
        let mut pipe = redis::pipe();
        for team in &teams {
            pipe.cmd("HGET")
                .arg(team_access_key(team))
                .arg(workspace_id);
        }
        let records: Vec<Option<String>> = self.bounded(pipe.query_async(&mut conn)).await?;
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
        // One pipeline, one round trip: each team's record and its access.
        let mut pipe = redis::pipe();
        for team in &teams {
            pipe.cmd("GET").arg(format!("tg:team:{{{team}}}"));
            if let Some(ws) = workspace_id {
                pipe.cmd("HGET").arg(team_access_key(team)).arg(ws);
            }
        }
        let mut conn = self.conn();
        let replies: Vec<Option<String>> = self.bounded(pipe.query_async(&mut conn)).await?;
        let per_team = if workspace_id.is_some() { 2 } else { 1 };
        let mut facts = Vec::with_capacity(teams.len());
        for (team_id, replies) in teams.iter().zip(replies.chunks(per_team)) {
            let Some(team) = &replies[0] else { continue };
            let team: Team = decode_record(&format!("tg:team:{{{team_id}}}"), team.as_bytes())?;
            let access = match replies.get(1) {
                Some(Some(record)) => Some(decode_record::<TeamAccess>(
                    &team_access_key(team_id),
                    record.as_bytes(),
                )?),
                _ => None,
            };
            facts.push(TeamFacts { team, access });
        }
        Ok(facts)
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
