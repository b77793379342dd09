//! The consumption boundary: *lanes*.
//!
//! A transport (Kafka in `kafka/`, the in-memory broker in `testing`) receives records and
//! pushes each into the lane of its partition (RabbitMQ: of its consumer). A lane is one
//! ordered stream with its own task, offset tracker and epoch; decoding, the handler,
//! retries, dead-lettering, metrics and tracing run inside the lane and never see a
//! transport's types. The transport opens lanes when partitions are assigned and closes
//! them when they are revoked, through a `LaneSet`.
//!
//! Invariants, by construction:
//! - one lane per partition runs records at a time: the lane of a returning partition
//!   starts only after the previous lane of that partition has ended (it was drained, or
//!   killed after the drain timeout);
//! - a lane commits only offsets through which every record it received is done, never a
//!   lower one than before, and nothing once it is fenced;
//! - the transport's poll loop never runs a handler: it only routes records into lanes;
//! - the records buffered for a consumer's lanes stay within its read-ahead budget: a lane
//!   over its share has its source paused until it has worked its buffer down.

// Without the Kafka transport only the in-memory broker opens lanes: closing, fencing and
// recycling are the transports' business.
#![cfg_attr(not(feature = "kafka"), allow(dead_code, unused_imports))]

mod buffer;
mod flow;
mod lane;
mod lane_set;
mod offset_tracker;
pub(crate) mod status;
mod watchdog;

pub(crate) use buffer::{Batch, MAX_BATCH};
pub(crate) use flow::Valve;
pub(crate) use lane::{Lane, LaneSource};
pub(crate) use lane_set::{LaneSet, LaneView};
pub(crate) use watchdog::spawn as spawn_watchdog;

use std::sync::Arc;
use std::time::Duration;

pub use crate::config::Ordering;

/// One lane of a running app, as `RunningApp::lanes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LaneInfo {
    /// The listener.
    pub listener: &'static str,
    /// The partition's topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Increases each time a lane is opened; a partition whose epoch is unchanged has kept
    /// its lane (and its flow) through rebalances.
    pub epoch: u64,
    /// Milliseconds the oldest record now in the handler has been there (0: idle).
    pub in_handler_ms: i64,
    /// Whether the lane is closing (revoked, its in-flight record still running).
    pub closing: bool,
    /// Bytes of records buffered for the lane (counted against its share of
    /// `mq.listener.buffer-bytes`).
    pub buffered_bytes: usize,
    /// The most bytes buffered for the lane while its transport paced itself to it (the
    /// lane kept up: it was neither found slow nor paused); within the pace mark (2 MiB)
    /// plus one poll round whatever the machine's speed.
    pub paced_high_bytes: usize,
    /// Whether its source is paused because the lane is over its share.
    pub paused: bool,
}

impl LaneInfo {
    pub(crate) fn from_view(listener: &'static str, v: LaneView) -> LaneInfo {
        LaneInfo {
            listener,
            topic: v.topic,
            partition: v.partition,
            epoch: v.epoch,
            in_handler_ms: v.in_handler_ms,
            closing: v.closing,
            buffered_bytes: v.buffered_bytes,
            paced_high_bytes: v.paced_high_bytes,
            paused: v.paused,
        }
    }
}

/// Which lane a record belongs to: its topic and partition (a RabbitMQ consumer is a
/// partition of its queue).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct LaneKey {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
}

/// How the lanes of one consumer run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneSettings {
    /// Record ordering inside a lane.
    pub(crate) ordering: Ordering,
    /// Records of one lane taken and not done, in key order.
    pub(crate) max_in_flight: u32,
    /// Bytes of records buffered for all the consumer's lanes together.
    pub(crate) buffer_bytes: usize,
    /// How long a closing lane's in-flight record gets before the lane is killed.
    pub(crate) drain_timeout: Duration,
    /// A record in the handler for longer than this is logged at WARN.
    pub(crate) warn_after: Duration,
}

impl Default for LaneSettings {
    fn default() -> Self {
        LaneSettings {
            ordering: Ordering::Partition,
            max_in_flight: 64,
            buffer_bytes: 32 * 1024 * 1024,
            drain_timeout: Duration::from_secs(30),
            warn_after: Duration::from_secs(60),
        }
    }
}

impl LaneKey {
    /// The lane of `topic`'s `partition`.
    pub(crate) fn of(topic: &str, partition: i32) -> LaneKey {
        LaneKey {
            topic: Arc::from(topic),
            partition,
        }
    }
}

#[cfg(test)]
mod tests;
