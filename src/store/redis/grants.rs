//! Upload grants in Redis (see `proxy::object_storage`):
//!
//! | key | value |
//! |---|---|
//! | `tg:uploadgrant:{KEY}` | `1`, expiring when the grant does |
//!
//! KEY is the digest of the upload URL's path, never the URL itself (the
//! URL is a capability: whoever holds it may upload).

use super::RedisStore;
use crate::store::{validate_grant_key, StoreError, Timestamp};

fn grant_key(key: &str) -> String {
    format!("tg:uploadgrant:{{{key}}}")
}

impl RedisStore {
    pub(super) async fn put_grant(
        &self,
        key: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        validate_grant_key(key)?;
        let millis = (expires_at.0 - Timestamp::now().0).max(1);
        let mut conn = self.conn();
        let _: () = self
            .bounded(
                redis::cmd("SET")
                    .arg(grant_key(key))
                    .arg(1)
                    .arg("PX")
                    .arg(millis)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn grant_exists(&self, key: &str) -> Result<bool, StoreError> {
        if validate_grant_key(key).is_err() {
            return Ok(false);
        }
        let mut conn = self.conn();
        let found: i64 = self
            .bounded(
                redis::cmd("EXISTS")
                    .arg(grant_key(key))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(found == 1)
    }

    pub(super) async fn grant_end(&self, key: &str) -> Result<(), StoreError> {
        if validate_grant_key(key).is_err() {
            return Ok(());
        }
        let mut conn = self.conn();
        let _: i64 = self
            .bounded(redis::cmd("DEL").arg(grant_key(key)).query_async(&mut conn))
            .await?;
        Ok(())
    }
}
