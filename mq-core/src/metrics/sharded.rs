//! [`Sharded`]: one metric value split into per-worker shards, summed when scraped.
//!
//! A listener's partition workers run on every core. A value they all update for every
//! record (the success timer, the in-flight gauge) would bounce its cache line between
//! the cores on each update; with one shard per worker each core writes only its own line,
//! and the scrape adds the shards up.

use std::sync::{Arc, Mutex};

/// A value that can be split into shards: created empty, and added into a total.
pub(crate) trait ShardValue: Default + Send + Sync + 'static {
    /// Adds this value into `total` (both may be updated concurrently: atomics only).
    fn add_to(&self, total: &Self);
}

/// A metric value made of a shared part plus live per-worker shards. Clones share them.
#[derive(Debug, Default)]
pub(crate) struct Sharded<T: ShardValue> {
    inner: Arc<Inner<T>>,
}

impl<T: ShardValue> Clone for Sharded<T> {
    fn clone(&self) -> Self {
        Sharded {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner<T> {
    /// Updated directly (rare paths) and where dropped shards are folded in.
    shared: T,
    live: Mutex<Vec<Arc<T>>>,
}

impl<T: ShardValue> Sharded<T> {
    /// The shared part, for updates off the per-record path.
    pub(crate) fn shared(&self) -> &T {
        &self.inner.shared
    }

    /// A new shard for one worker; its updates count in [`Sharded::total`] until it is
    /// dropped, and are folded into the shared part then.
    pub(crate) fn shard(&self) -> Shard<T> {
        let value = Arc::new(T::default());
        self.live().push(value.clone());
        Shard {
            value,
            owner: self.inner.clone(),
        }
    }

    /// The shared part plus every live shard.
    pub(crate) fn total(&self) -> T {
        let total = T::default();
        self.inner.shared.add_to(&total);
        for shard in self.live().iter() {
            shard.add_to(&total);
        }
        total
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Arc<T>>> {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One worker's shard of a [`Sharded`] value.
#[derive(Debug)]
pub(crate) struct Shard<T: ShardValue> {
    value: Arc<T>,
    owner: Arc<Inner<T>>,
}

impl<T: ShardValue> std::ops::Deref for Shard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: ShardValue> Drop for Shard<T> {
    fn drop(&mut self) {
        let mut live = self.owner.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|v| !Arc::ptr_eq(v, &self.value));
        // Folded while the lock is held, so a scrape never counts it twice or not at all.
        self.value.add_to(&self.owner.shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct Count(AtomicU64);

    impl ShardValue for Count {
        fn add_to(&self, total: &Self) {
            total
                .0
                .fetch_add(self.0.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    fn total(s: &Sharded<Count>) -> u64 {
        s.total().0.load(Ordering::Relaxed)
    }

    #[test]
    fn shards_count_while_live_and_after_they_are_dropped() {
        let s = Sharded::<Count>::default();
        s.shared().0.fetch_add(1, Ordering::Relaxed);
        let a = s.shard();
        let b = s.clone().shard();
        a.0.fetch_add(10, Ordering::Relaxed);
        b.0.fetch_add(100, Ordering::Relaxed);
        assert_eq!(total(&s), 111);
        drop(a);
        assert_eq!(total(&s), 111);
        assert_eq!(s.inner.live.lock().unwrap().len(), 1);
        drop(b);
        assert_eq!(total(&s), 111);
        assert!(s.inner.live.lock().unwrap().is_empty());
    }
}
