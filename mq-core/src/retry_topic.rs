//! Non-blocking retries through retry topics (Spring's `@RetryableTopic`).
//!
//! With `retry(mode = "topics")`, a record whose handler failed with a transient error is
//! not retried in place: it is republished, byte for byte, to `<topic>-retry-<n>` (n = 0
//! for the first retry) with two headers, and its offset on the source topic is committed.
//! The listener also reads the retry topics; a partition worker that meets a record whose
//! due time has not come waits for it, which holds back only that retry partition (the
//! same effect as Spring pausing the partition; the consumer stays in its group because
//! its main queue is polled by its own task). After the last attempt the record goes to
//! the dead-letter topic of the source topic.
//!
//! Header values are big-endian binary like Spring's dead-letter headers: attempts as 4
//! bytes, the due time as 8 bytes of epoch milliseconds.

use crate::record::{OutgoingRecord, Record};

/// Attempts made so far (4-byte big-endian).
pub const ATTEMPTS: &str = "retry_topic-attempts";
/// When the record is due again, epoch millis (8-byte big-endian).
pub const BACKOFF_TIMESTAMP: &str = "retry_topic-backoff-timestamp";
/// Prefix of every retry-topic header.
pub const PREFIX: &str = "retry_topic-";

/// The name of the `n`-th retry topic of `topic`.
///
/// ```
/// assert_eq!(mq_core::retry_topic::name("orders", 0), "orders-retry-0");
/// ```
pub fn name(topic: &str, n: u32) -> String {
    format!("{topic}-retry-{n}")
}

/// The retry topics of `topic` for `max_attempts` attempts (one fewer than attempts).
///
/// ```
/// assert_eq!(mq_core::retry_topic::all("t", 3), ["t-retry-0", "t-retry-1"]);
/// ```
pub fn all(topic: &str, max_attempts: u32) -> Vec<String> {
    (0..max_attempts.saturating_sub(1))
        .map(|n| name(topic, n))
        .collect()
}

/// `topic` without a `-retry-<n>` suffix: `orders-retry-2` → `orders`; other names as they are.
///
/// ```
/// assert_eq!(mq_core::retry_topic::base_name("orders-retry-2"), "orders");
/// assert_eq!(mq_core::retry_topic::base_name("orders-retry-x"), "orders-retry-x");
/// assert_eq!(mq_core::retry_topic::base_name("orders"), "orders");
/// ```
pub fn base_name(topic: &str) -> &str {
    match topic.rsplit_once("-retry-") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => topic,
    }
}

/// The source topic of `topic` among `sources`: itself, or the topic it is a retry topic of.
///
/// ```
/// let sources = ["orders".to_string()];
/// assert_eq!(mq_core::retry_topic::source_of("orders-retry-1", &sources), "orders");
/// assert_eq!(mq_core::retry_topic::source_of("orders", &sources), "orders");
/// ```
pub fn source_of<'a>(topic: &'a str, sources: &[String]) -> &'a str {
    let base = base_name(topic);
    if sources.iter().any(|s| s == base) {
        base
    } else {
        topic
    }
}

/// Attempts already made on a record read from a retry topic (0 on a source topic).
///
/// ```
/// let mut r = mq_core::record::Record::new("t-retry-0", 0, 0, None, None);
/// assert_eq!(mq_core::retry_topic::prior_attempts(&r), 0);
/// r.headers.insert("retry_topic-attempts", 2u32.to_be_bytes());
/// assert_eq!(mq_core::retry_topic::prior_attempts(&r), 2);
/// ```
pub fn prior_attempts(record: &Record) -> u32 {
    record
        .headers
        .get(ATTEMPTS)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map_or(0, u32::from_be_bytes)
}

/// When the record is due, epoch millis (`None`: now).
///
/// ```
/// let mut r = mq_core::record::Record::new("t-retry-0", 0, 0, None, None);
/// r.headers.insert("retry_topic-backoff-timestamp", 5i64.to_be_bytes());
/// assert_eq!(mq_core::retry_topic::due_millis(&r), Some(5));
/// ```
pub fn due_millis(record: &Record) -> Option<i64> {
    record
        .headers
        .get(BACKOFF_TIMESTAMP)
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(i64::from_be_bytes)
}

/// The record to publish to `retry_topic` after `attempts` attempts, due at `due_millis`.
///
/// ```
/// let r = mq_core::record::Record::new("t", 0, 0, Some(b"k".to_vec()), Some(b"v".to_vec()));
/// let out = mq_core::retry_topic::reschedule(&r, "t-retry-0", 1, 99);
/// assert_eq!(out.value, b"v");
/// assert_eq!(out.headers.get("retry_topic-attempts"), Some(&1u32.to_be_bytes()[..]));
/// ```
pub fn reschedule(
    record: &Record,
    retry_topic: &str,
    attempts: u32,
    due_millis: i64,
) -> OutgoingRecord {
    let mut out = OutgoingRecord::forward(record, retry_topic, PREFIX);
    out.headers.append(ATTEMPTS, attempts.to_be_bytes());
    out.headers
        .append(BACKOFF_TIMESTAMP, due_millis.to_be_bytes());
    out
}
