//! Dead-letter records, with the headers Spring Kafka's `DeadLetterPublishingRecoverer`
//! writes, so Spring tooling reads `mq`'s dead letters and the other way round.
//!
//! The original key, value (a tombstone stays null) and headers are kept byte for byte;
//! earlier `kafka_dlt-*` headers are replaced, so a record dead-lettered twice does not
//! grow. As in Spring, partition, offset and timestamp are big-endian binary (4, 8 and 8
//! bytes), and a record that comes from a retry topic keeps the coordinates of the record
//! on the source topic (see [`build_from`]).

use super::spring_headers::Original;
use crate::failure::info::{truncate, FailureInfo, STACKTRACE_CAP};
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
    /// The error and its causes, capped at 8 KiB (`STACKTRACE_CAP`).
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

/// Builds the dead-letter record for `record`, read by `group`, bound for `dlt_topic`,
/// naming `record` itself as the original.
#[cfg(test)]
pub(crate) fn build(
    record: &Record,
    dlt_topic: &str,
    group: &str,
    info: &FailureInfo,
) -> OutgoingRecord {
    build_from(record, dlt_topic, group, info, &Original::of(record))
}

/// [`build`] naming `original` as where the record was first read: a record that went
/// through retry topics is dead-lettered with its source topic's partition and offset,
/// as Spring does.
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

#[cfg(test)]
mod tests {
    use super::*;

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

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn build() {
        use crate::record::Record;
        use crate::transport::kafka::dead_letter::{build, headers, FailureInfo};
        let mut r = Record::new("orders", 3, 42, Some(b"k".to_vec()), Some(b"\xff".to_vec()));
        r.headers.insert("kafka_dlt-exception-message", "old");
        let info = FailureInfo {
            exception_type: "E".into(),
            cause_type: None,
            message: "new".into(),
            trace: "E: new".into(),
        };
        let out = build(&r, "orders-dlt", "g", &info);
        assert_eq!(out.value.as_deref(), Some(&b"\xff"[..]));
        assert_eq!(
            out.headers.get(headers::ORIGINAL_OFFSET),
            Some(&42i64.to_be_bytes()[..])
        );
        assert_eq!(
            out.headers
                .iter()
                .filter(|h| h.key == headers::EXCEPTION_MESSAGE)
                .count(),
            1
        );
    }

    #[test]
    fn build_from() {
        use crate::record::Record;
        use crate::transport::kafka::dead_letter::{build_from, headers, FailureInfo};
        use crate::transport::kafka::spring_headers::Original;
        let source = Record::new("orders", 1, 7, None, Some(b"v".to_vec()));
        let retried = Record::new("orders-retry-0", 0, 3, None, Some(b"v".to_vec()));
        let info = FailureInfo {
            exception_type: "E".into(),
            cause_type: None,
            message: "m".into(),
            trace: "E: m".into(),
        };
        let out = build_from(&retried, "orders-dlt", "g", &info, &Original::of(&source));
        assert_eq!(out.headers.get_str(headers::ORIGINAL_TOPIC), Some("orders"));
        assert_eq!(
            out.headers.get(headers::ORIGINAL_OFFSET),
            Some(&7i64.to_be_bytes()[..])
        );
    }
}
