//! Embedded backend of the [`Store`]: everything in one local redb file, for
//! a single gateway process that needs nothing else installed.
//!
//! Every write is one redb write transaction, committed durably (fsync)
//! before the call returns, so each operation is all-or-nothing even across
//! a crash. That is stronger than the Redis backend in three places:
//! creating an organization writes its `owners` team in the same
//! transaction; a user and its team memberships land together; and
//! [`Store::touch_last_used`] checks the current token and records the time
//! in one step, so a late touch by a replaced token never overwrites the
//! time of the token that replaced it.
//!
//! redb is blocking: every transaction runs on tokio's blocking pool, never
//! on an async worker. Readers never wait for the writer (MVCC); writers
//! queue behind one another. The request path is one read transaction and
//! one JSON decode ([`Store::credential`]).
//!
//! Only one process may open the file (redb locks it); a second one gets
//! [`StoreError::Unavailable`] naming the path. Gateways that share tokens
//! across processes use the Redis store.
//!
//! Tables:
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"schema"` | layout version ([`SCHEMA_VERSION`]) |
//! | `orgs` | org name | JSON [`Organization`] |
//! | `teams` | team id | JSON [`Team`] |
//! | `team_names` | (org, team name) | team id — names unique per org |
//! | `team_members` | (team id, user id) | `()` |
//! | `users` | user id | JSON [`User`] |
//! | `slot_of` | `Owner::describe()` | the owner's credential slot |
//! | `slot_owners` | slot | owner — each slot is claimed once |
//! | `credentials` | slot | JSON [`Credential`] — read once per request |
//! | `last_used` | slot | (token id, millis) of the current token |
//! | `org_tokens` | (org, slot) | `()` — tokens with a slot of their own |
//! | `token_descriptions` | (team id, description) | slot — unique per team |
//! | `audit` | (millis, sequence) | JSON [`AuditEvent`] |
//! | `team_access` | (team id, workspace id) | JSON [`TeamAccess`] — read per request |
//! | `team_access_ids` | `tws-…` | (team id, workspace id) |
//! | `workspace_teams` | (workspace id, team id) | `()` |
//! | `logins`, `ui_sessions`, `ui_user_sessions`, `ui_flashes` | see `embedded/ui.rs` | the web UI's |
//! | `upload_grants` | see `embedded/grants.rs` | upload URLs issued through the gateway |
//!
//! A token with a slot of its own is stored, indexed and deleted in one
//! transaction with its slot claim and description.

mod grants;
mod ui;

use super::access::{access_exists, access_not_found, validate_access, validate_workspace_id};
use super::{
    check_member_team, check_own_slot, clamped, decode_record, description_taken, encode_record,
    new_org, new_team, new_user, org_exists, org_not_found, slot_taken, team_description,
    team_exists, validate_id, validate_name, validate_slot, AuditEvent, Credential, Organization,
    OrganizationAccess, Owner, Store, StoreError, StoredToken, Team, TeamAccess, TeamFacts,
    Timestamp, TokenSettings, User,
};
use crate::token_format as token;
use async_trait::async_trait;
use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle, WriteTransaction,
};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the table layout above; bumped with a migration when it changes.
pub const SCHEMA_VERSION: u64 = 1;

/// Page cache of the open file. The data is small (a few records per team).
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A table of JSON records.
type Records = TableDefinition<'static, &'static str, &'static [u8]>;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const ORGS: Records = TableDefinition::new("orgs");
const TEAMS: Records = TableDefinition::new("teams");
const TEAM_NAMES: TableDefinition<(&str, &str), &str> = TableDefinition::new("team_names");
const TEAM_MEMBERS: TableDefinition<(&str, &str), ()> = TableDefinition::new("team_members");
const USERS: Records = TableDefinition::new("users");
const SLOT_OF: TableDefinition<&str, &str> = TableDefinition::new("slot_of");
const SLOT_OWNERS: TableDefinition<&str, &str> = TableDefinition::new("slot_owners");
const CREDENTIALS: Records = TableDefinition::new("credentials");
const LAST_USED: TableDefinition<&str, (&str, i64)> = TableDefinition::new("last_used");
const AUDIT: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("audit");
const TEAM_ACCESS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("team_access");
const TEAM_ACCESS_IDS: TableDefinition<&str, (&str, &str)> =
    TableDefinition::new("team_access_ids");
const WORKSPACE_TEAMS: TableDefinition<(&str, &str), ()> = TableDefinition::new("workspace_teams");
const ORG_TOKENS: TableDefinition<(&str, &str), ()> = TableDefinition::new("org_tokens");
const TOKEN_DESCRIPTIONS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("token_descriptions");

/// The embedded store. Cheap to clone; clones share the open file, which is
/// closed (and its lock released) when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a transaction body can fail with: a store answer (kept as is) or a
/// redb failure (made `Unavailable`, naming the file, at the boundary).
#[derive(Debug, thiserror::Error)]
enum TxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redb(#[from] redb::Error),
}

macro_rules! redb_errors_into_tx_error {
    ($($error:ty),*) => {$(
        impl From<$error> for TxError {
            fn from(err: $error) -> Self {
                TxError::Redb(err.into())
            }
        }
    )*};
}
redb_errors_into_tx_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

type TxResult<T> = Result<T, TxError>;

impl EmbeddedStore {
    /// Opens (creating it and its parent directories when missing) the store
    /// file at `path`. Blocks briefly: call it at startup.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Errors name the file wherever the process was started from.
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let failed = |what: &str, err: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!(
                "cannot {what} the embedded store file {}: {err}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| failed("create the directory of", &e))?;
        }
        create_private_file(path).map_err(|e| failed("create", &e))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            // A file damaged outside redb then fails to open instead of panicking.
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                    "the embedded store file {} is already in use (another process has it \
                     open, and only one may; stop that one, or use store.redis to share \
                     tokens between processes)",
                    path.display()
                )),
                other => failed("open", &other),
            })?;
        let store = EmbeddedStore {
            db: Arc::new(db),
            path: Arc::new(path.clone()),
        };
        store.init().map_err(|e| store.store_error(e))?;
        Ok(store)
    }

    /// Creates every table and checks the layout version, so that readers
    /// never meet a missing table.
    fn init(&self) -> TxResult<()> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get("schema")?.map(|v| v.value());
            match version {
                None => {
                    meta.insert("schema", SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Invalid(format!(
                        "the embedded store file {} has layout version {other}; this tokengate \
                         reads version {SCHEMA_VERSION} (was it written by a newer release?)",
                        self.path.display()
                    ))
                    .into())
                }
            }
            txn.open_table(ORGS)?;
            txn.open_table(TEAMS)?;
            txn.open_table(TEAM_NAMES)?;
            txn.open_table(TEAM_MEMBERS)?;
            txn.open_table(USERS)?;
            txn.open_table(SLOT_OF)?;
            txn.open_table(SLOT_OWNERS)?;
            txn.open_table(CREDENTIALS)?;
            txn.open_table(LAST_USED)?;
            txn.open_table(AUDIT)?;
            txn.open_table(TEAM_ACCESS)?;
            txn.open_table(TEAM_ACCESS_IDS)?;
            txn.open_table(WORKSPACE_TEAMS)?;
            txn.open_table(ORG_TOKENS)?;
            txn.open_table(TOKEN_DESCRIPTIONS)?;
            ui::create_tables(&txn)?;
            grants::create_tables(&txn)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn store_error(&self, err: TxError) -> StoreError {
        match err {
            TxError::Store(err) => err,
            TxError::Redb(err) => {
                StoreError::Unavailable(format!("embedded store {}: {err}", self.path.display()))
            }
        }
    }

    /// Runs `body` on the blocking pool; the transaction is committed when it
    /// returns `Ok` and rolled back when it returns an error.
    async fn write<T, F>(&self, body: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> TxResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        self.blocking(move || {
            let txn = db.begin_write()?;
            let value = body(&txn)?;
            txn.commit()?;
            Ok(value)
        })
        .await
    }

    /// Runs `body` in one read transaction (a snapshot) on the blocking pool.
    async fn read<T, F>(&self, body: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> TxResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        self.blocking(move || body(&db.begin_read()?)).await
    }

    /// The JSON record under `key` in `table`, in a read transaction of its own.
    async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Records,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let key = key.to_owned();
        self.read(move |txn| get_record(&txn.open_table(table)?, table, &key))
            .await
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce() -> TxResult<T> + Send + 'static,
    {
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result.map_err(|e| self.store_error(e)),
            Err(err) => Err(StoreError::Unavailable(format!(
                "embedded store {}: transaction task failed: {err}",
                self.path.display()
            ))),
        }
    }
}

/// Creates the file readable by its owner only (it holds token hashes);
/// an existing file is left as it is.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// The JSON record under `key` of `table`, opened from `definition`.
fn get_record<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    definition: Records,
    key: &str,
) -> TxResult<Option<T>> {
    match table.get(key)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(decode_record(
            &record_key(definition, key),
            bytes.value(),
        )?)),
    }
}

/// How a record is named in errors: `credentials/SLOT`.
fn record_key(table: Records, key: &str) -> String {
    format!("{}/{key}", table.name())
}

fn insert_team(txn: &WriteTransaction, team: &Team) -> TxResult<()> {
    let mut names = txn.open_table(TEAM_NAMES)?;
    if names
        .get((team.organization.as_str(), team.name.as_str()))?
        .is_some()
    {
        return Err(team_exists(team).into());
    }
    names.insert(
        (team.organization.as_str(), team.name.as_str()),
        team.id.as_str(),
    )?;
    txn.open_table(TEAMS)?
        .insert(team.id.as_str(), encode_record(team).as_bytes())?;
    Ok(())
}

/// The access record of `team` to `ws` in `table`, if any.
fn access_record(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    team: &str,
    ws: &str,
) -> TxResult<Option<TeamAccess>> {
    match table.get((team, ws))? {
        None => Ok(None),
        Some(bytes) => Ok(Some(decode_record(
            &format!("team_access/{team}/{ws}"),
            bytes.value(),
        )?)),
    }
}

/// Where the access `id` is kept: (team id, workspace id).
fn access_location(
    table: &impl ReadableTable<&'static str, (&'static str, &'static str)>,
    id: &str,
) -> TxResult<Option<(String, String)>> {
    Ok(table.get(id)?.map(|location| {
        let (team, ws) = location.value();
        (team.to_owned(), ws.to_owned())
    }))
}

fn require_org(txn: &WriteTransaction, org: &str) -> TxResult<()> {
    match txn.open_table(ORGS)?.get(org)? {
        Some(_) => Ok(()),
        None => Err(org_not_found(org).into()),
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn credential(&self, slot: &str) -> Result<Option<Credential>, StoreError> {
        validate_slot(slot)?;
        self.get(CREDENTIALS, slot).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|txn| {
            txn.open_table(META)?;
            Ok(())
        })
        .await
    }

    async fn create_org(&self, name: &str) -> Result<Organization, StoreError> {
        validate_name("organization", name)?;
        let (org, owners) = new_org(name);
        self.write(move |txn| {
            let mut orgs = txn.open_table(ORGS)?;
            if orgs.get(org.name.as_str())?.is_some() {
                return Err(org_exists(&org.name).into());
            }
            orgs.insert(org.name.as_str(), encode_record(&org).as_bytes())?;
            insert_team(txn, &owners)?;
            Ok(org)
        })
        .await
    }

    async fn org(&self, name: &str) -> Result<Option<Organization>, StoreError> {
        if validate_name("organization", name).is_err() {
            return Ok(None);
        }
        self.get(ORGS, name).await
    }

    async fn create_team(&self, org: &str, name: &str) -> Result<Team, StoreError> {
        validate_name("team", name)?;
        let team = new_team(org, name);
        self.write(move |txn| {
            require_org(txn, &team.organization)?;
            insert_team(txn, &team)?;
            Ok(team)
        })
        .await
    }

    async fn team(&self, team_id: &str) -> Result<Option<Team>, StoreError> {
        if validate_id("team-", team_id).is_err() {
            return Ok(None);
        }
        self.get(TEAMS, team_id).await
    }

    async fn create_user(
        &self,
        org: &str,
        name: &str,
        team_ids: &[String],
    ) -> Result<User, StoreError> {
        validate_name("user", name)?;
        let requested = team_ids.to_vec();
        let user = new_user(org, name, team_ids);
        self.write(move |txn| {
            require_org(txn, &user.organization)?;
            let teams = txn.open_table(TEAMS)?;
            for team_id in &requested {
                let team: Option<Team> = match validate_id("team-", team_id) {
                    Ok(()) => get_record(&teams, TEAMS, team_id)?,
                    Err(_) => None,
                };
                check_member_team(&user.organization, team_id, team.as_ref())?;
            }
            txn.open_table(USERS)?
                .insert(user.id.as_str(), encode_record(&user).as_bytes())?;
            let mut members = txn.open_table(TEAM_MEMBERS)?;
            for team_id in &user.team_ids {
                members.insert((team_id.as_str(), user.id.as_str()), ())?;
            }
            Ok(user)
        })
        .await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        if validate_id("user-", user_id).is_err() {
            return Ok(None);
        }
        self.get(USERS, user_id).await
    }

    async fn ensure_slot(&self, owner: &Owner) -> Result<String, StoreError> {
        // Every regenerate asks: answer an owner that has a slot without a write.
        if let Some(slot) = self.slot_of(owner).await? {
            return Ok(slot);
        }
        let owner = owner.describe();
        self.write(move |txn| {
            let mut slot_of = txn.open_table(SLOT_OF)?;
            if let Some(slot) = slot_of.get(owner.as_str())? {
                return Ok(slot.value().to_owned());
            }
            let mut owners = txn.open_table(SLOT_OWNERS)?;
            let slot = loop {
                let candidate = token::new_slot();
                if owners.get(candidate.as_str())?.is_none() {
                    break candidate;
                }
            };
            owners.insert(slot.as_str(), owner.as_str())?;
            slot_of.insert(owner.as_str(), slot.as_str())?;
            Ok(slot)
        })
        .await
    }

    async fn slot_of(&self, owner: &Owner) -> Result<Option<String>, StoreError> {
        let owner = owner.describe();
        self.read(move |txn| {
            let slot_of = txn.open_table(SLOT_OF)?;
            let slot = slot_of.get(owner.as_str())?;
            Ok(slot.map(|s| s.value().to_owned()))
        })
        .await
    }

    async fn put_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        validate_slot(&credential.slot)?;
        let slot = credential.slot.clone();
        let record = encode_record(credential);
        self.write(move |txn| {
            txn.open_table(CREDENTIALS)?
                .insert(slot.as_str(), record.as_bytes())?;
            txn.open_table(LAST_USED)?.remove(slot.as_str())?;
            Ok(())
        })
        .await
    }

    async fn replace_secret_hash(
        &self,
        current: &Credential,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        validate_slot(&current.slot)?;
        let slot = current.slot.clone();
        let current = current.clone();
        let replaced = encode_record(&Credential {
            secret_hash: new_hash.to_owned(),
            ..current.clone()
        });
        let key = record_key(CREDENTIALS, &slot);
        self.write(move |txn| {
            let mut table = txn.open_table(CREDENTIALS)?;
            let unchanged = match table.get(slot.as_str())? {
                Some(bytes) => decode_record::<Credential>(&key, bytes.value())
                    .is_ok_and(|stored| stored == current),
                None => false,
            };
            if unchanged {
                table.insert(slot.as_str(), replaced.as_bytes())?;
            }
            Ok(unchanged)
        })
        .await
    }

    async fn delete_credential(&self, slot: &str) -> Result<Option<Credential>, StoreError> {
        validate_slot(slot)?;
        let key = slot.to_owned();
        // The record is decoded after the commit: a corrupt one is deleted
        // all the same (and reported), as with Redis.
        let old = self
            .write(move |txn| {
                let old = txn
                    .open_table(CREDENTIALS)?
                    .remove(key.as_str())?
                    .map(|bytes| bytes.value().to_vec());
                txn.open_table(LAST_USED)?.remove(key.as_str())?;
                Ok(old)
            })
            .await?;
        old.map(|bytes| decode_record(&record_key(CREDENTIALS, slot), &bytes))
            .transpose()
    }

    async fn touch_last_used(
        &self,
        slot: &str,
        token_id: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        validate_slot(slot)?;
        let slot = slot.to_owned();
        let token_id = token_id.to_owned();
        self.write(move |txn| {
            let current: Option<Credential> =
                get_record(&txn.open_table(CREDENTIALS)?, CREDENTIALS, &slot)?;
            if current.is_some_and(|c| c.token_id == token_id) {
                txn.open_table(LAST_USED)?
                    .insert(slot.as_str(), (token_id.as_str(), at.0))?;
            }
            Ok(())
        })
        .await
    }

    async fn last_used(&self, slot: &str) -> Result<Option<Timestamp>, StoreError> {
        validate_slot(slot)?;
        let slot = slot.to_owned();
        self.read(move |txn| {
            let current: Option<Credential> =
                get_record(&txn.open_table(CREDENTIALS)?, CREDENTIALS, &slot)?;
            let Some(current) = current else {
                return Ok(None);
            };
            let used = txn.open_table(LAST_USED)?;
            let used = used.get(slot.as_str())?;
            Ok(used.and_then(|used| {
                let (token_id, millis) = used.value();
                (token_id == current.token_id).then_some(Timestamp(millis))
            }))
        })
        .await
    }

    async fn set_member_token_management(
        &self,
        team_id: &str,
        allowed: bool,
    ) -> Result<Team, StoreError> {
        validate_id("team-", team_id)?;
        let team_id = team_id.to_owned();
        self.write(move |txn| {
            let mut teams = txn.open_table(TEAMS)?;
            let mut team: Team = get_record(&teams, TEAMS, &team_id)?
                .ok_or_else(|| StoreError::NotFound(format!("team `{team_id}`")))?;
            team.allow_member_token_management = allowed;
            teams.insert(team_id.as_str(), encode_record(&team).as_bytes())?;
            Ok(team)
        })
        .await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let record = encode_record(event);
        let time = event.time.0;
        self.write(move |txn| {
            // A per-file sequence keeps events of the same millisecond apart and in order.
            let mut meta = txn.open_table(META)?;
            let sequence = meta.get("audit_sequence")?.map_or(0, |v| v.value()) + 1;
            meta.insert("audit_sequence", sequence)?;
            txn.open_table(AUDIT)?
                .insert((time, sequence), record.as_bytes())?;
            Ok(())
        })
        .await
    }

    async fn audit_events(
        &self,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let from = since.map_or(i64::MIN, |t| t.0);
        self.read(move |txn| {
            let table = txn.open_table(AUDIT)?;
            let mut events = Vec::new();
            for entry in table.range((from, 0)..)?.take(limit) {
                let (key, value) = entry?;
                let (time, sequence) = key.value();
                events.push(decode_record(
                    &format!("audit/{time}-{sequence}"),
                    value.value(),
                )?);
            }
            Ok(events)
        })
        .await
    }

    // --- Team workspace access -------------------------------------------

    async fn add_team_access(&self, access: &TeamAccess) -> Result<(), StoreError> {
        validate_access(access)?;
        let access = access.clone();
        self.write(move |txn| {
            let (team, ws) = (access.team_id.as_str(), access.workspace_id.as_str());
            let mut records = txn.open_table(TEAM_ACCESS)?;
            let mut ids = txn.open_table(TEAM_ACCESS_IDS)?;
            if records.get((team, ws))?.is_some() || ids.get(access.id.as_str())?.is_some() {
                return Err(access_exists(&access).into());
            }
            records.insert((team, ws), encode_record(&access).as_bytes())?;
            ids.insert(access.id.as_str(), (team, ws))?;
            txn.open_table(WORKSPACE_TEAMS)?.insert((ws, team), ())?;
            Ok(())
        })
        .await
    }

    async fn update_team_access(&self, access: &TeamAccess) -> Result<(), StoreError> {
        validate_access(access)?;
        let access = access.clone();
        self.write(move |txn| {
            let (team, ws) = (access.team_id.as_str(), access.workspace_id.as_str());
            let mut records = txn.open_table(TEAM_ACCESS)?;
            let current = access_record(&records, team, ws)?;
            if current.is_none_or(|c| c.id != access.id) {
                return Err(access_not_found(&access.id).into());
            }
            records.insert((team, ws), encode_record(&access).as_bytes())?;
            Ok(())
        })
        .await
    }

    async fn team_access(&self, id: &str) -> Result<Option<TeamAccess>, StoreError> {
        if validate_id("tws-", id).is_err() {
            return Ok(None);
        }
        let id = id.to_owned();
        self.read(move |txn| {
            let Some((team, ws)) = access_location(&txn.open_table(TEAM_ACCESS_IDS)?, &id)? else {
                return Ok(None);
            };
            let access = access_record(&txn.open_table(TEAM_ACCESS)?, &team, &ws)?;
            Ok(access.filter(|a| a.id == id))
        })
        .await
    }

    async fn remove_team_access(&self, id: &str) -> Result<Option<TeamAccess>, StoreError> {
        if validate_id("tws-", id).is_err() {
            return Ok(None);
        }
        let id = id.to_owned();
        self.write(move |txn| {
            let mut ids = txn.open_table(TEAM_ACCESS_IDS)?;
            let Some((team, ws)) = access_location(&ids, &id)? else {
                return Ok(None);
            };
            ids.remove(id.as_str())?;
            let mut records = txn.open_table(TEAM_ACCESS)?;
            let current = access_record(&records, &team, &ws)?;
            let Some(current) = current.filter(|a| a.id == id) else {
                return Ok(None);
            };
            records.remove((team.as_str(), ws.as_str()))?;
            txn.open_table(WORKSPACE_TEAMS)?
                .remove((ws.as_str(), team.as_str()))?;
            Ok(Some(current))
        })
        .await
    }

    async fn workspace_team_accesses(
        &self,
        workspace_id: &str,
    ) -> Result<Vec<TeamAccess>, StoreError> {
        if validate_workspace_id(workspace_id).is_err() {
            return Ok(Vec::new());
        }
        let ws = workspace_id.to_owned();
        self.read(move |txn| {
            let teams = txn.open_table(WORKSPACE_TEAMS)?;
            let records = txn.open_table(TEAM_ACCESS)?;
            let mut found = Vec::new();
            for entry in teams.range((ws.as_str(), "")..)? {
                let (key, _) = entry?;
                let (entry_ws, team) = key.value();
                if entry_ws != ws {
                    break;
                }
                found.extend(access_record(&records, team, &ws)?);
            }
            Ok(found)
        })
        .await
    }

    async fn team_accesses(&self, team_id: &str) -> Result<Vec<TeamAccess>, StoreError> {
        if validate_id("team-", team_id).is_err() {
            return Ok(Vec::new());
        }
        let team = team_id.to_owned();
        self.read(move |txn| {
            let records = txn.open_table(TEAM_ACCESS)?;
            let mut found = Vec::new();
            for entry in records.range((team.as_str(), "")..)? {
                let (key, value) = entry?;
                let (entry_team, ws) = key.value();
                if entry_team != team {
                    break;
                }
                found.push(decode_record(
                    &format!("team_access/{team}/{ws}"),
                    value.value(),
                )?);
            }
            Ok(found)
        })
        .await
    }

    async fn access_facts(
        &self,
        team_ids: &[String],
        workspace_id: Option<&str>,
    ) -> Result<Vec<TeamFacts>, StoreError> {
        let teams: Vec<String> = team_ids
            .iter()
            .filter(|t| validate_id("team-", t).is_ok())
            .cloned()
            .collect();
        let ws = workspace_id
            .filter(|ws| validate_workspace_id(ws).is_ok())
            .map(str::to_owned);
        if teams.is_empty() {
            return Ok(Vec::new());
        }
        // One read transaction: a snapshot of every team and its access.
        self.read(move |txn| {
            let records = txn.open_table(TEAMS)?;
            let accesses = txn.open_table(TEAM_ACCESS)?;
            let mut facts = Vec::with_capacity(teams.len());
            for team_id in &teams {
                let Some(team) = get_record::<Team>(&records, TEAMS, team_id)? else {
                    continue;
                };
                let access = match &ws {
                    Some(ws) => access_record(&accesses, team_id, ws)?,
                    None => None,
                };
                facts.push(TeamFacts { team, access });
            }
            Ok(facts)
        })
        .await
    }

    async fn insert_token(&self, credential: &Credential) -> Result<(), StoreError> {
        check_own_slot(credential)?;
        let credential = credential.clone();
        self.write(move |txn| {
            let slot = credential.slot.as_str();
            let mut owners = txn.open_table(SLOT_OWNERS)?;
            if owners.get(slot)?.is_some() {
                return Err(slot_taken(slot).into());
            }
            owners.insert(slot, credential.owner.describe().as_str())?;
            if let Some((team_id, description)) = team_description(&credential) {
                let mut descriptions = txn.open_table(TOKEN_DESCRIPTIONS)?;
                if descriptions.get((team_id, description))?.is_some() {
                    return Err(description_taken(description).into());
                }
                descriptions.insert((team_id, description), slot)?;
            }
            txn.open_table(ORG_TOKENS)?
                .insert((credential.owner.org(), slot), ())?;
            txn.open_table(CREDENTIALS)?
                .insert(slot, encode_record(&credential).as_bytes())?;
            txn.open_table(LAST_USED)?.remove(slot)?;
            Ok(())
        })
        .await
    }

    async fn delete_token(
        &self,
        slot: &str,
        token_id: &str,
    ) -> Result<Option<Credential>, StoreError> {
        validate_slot(slot)?;
        let slot = slot.to_owned();
        let token_id = token_id.to_owned();
        self.write(move |txn| {
            let mut credentials = txn.open_table(CREDENTIALS)?;
            let current: Option<Credential> = get_record(&credentials, CREDENTIALS, &slot)?;
            let Some(current) = current.filter(|c| c.token_id == token_id) else {
                return Ok(None);
            };
            credentials.remove(slot.as_str())?;
            txn.open_table(LAST_USED)?.remove(slot.as_str())?;
            if current.own_slot {
                if let Some((team_id, description)) = team_description(&current) {
                    let mut descriptions = txn.open_table(TOKEN_DESCRIPTIONS)?;
                    let held_here = descriptions
                        .get((team_id, description))?
                        .is_some_and(|held| held.value() == slot);
                    if held_here {
                        descriptions.remove((team_id, description))?;
                    }
                }
                txn.open_table(ORG_TOKENS)?
                    .remove((current.owner.org(), slot.as_str()))?;
            }
            Ok(Some(current))
        })
        .await
    }

    async fn org_tokens(&self, org: &str) -> Result<Vec<StoredToken>, StoreError> {
        if validate_name("organization", org).is_err() {
            return Ok(Vec::new());
        }
        let org = org.to_owned();
        self.read(move |txn| {
            let mut slots = Vec::new();
            let slot_of = txn.open_table(SLOT_OF)?;
            let mut legacy = vec![Owner::Org { org: org.clone() }.describe()];
            let names = txn.open_table(TEAM_NAMES)?;
            for entry in names.range((org.as_str(), "")..)? {
                let (key, team_id) = entry?;
                if key.value().0 != org {
                    break;
                }
                legacy.push(
                    Owner::Team {
                        org: org.clone(),
                        team_id: team_id.value().to_owned(),
                    }
                    .describe(),
                );
            }
            for owner in &legacy {
                if let Some(slot) = slot_of.get(owner.as_str())? {
                    slots.push(slot.value().to_owned());
                }
            }
            let own = txn.open_table(ORG_TOKENS)?;
            for entry in own.range((org.as_str(), "")..)? {
                let (key, _) = entry?;
                let (entry_org, slot) = key.value();
                if entry_org != org {
                    break;
                }
                slots.push(slot.to_owned());
            }
            slots.sort();
            slots.dedup();
            let credentials = txn.open_table(CREDENTIALS)?;
            let used = txn.open_table(LAST_USED)?;
            let mut tokens = Vec::new();
            for slot in slots {
                let credential: Option<Credential> = get_record(&credentials, CREDENTIALS, &slot)?;
                let Some(credential) = credential else {
                    continue;
                };
                let last_used = used.get(slot.as_str())?.and_then(|used| {
                    let (token_id, millis) = used.value();
                    (token_id == credential.token_id).then_some(Timestamp(millis))
                });
                tokens.push(StoredToken {
                    credential,
                    last_used,
                });
            }
            Ok(tokens)
        })
        .await
    }

    async fn clamp_expiry(&self, current: &Credential, at: Timestamp) -> Result<bool, StoreError> {
        validate_slot(&current.slot)?;
        let Some(replacement) = clamped(current, at) else {
            return Ok(false);
        };
        let current = current.clone();
        self.write(move |txn| {
            let mut credentials = txn.open_table(CREDENTIALS)?;
            let stored: Option<Credential> = get_record(&credentials, CREDENTIALS, &current.slot)?;
            if stored.as_ref() != Some(&current) {
                return Ok(false);
            }
            credentials.insert(
                current.slot.as_str(),
                encode_record(&replacement).as_bytes(),
            )?;
            Ok(true)
        })
        .await
    }

    async fn replace_token_settings(
        &self,
        org: &str,
        current: &TokenSettings,
        new: &TokenSettings,
    ) -> Result<bool, StoreError> {
        if validate_name("organization", org).is_err() {
            return Err(org_not_found(org));
        }
        let org = org.to_owned();
        let (current, new) = (current.clone(), new.clone());
        self.write(move |txn| {
            let mut orgs = txn.open_table(ORGS)?;
            let stored: Option<Organization> = get_record(&orgs, ORGS, &org)?;
            let Some(mut stored) = stored else {
                return Err(org_not_found(&org).into());
            };
            if stored.token_settings != current {
                return Ok(false);
            }
            stored.token_settings = new;
            orgs.insert(org.as_str(), encode_record(&stored).as_bytes())?;
            Ok(true)
        })
        .await
    }

    async fn set_organization_access(
        &self,
        team_id: &str,
        access: OrganizationAccess,
    ) -> Result<Team, StoreError> {
        validate_id("team-", team_id)?;
        let team_id = team_id.to_owned();
        self.write(move |txn| {
            let mut teams = txn.open_table(TEAMS)?;
            let mut team: Team = get_record(&teams, TEAMS, &team_id)?
                .ok_or_else(|| StoreError::NotFound(format!("team `{team_id}`")))?;
            team.organization_access = access;
            teams.insert(team_id.as_str(), encode_record(&team).as_bytes())?;
            Ok(team)
        })
        .await
    }

    // Web UI (issue 14): src/store/embedded/ui.rs.

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
