//! A per-worker copy of values that never change (a resource's workspace,
//! a workspace's organization, an organization's owners team), in front of
//! the shared caches: a hit takes only the calling worker's own,
//! uncontended lock, where a hit in a shared `moka` cache records the read
//! in a structure every worker writes to.

use crate::per_worker::PerWorker;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// At most `capacity` entries per worker; when full, a worker's copy is
/// emptied and fills again from the shared cache behind it.
pub struct NearCache<K, V> {
    maps: PerWorker<Mutex<HashMap<K, V>>>,
    capacity: usize,
}

impl<K: Hash + Eq + Send + 'static, V: Clone + Send + 'static> NearCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        NearCache {
            maps: PerWorker::new(|| Mutex::new(HashMap::new())),
            capacity: capacity.max(1),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().get(key).cloned()
    }

    pub fn insert(&self, key: K, value: V) {
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, value);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        self.maps
            .get()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_keeps_what_it_was_given_and_empties_when_full() {
        let near: NearCache<String, u32> = NearCache::new(2);
        near.insert("a".into(), 1);
        near.insert("b".into(), 2);
        assert_eq!((near.get("a"), near.get("b")), (Some(1), Some(2)));
        near.insert("c".into(), 3);
        assert_eq!((near.get("a"), near.get("c")), (None, Some(3)));
    }
}
