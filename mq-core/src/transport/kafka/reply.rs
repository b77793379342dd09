//! Request–reply in Spring Kafka's conventions (`ReplyingKafkaTemplate`, `@SendTo`): a
//! request carries `kafka_replyTopic` (the requester's reply topic), optionally
//! `kafka_replyPartition` (a 4-byte big-endian int) and `kafka_correlationId` (opaque
//! bytes); the reply goes to that topic (and partition) with the same
//! `kafka_correlationId`. Plain data, always compiled (the in-memory broker uses it too).

use crate::publisher::ReplyAddress;
use crate::record::{Headers, OutgoingRecord, Record};

/// The requester's reply topic.
pub(crate) const REPLY_TOPIC: &str = "kafka_replyTopic";
/// The partition of the reply topic the requester reads.
pub(crate) const REPLY_PARTITION: &str = "kafka_replyPartition";
/// The correlation id a reply carries back.
pub(crate) const CORRELATION_ID: &str = "kafka_correlationId";

/// Where `request` asks its reply to go: `None` unless it names a reply topic and carries
/// a correlation id.
pub(crate) fn reply_address(request: &Record) -> Option<ReplyAddress> {
    let topic = request.headers.get_str(REPLY_TOPIC)?.trim();
    let correlation = request.headers.get(CORRELATION_ID)?;
    if topic.is_empty() {
        return None;
    }
    let partition = request
        .headers
        .get(REPLY_PARTITION)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_be_bytes)
        .filter(|p| *p >= 0);
    Some(ReplyAddress {
        destination: topic.to_owned(),
        partition,
        correlation: correlation.to_vec(),
    })
}

/// Marks `request` as a request whose reply goes to `reply_topic` with `correlation`.
pub(crate) fn stamp_request(request: &mut OutgoingRecord, reply_topic: &str, correlation: &[u8]) {
    request.headers.insert(REPLY_TOPIC, reply_topic);
    request.headers.insert(CORRELATION_ID, correlation);
}

/// Marks `reply` as the answer to the request with `correlation`.
pub(crate) fn stamp_reply(reply: &mut OutgoingRecord, correlation: &[u8]) {
    reply.headers.insert(CORRELATION_ID, correlation);
}

/// The correlation id a reply carries.
pub(crate) fn correlation_of(headers: &Headers) -> Option<&[u8]> {
    headers.get(CORRELATION_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &[u8])]) -> Record {
        let mut r = Record::new("prices", 0, 0, None, Some(b"{}".to_vec()));
        for (k, v) in headers {
            r.headers.append(*k, v.to_vec());
        }
        r
    }

    #[test]
    fn reads_springs_headers_with_and_without_a_partition() {
        let r = request(&[(REPLY_TOPIC, b"quotes"), (CORRELATION_ID, &[0, 1, 2, 255])]);
        let a = reply_address(&r).unwrap();
        assert_eq!(a.destination, "quotes");
        assert_eq!(a.partition, None);
        assert_eq!(a.correlation, vec![0, 1, 2, 255]);

        let p = 3i32.to_be_bytes();
        let r = request(&[
            (REPLY_TOPIC, b"quotes"),
            (REPLY_PARTITION, &p),
            (CORRELATION_ID, b"c"),
        ]);
        assert_eq!(reply_address(&r).unwrap().partition, Some(3));
    }

    #[test]
    fn a_record_without_topic_or_correlation_asks_for_no_reply() {
        assert_eq!(reply_address(&request(&[(REPLY_TOPIC, b"quotes")])), None);
        assert_eq!(reply_address(&request(&[(CORRELATION_ID, b"c")])), None);
        assert_eq!(
            reply_address(&request(&[(REPLY_TOPIC, b" "), (CORRELATION_ID, b"c")])),
            None
        );
        // A partition that is not 4 bytes, or negative, is no partition.
        let r = request(&[
            (REPLY_TOPIC, b"q"),
            (REPLY_PARTITION, b"1"),
            (CORRELATION_ID, b"c"),
        ]);
        assert_eq!(reply_address(&r).unwrap().partition, None);
        let neg = (-1i32).to_be_bytes();
        let r = request(&[
            (REPLY_TOPIC, b"q"),
            (REPLY_PARTITION, &neg),
            (CORRELATION_ID, b"c"),
        ]);
        assert_eq!(reply_address(&r).unwrap().partition, None);
    }

    #[test]
    fn stamps_replace_what_was_there() {
        let mut out = OutgoingRecord::new("prices", None, Vec::new());
        out.headers.append(CORRELATION_ID, "old");
        stamp_request(&mut out, "quotes", b"new");
        assert_eq!(out.headers.get(CORRELATION_ID), Some(&b"new"[..]));
        assert_eq!(out.headers.get_str(REPLY_TOPIC), Some("quotes"));
        let mut reply = OutgoingRecord::new("quotes", None, Vec::new());
        stamp_reply(&mut reply, b"new");
        assert_eq!(correlation_of(&reply.headers), Some(&b"new"[..]));
    }
}
