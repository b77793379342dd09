//! Spring Kafka's `kafka_dlt-*` and `retry_topic-*` headers, read tolerantly and written as
//! Spring writes them.
//!
//! Every reader here takes any byte string (any length, any content) and answers `None`
//! for what it cannot make sense of; none of them panics. What Spring writes, and so what
//! is read:
//!
//! | header | Spring writes | also read |
//! |---|---|---|
//! | `retry_topic-attempts` | 4-byte big-endian int: the number of the *next* delivery (2 on `-retry-0`) | 1 byte unsigned (Spring < 2.9), 2–3 bytes (`BigInteger`, Spring 2.7) |
//! | `retry_topic-backoff-timestamp` | `BigInteger.toByteArray()` of epoch ms: minimal two's complement, 6 bytes today | 1–8 bytes, sign-extended longer ones, decimal epoch ms, ISO-8601 date-times (Spring 2.7 wrote text) |
//! | `retry_topic-original-timestamp` | `BigInteger` of the first record's timestamp | as the backoff timestamp |
//! | `kafka_dlt-original-partition` | 4-byte big-endian | 1–8 byte two's complement |
//! | `kafka_dlt-original-offset`, `-timestamp` | 8-byte big-endian | 1–8 byte two's complement |
//! | `kafka_dlt-original-timestamp-type` | `CreateTime`, `LogAppendTime`, `NoTimestampType` | Java enum names (`CREATE_TIME`, ...) |
//!
//! Spring accepts an attempts value in `1..=32767` only (else it counts 1); so does `mq`.

use chrono::{DateTime, NaiveDateTime};

use super::dead_letter::headers as dlt;
use super::retry_topic;
pub(crate) use crate::failure::policy::ATTEMPTS_CAP;
use crate::record::{Headers, Record, TimestampType};

/// A big-endian two's complement integer of any length, as Java's `new BigInteger(bytes)`
/// reads it, when it fits an `i64` (longer values are accepted when their extra leading
/// bytes are only sign extension).
pub fn decode_big_integer(bytes: &[u8]) -> Option<i64> {
    let (first, _) = bytes.split_first()?;
    let negative = first & 0x80 != 0;
    let sign_byte = if negative { 0xff } else { 0x00 };
    let mut rest = bytes;
    while rest.len() > 8 {
        if rest[0] != sign_byte {
            return None;
        }
        rest = &rest[1..];
    }
    // The value must keep its sign once cut to 8 bytes.
    if bytes.len() > 8 && ((rest[0] & 0x80 != 0) != negative) {
        return None;
    }
    let mut buf = [sign_byte; 8];
    buf[8 - rest.len()..].copy_from_slice(rest);
    Some(i64::from_be_bytes(buf))
}

/// Java's `BigInteger.valueOf(v).toByteArray()`: the shortest two's complement big-endian
/// form (6 bytes for today's epoch milliseconds).
pub fn encode_big_integer(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        let redundant = (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

/// `retry_topic-attempts`: the number of the delivery the record is on (Spring's
/// numbering: 2 on the first retry topic). `None` unless it is in `1..=32767`.
pub fn decode_attempts(bytes: &[u8]) -> Option<u32> {
    let raw = match bytes {
        // Spring's "backwards compatibility" case: one unsigned byte.
        [b] => i64::from(*b),
        _ if bytes.len() <= 4 => decode_big_integer(bytes)?,
        _ => return None,
    };
    u32::try_from(raw)
        .ok()
        .filter(|n| (1..=ATTEMPTS_CAP).contains(n))
}

/// `retry_topic-attempts` as Spring writes it: 4 bytes, big-endian.
pub fn encode_attempts(attempt: u32) -> [u8; 4] {
    (attempt.min(ATTEMPTS_CAP) as i32).to_be_bytes()
}

/// A timestamp header (`retry_topic-backoff-timestamp`, `retry_topic-original-timestamp`):
/// epoch milliseconds from a `BigInteger`, or from text (decimal milliseconds, RFC 3339,
/// or an ISO-8601 local date-time taken as UTC, which Spring 2.7 wrote).
pub fn decode_timestamp(bytes: &[u8]) -> Option<i64> {
    // Text is at least 10 bytes long; a binary value at most 8 (longer only with sign
    // extension, which is never printable).
    if bytes.len() <= 8 {
        return decode_big_integer(bytes);
    }
    if let Some(v) = decode_big_integer(bytes) {
        return Some(v);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if text.len() > 64 {
        return None;
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// Where a record was first read: the `kafka_dlt-original-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms; -1 when the record had none (as Spring writes it).
    pub timestamp: i64,
    /// What the timestamp is.
    pub timestamp_type: TimestampType,
}

impl Original {
    /// The coordinates of `record` itself.
    pub fn of(record: &Record) -> Self {
        Original {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp.unwrap_or(-1),
            timestamp_type: match record.timestamp {
                Some(_) => record.timestamp_type,
                None => TimestampType::NoTimestampType,
            },
        }
    }

    /// The coordinates in `headers`, when topic, partition and offset are all readable.
    pub fn read(headers: &Headers) -> Option<Self> {
        let topic = headers.get_str(dlt::ORIGINAL_TOPIC)?;
        if topic.is_empty() || topic.len() > 249 {
            return None;
        }
        let partition = headers
            .get(dlt::ORIGINAL_PARTITION)
            .filter(|v| v.len() <= 4)
            .and_then(decode_big_integer)
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p >= 0)?;
        let offset = headers
            .get(dlt::ORIGINAL_OFFSET)
            .and_then(decode_big_integer)
            .filter(|o| *o >= 0)?;
        let timestamp = headers
            .get(dlt::ORIGINAL_TIMESTAMP)
            .and_then(decode_big_integer)
            .unwrap_or(-1);
        let timestamp_type = headers
            .get(dlt::ORIGINAL_TIMESTAMP_TYPE)
            .and_then(TimestampType::parse)
            .unwrap_or(TimestampType::NoTimestampType);
        Some(Original {
            topic: topic.to_owned(),
            partition,
            offset,
            timestamp,
            timestamp_type,
        })
    }

    /// Writes the five headers as Spring does (fixed-width big-endian numbers), replacing
    /// any earlier ones.
    pub fn write(&self, headers: &mut Headers) {
        headers.insert(dlt::ORIGINAL_TOPIC, self.topic.as_bytes());
        headers.insert(dlt::ORIGINAL_PARTITION, self.partition.to_be_bytes());
        headers.insert(dlt::ORIGINAL_OFFSET, self.offset.to_be_bytes());
        headers.insert(dlt::ORIGINAL_TIMESTAMP, self.timestamp.to_be_bytes());
        headers.insert(dlt::ORIGINAL_TIMESTAMP_TYPE, self.timestamp_type.as_str());
    }
}

/// What the `retry_topic-*` headers of a record say; fields are `None` where a header is
/// missing or unreadable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryHeaders {
    /// The delivery this is, from 1 (Spring's numbering).
    pub attempt: Option<u32>,
    /// When the record is due, epoch ms.
    pub due_ms: Option<i64>,
    /// Timestamp of the record before its first retry, epoch ms.
    pub original_timestamp: Option<i64>,
}

impl RetryHeaders {
    /// Reads the headers (the last of each name wins, as in Spring).
    pub fn read(headers: &Headers) -> Self {
        RetryHeaders {
            attempt: headers.get(retry_topic::ATTEMPTS).and_then(decode_attempts),
            due_ms: headers
                .get(retry_topic::BACKOFF_TIMESTAMP)
                .and_then(decode_timestamp),
            original_timestamp: headers
                .get(retry_topic::ORIGINAL_TIMESTAMP)
                .and_then(decode_timestamp),
        }
    }

    /// Writes them as Spring does (replacing earlier values: Spring's
    /// `retainAllRetryHeaderValues = false`; readers take the last value either way).
    pub fn write(&self, headers: &mut Headers) {
        if let Some(ts) = self.original_timestamp {
            headers.insert(retry_topic::ORIGINAL_TIMESTAMP, encode_big_integer(ts));
        }
        if let Some(n) = self.attempt {
            headers.insert(retry_topic::ATTEMPTS, encode_attempts(n));
        }
        if let Some(due) = self.due_ms {
            headers.insert(retry_topic::BACKOFF_TIMESTAMP, encode_big_integer(due));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integers_round_trip_at_every_width() {
        let samples = [
            0,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            1_700_000_000_000,
            i64::MAX,
            i64::MIN,
        ];
        for v in samples {
            let bytes = encode_big_integer(v);
            assert!(bytes.len() <= 8);
            assert_eq!(decode_big_integer(&bytes), Some(v), "{v}: {bytes:02x?}");
        }
        // Sign extension beyond 8 bytes is accepted, real overflow is not.
        let mut long = vec![0u8; 4];
        long.extend_from_slice(&5i64.to_be_bytes());
        assert_eq!(decode_big_integer(&long), Some(5));
        let mut neg = vec![0xffu8; 3];
        neg.extend_from_slice(&(-5i64).to_be_bytes());
        assert_eq!(decode_big_integer(&neg), Some(-5));
        let mut overflow = vec![0u8];
        overflow.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(decode_big_integer(&overflow), None);
    }

    #[test]
    fn spring_attempt_widths() {
        // Spring 2.9+: 4 bytes; before: 1 unsigned byte; 2.7: BigInteger (1–2 bytes).
        let cases: [(&[u8], Option<u32>); 9] = [
            (&[0, 0, 0, 2], Some(2)),
            (&[3], Some(3)),
            (&[200], Some(200)),
            (&[0x00, 0x80], Some(128)),
            (&[0, 0, 0, 1], Some(1)),
            (&[0x7f, 0xff, 0xff, 0xff], None),
            (&[], None),
            (&[0, 0, 0, 0, 2], None),
            (&[0x80, 0, 0, 1], None),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_attempts(bytes), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn original_coordinates_tolerate_bad_values() {
        let mut h = Headers::default();
        h.insert(dlt::ORIGINAL_TOPIC, "orders");
        h.insert(dlt::ORIGINAL_PARTITION, 1i32.to_be_bytes());
        h.insert(dlt::ORIGINAL_OFFSET, [0xff; 8]);
        assert_eq!(Original::read(&h), None, "negative offset");
        h.insert(dlt::ORIGINAL_OFFSET, 7i64.to_be_bytes());
        h.insert(dlt::ORIGINAL_TIMESTAMP_TYPE, "LogAppendTime");
        let o = Original::read(&h).unwrap();
        assert_eq!(
            (o.partition, o.offset, o.timestamp, o.timestamp_type),
            (1, 7, -1, TimestampType::LogAppendTime)
        );
    }
}

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn decode_big_integer() {
        use crate::transport::kafka::spring_headers::decode_big_integer;
        assert_eq!(
            decode_big_integer(&[0x01, 0x93, 0x6d, 0x2a, 0x4b, 0x00]),
            Some(0x0193_6d2a_4b00)
        );
        assert_eq!(decode_big_integer(&[0xff]), Some(-1));
        assert_eq!(decode_big_integer(&[]), None);
        assert_eq!(decode_big_integer(&[1; 9]), None);
    }

    #[test]
    fn encode_big_integer() {
        use crate::transport::kafka::spring_headers::encode_big_integer;
        assert_eq!(
            encode_big_integer(1_700_000_000_000),
            [0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00]
        );
        assert_eq!(encode_big_integer(0), [0]);
        assert_eq!(encode_big_integer(-1), [0xff]);
        assert_eq!(encode_big_integer(128), [0x00, 0x80]);
    }

    #[test]
    fn decode_attempts() {
        use crate::transport::kafka::spring_headers::decode_attempts;
        assert_eq!(decode_attempts(&[2]), Some(2));
        assert_eq!(decode_attempts(&[0, 0, 0, 3]), Some(3));
        assert_eq!(decode_attempts(&[0, 0, 0, 0]), None);
        assert_eq!(decode_attempts(&[0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn encode_attempts() {
        assert_eq!(
            crate::transport::kafka::spring_headers::encode_attempts(2),
            [0, 0, 0, 2]
        );
    }

    #[test]
    fn decode_timestamp() {
        use crate::transport::kafka::spring_headers::decode_timestamp;
        assert_eq!(
            decode_timestamp(&1_700_000_000_000i64.to_be_bytes()),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            decode_timestamp(&[0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00]),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            decode_timestamp(b"2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            decode_timestamp(b"2023-11-14T22:13:20.000"),
            Some(1_700_000_000_000)
        );
        assert_eq!(decode_timestamp(b"1700000000000"), Some(1_700_000_000_000));
        assert_eq!(decode_timestamp(b"\xff\xfe garbage"), None);
    }

    #[test]
    fn original() {
        use crate::record::{Headers, Record};
        use crate::transport::kafka::spring_headers::Original;
        let r = Record::new("orders", 2, 40, None, None);
        let mut h = Headers::default();
        Original::of(&r).write(&mut h);
        assert_eq!(Original::read(&h), Some(Original::of(&r)));
    }

    #[test]
    fn of() {
        let r = crate::record::Record::new("t", 1, 2, None, None);
        let o = crate::transport::kafka::spring_headers::Original::of(&r);
        assert_eq!((o.partition, o.offset, o.timestamp), (1, 2, -1));
    }

    #[test]
    fn read() {
        use crate::record::Headers;
        let mut h = Headers::default();
        h.insert("kafka_dlt-original-topic", "orders");
        h.insert("kafka_dlt-original-partition", [0u8, 0, 0]);
        assert!(crate::transport::kafka::spring_headers::Original::read(&h).is_none());
    }

    #[test]
    fn write() {
        use crate::record::{Headers, Record};
        let mut h = Headers::default();
        crate::transport::kafka::spring_headers::Original::of(&Record::new("t", 3, 9, None, None))
            .write(&mut h);
        assert_eq!(
            h.get("kafka_dlt-original-partition"),
            Some(&[0u8, 0, 0, 3][..])
        );
        assert_eq!(
            h.get_str("kafka_dlt-original-timestamp-type"),
            Some("NoTimestampType")
        );
    }

    #[test]
    fn retryheaders() {
        use crate::record::Record;
        use crate::transport::kafka::spring_headers::RetryHeaders;
        let mut r = Record::new("t-retry-0", 0, 0, None, None);
        r.headers.insert("retry_topic-attempts", [2u8]);
        r.headers
            .insert("retry_topic-backoff-timestamp", [0x7f; 12]);
        let h = RetryHeaders::read(&r.headers);
        assert_eq!((h.attempt, h.due_ms), (Some(2), None));
    }

    #[test]
    fn write_2() {
        use crate::record::Headers;
        use crate::transport::kafka::spring_headers::RetryHeaders;
        let mut h = Headers::default();
        RetryHeaders {
            attempt: Some(2),
            due_ms: Some(1_700_000_000_000),
            original_timestamp: None,
        }
        .write(&mut h);
        assert_eq!(h.get("retry_topic-attempts"), Some(&[0u8, 0, 0, 2][..]));
        assert_eq!(
            h.get("retry_topic-backoff-timestamp").map(<[u8]>::len),
            Some(6)
        );
    }
}
