//! Coalesced store reads for the access check, without giving up
//! freshness: every request must see the access as it was when the request
//! started (a revocation that returned before it began holds), so a request
//! may share only a read that is sent after it started. As for credentials
//! (`crate::auth::CoalescedReads`): a request joins a pending read only while
//! that read has not been sent; the first request of a flight yields once
//! (letting requests that are already runnable join), then closes the flight
//! and sends the read. Anyone arriving after that starts the next flight.

use crate::store::StoreError;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

/// What a flight hands to everyone in it.
type Shared<V> = Option<Result<Arc<V>, String>>;

/// Concurrent reads of one key, shared while unsent.
pub struct FreshReads<K, V> {
    open: Mutex<HashMap<K, watch::Receiver<Shared<V>>>>,
}

impl<K, V> Default for FreshReads<K, V> {
    fn default() -> Self {
        FreshReads {
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V> FreshReads<K, V> {
    /// The value `read` gives, read after this call began; shared with the
    /// concurrent callers of `key` that joined before it was sent.
    pub async fn read<F, Fut>(&self, key: &K, read: F) -> Result<Arc<V>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        let joined = self.lock().get(key).cloned();
        if let Some(mut receiver) = joined {
            // The flight was still open, so its read is sent after now.
            if let Ok(answer) = receiver.wait_for(Option::is_some).await {
                return match answer.clone().expect("waited for Some") {
                    Ok(value) => Ok(value),
                    Err(reason) => Err(StoreError::Unavailable(reason)),
                };
            }
            // The leader went away without an answer: read alone.
            return read().await.map(Arc::new);
        }
        let (sender, receiver) = watch::channel(None);
        self.lock().insert(key.clone(), receiver);
        let mut flight = Open {
            reads: self,
            key,
            sender: &sender,
            open: true,
        };
        // Let requests that are already runnable join this flight...
        tokio::task::yield_now().await;
        // ...then close it: whoever comes later starts a new one.
        flight.close();
        let result = read().await.map(Arc::new);
        let shared = match &result {
            Ok(value) => Ok(value.clone()),
            Err(err) => Err(err.to_string()),
        };
        let _ = sender.send(Some(shared));
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, watch::Receiver<Shared<V>>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A flight still open to joiners; closed by [`Open::close`] or when the
/// leader's request is dropped while yielding.
struct Open<'a, K: Hash + Eq + Clone, V> {
    reads: &'a FreshReads<K, V>,
    key: &'a K,
    sender: &'a watch::Sender<Shared<V>>,
    open: bool,
}

impl<K: Hash + Eq + Clone, V> Open<'_, K, V> {
    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            let mut open = self.reads.lock();
            if open
                .get(self.key)
                .is_some_and(|r| r.same_channel(&self.sender.subscribe()))
            {
                open.remove(self.key);
            }
        }
    }
}

impl<K: Hash + Eq + Clone, V> Drop for Open<'_, K, V> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn reads_that_start_together_share_one_and_later_ones_read_again() {
        let reads: FreshReads<&str, usize> = FreshReads::default();
        let count = AtomicUsize::new(0);
        let read = || async { Ok::<_, StoreError>(count.fetch_add(1, Ordering::SeqCst)) };
        let (a, b, c) = tokio::join!(
            reads.read(&"k", read),
            reads.read(&"k", read),
            reads.read(&"k", read)
        );
        assert_eq!((*a.unwrap(), *b.unwrap(), *c.unwrap()), (0, 0, 0));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(
            *reads.read(&"k", read).await.unwrap(),
            1,
            "a later read is sent again"
        );
        assert!(reads.lock().is_empty());
    }
}
