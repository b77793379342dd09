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
//! The headers are Spring's, with Spring's values and numbering (see
//! [`spring_headers`](super::spring_headers)): `retry_topic-attempts` is the
//! number of the delivery the record is on (2 on `-retry-0`), `retry_topic-backoff-timestamp`
//! a big-endian integer of epoch milliseconds, `retry_topic-original-timestamp` the first
//! record's timestamp; the `kafka_dlt-*` headers name the failure and the record on the
//! source topic, which a later dead letter keeps. A due time is honoured only on a retry
//! topic, and never for longer than the listener's `max-interval`.

use super::dead_letter;
use super::spring_headers::{Original, RetryHeaders};
use crate::failure::info::FailureInfo;
use crate::record::{OutgoingRecord, Record};

/// The number of the delivery the record is on (Spring's numbering: 2 on `-retry-0`);
/// 4-byte big-endian (1 byte from older Spring versions).
pub const ATTEMPTS: &str = "retry_topic-attempts";
/// When the record is due again, epoch millis (big-endian integer, 6 bytes today).
pub const BACKOFF_TIMESTAMP: &str = "retry_topic-backoff-timestamp";
/// The timestamp of the record on the source topic, epoch millis (big-endian integer).
pub const ORIGINAL_TIMESTAMP: &str = "retry_topic-original-timestamp";
/// Prefix of every retry-topic header.
pub const PREFIX: &str = "retry_topic-";

/// The name of the `n`-th retry topic of `topic`.
pub fn name(topic: &str, n: u32) -> String {
    format!("{topic}-retry-{n}")
}

/// The retry topics of `topic` for `max_attempts` attempts (one fewer than attempts).
pub fn all(topic: &str, max_attempts: u32) -> Vec<String> {
    (0..max_attempts.saturating_sub(1))
        .map(|n| name(topic, n))
        .collect()
}

/// `topic` without a `-retry-<n>` suffix: `orders-retry-2` → `orders`; other names as they are.
pub fn base_name(topic: &str) -> &str {
    match topic.rsplit_once("-retry-") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => topic,
    }
}

/// The source topic of `topic` among `sources`: itself, or the topic it is a retry topic of.
pub fn source_of<'a>(topic: &'a str, sources: &[String]) -> &'a str {
    let base = base_name(topic);
    if sources.iter().any(|s| s == base) {
        base
    } else {
        topic
    }
}

/// The number `n` of a retry topic name `<topic>-retry-<n>`.
pub fn index_of(topic: &str) -> Option<u32> {
    let (_, n) = topic.rsplit_once("-retry-")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The record to publish to `retry_topic`, where it will be delivery number `attempt`,
/// due at `due_ms`: the record byte for byte, with Spring's retry and failure headers.
/// `original` is the record on the source topic (kept across hops).
pub fn reschedule(
    record: &Record,
    retry_topic: &str,
    attempt: u32,
    due_ms: i64,
    group: &str,
    info: &FailureInfo,
    original: &Original,
) -> OutgoingRecord {
    let mut out = OutgoingRecord::forward(record, retry_topic, PREFIX);
    out.headers
        .retain(|name| !name.starts_with(dead_letter::headers::PREFIX));
    crate::envelope::carry_event_id(record, &mut out.headers);
    dead_letter::stamp(&mut out.headers, group, info, original);
    RetryHeaders {
        attempt: Some(attempt),
        due_ms: Some(due_ms),
        original_timestamp: Some(original.timestamp),
    }
    .write(&mut out.headers);
    out
}

/// The retry topics of `spec`'s `topic` (none unless its retry mode is `topics`).
pub(crate) fn of_listener(spec: &crate::registry::ListenerSpec, topic: &str) -> Vec<String> {
    match spec.retry.mode {
        crate::config::RetryMode::Topics => all(topic, spec.retry.max_attempts),
        crate::config::RetryMode::Blocking => Vec::new(),
    }
}

/// Every topic `spec`'s consumers subscribe to: its topics, plus their retry topics in
/// retry-topics mode.
pub(crate) fn subscriptions(spec: &crate::registry::ListenerSpec) -> Vec<String> {
    let mut all = spec.topics.clone();
    for t in &spec.topics {
        all.extend(of_listener(spec, t));
    }
    all
}

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn name() {
        assert_eq!(
            crate::transport::kafka::retry_topic::name("orders", 0),
            "orders-retry-0"
        );
    }

    #[test]
    fn all() {
        assert_eq!(
            crate::transport::kafka::retry_topic::all("t", 3),
            ["t-retry-0", "t-retry-1"]
        );
    }

    #[test]
    fn base_name() {
        assert_eq!(
            crate::transport::kafka::retry_topic::base_name("orders-retry-2"),
            "orders"
        );
        assert_eq!(
            crate::transport::kafka::retry_topic::base_name("orders-retry-x"),
            "orders-retry-x"
        );
        assert_eq!(
            crate::transport::kafka::retry_topic::base_name("orders"),
            "orders"
        );
    }

    #[test]
    fn source_of() {
        let sources = ["orders".to_string()];
        assert_eq!(
            crate::transport::kafka::retry_topic::source_of("orders-retry-1", &sources),
            "orders"
        );
        assert_eq!(
            crate::transport::kafka::retry_topic::source_of("orders", &sources),
            "orders"
        );
    }

    #[test]
    fn index_of() {
        assert_eq!(
            crate::transport::kafka::retry_topic::index_of("orders-retry-2"),
            Some(2)
        );
        assert_eq!(
            crate::transport::kafka::retry_topic::index_of("orders"),
            None
        );
        assert_eq!(
            crate::transport::kafka::retry_topic::index_of("orders-retry-99999999999"),
            None
        );
    }

    #[test]
    fn reschedule() {
        use crate::failure::FailureInfo;
        use crate::transport::kafka::spring_headers::Original;
        let r = crate::record::Record::new("t", 0, 0, Some(b"k".to_vec()), Some(b"v".to_vec()));
        let info = FailureInfo {
            exception_type: "E".into(),
            cause_type: None,
            message: "m".into(),
            trace: "E: m".into(),
        };
        let out = crate::transport::kafka::retry_topic::reschedule(
            &r,
            "t-retry-0",
            2,
            99,
            "g",
            &info,
            &Original::of(&r),
        );
        assert_eq!(out.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(
            out.headers.get("retry_topic-attempts"),
            Some(&2u32.to_be_bytes()[..])
        );
        assert_eq!(
            out.headers.get("retry_topic-backoff-timestamp"),
            Some(&[99u8][..])
        );
    }
}
