//! The web UI's records in Redis (see [`crate::store::ui`]):
//!
//! | key | value |
//! |---|---|
//! | `tg:usernames:{NAME}` | set of the ids of users named NAME (lower case) |
//! | `tg:login:{NAME}` | hash: `user_id`, `record` (JSON [`Login`]) |
//! | `tg:uisession:{KEY}` | JSON [`UiSession`], expiring at its `expires_at` |
//! | `tg:uisession:{KEY}:flash` | the session's shown-once value, expiring |
//! | `tg:user:{ID}:uisessions` | sorted set of the user's session keys, scored by their expiry (ms) |
//!
//! A sign-in name is claimed with a script (one key), so two users can
//! never both hold it. The flash is taken with `GETDEL`: one reader gets it.

use super::RedisStore;
use crate::store::ui::{login_name, login_taken, validate_session_key};
use crate::store::{
    decode_record, encode_record, validate_id, Login, StoreError, Team, Timestamp, UiSession, User,
};

/// Sets the login hash unless another user holds the name: 1 when set.
const CLAIM_LOGIN: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'user_id')
if owner and owner ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'record', ARGV[2])
return 1
"#;

fn login_key(name: &str) -> String {
    format!("tg:login:{{{name}}}")
}

fn session_key(key: &str) -> String {
    format!("tg:uisession:{{{key}}}")
}

fn user_sessions_key(user_id: &str) -> String {
    format!("tg:user:{{{user_id}}}:uisessions")
}

pub(super) fn usernames_key(name: &str) -> String {
    format!("tg:usernames:{{{}}}", name.to_ascii_lowercase())
}

/// Milliseconds from now until `at`, at least 1 (Redis refuses 0).
fn millis_until(at: Timestamp) -> i64 {
    (at.0 - Timestamp::now().0).max(1)
}

impl RedisStore {
    /// `GET`s of `keys` ([`RedisStore::get_each`]: one pipeline, or one
    /// command at a time on a Cluster), decoded; missing ones are skipped.
    async fn get_many<T: serde::de::DeserializeOwned>(
        &self,
        keys: &[String],
    ) -> Result<Vec<T>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values = self.get_each(keys.to_vec()).await?;
        keys.iter()
            .zip(values)
            .filter_map(|(key, value)| value.map(|v| decode_record(key, v.as_bytes())))
            .collect()
    }

    pub(super) async fn ui_org_teams(&self, org: &str) -> Result<Vec<Team>, StoreError> {
        if crate::store::validate_name("organization", org).is_err() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let ids: Vec<String> = self
            .bounded(
                redis::cmd("HVALS")
                    .arg(format!("tg:org:{{{org}}}:teams"))
                    .query_async(&mut conn),
            )
            .await?;
        let keys: Vec<String> = ids.iter().map(|id| format!("tg:team:{{{id}}}")).collect();
        let mut teams: Vec<Team> = self.get_many(&keys).await?;
        teams.retain(|t| t.organization == org);
        teams.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(teams)
    }

    pub(super) async fn ui_team_members(&self, team_id: &str) -> Result<Vec<User>, StoreError> {
        if validate_id("team-", team_id).is_err() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let ids: Vec<String> = self
            .bounded(
                redis::cmd("SMEMBERS")
                    .arg(format!("tg:team:{{{team_id}}}:members"))
                    .query_async(&mut conn),
            )
            .await?;
        let keys: Vec<String> = ids.iter().map(|id| format!("tg:user:{{{id}}}")).collect();
        let mut users: Vec<User> = self.get_many(&keys).await?;
        users.retain(|u| u.team_ids.iter().any(|t| t == team_id));
        users.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(users)
    }

    pub(super) async fn ui_users_named(&self, name: &str) -> Result<Vec<User>, StoreError> {
        if crate::store::validate_name("user", name).is_err() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let ids: Vec<String> = self
            .bounded(
                redis::cmd("SMEMBERS")
                    .arg(usernames_key(name))
                    .query_async(&mut conn),
            )
            .await?;
        let keys: Vec<String> = ids.iter().map(|id| format!("tg:user:{{{id}}}")).collect();
        let mut users: Vec<User> = self.get_many(&keys).await?;
        users.retain(|u| u.name.eq_ignore_ascii_case(name));
        users.sort_by(|a, b| a.organization.cmp(&b.organization).then(a.id.cmp(&b.id)));
        Ok(users)
    }

    pub(super) async fn ui_set_login(&self, login: &Login) -> Result<(), StoreError> {
        let name = login_name(&login.name)?;
        validate_id("user-", &login.user_id)?;
        let mut conn = self.conn();
        let claimed: i64 = self
            .bounded(
                redis::Script::new(CLAIM_LOGIN)
                    .key(login_key(&name))
                    .arg(&login.user_id)
                    .arg(encode_record(&Login {
                        name: name.clone(),
                        ..login.clone()
                    }))
                    .invoke_async(&mut conn),
            )
            .await?;
        if claimed == 1 {
            return Ok(());
        }
        let holder = self
            .ui_login(&name)
            .await?
            .map_or_else(|| "another user".to_owned(), |l| l.user_id);
        Err(login_taken(&name, &holder))
    }

    pub(super) async fn ui_login(&self, name: &str) -> Result<Option<Login>, StoreError> {
        let Ok(name) = login_name(name) else {
            return Ok(None);
        };
        let key = login_key(&name);
        let mut conn = self.conn();
        let record: Option<String> = self
            .bounded(
                redis::cmd("HGET")
                    .arg(&key)
                    .arg("record")
                    .query_async(&mut conn),
            )
            .await?;
        record
            .map(|r| decode_record(&key, r.as_bytes()))
            .transpose()
    }

    pub(super) async fn ui_put_session(
        &self,
        key: &str,
        session: &UiSession,
    ) -> Result<(), StoreError> {
        validate_session_key(key)?;
        validate_id("user-", &session.user_id)?;
        let mut conn = self.conn();
        let index = user_sessions_key(&session.user_id);
        // Two hash slots, so two commands: the index first (scored by the
        // session's expiry), so that ending a user's sessions never misses
        // one; an entry outlives its session only until its expiry.
        let added: i64 = self
            .bounded(
                redis::cmd("ZADD")
                    .arg(&index)
                    .arg(session.expires_at.0)
                    .arg(key)
                    .query_async(&mut conn),
            )
            .await?;
        let _: () = self
            .bounded(
                redis::cmd("SET")
                    .arg(session_key(key))
                    .arg(encode_record(session))
                    .arg("PX")
                    .arg(millis_until(session.expires_at))
                    .query_async(&mut conn),
            )
            .await?;
        if added == 1 {
            // Forget the user's expired sessions (only by their score, so a
            // session being written elsewhere is never dropped from it).
            let _: i64 = self
                .bounded(
                    redis::cmd("ZREMRANGEBYSCORE")
                        .arg(&index)
                        .arg("-inf")
                        .arg(Timestamp::now().0)
                        .query_async(&mut conn),
                )
                .await?;
        }
        Ok(())
    }

    pub(super) async fn ui_get_session(&self, key: &str) -> Result<Option<UiSession>, StoreError> {
        if validate_session_key(key).is_err() {
            return Ok(None);
        }
        let session: Option<UiSession> = self.get_json(&session_key(key)).await?;
        Ok(session.filter(|s| s.expires_at > Timestamp::now()))
    }

    pub(super) async fn ui_delete_session(&self, key: &str) -> Result<bool, StoreError> {
        if validate_session_key(key).is_err() {
            return Ok(false);
        }
        let mut conn = self.conn();
        let record = session_key(key);
        let (deleted,): (i64,) = self
            .bounded(
                redis::pipe()
                    .atomic()
                    .cmd("DEL")
                    .arg(&record)
                    .cmd("DEL")
                    .arg(format!("{record}:flash"))
                    .ignore()
                    .query_async(&mut conn),
            )
            .await?;
        Ok(deleted == 1)
    }

    pub(super) async fn ui_delete_user_sessions(&self, user_id: &str) -> Result<usize, StoreError> {
        if validate_id("user-", user_id).is_err() {
            return Ok(0);
        }
        let index = user_sessions_key(user_id);
        let mut conn = self.conn();
        let keys: Vec<String> = self
            .bounded(
                redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn),
            )
            .await?;
        let mut ended = 0;
        for key in &keys {
            if self.ui_delete_session(key).await? {
                ended += 1;
            }
        }
        if !keys.is_empty() {
            let _: i64 = self
                .bounded(
                    redis::cmd("ZREM")
                        .arg(&index)
                        .arg(&keys)
                        .query_async(&mut conn),
                )
                .await?;
        }
        Ok(ended)
    }

    pub(super) async fn ui_put_flash(
        &self,
        key: &str,
        value: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        validate_session_key(key)?;
        let mut conn = self.conn();
        let _: () = self
            .bounded(
                redis::cmd("SET")
                    .arg(format!("{}:flash", session_key(key)))
                    .arg(value)
                    .arg("PX")
                    .arg(millis_until(expires_at))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn ui_take_flash(&self, key: &str) -> Result<Option<String>, StoreError> {
        if validate_session_key(key).is_err() {
            return Ok(None);
        }
        let mut conn = self.conn();
        self.bounded(
            redis::cmd("GETDEL")
                .arg(format!("{}:flash", session_key(key)))
                .query_async(&mut conn),
        )
        .await
    }
}
