//! What a running consumer (a Kafka consumer, a RabbitMQ queue consumer) shows of itself:
//! one [`ConsumerStatus`] each, the app's [`Statuses`], read by health checks, the actuator
//! and tests.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
use std::sync::{Arc, OnceLock};

use super::LaneSet;

/// Live facts about one consumer, read by health checks and tests.
#[derive(Debug, Default)]
pub(crate) struct ConsumerStatus {
    /// Partitions assigned right now.
    pub(crate) assigned: AtomicUsize,
    /// Unix millis of the last main-queue poll.
    pub(crate) last_poll_ms: AtomicI64,
    /// Rebalances seen.
    pub(crate) rebalances: AtomicUsize,
    /// Joined its group: set by the first assignment (even an empty one). A later
    /// rebalance is not an outage, so revocations do not clear it.
    pub(crate) member: AtomicBool,
    /// The consumer's lanes (set once the consumer exists).
    pub(crate) lanes: OnceLock<Arc<LaneSet>>,
    /// Why the consumer stopped for good (a fatal error: fenced, not authorized), once it
    /// has. From then on it commits nothing.
    stopped: OnceLock<String>,
}

impl ConsumerStatus {
    /// Marks the consumer stopped for good, for `reason`; true the first time.
    pub(crate) fn stop(&self, reason: String) -> bool {
        self.stopped.set(reason).is_ok()
    }

    /// Why the consumer stopped for good, if it has.
    pub(crate) fn stopped(&self) -> Option<&str> {
        self.stopped.get().map(String::as_str)
    }
}

/// The started consumers of the listeners (filled once they start, so empty while a broker
/// is down at startup).
pub(crate) type Statuses = Arc<std::sync::RwLock<Vec<(&'static str, Arc<ConsumerStatus>)>>>;
