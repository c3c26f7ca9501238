//! The web UI's records in the embedded store (see [`crate::store::ui`]):
//!
//! | table | key | value |
//! |---|---|---|
//! | `logins` | sign-in name (lower case) | JSON [`Login`] |
//! | `ui_sessions` | session key (digest of the id) | JSON [`UiSession`] |
//! | `ui_user_sessions` | (user id, session key) | `()` |
//! | `ui_flashes` | session key | (expiry millis, value) |
//!
//! Users are found by name by reading the `users` table (small); every
//! write is one transaction. Expired sessions are swept whenever someone
//! signs in, and never returned before that.

use super::{get_record, EmbeddedStore, TxResult, TEAMS, TEAM_MEMBERS, TEAM_NAMES, USERS};
use crate::store::ui::{login_name, login_taken, validate_session_key};
use crate::store::{
    decode_record, encode_record, validate_id, validate_name, Login, StoreError, Team, Timestamp,
    UiSession, User,
};
use redb::{ReadableTable, TableDefinition, WriteTransaction};

pub(super) const LOGINS: super::Records = TableDefinition::new("logins");
pub(super) const UI_SESSIONS: super::Records = TableDefinition::new("ui_sessions");
pub(super) const UI_USER_SESSIONS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("ui_user_sessions");
pub(super) const UI_FLASHES: TableDefinition<&str, (i64, &str)> =
    TableDefinition::new("ui_flashes");

/// Creates the UI's tables (called when the file is opened).
pub(super) fn create_tables(txn: &WriteTransaction) -> TxResult<()> {
    txn.open_table(LOGINS)?;
    txn.open_table(UI_SESSIONS)?;
    txn.open_table(UI_USER_SESSIONS)?;
    txn.open_table(UI_FLASHES)?;
    Ok(())
}

/// Removes one session, its flash and its index entry; true when it existed.
fn remove_session(txn: &WriteTransaction, key: &str) -> TxResult<bool> {
    let old: Option<UiSession> = get_record(&txn.open_table(UI_SESSIONS)?, UI_SESSIONS, key)
        .or_else(|err| match err {
            // A record that cannot be read is deleted all the same.
            super::TxError::Store(StoreError::Corrupt { .. }) => Ok(None),
            other => Err(other),
        })?;
    let existed = txn.open_table(UI_SESSIONS)?.remove(key)?.is_some();
    txn.open_table(UI_FLASHES)?.remove(key)?;
    if let Some(old) = old {
        txn.open_table(UI_USER_SESSIONS)?
            .remove((old.user_id.as_str(), key))?;
    }
    Ok(existed)
}

impl EmbeddedStore {
    pub(super) async fn ui_org_teams(&self, org: &str) -> Result<Vec<Team>, StoreError> {
        if validate_name("organization", org).is_err() {
            return Ok(Vec::new());
        }
        let org = org.to_owned();
        self.read(move |txn| {
            let names = txn.open_table(TEAM_NAMES)?;
            let teams = txn.open_table(TEAMS)?;
            let mut found = Vec::new();
            for entry in names.range((org.as_str(), "")..)? {
                let (key, team_id) = entry?;
                if key.value().0 != org {
                    break;
                }
                if let Some(team) = get_record::<Team>(&teams, TEAMS, team_id.value())? {
                    found.push(team);
                }
            }
            Ok(found)
        })
        .await
    }

    pub(super) async fn ui_team_members(&self, team_id: &str) -> Result<Vec<User>, StoreError> {
        if validate_id("team-", team_id).is_err() {
            return Ok(Vec::new());
        }
        let team_id = team_id.to_owned();
        self.read(move |txn| {
            let members = txn.open_table(TEAM_MEMBERS)?;
            let users = txn.open_table(USERS)?;
            let mut found = Vec::new();
            for entry in members.range((team_id.as_str(), "")..)? {
                let (key, _) = entry?;
                let (team, user_id) = key.value();
                if team != team_id {
                    break;
                }
                if let Some(user) = get_record::<User>(&users, USERS, user_id)? {
                    found.push(user);
                }
            }
            found.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
            Ok(found)
        })
        .await
    }

    pub(super) async fn ui_users_named(&self, name: &str) -> Result<Vec<User>, StoreError> {
        if validate_name("user", name).is_err() {
            return Ok(Vec::new());
        }
        let name = name.to_owned();
        self.read(move |txn| {
            let users = txn.open_table(USERS)?;
            let mut found = Vec::new();
            for entry in users.iter()? {
                let (key, bytes) = entry?;
                let user: User = decode_record(&format!("users/{}", key.value()), bytes.value())?;
                if user.name.eq_ignore_ascii_case(&name) {
                    found.push(user);
                }
            }
            found.sort_by(|a, b| a.organization.cmp(&b.organization).then(a.id.cmp(&b.id)));
            Ok(found)
        })
        .await
    }

    pub(super) async fn ui_set_login(&self, login: &Login) -> Result<(), StoreError> {
        let name = login_name(&login.name)?;
        validate_id("user-", &login.user_id)?;
        let login = Login {
            name: name.clone(),
            ..login.clone()
        };
        self.write(move |txn| {
            let mut logins = txn.open_table(LOGINS)?;
            let holder: Option<Login> = get_record(&logins, LOGINS, &name)?;
            if let Some(holder) = holder.filter(|h| h.user_id != login.user_id) {
                return Err(login_taken(&name, &holder.user_id).into());
            }
            logins.insert(name.as_str(), encode_record(&login).as_bytes())?;
            Ok(())
        })
        .await
    }

    pub(super) async fn ui_login(&self, name: &str) -> Result<Option<Login>, StoreError> {
        let Ok(name) = login_name(name) else {
            return Ok(None);
        };
        self.get(LOGINS, &name).await
    }

    pub(super) async fn ui_put_session(
        &self,
        key: &str,
        session: &UiSession,
    ) -> Result<(), StoreError> {
        validate_session_key(key)?;
        validate_id("user-", &session.user_id)?;
        let key = key.to_owned();
        let session = session.clone();
        self.write(move |txn| {
            let mut sessions = txn.open_table(UI_SESSIONS)?;
            let new = sessions.get(key.as_str())?.is_none();
            sessions.insert(key.as_str(), encode_record(&session).as_bytes())?;
            drop(sessions);
            txn.open_table(UI_USER_SESSIONS)?
                .insert((session.user_id.as_str(), key.as_str()), ())?;
            if new {
                sweep_expired(txn)?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn ui_get_session(&self, key: &str) -> Result<Option<UiSession>, StoreError> {
        if validate_session_key(key).is_err() {
            return Ok(None);
        }
        let session: Option<UiSession> = self.get(UI_SESSIONS, key).await?;
        Ok(session.filter(|s| s.expires_at > Timestamp::now()))
    }

    pub(super) async fn ui_delete_session(&self, key: &str) -> Result<bool, StoreError> {
        if validate_session_key(key).is_err() {
            return Ok(false);
        }
        let key = key.to_owned();
        self.write(move |txn| remove_session(txn, &key)).await
    }

    pub(super) async fn ui_delete_user_sessions(&self, user_id: &str) -> Result<usize, StoreError> {
        if validate_id("user-", user_id).is_err() {
            return Ok(0);
        }
        let user_id = user_id.to_owned();
        self.write(move |txn| {
            let mut keys = Vec::new();
            for entry in txn
                .open_table(UI_USER_SESSIONS)?
                .range((user_id.as_str(), "")..)?
            {
                let (key, _) = entry?;
                let (user, session) = key.value();
                if user != user_id {
                    break;
                }
                keys.push(session.to_owned());
            }
            let mut ended = 0;
            for key in &keys {
                if remove_session(txn, key)? {
                    ended += 1;
                }
                txn.open_table(UI_USER_SESSIONS)?
                    .remove((user_id.as_str(), key.as_str()))?;
            }
            Ok(ended)
        })
        .await
    }

    pub(super) async fn ui_put_flash(
        &self,
        key: &str,
        value: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        validate_session_key(key)?;
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |txn| {
            txn.open_table(UI_FLASHES)?
                .insert(key.as_str(), (expires_at.0, value.as_str()))?;
            Ok(())
        })
        .await
    }

    pub(super) async fn ui_take_flash(&self, key: &str) -> Result<Option<String>, StoreError> {
        if validate_session_key(key).is_err() {
            return Ok(None);
        }
        let key = key.to_owned();
        self.write(move |txn| {
            let mut flashes = txn.open_table(UI_FLASHES)?;
            let taken = flashes.remove(key.as_str())?.and_then(|value| {
                let (expires, value) = value.value();
                (expires > Timestamp::now().0).then(|| value.to_owned())
            });
            Ok(taken)
        })
        .await
    }
}

/// Deletes every expired session (with its flash and index entry).
fn sweep_expired(txn: &WriteTransaction) -> TxResult<()> {
    let now = Timestamp::now();
    let mut expired = Vec::new();
    for entry in txn.open_table(UI_SESSIONS)?.iter()? {
        let (key, bytes) = entry?;
        let key = key.value().to_owned();
        let session = decode_record::<UiSession>(&key, bytes.value());
        if session.is_err() || session.is_ok_and(|s| s.expires_at <= now) {
            expired.push(key);
        }
    }
    for key in expired {
        remove_session(txn, &key)?;
    }
    Ok(())
}
