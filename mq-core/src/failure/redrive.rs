//! Redrive, the part every transport shares: which dead letters to replay
//! ([`ReplayOptions`]), what becomes of one ([`Step`]), what a replay did
//! ([`ReplayReport`]). Each transport plans a dead letter by its own conventions (Spring
//! Kafka's `kafka_dlt-*` headers, Spring AMQP's `x-original-*`) and moves it with its own
//! client; `mq dlt-replay` drives both.

use std::collections::BTreeMap;

use crate::record::OutgoingRecord;

/// Header counting how often a record was replayed from a dead-letter topic.
pub const REPLAY_COUNT: &str = "mq_replay-count";

/// Which dead letters to replay, and how.
///
/// ```
/// let opts = mq_core::failure::redrive::ReplayOptions::default();
/// assert_eq!(opts.max_replays, 3);
/// assert!(!opts.is_filtered());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Stop after this many records.
    pub limit: Option<usize>,
    /// Only records whose `kafka_dlt-exception-fqcn` contains this text.
    pub exception: Option<String>,
    /// Only records with this key.
    pub key: Option<Vec<u8>>,
    /// Only records dead-lettered at or after this time (epoch ms).
    pub since_ms: Option<i64>,
    /// Only records dead-lettered before this time (epoch ms).
    pub until_ms: Option<i64>,
    /// Print what would be sent; send and commit nothing.
    pub dry_run: bool,
    /// A record replayed this many times goes to `<dlt-topic>-parking` (0: no limit).
    pub max_replays: u32,
    /// Commit past records that cannot be replayed (`--skip-unreplayable`). Without it, a
    /// partition's position stays at its first unreplayable record and the records behind
    /// it are held for a later run (replaying them now would replay them again then).
    pub skip_unreplayable: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            limit: None,
            exception: None,
            key: None,
            since_ms: None,
            until_ms: None,
            dry_run: false,
            max_replays: 3,
            skip_unreplayable: false,
        }
    }
}

impl ReplayOptions {
    /// True when a filter picks records: then progress is not committed (a record left
    /// out now must stay replayable later), and each run reads the whole topic.
    ///
    /// ```
    /// let opts = mq_core::failure::redrive::ReplayOptions { key: Some(b"k".to_vec()), ..Default::default() };
    /// assert!(opts.is_filtered());
    /// ```
    pub fn is_filtered(&self) -> bool {
        self.exception.is_some()
            || self.key.is_some()
            || self.since_ms.is_some()
            || self.until_ms.is_some()
    }
}

/// What becomes of one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Republish this record.
    Replay(OutgoingRecord),
    /// Replayed too often: publish this record (the dead letter as it is) to the parking topic.
    Park(OutgoingRecord),
    /// Leave it: a filter left it out, or it cannot be replayed (the reason).
    Skip(&'static str),
}

/// A dead letter that cannot be replayed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreplayable {
    /// Where it is: `<topic>/<partition>@<offset>`.
    pub at: String,
    /// Why it cannot be replayed (e.g. `no kafka_dlt-original-topic or kafka_original-topic
    /// header: not a dead letter`).
    pub reason: String,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records republished, per destination topic.
    pub replayed: BTreeMap<String, usize>,
    /// Records left alone: filtered out, or stored without their value.
    pub skipped: usize,
    /// Records sent to the parking topic (replayed too often already).
    pub parked: usize,
    /// Dry run: one line per record saying what would be done.
    pub planned: Vec<String>,
    /// Records that cannot be replayed, with the reason (not replayed; committed past only
    /// with [`ReplayOptions::skip_unreplayable`]).
    pub unreplayable: Vec<Unreplayable>,
    /// Records behind an unreplayable one of their partition, left for a later run (the
    /// position cannot move past the unreplayable record without `skip_unreplayable`).
    pub held: usize,
}

impl ReplayReport {
    /// Records republished in all.
    pub fn total(&self) -> usize {
        self.replayed.values().sum()
    }
}
