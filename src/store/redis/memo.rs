//! Each worker's last decoding of the records the request path reads on
//! every request (a credential, a team, a team's access to a workspace):
//! the record is still read from Redis every time, and decoded again only
//! when its text changed. A JSON decode costs about 30 instructions per
//! byte; comparing the text with the one decoded last costs a few.

use crate::per_worker::NearCache;
use crate::store::{decode_record, StoreError};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The most records each worker keeps the decoding of, per memo.
const CAPACITY: usize = 4096;

/// Decodings of one kind of record, by an id of the record (a slot, a team
/// id): at most one per id, the last one made.
pub struct DecodeMemo<T> {
    near: NearCache<String, Arc<Decoded<T>>>,
}

struct Decoded<T> {
    text: String,
    value: T,
}

impl<T: DeserializeOwned + Clone + Send + Sync + 'static> DecodeMemo<T> {
    pub fn new() -> Self {
        DecodeMemo {
            near: NearCache::new(CAPACITY),
        }
    }

    /// `text`, the record of `id` as just read, decoded: the kept decoding
    /// when the text is the same, else a new one (kept for next time).
    /// `key` names the record's Redis key in the error of a record that
    /// is not what it should be.
    pub fn decode(
        &self,
        id: &str,
        text: &str,
        key: impl FnOnce() -> String,
    ) -> Result<T, StoreError> {
        if let Some(kept) = self.near.get(id) {
            if kept.text == text {
                return Ok(kept.value.clone());
            }
        }
        let value: T = decode_record(&key(), text.as_bytes())?;
        self.near.insert(
            id.to_owned(),
            Arc::new(Decoded {
                text: text.to_owned(),
                value: value.clone(),
            }),
        );
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_decoded_again_when_its_text_changed_and_errors_name_the_key() {
        let memo: DecodeMemo<Vec<u32>> = DecodeMemo::new();
        assert_eq!(memo.decode("a", "[1]", || "k".into()).unwrap(), vec![1]);
        assert_eq!(memo.decode("a", "[1]", || "k".into()).unwrap(), vec![1]);
        assert_eq!(memo.decode("a", "[2]", || "k".into()).unwrap(), vec![2]);
        assert_eq!(memo.decode("b", "[3]", || "k".into()).unwrap(), vec![3]);
        assert_eq!(memo.decode("a", "[2]", || "k".into()).unwrap(), vec![2]);
        match memo.decode("a", "{", || "tg:cred:{a}".into()) {
            Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "tg:cred:{a}"),
            other => panic!("expected a corrupt record, got {other:?}"),
        }
    }
}
