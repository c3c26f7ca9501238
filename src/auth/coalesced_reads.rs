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
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What a flight delivers to everyone in it.
type Shared = Result<Arc<CredentialRead>, String>;

/// Coalesces concurrent reads of the same credential slot.
pub struct CoalescedReads {
    store: Arc<dyn Store>,
    /// Flights that have not sent their read yet, by slot (and workspace).
    open: Mutex<HashMap<String, watch::Receiver<Option<Shared>>>>,
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
        let key = match workspace {
            Some(workspace) => format!("{slot}/{workspace}"),
            None => slot.to_owned(),
        };
        let joined = self
            .open
            .lock()
            .expect("flight map lock")
            .get(&key)
            .cloned();
        if let Some(mut receiver) = joined {
            // The flight was still open, so its read is sent after now.
            if let Ok(value) = receiver.wait_for(Option::is_some).await {
                return match value.clone().expect("waited for Some") {
                    Ok(read) => Ok(read),
                    Err(reason) => Err(StoreError::Unavailable(reason)),
                };
            }
            // The leader went away without an answer: read on our own.
            return self.read_now(slot, workspace).await;
        }
        let (sender, receiver) = watch::channel(None);
        self.open
            .lock()
            .expect("flight map lock")
            .insert(key.clone(), receiver);
        let mut flight = OpenFlight {
            reads: self,
            key: &key,
            sender: &sender,
            open: true,
        };
        // Let requests that are already runnable join this flight...
        tokio::task::yield_now().await;
        // ...then close it: whoever comes later starts a new one.
        flight.close();
        let result = self.read_now(slot, workspace).await;
        let shared = match &result {
            Ok(read) => Ok(read.clone()),
            Err(err) => Err(err.to_string()),
        };
        let _ = sender.send(Some(shared));
        result
    }

    /// Removes the flight of `key` from the open ones, if it is `sender`'s.
    fn close(&self, key: &str, sender: &watch::Sender<Option<Shared>>) {
        let mut open = self.open.lock().expect("flight map lock");
        if open
            .get(key)
            .is_some_and(|r| r.same_channel(&sender.subscribe()))
        {
            open.remove(key);
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

/// A flight still open to joiners; closed on [`OpenFlight::close`] or when
/// the leader's request is dropped while yielding.
struct OpenFlight<'a> {
    reads: &'a CoalescedReads,
    key: &'a str,
    sender: &'a watch::Sender<Option<Shared>>,
    open: bool,
}

impl OpenFlight<'_> {
    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            self.reads.close(self.key, self.sender);
        }
    }
}

impl Drop for OpenFlight<'_> {
    fn drop(&mut self) {
        self.close();
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

    /// Polls a future once; true when it is still pending.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: &mut F) -> bool {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx).is_pending())
        })
        .await
    }
}
