//! Transport-neutral records: what a broker hands to a listener and what a publisher sends.
//!
//! Kafka (and later other transports and the in-memory test broker) convert their native
//! messages into [`Record`] at the boundary, so decoding, retries, dead-lettering and metrics
//! never see a transport type.

use std::sync::Arc;

mod headers;
mod value;

#[cfg(feature = "kafka")]
pub(crate) use headers::copy_into;
pub use headers::{Header, Headers};
pub use value::{FromHeader, HeaderValue};

/// A record received from a broker, owned and transport-neutral.
///
/// ```
/// use mq_core::record::Record;
/// let r = Record::new("orders", 0, 7, Some(b"k".to_vec()), Some(br#"{"a":1}"#.to_vec()));
/// assert_eq!(r.offset, 7);
/// ```
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic the record was read from.
    pub topic: Arc<str>,
    /// Partition the record was read from.
    pub partition: i32,
    /// Offset of the record in its partition.
    pub offset: i64,
    /// Record key, byte for byte.
    pub key: Option<Vec<u8>>,
    /// Record value, byte for byte (`None` for a tombstone).
    pub value: Option<Vec<u8>>,
    /// Record headers.
    pub headers: Headers,
    /// Broker or producer timestamp, milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// What [`Record::timestamp`] means (Kafka's `CreateTime` or `LogAppendTime`).
    pub timestamp_type: TimestampType,
}

/// What a record's timestamp is: Kafka's `TimestampType`, spelled as Java's `toString()`
/// (the `kafka_dlt-original-timestamp-type` header carries that spelling).
///
/// ```
/// use mq_core::record::TimestampType;
/// assert_eq!(TimestampType::LogAppendTime.as_str(), "LogAppendTime");
/// assert_eq!(TimestampType::parse(b"CreateTime"), Some(TimestampType::CreateTime));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// The record has no timestamp.
    #[default]
    NoTimestampType,
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when it appended the record.
    LogAppendTime,
}

impl TimestampType {
    /// The Java spelling: `CreateTime`, `LogAppendTime` or `NoTimestampType`.
    ///
    /// ```
    /// assert_eq!(mq_core::record::TimestampType::CreateTime.as_str(), "CreateTime");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::NoTimestampType => "NoTimestampType",
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }

    /// Reads the Java spelling (Java's `TimestampType.name` too: `CREATE_TIME`, ...);
    /// `None` for anything else.
    ///
    /// ```
    /// use mq_core::record::TimestampType;
    /// assert_eq!(TimestampType::parse(b"LOG_APPEND_TIME"), Some(TimestampType::LogAppendTime));
    /// assert_eq!(TimestampType::parse(b"\xff"), None);
    /// ```
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        match bytes {
            b"CreateTime" | b"CREATE_TIME" => Some(TimestampType::CreateTime),
            b"LogAppendTime" | b"LOG_APPEND_TIME" => Some(TimestampType::LogAppendTime),
            b"NoTimestampType" | b"NO_TIMESTAMP_TYPE" => Some(TimestampType::NoTimestampType),
            _ => None,
        }
    }
}

impl Record {
    /// A record with no headers and no timestamp (handy in tests).
    ///
    /// ```
    /// let r = mq_core::record::Record::new("t", 1, 2, None, None);
    /// assert!(r.headers.is_empty());
    /// ```
    pub fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Self {
        Record {
            topic: Arc::from(topic),
            partition,
            offset,
            key,
            value,
            headers: Headers::default(),
            timestamp: None,
            timestamp_type: TimestampType::NoTimestampType,
        }
    }
}

/// A record to publish.
///
/// ```
/// use mq_core::record::OutgoingRecord;
/// let r = OutgoingRecord::new("orders", Some(b"k".to_vec()), b"{}".to_vec());
/// assert_eq!(r.topic, "orders");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    /// Destination topic.
    pub topic: String,
    /// Explicit partition; `None` lets the partitioner pick from the key.
    pub partition: Option<i32>,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value; `None` is a tombstone (Kafka's null value, a delete on a compacted topic).
    pub value: Option<Vec<u8>>,
    /// Record headers.
    pub headers: Headers,
}

impl OutgoingRecord {
    /// `record` sent on to `topic` as it came (key, value, headers), minus the headers
    /// whose names start with `drop_prefix`: the retry and dead-letter headers an earlier
    /// hop wrote, which the caller writes anew. A null value (tombstone) stays null.
    ///
    /// ```
    /// use mq_core::record::{OutgoingRecord, Record};
    /// let mut r = Record::new("orders", 0, 7, Some(b"k".to_vec()), Some(b"v".to_vec()));
    /// r.headers.append("kafka_dlt-exception-message", "old");
    /// r.headers.append("app", "1");
    /// let out = OutgoingRecord::forward(&r, "orders-dlt", "kafka_dlt-");
    /// assert_eq!((out.topic.as_str(), out.value.as_deref()), ("orders-dlt", Some(&b"v"[..])));
    /// assert_eq!(out.headers.len(), 1);
    /// ```
    pub fn forward(record: &Record, topic: &str, drop_prefix: &str) -> Self {
        let mut headers = record.headers.clone();
        headers.retain(|name| !name.starts_with(drop_prefix));
        OutgoingRecord {
            topic: topic.to_owned(),
            partition: None,
            key: record.key.clone(),
            value: record.value.clone(),
            headers,
        }
    }

    /// A record with no headers, partitioned by key.
    ///
    /// ```
    /// let r = mq_core::record::OutgoingRecord::new("t", None, vec![]);
    /// assert!(r.partition.is_none());
    /// ```
    pub fn new(topic: impl Into<String>, key: Option<Vec<u8>>, value: Vec<u8>) -> Self {
        OutgoingRecord {
            topic: topic.into(),
            partition: None,
            key,
            value: Some(value),
            headers: Headers::default(),
        }
    }

    /// A tombstone: `key` with a null value (deletes the key on a compacted topic).
    ///
    /// ```
    /// let r = mq_core::record::OutgoingRecord::tombstone("customers", b"cust-42".to_vec());
    /// assert!(r.value.is_none());
    /// ```
    pub fn tombstone(topic: impl Into<String>, key: Vec<u8>) -> Self {
        OutgoingRecord {
            topic: topic.into(),
            partition: None,
            key: Some(key),
            value: None,
            headers: Headers::default(),
        }
    }

    /// Bytes this record takes on the wire, roughly: key, value, header names and values.
    ///
    /// ```
    /// let r = mq_core::record::OutgoingRecord::new("t", Some(b"k".to_vec()), b"vv".to_vec());
    /// assert_eq!(r.size(), 3);
    /// ```
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum();
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len) + headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refill_replaces_every_header_and_keeps_nulls() {
        let mut h = Headers::default();
        h.append("a", "1");
        h.append("b", "2");
        h.append("c", "3");
        h.refill([("x", Some(&b"9"[..])), ("y", None)].into_iter());
        let got: Vec<_> = h
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect();
        assert_eq!(got, [("x", Some(&b"9"[..])), ("y", None)]);
        h.refill(
            [
                ("a", None),
                ("b", Some(&b""[..])),
                ("c", Some(&b"long value"[..])),
            ]
            .into_iter(),
        );
        assert_eq!(h.len(), 3);
        assert_eq!(h.get("c"), Some(&b"long value"[..]));
        assert_eq!(h.get("b"), Some(&b""[..]));
        assert_eq!(h.iter().next().unwrap().value, None);
        h.refill(std::iter::empty());
        assert!(h.is_empty());
    }

    #[test]
    fn refill_with_repeated_headers_changes_only_what_differs() {
        let mut h = Headers::default();
        let ct = ("content-type", Some(&b"application/cloudevents+json"[..]));
        h.refill([ct, ("n", Some(&b"1"[..]))].into_iter());
        h.refill([ct, ("n", Some(&b"2"[..]))].into_iter());
        assert_eq!(
            h.get_str("content-type"),
            Some("application/cloudevents+json")
        );
        assert_eq!(h.get_str("n"), Some("2"));
        h.refill([ct, ("n", None)].into_iter());
        assert_eq!(h.iter().nth(1).unwrap().value, None);
        h.refill([ct, ("n", Some(&b""[..]))].into_iter());
        assert_eq!(h.iter().nth(1).unwrap().value.as_deref(), Some(&b""[..]));
        h.refill([("n", Some(&b"3"[..]))].into_iter());
        assert_eq!((h.len(), h.get_str("n")), (1, Some("3")));
    }

    #[test]
    fn copy_into_reuses_or_clears() {
        let mut slot = None;
        copy_into(&mut slot, Some(b"abc"));
        assert_eq!(slot.as_deref(), Some(&b"abc"[..]));
        copy_into(&mut slot, Some(b"de"));
        assert_eq!(slot.as_deref(), Some(&b"de"[..]));
        copy_into(&mut slot, None);
        assert_eq!(slot, None);
    }
}
