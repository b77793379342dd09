//! The in-memory inbox: identities of handled events in a map, for tests, `TestApp` and
//! the embedded demo. It deduplicates redeliveries within one process only and forgets
//! everything on restart; its "transaction" covers the dedup record, not the handler's
//! own writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Claim, Identity, Pending, StoreError};

#[derive(Debug, Clone, Copy)]
enum Entry {
    /// A handler of this event is running (its claim is not committed yet).
    InFlight,
    /// Handled at this instant.
    Done(Instant),
}

#[derive(Default)]
struct Shared {
    entries: Mutex<HashMap<Identity, Entry>>,
    /// Wakes claims waiting on an in-flight identity when it commits or rolls back.
    changed: Notify,
}

/// The in-memory store. Clones share the map.
///
/// ```
/// let store = mq_core::inbox::MemoryStore::default();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("identities", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// Identities recorded (handled or in flight).
    ///
    /// ```
    /// assert_eq!(mq_core::inbox::MemoryStore::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is recorded.
    ///
    /// ```
    /// assert!(mq_core::inbox::MemoryStore::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Identity, Entry>> {
        self.shared
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records `identity` as in flight, or says it was handled within `window`; waits while
    /// another handler of the same event is running.
    pub(crate) async fn claim(&self, identity: Identity, window: Duration) -> Claim {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Register before looking, so a change between the look and the wait wakes us.
            notified.as_mut().enable();
            {
                let mut entries = self.lock();
                match entries.get(&identity) {
                    Some(Entry::Done(at)) if at.elapsed() < window => return Claim::Duplicate,
                    Some(Entry::InFlight) => {}
                    _ => {
                        entries.insert(identity.clone(), Entry::InFlight);
                        return Claim::New(Pending::Memory(MemoryClaim {
                            store: self.clone(),
                            identity: Some(identity),
                        }));
                    }
                }
            }
            notified.await;
        }
    }

    /// Forgets identities handled longer than `window` ago; how many.
    pub(crate) fn purge(&self, window: Duration) -> u64 {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| !matches!(e, Entry::Done(at) if at.elapsed() >= window));
        (before - entries.len()) as u64
    }
}

/// An in-flight claim: committing marks it handled, dropping it forgets it.
pub(crate) struct MemoryClaim {
    store: MemoryStore,
    identity: Option<Identity>,
}

impl MemoryClaim {
    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        if let Some(identity) = self.identity.take() {
            self.store
                .lock()
                .insert(identity, Entry::Done(Instant::now()));
            self.store.shared.changed.notify_waiters();
        }
        Ok(())
    }
}

impl Drop for MemoryClaim {
    fn drop(&mut self) {
        if let Some(identity) = self.identity.take() {
            self.store.lock().remove(&identity);
            self.store.shared.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: &str) -> Identity {
        Identity {
            group: "g".into(),
            source: "/s".into(),
            id: n.into(),
        }
    }

    #[tokio::test]
    async fn committed_is_duplicate_rolled_back_is_not() {
        let store = MemoryStore::default();
        let w = Duration::from_secs(60);
        let Claim::New(p) = store.claim(id("1"), w).await else {
            panic!("first claim is new")
        };
        p.commit().await.unwrap();
        assert!(matches!(store.claim(id("1"), w).await, Claim::Duplicate));
        let Claim::New(p) = store.claim(id("2"), w).await else {
            panic!("new")
        };
        drop(p); // the handler failed
        assert!(matches!(store.claim(id("2"), w).await, Claim::New(_)));
    }

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first() {
        let store = MemoryStore::default();
        let w = Duration::from_secs(60);
        let Claim::New(p) = store.claim(id("1"), w).await else {
            panic!("new")
        };
        let other = tokio::spawn({
            let store = store.clone();
            async move { matches!(store.claim(id("1"), w).await, Claim::Duplicate) }
        });
        tokio::task::yield_now().await;
        assert!(!other.is_finished());
        p.commit().await.unwrap();
        assert!(other.await.unwrap(), "the waiting claim sees the commit");
    }

    #[tokio::test]
    async fn identities_expire_after_the_window() {
        let store = MemoryStore::default();
        let Claim::New(p) = store.claim(id("1"), Duration::ZERO).await else {
            panic!("new")
        };
        p.commit().await.unwrap();
        assert!(matches!(
            store.claim(id("1"), Duration::ZERO).await,
            Claim::New(_)
        ));
        assert_eq!(store.purge(Duration::ZERO), 0, "the new claim is in flight");
    }
}
