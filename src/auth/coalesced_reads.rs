//! Coalesced credential reads for the request path, without giving up
//! freshness.
//!
//! Every request must read its credential from the store *after it
//! started*, so that a regenerate or revoke that returned before the
//! request began is always seen. Concurrent requests with the same token
//! can still share one read, as long as that read is *issued* after each of
//! them started: a request joins a pending read only while the read has not
//! been sent yet. The first request of a flight yields once (letting
//! requests that are already runnable join), then closes the flight to
//! newcomers and sends the read. Anyone arriving after that starts the next
//! flight.
//!
//! A request that names its workspace in the path reads its credential
//! together with the team's access to that workspace
//! ([`Store::credential_with_access`]); such reads are shared only by
//! requests about the same workspace.

use crate::store::{CredentialRead, Store, StoreError};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// What a flight delivers to everyone in it.
type Shared = Result<Arc<CredentialRead>, String>;

/// One read that requests share: its result, set once by the leader, and
/// the joiners waiting for it. A `OnceLock` and one `Notify` rather than a
/// `watch` channel: a flight has one value and is never sent to again, and
/// a channel's set-up and its eight-way wake-up on drop cost about 1k
/// instructions per read, paid by every request that reads alone (every
/// refused token with an id of its own).
#[derive(Default)]
struct Flight {
    /// Set once, before `landed` wakes anyone: the leader's result, or
    /// `None` when the leader went away without one.
    result: OnceLock<Option<Shared>>,
    landed: Notify,
}

/// Coalesces concurrent reads of the same credential slot.
pub struct CoalescedReads {
    store: Arc<dyn Store>,
    /// Flights that have not sent their read yet, by slot (and workspace).
    open: Mutex<HashMap<String, Arc<Flight>>>,
}

impl CoalescedReads {
    pub fn new(store: Arc<dyn Store>) -> Self {
        CoalescedReads {
            store,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The credential in `slot` (with its team's access to `workspace`,
    /// when one is given), read from the store after this call began.
    pub async fn read(
        &self,
        slot: &str,
        workspace: Option<&str>,
    ) -> Result<Arc<CredentialRead>, StoreError> {
        let key = flight_key(slot, workspace);
        // Join the open flight of `key`, or open one: one look-up, under
        // one lock (so two requests never open a flight for one key).
        let (flight, leader_key) = match self.open.lock().expect("flight map lock").entry(key) {
            Entry::Occupied(open) => (open.get().clone(), None),
            Entry::Vacant(vacant) => {
                let flight = Arc::new(Flight::default());
                let key = vacant.key().clone();
                vacant.insert(flight.clone());
                (flight, Some(key))
            }
        };
        let Some(key) = leader_key else {
            // The flight was still open, so its read is sent after now.
            let landed = flight.landed.notified();
            tokio::pin!(landed);
            // Registered before the result is looked at: a result set (and
            // its waiters woken) after this look can not be missed.
            landed.as_mut().enable();
            if flight.result.get().is_none() {
                landed.await;
            }
            return match flight.result.get() {
                Some(Some(Ok(read))) => Ok(read.clone()),
                Some(Some(Err(reason))) => Err(StoreError::Unavailable(reason.clone())),
                // The leader went away without an answer: read on our own.
                Some(None) | None => self.read_now(slot, workspace).await,
            };
        };
        let mut leader = Leader {
            reads: self,
            key,
            flight: &flight,
            open: true,
        };
        // Let requests that are already runnable join this flight...
        tokio::task::yield_now().await;
        // ...then close it: whoever comes later starts a new one.
        leader.close();
        let result = self.read_now(slot, workspace).await;
        // Only joiners hold the flight besides the leader (the map's copy
        // went with `close`): with none, nothing to hand over. They are
        // woken when `leader` is dropped, right after.
        if Arc::strong_count(&flight) > 1 {
            let shared = match &result {
                Ok(read) => Ok(read.clone()),
                Err(err) => Err(err.to_string()),
            };
            let _ = flight.result.set(Some(shared));
        }
        result
    }

    /// Removes the flight of `key` from the open ones, if it is `flight`.
    fn close(&self, key: &str, flight: &Arc<Flight>) {
        let mut open = self.open.lock().expect("flight map lock");
        if let Some(found) = open.remove(key) {
            // Always `flight` (a key's flight is replaced only after its
            // leader removed it); checked so that a slip could never close
            // another request's flight.
            if !Arc::ptr_eq(&found, flight) {
                open.insert(key.to_owned(), found);
            }
        }
    }

    async fn read_now(
        &self,
        slot: &str,
        workspace: Option<&str>,
    ) -> Result<Arc<CredentialRead>, StoreError> {
        let read = match workspace {
            Some(workspace) => self.store.credential_with_access(slot, workspace).await?,
            None => CredentialRead {
                credential: self.store.credential(slot).await?,
                team_facts: None,
            },
        };
        Ok(Arc::new(read))
    }
}

/// The flight map's key: the slot, and the workspace when there is one.
fn flight_key(slot: &str, workspace: Option<&str>) -> String {
    match workspace {
        Some(workspace) => {
            // By hand rather than `format!`: a third of the cost.
            let mut key = String::with_capacity(slot.len() + 1 + workspace.len());
            key.push_str(slot);
            key.push('/');
            key.push_str(workspace);
            key
        }
        None => slot.to_owned(),
    }
}

/// The leader of a flight: closes it to joiners on [`Leader::close`] or
/// when its request is dropped while yielding, and wakes the joiners when
/// it is dropped, with its result set or without (they then read on their
/// own). Joiners are whoever else holds the flight: after `close` nobody
/// new can.
struct Leader<'a> {
    reads: &'a CoalescedReads,
    key: String,
    flight: &'a Arc<Flight>,
    open: bool,
}

impl Leader<'_> {
    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            self.reads.close(&self.key, self.flight);
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.close();
        if Arc::strong_count(self.flight) > 1 {
            // A no-op when the result is set already.
            let _ = self.flight.result.set(None);
            self.flight.landed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::RedisStore;
    use std::time::Duration;

    #[tokio::test]
    async fn an_abandoned_flight_does_not_stay_open() {
        // A store that is never reached: the leader is dropped while yielding.
        let store =
            Arc::new(RedisStore::new("redis://127.0.0.1:1", Duration::from_millis(50)).unwrap());
        let reads = CoalescedReads::new(store);
        let leader = reads.read("AAAAAAAA", None);
        let mut leader = Box::pin(leader);
        // Poll once: it registers the flight and yields.
        assert!(futures_poll_once(&mut leader).await);
        assert_eq!(reads.open.lock().unwrap().len(), 1);
        drop(leader);
        assert!(reads.open.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_joiner_whose_leader_goes_away_reads_on_its_own() {
        // A store that is never reached: the joiner's own read fails fast.
        let store =
            Arc::new(RedisStore::new("redis://127.0.0.1:1", Duration::from_millis(50)).unwrap());
        let reads = CoalescedReads::new(store);
        let mut leader = Box::pin(reads.read("AAAAAAAA", None));
        assert!(futures_poll_once(&mut leader).await);
        let mut joiner = Box::pin(reads.read("AAAAAAAA", None));
        // It joins the open flight and waits for it.
        assert!(futures_poll_once(&mut joiner).await);
        assert_eq!(reads.open.lock().unwrap().len(), 1);
        drop(leader);
        assert!(reads.open.lock().unwrap().is_empty());
        // Woken by the leader's going, it reads itself (and fails: no store).
        let answer = tokio::time::timeout(Duration::from_secs(5), joiner)
            .await
            .expect("the joiner was left waiting");
        assert!(matches!(answer, Err(StoreError::Unavailable(_))));
    }

    /// Polls a future once; true when it is still pending.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: &mut F) -> bool {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx).is_pending())
        })
        .await
    }
}
