//! Redrive: what `mq dlt-replay` does with each dead letter, decided without a broker.
//!
//! A dead letter is replayed to the topic it came from (its `kafka_dlt-original-topic`,
//! without a `-retry-N` suffix), without the `kafka_dlt-*`, `mq_dlt-*` and `retry_topic-*`
//! headers, counting its replays in `mq_replay-count`. Filters (exception type, key, time
//! range) pick the records; one that was already replayed `max_replays` times goes to the
//! parking topic `<dlt-topic>-parking` instead of looping through replay once more; one
//! stored without its value cannot be replayed.

use crate::dead_letter::headers as dlt;
use crate::record::{Headers, OutgoingRecord, Record};
use crate::retry_topic;

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

/// The name of the parking topic of `dlt_topic`.
///
/// ```
/// assert_eq!(mq_core::failure::redrive::parking_topic("orders-dlt"), "orders-dlt-parking");
/// ```
pub fn parking_topic(dlt_topic: &str) -> String {
    format!("{dlt_topic}-parking")
}

/// Decides what to do with `record`, read from `dlt_topic`. `Err` when it is not a dead
/// letter (no readable `kafka_dlt-original-topic`).
///
/// ```
/// use mq_core::failure::redrive::{plan, ReplayOptions, Step};
/// use mq_core::record::Record;
/// let mut r = Record::new("orders-dlt", 0, 0, Some(b"k".to_vec()), None);
/// r.headers.insert("kafka_dlt-original-topic", "orders-retry-1");
/// let Ok(Step::Replay(out)) = plan("orders-dlt", &r, &ReplayOptions::default()) else { panic!() };
/// assert_eq!((out.topic.as_str(), out.value.as_deref()), ("orders", None));
/// assert_eq!(out.headers.get_str("mq_replay-count"), Some("1"));
/// ```
pub fn plan(dlt_topic: &str, record: &Record, opts: &ReplayOptions) -> Result<Step, String> {
    let h = &record.headers;
    let original = h
        .get_str(dlt::ORIGINAL_TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            format!(
                "{dlt_topic}/{}@{} has no {} header: not a dead letter",
                record.partition,
                record.offset,
                dlt::ORIGINAL_TOPIC
            )
        })?;
    if let Some(wanted) = &opts.exception {
        let fqcn = h.get_str(dlt::EXCEPTION_FQCN).unwrap_or_default();
        if !fqcn.contains(wanted.as_str()) {
            return Ok(Step::Skip("exception type filtered out"));
        }
    }
    if opts.key.is_some() && record.key != opts.key {
        return Ok(Step::Skip("key filtered out"));
    }
    let at = record.timestamp.unwrap_or(i64::MIN);
    if opts.since_ms.is_some_and(|s| at < s) || opts.until_ms.is_some_and(|u| at >= u) {
        return Ok(Step::Skip("time filtered out"));
    }
    if h.get(dlt::VALUE_DROPPED).is_some() {
        return Ok(Step::Skip("stored without its value"));
    }
    let count = h
        .get_str(REPLAY_COUNT)
        .and_then(|c| c.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if opts.max_replays > 0 && count >= opts.max_replays {
        let mut parked = OutgoingRecord::new(parking_topic(dlt_topic), record.key.clone(), vec![]);
        parked.value = record.value.clone();
        parked.headers = h.clone();
        return Ok(Step::Park(parked));
    }
    let mut headers: Headers = h.clone();
    headers.retain(|name| {
        !(name.starts_with(dlt::PREFIX)
            || name.starts_with("mq_dlt-")
            || name.starts_with(retry_topic::PREFIX))
    });
    headers.insert(REPLAY_COUNT, (count.saturating_add(1)).to_string());
    Ok(Step::Replay(OutgoingRecord {
        topic: retry_topic::base_name(original).to_owned(),
        partition: None,
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(fqcn: &str, key: &[u8], at: i64, replays: Option<&str>) -> Record {
        let mut r = Record::new("o-dlt", 0, 9, Some(key.to_vec()), Some(b"{}".to_vec()));
        r.timestamp = Some(at);
        r.headers.insert("app", "kept");
        r.headers.insert(dlt::ORIGINAL_TOPIC, "o");
        r.headers.insert(dlt::EXCEPTION_FQCN, fqcn);
        r.headers.insert("retry_topic-attempts", [0u8, 0, 0, 3]);
        if let Some(n) = replays {
            r.headers.insert(REPLAY_COUNT, n);
        }
        r
    }

    fn kind(step: &Step) -> &'static str {
        match step {
            Step::Replay(_) => "replay",
            Step::Park(_) => "park",
            Step::Skip(why) => why,
        }
    }

    #[test]
    fn filters_guard_and_stripping() {
        let json = "mq_core::envelope::DecodeError::Json";
        let by_type = ReplayOptions {
            exception: Some("DecodeError".into()),
            ..Default::default()
        };
        let by_key = ReplayOptions {
            key: Some(b"a".to_vec()),
            ..Default::default()
        };
        let by_time = ReplayOptions {
            since_ms: Some(100),
            until_ms: Some(200),
            ..Default::default()
        };
        let none = ReplayOptions::default();
        #[rustfmt::skip]
        let table: &[(Record, &ReplayOptions, &str)] = &[
            (dead(json, b"a", 150, None), &none, "replay"),
            (dead(json, b"a", 150, None), &by_type, "replay"),
            (dead("app::Error", b"a", 150, None), &by_type, "exception type filtered out"),
            (dead(json, b"b", 150, None), &by_key, "key filtered out"),
            (dead(json, b"a", 150, None), &by_time, "replay"),
            (dead(json, b"a", 200, None), &by_time, "time filtered out"),
            (dead(json, b"a", 99, None), &by_time, "time filtered out"),
            (dead(json, b"a", 150, Some("2")), &none, "replay"),
            (dead(json, b"a", 150, Some("3")), &none, "park"),
            (dead(json, b"a", 150, Some("not a number")), &none, "replay"),
        ];
        for (record, opts, want) in table {
            let step = plan("o-dlt", record, opts).unwrap();
            assert_eq!(kind(&step), *want, "{record:?} {opts:?}");
        }
        let Step::Replay(out) = plan("o-dlt", &dead(json, b"a", 1, Some("2")), &none).unwrap()
        else {
            panic!()
        };
        assert_eq!(out.topic, "o");
        assert_eq!(out.headers.get_str("app"), Some("kept"));
        assert_eq!(out.headers.get_str(REPLAY_COUNT), Some("3"));
        assert!(out.headers.get(dlt::EXCEPTION_FQCN).is_none());
        assert!(out.headers.get("retry_topic-attempts").is_none());
        let Step::Park(parked) = plan("o-dlt", &dead(json, b"a", 1, Some("3")), &none).unwrap()
        else {
            panic!()
        };
        assert_eq!(parked.topic, "o-dlt-parking");
        assert_eq!(parked.headers.get_str(dlt::EXCEPTION_FQCN), Some(json));
    }

    #[test]
    fn not_a_dead_letter_and_value_dropped() {
        let r = Record::new("o-dlt", 0, 0, None, Some(b"x".to_vec()));
        assert!(plan("o-dlt", &r, &ReplayOptions::default()).is_err());
        let mut d = dead("E", b"k", 0, None);
        d.headers.insert(dlt::VALUE_DROPPED, "5 bytes: too large");
        assert_eq!(
            plan("o-dlt", &d, &ReplayOptions::default()).unwrap(),
            Step::Skip("stored without its value")
        );
    }
}
