//! Which worker thread this is, and [`PerWorker`]: one value per worker
//! (a Redis connection, idle upstream connections), made on first use on
//! that worker's own thread; [`NearCache`]: each worker's own copy of
//! values that never change. The workers themselves are started by
//! `runtime::workers`.

use std::borrow::Borrow;
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

/// The most workers a config may ask for.
pub const MAX_WORKERS: usize = 256;

thread_local! {
    /// Which worker this thread is; `None` on every other thread.
    static WORKER_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// One worker per CPU.
pub fn default_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
}

/// The index of the worker running on this thread; `None` outside the
/// workers (the CLI, a test's runtime, the control thread).
pub fn current() -> Option<usize> {
    WORKER_INDEX.with(Cell::get)
}

/// Marks the calling thread as worker `index` (called once, by the worker
/// thread itself, before it serves).
pub fn become_worker(index: usize) {
    WORKER_INDEX.with(|worker| worker.set(Some(index)));
}

/// One `T` per worker, each made lazily on first use *on its worker's
/// thread* (so a connection it opens, and the task that drives it, belong to
/// that worker's runtime), plus one shared `T` for code outside the workers.
pub struct PerWorker<T> {
    slots: Box<[OnceLock<T>]>,
    shared: OnceLock<T>,
    make: Box<dyn Fn() -> T + Send + Sync>,
}

impl<T> PerWorker<T> {
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        PerWorker {
            slots: (0..MAX_WORKERS).map(|_| OnceLock::new()).collect(),
            shared: OnceLock::new(),
            make: Box::new(make),
        }
    }

    /// This worker's `T` (made now if this is its first use), or the shared
    /// one outside the workers.
    pub fn get(&self) -> &T {
        let slot = current()
            .and_then(|index| self.slots.get(index))
            .unwrap_or(&self.shared);
        slot.get_or_init(|| (self.make)())
    }
}

/// Each worker's own copy of values that never change (a resource's
/// workspace, an organization's owners team, a credential slot's team), in
/// front of a shared cache or the store: a hit takes only the calling
/// worker's own, uncontended lock, where a hit in a shared `moka` cache
/// records the read in a structure every worker writes to.
///
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

    fn lock(&self) -> MutexGuard<'_, HashMap<K, V>> {
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
    fn a_near_cache_keeps_what_it_was_given_and_empties_when_full() {
        let near: NearCache<String, u32> = NearCache::new(2);
        near.insert("a".into(), 1);
        near.insert("b".into(), 2);
        assert_eq!((near.get("a"), near.get("b")), (Some(1), Some(2)));
        near.insert("c".into(), 3);
        assert_eq!((near.get("a"), near.get("c")), (None, Some(3)));
    }
}
