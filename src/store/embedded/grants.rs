//! Upload grants in the embedded store (see `proxy::object_storage`):
//!
//! | table | key | value |
//! |---|---|---|
//! | `upload_grants` | digest of the upload URL's path | expiry (millis) |
//!
//! Expired grants are never answered, and are swept whenever a grant is
//! kept.

use super::{EmbeddedStore, TxResult};
use crate::store::{validate_grant_key, StoreError, Timestamp};
use redb::{TableDefinition, WriteTransaction};

const UPLOAD_GRANTS: TableDefinition<&str, i64> = TableDefinition::new("upload_grants");

/// Creates the table (called when the file is opened).
pub(super) fn create_tables(txn: &WriteTransaction) -> TxResult<()> {
    txn.open_table(UPLOAD_GRANTS)?;
    Ok(())
}

impl EmbeddedStore {
    pub(super) async fn put_grant(
        &self,
        key: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        validate_grant_key(key)?;
        let key = key.to_owned();
        self.write(move |txn| {
            let mut grants = txn.open_table(UPLOAD_GRANTS)?;
            let now = Timestamp::now().0;
            grants.retain(|_, expires| expires > now)?;
            grants.insert(key.as_str(), expires_at.0)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn grant_exists(&self, key: &str) -> Result<bool, StoreError> {
        if validate_grant_key(key).is_err() {
            return Ok(false);
        }
        let key = key.to_owned();
        self.read(move |txn| {
            let expires = txn
                .open_table(UPLOAD_GRANTS)?
                .get(key.as_str())?
                .map(|value| value.value());
            Ok(expires.is_some_and(|at| at > Timestamp::now().0))
        })
        .await
    }

    pub(super) async fn grant_end(&self, key: &str) -> Result<(), StoreError> {
        if validate_grant_key(key).is_err() {
            return Ok(());
        }
        let key = key.to_owned();
        self.write(move |txn| {
            txn.open_table(UPLOAD_GRANTS)?.remove(key.as_str())?;
            Ok(())
        })
        .await
    }
}
