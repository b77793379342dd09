//! Transport-neutral records: what a broker hands to a listener and what a publisher sends.
//!
//! Kafka (and later other transports and the in-memory test broker) convert their native
//! messages into [`Record`] at the boundary, so decoding, retries, dead-lettering and metrics
//! never see a transport type.

use std::sync::Arc;

mod value;

pub use value::{FromHeader, HeaderValue};

/// One record header. Kafka allows repeated keys and null values; both are kept as they
/// came. A header whose broker typed it (an AMQP field-table value) keeps its
/// [`HeaderValue`] beside its bytes, and leaves mq with that type.
///
/// ```
/// use mq_core::record::Header;
/// let h = Header::new("ce_id", "42");
/// assert_eq!(h.value.as_deref(), Some(&b"42"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Raw header value; `None` for a Kafka null header. For a typed header, its bytes
    /// view (see [`HeaderValue::to_bytes`]).
    pub value: Option<Vec<u8>>,
    /// The type its broker gave it, when not plain bytes or a long string.
    typed: Option<Box<HeaderValue>>,
}

impl Header {
    /// A header with a value.
    ///
    /// ```
    /// let h = mq_core::record::Header::new("x", b"y".to_vec());
    /// assert_eq!(h.key, "x");
    /// ```
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
            typed: None,
        }
    }

    /// A header as Kafka has it: bytes, or `None` for a null header.
    ///
    /// ```
    /// let h = mq_core::record::Header::raw("tombstone-marker", None);
    /// assert_eq!(h.value, None);
    /// ```
    pub fn raw(key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        Header {
            key: key.into(),
            value,
            typed: None,
        }
    }

    /// A header with a typed value; its bytes are the value's bytes view.
    ///
    /// ```
    /// use mq_core::record::{Header, HeaderValue};
    /// let h = Header::typed("x-retry-attempts", HeaderValue::I64(3));
    /// assert_eq!(h.value.as_deref(), Some(&b"3"[..]));
    /// assert_eq!(h.typed_value(), Some(&HeaderValue::I64(3)));
    /// ```
    pub fn typed(key: impl Into<String>, value: HeaderValue) -> Self {
        Header {
            key: key.into(),
            value: Some(value.to_bytes()),
            typed: Some(Box::new(value)),
        }
    }

    /// The type its broker gave it (`None`: bytes, as every Kafka header).
    pub fn typed_value(&self) -> Option<&HeaderValue> {
        self.typed.as_deref()
    }
}

/// The ordered headers of a record.
///
/// ```
/// use mq_core::record::Headers;
/// let mut h = Headers::default();
/// h.insert("a", "1");
/// h.insert("a", "2");
/// assert_eq!(h.get_str("a"), Some("2"));
/// assert_eq!(h.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// Headers from a list, kept in order (repeated keys included).
    ///
    /// ```
    /// use mq_core::record::{Header, Headers};
    /// let h = Headers::from_vec(vec![Header::new("k", "v")]);
    /// assert_eq!(h.get("k"), Some(&b"v"[..]));
    /// ```
    pub fn from_vec(headers: Vec<Header>) -> Self {
        Headers(headers)
    }

    /// The value of the last header named `key` (Kafka's "last wins" reading).
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "v");
    /// assert_eq!(h.get("k"), Some(&b"v"[..]));
    /// assert_eq!(h.get("missing"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_deref())
    }

    /// [`Headers::get`] as UTF-8; `None` when absent or not UTF-8.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "v");
    /// assert_eq!(h.get_str("k"), Some("v"));
    /// ```
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The last header named `key`, with its type if its broker gave it one.
    ///
    /// ```
    /// # use mq_core::record::{Headers, HeaderValue};
    /// let mut h = Headers::default();
    /// h.insert_typed("n", HeaderValue::I16(7));
    /// assert_eq!(h.get_header("n").unwrap().typed_value(), Some(&HeaderValue::I16(7)));
    /// ```
    pub fn get_header(&self, key: &str) -> Option<&Header> {
        self.0.iter().rev().find(|h| h.key == key)
    }

    /// The last header named `key` read as `T`: from its type when it has one, else parsed
    /// from its bytes (see [`FromHeader`]); `None` when absent or not a `T`.
    ///
    /// ```
    /// # use mq_core::record::{Headers, HeaderValue};
    /// let mut h = Headers::default();
    /// h.insert_typed("retries", HeaderValue::I64(3));
    /// h.insert("kafka-count", "4");
    /// assert_eq!(h.get_as::<i64>("retries"), Some(3));
    /// assert_eq!(h.get_as::<i64>("kafka-count"), Some(4));
    /// assert_eq!(h.get_as::<bool>("retries"), None);
    /// ```
    pub fn get_as<T: FromHeader>(&self, key: &str) -> Option<T> {
        let h = self.get_header(key)?;
        T::from_header(h.typed_value(), h.value.as_deref()?)
    }

    /// Sets a typed header: removes every header of that name, then appends it.
    pub fn insert_typed(&mut self, key: impl Into<String>, value: HeaderValue) {
        let key = key.into();
        self.remove(&key);
        self.0.push(Header::typed(key, value));
    }

    /// Adds a header (typed or not) at the end, keeping earlier ones of the same name.
    pub fn push(&mut self, header: Header) {
        self.0.push(header);
    }

    /// Adds a header at the end, keeping any earlier header of the same name.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "1");
    /// h.append("k", "2");
    /// assert_eq!(h.len(), 2);
    /// ```
    pub fn append(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.0.push(Header::new(key, value));
    }

    /// Sets a header: removes every header of that name, then appends the new one.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "1");
    /// h.insert("k", "2");
    /// assert_eq!(h.len(), 1);
    /// ```
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        let key = key.into();
        self.remove(&key);
        self.0.push(Header::new(key, value));
    }

    /// Removes every header named `key`.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "1");
    /// h.remove("k");
    /// assert!(h.is_empty());
    /// ```
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|h| h.key != key);
    }

    /// Keeps only the headers for which `keep` returns true.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("kafka_dlt-x", "1");
    /// h.append("app", "2");
    /// h.retain(|name| !name.starts_with("kafka_dlt-"));
    /// assert_eq!(h.len(), 1);
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|h| keep(&h.key));
    }

    /// Iterates over the headers in order.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "v");
    /// assert_eq!(h.iter().count(), 1);
    /// ```
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Header> + ExactSizeIterator {
        self.0.iter()
    }

    /// Number of headers.
    ///
    /// ```
    /// assert_eq!(mq_core::record::Headers::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    ///
    /// ```
    /// assert!(mq_core::record::Headers::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Headers {
    /// Replaces the headers with `headers`, reusing this list's buffers (a partition worker
    /// refills one record per message instead of allocating a new one).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn refill<'a>(
        &mut self,
        headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) {
        let mut len = 0;
        for (key, value) in headers {
            match self.0.get_mut(len) {
                // Headers mostly repeat from record to record (a content type, a type
                // name): writing only what changed leaves their cache lines shared with
                // the thread that reads the record, instead of moving them back and forth.
                Some(h) => {
                    if h.key != key {
                        h.key.clear();
                        h.key.push_str(key);
                    }
                    if h.value.as_deref() != value {
                        copy_into(&mut h.value, value);
                    }
                    if h.typed.is_some() {
                        h.typed = None;
                    }
                }
                None => self.0.push(Header {
                    key: key.to_owned(),
                    value: value.map(<[u8]>::to_vec),
                    typed: None,
                }),
            }
            len += 1;
        }
        self.0.truncate(len);
    }
}

/// Sets `slot` to a copy of `bytes`, reusing the buffer it has.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub(crate) fn copy_into(slot: &mut Option<Vec<u8>>, bytes: Option<&[u8]>) {
    match (slot.as_mut(), bytes) {
        (Some(buf), Some(b)) => {
            buf.clear();
            buf.extend_from_slice(b);
        }
        (_, b) => *slot = b.map(<[u8]>::to_vec),
    }
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

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
