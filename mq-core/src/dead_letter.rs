//! Dead-letter records, with the headers Spring Kafka's `DeadLetterPublishingRecoverer`
//! writes, so Spring tooling reads `mq`'s dead letters and the other way round.
//!
//! The original key, value (a tombstone stays null) and headers are kept byte for byte;
//! earlier `kafka_dlt-*` headers are replaced, so a record dead-lettered twice does not
//! grow. As in Spring, partition, offset and timestamp are big-endian binary (4, 8 and 8
//! bytes), and a record that comes from a retry topic keeps the coordinates of the record
//! on the source topic (see [`build_from`]).

use crate::failure::spring_headers::Original;
use crate::record::{Headers, OutgoingRecord, Record};

/// Header names (Spring's `KafkaHeaders.DLT_*`).
pub mod headers {
    /// Prefix of every dead-letter header.
    pub const PREFIX: &str = "kafka_dlt-";
    /// Type of the error.
    pub const EXCEPTION_FQCN: &str = "kafka_dlt-exception-fqcn";
    /// Type of the error's cause, when there is one.
    pub const EXCEPTION_CAUSE_FQCN: &str = "kafka_dlt-exception-cause-fqcn";
    /// The error message.
    pub const EXCEPTION_MESSAGE: &str = "kafka_dlt-exception-message";
    /// The error and its causes, capped at [`super::STACKTRACE_CAP`] bytes.
    pub const EXCEPTION_STACKTRACE: &str = "kafka_dlt-exception-stacktrace";
    /// Topic the record was read from.
    pub const ORIGINAL_TOPIC: &str = "kafka_dlt-original-topic";
    /// Partition (4-byte big-endian).
    pub const ORIGINAL_PARTITION: &str = "kafka_dlt-original-partition";
    /// Offset (8-byte big-endian).
    pub const ORIGINAL_OFFSET: &str = "kafka_dlt-original-offset";
    /// Timestamp in ms (8-byte big-endian).
    pub const ORIGINAL_TIMESTAMP: &str = "kafka_dlt-original-timestamp";
    /// `CreateTime`, `LogAppendTime` or `NoTimestampType`: the record's own.
    pub const ORIGINAL_TIMESTAMP_TYPE: &str = "kafka_dlt-original-timestamp-type";
    /// The consumer group that gave up.
    pub const ORIGINAL_CONSUMER_GROUP: &str = "kafka_dlt-original-consumer-group";
    /// `mq`'s own: set when the dead letter had to be published without its value (the
    /// broker refused the full copy); says how large the value was and why it went.
    pub const VALUE_DROPPED: &str = "mq_dlt-value-dropped";
    /// `mq`'s own: the original headers had to be left out too (their count).
    pub const HEADERS_DROPPED: &str = "mq_dlt-headers-dropped";
    /// `mq`'s own: the key had to be left out too (its size in bytes).
    pub const KEY_DROPPED: &str = "mq_dlt-key-dropped";
}

/// Longest stack-trace header, in bytes.
pub const STACKTRACE_CAP: usize = 8 * 1024;

/// Why a record is being dead-lettered.
///
/// ```
/// let f = mq_core::dead_letter::FailureInfo {
///     exception_type: "DecodeError::Json".into(),
///     cause_type: None,
///     message: "expected value at line 1".into(),
///     trace: "DecodeError::Json: expected value at line 1".into(),
/// };
/// assert!(f.cause_type.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct FailureInfo {
    /// Error type name.
    pub exception_type: String,
    /// Type name of the underlying cause.
    pub cause_type: Option<String>,
    /// Error message.
    pub message: String,
    /// Error and causes, one per line.
    pub trace: String,
}

impl FailureInfo {
    /// What a decode error says: type `mq_core::envelope::DecodeError::<Kind>`.
    ///
    /// ```
    /// let info = mq_core::dead_letter::FailureInfo::of_decode(&mq_core::envelope::DecodeError::Empty);
    /// assert_eq!(info.exception_type, "mq_core::envelope::DecodeError::Empty");
    /// ```
    pub fn of_decode(e: &crate::envelope::DecodeError) -> Self {
        FailureInfo {
            exception_type: format!("mq_core::envelope::{}", e.kind()),
            cause_type: None,
            message: e.to_string(),
            trace: format!("{}: {e}", e.kind()),
        }
    }

    /// What a handler's error says: its Rust type, message, and causes one per line.
    ///
    /// ```
    /// let e = mq_core::HandlerError::transient(std::fmt::Error);
    /// let info = mq_core::dead_letter::FailureInfo::of_handler(&e);
    /// assert_eq!(info.exception_type, "core::fmt::Error");
    /// ```
    pub fn of_handler(error: &crate::HandlerError) -> Self {
        let mut trace = format!("{}: {error}", error.type_name());
        for cause in error.causes() {
            trace.push_str("\nCaused by: ");
            trace.push_str(&cause);
        }
        FailureInfo {
            exception_type: error.type_name().to_owned(),
            cause_type: error
                .source()
                .source()
                .map(|_| "std::error::Error".to_owned()),
            message: error.to_string(),
            trace,
        }
    }
}

/// Builds the dead-letter record for `record`, read by `group`, bound for `dlt_topic`,
/// naming `record` itself as the original.
///
/// ```
/// use mq_core::dead_letter::{build, headers, FailureInfo};
/// use mq_core::record::Record;
/// let mut r = Record::new("orders", 3, 42, Some(b"k".to_vec()), Some(b"\xff".to_vec()));
/// r.headers.insert("kafka_dlt-exception-message", "old");
/// let info = FailureInfo { exception_type: "E".into(), cause_type: None, message: "new".into(), trace: "E: new".into() };
/// let out = build(&r, "orders-dlt", "g", &info);
/// assert_eq!(out.value.as_deref(), Some(&b"\xff"[..]));
/// assert_eq!(out.headers.get(headers::ORIGINAL_OFFSET), Some(&42i64.to_be_bytes()[..]));
/// assert_eq!(out.headers.iter().filter(|h| h.key == headers::EXCEPTION_MESSAGE).count(), 1);
/// ```
pub fn build(record: &Record, dlt_topic: &str, group: &str, info: &FailureInfo) -> OutgoingRecord {
    build_from(record, dlt_topic, group, info, &Original::of(record))
}

/// [`build`] naming `original` as where the record was first read: a record that went
/// through retry topics is dead-lettered with its source topic's partition and offset,
/// as Spring does.
///
/// ```
/// use mq_core::dead_letter::{build_from, headers, FailureInfo};
/// use mq_core::failure::spring_headers::Original;
/// use mq_core::record::Record;
/// let source = Record::new("orders", 1, 7, None, Some(b"v".to_vec()));
/// let retried = Record::new("orders-retry-0", 0, 3, None, Some(b"v".to_vec()));
/// let info = FailureInfo { exception_type: "E".into(), cause_type: None, message: "m".into(), trace: "E: m".into() };
/// let out = build_from(&retried, "orders-dlt", "g", &info, &Original::of(&source));
/// assert_eq!(out.headers.get_str(headers::ORIGINAL_TOPIC), Some("orders"));
/// assert_eq!(out.headers.get(headers::ORIGINAL_OFFSET), Some(&7i64.to_be_bytes()[..]));
/// ```
pub fn build_from(
    record: &Record,
    dlt_topic: &str,
    group: &str,
    info: &FailureInfo,
    original: &Original,
) -> OutgoingRecord {
    let mut out = OutgoingRecord::forward(record, dlt_topic, headers::PREFIX);
    out.headers.retain(|name| !name.starts_with("mq_dlt-"));
    crate::envelope::carry_event_id(record, &mut out.headers);
    stamp(&mut out.headers, group, info, original);
    out
}

/// Writes the exception and original-record headers (Spring's `kafka_dlt-*`), replacing
/// earlier ones. Retry-topic records carry them too, as Spring's do.
pub(crate) fn stamp(h: &mut Headers, group: &str, info: &FailureInfo, original: &Original) {
    h.insert(headers::EXCEPTION_FQCN, info.exception_type.as_bytes());
    match &info.cause_type {
        Some(cause) => h.insert(headers::EXCEPTION_CAUSE_FQCN, cause.as_bytes()),
        None => h.remove(headers::EXCEPTION_CAUSE_FQCN),
    }
    h.insert(headers::EXCEPTION_MESSAGE, info.message.as_bytes());
    h.insert(
        headers::EXCEPTION_STACKTRACE,
        truncate(&info.trace, STACKTRACE_CAP).as_bytes(),
    );
    original.write(h);
    h.insert(headers::ORIGINAL_CONSUMER_GROUP, group.as_bytes());
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Republishes the records of `dlt_topic` to the topics they came from (their
/// `kafka_dlt-original-topic`, with any `-retry-N` suffix removed), without the
/// `kafka_dlt-*`, `mq_dlt-*` and `retry_topic-*` headers; key, value (a tombstone stays
/// null) and other headers byte for byte.
///
/// Progress is committed under the group `<mq.application.name>-dlt-replay` after each
/// acknowledged republication, so a second run replays only what arrived since. The replay
/// stops at the end of the topic as it was when it started, or after `limit` records.
/// The `mq` command wraps it: `mq dlt-replay <dlt-topic> [--limit N]`. For filters, dry
/// runs and the parking guard, see [`replay_with`].
///
/// ```no_run
/// # async fn f() -> Result<(), mq_core::Error> {
/// let config = mq_core::Config::load()?;
/// let report = mq_core::dead_letter::replay(&config, "orders-dlt", None).await?;
/// println!("replayed {} records", report.total());
/// # Ok(()) }
/// ```
#[cfg(feature = "kafka")]
pub async fn replay(
    config: &crate::Config,
    dlt_topic: &str,
    limit: Option<usize>,
) -> Result<ReplayReport, crate::Error> {
    let opts = crate::failure::redrive::ReplayOptions {
        limit,
        ..Default::default()
    };
    replay_with(config, dlt_topic, &opts).await
}

/// [`replay`] with [`ReplayOptions`](crate::failure::redrive::ReplayOptions): filters by
/// exception type, key and time range, a dry run that sends nothing and reports what it
/// would do, and the guard that parks a record replayed `max_replays` times in
/// `<dlt-topic>-parking`. With a filter or a dry run, progress is not committed.
///
/// `dlt_topic` may also name a queue listener's RabbitMQ dead-letter queue as
/// `amqp:///<queue>.dlq`: its messages go back to `<queue>` (see
/// [`rabbitmq::redrive`](crate::rabbitmq::redrive); parked ones to `<queue>.dlq.parking`).
///
/// ```no_run
/// # async fn f() -> Result<(), mq_core::Error> {
/// use mq_core::failure::redrive::ReplayOptions;
/// let config = mq_core::Config::load()?;
/// let opts = ReplayOptions { exception: Some("DecodeError".into()), dry_run: true, ..Default::default() };
/// for line in mq_core::dead_letter::replay_with(&config, "orders-dlt", &opts).await?.planned {
///     println!("{line}");
/// }
/// # Ok(()) }
/// ```
#[cfg(feature = "kafka")]
pub async fn replay_with(
    config: &crate::Config,
    dlt_topic: &str,
    opts: &crate::failure::redrive::ReplayOptions,
) -> Result<ReplayReport, crate::Error> {
    if let Some(dlq) = crate::rabbitmq::destination::Exchange::parse(dlt_topic, None)
        .filter(|d| d.exchange.is_empty())
    {
        // `amqp:///<queue>.dlq`: a queue listener's dead-letter queue.
        return crate::rabbitmq::replay::replay(config, &dlq.routing_key, opts).await;
    }
    crate::kafka::replay::replay(config, dlt_topic, opts).await
}

#[cfg(feature = "kafka")]
pub use crate::kafka::replay::ReplayReport;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacktrace_is_capped_on_a_char_boundary() {
        let long = "é".repeat(STACKTRACE_CAP);
        let cut = truncate(&long, STACKTRACE_CAP);
        assert!(cut.len() <= STACKTRACE_CAP);
        assert!(cut.len() > STACKTRACE_CAP - 2);
    }

    #[test]
    fn dead_lettering_twice_does_not_grow() {
        let r = Record::new("t", 0, 1, None, Some(b"v".to_vec()));
        let info = FailureInfo {
            exception_type: "E".into(),
            cause_type: Some("C".into()),
            message: "m".into(),
            trace: "t".into(),
        };
        let once = build(&r, "t-dlt", "g", &info);
        let mut again = Record::new("t-dlt", 0, 0, None, once.value.clone());
        again.headers = once.headers.clone();
        let twice = build(&again, "t-dlt-dlt", "g", &info);
        assert_eq!(once.headers.len(), twice.headers.len());
    }

    #[test]
    fn tombstones_stay_null_and_timestamp_type_is_the_records() {
        let mut r = Record::new("customers", 0, 5, Some(b"cust-42".to_vec()), None);
        r.timestamp = Some(1_700_000_000_000);
        r.timestamp_type = crate::record::TimestampType::LogAppendTime;
        let info = FailureInfo {
            exception_type: "mq_core::envelope::DecodeError::Empty".into(),
            cause_type: None,
            message: "record has no value".into(),
            trace: String::new(),
        };
        let out = build(&r, "customers-dlt", "g", &info);
        assert_eq!(out.value, None);
        assert_eq!(out.key.as_deref(), Some(&b"cust-42"[..]));
        assert_eq!(
            out.headers.get_str(headers::ORIGINAL_TIMESTAMP_TYPE),
            Some("LogAppendTime")
        );
        assert_eq!(
            out.headers.get(headers::ORIGINAL_TIMESTAMP),
            Some(&1_700_000_000_000i64.to_be_bytes()[..])
        );
        // No timestamp at all: Spring's -1 and NoTimestampType.
        let bare = build(&Record::new("t", 0, 0, None, None), "t-dlt", "g", &info);
        assert_eq!(
            bare.headers.get(headers::ORIGINAL_TIMESTAMP),
            Some(&(-1i64).to_be_bytes()[..])
        );
        assert_eq!(
            bare.headers.get_str(headers::ORIGINAL_TIMESTAMP_TYPE),
            Some("NoTimestampType")
        );
    }
}
