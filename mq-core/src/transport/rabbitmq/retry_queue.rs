//! Non-blocking retries of queue listeners through TTL'd retry queues (what Spring AMQP and
//! FastStream users build as "delayed retry queues"), switched on by the same knob as
//! Kafka's retry topics: `mq.listener.retry.mode: topics` (or `retry(mode = "topics")`).
//!
//! For `max-attempts` attempts a listener of queue `q` declares `q.retry.0` …
//! `q.retry.<max-attempts − 2>`, each durable, with `x-message-ttl` = the backoff after
//! that attempt (`initial-interval × multiplier^n`, at most `max-interval`; no jitter: the
//! TTL is the queue's) and the default exchange as dead-letter exchange with routing key
//! `q`. A failed attempt publishes the message (confirmed) to its retry queue and then acks
//! it on `q`: the consumer goes on with the next messages at once. When the TTL expires
//! RabbitMQ dead-letters the message back to `q` (adding its own `x-death`), where it is
//! attempt `x-retry-attempts`. After the last attempt it goes to `q.dlq` with the
//! why-headers, `x-retry-attempts` telling how many attempts it had.
//!
//! A message that came back from a retry queue was received from the default exchange;
//! the exchange and routing key it was first published with travel in
//! `x-original-exchange` and `x-original-routingKey`, and its dead letter keeps them.

use super::dead_letter::{self, headers as dlq_headers};
use super::destination::Exchange;
use crate::failure::info::FailureInfo;
use crate::record::{HeaderValue, Headers, OutgoingRecord, Record};

/// The number of the delivery a message is on when it comes back from a retry queue
/// (2 after `q.retry.0`), decimal text.
pub const ATTEMPTS: &str = "x-retry-attempts";

/// The `n`-th retry queue of `queue`.
pub fn name(queue: &str, n: u32) -> String {
    format!("{queue}.retry.{n}")
}

/// The attempt a message is on according to its [`ATTEMPTS`] header; `None` when it has
/// none or it does not read as a number from 2 on.
pub fn attempt(headers: &Headers) -> Option<u32> {
    headers
        .get_str(ATTEMPTS)?
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 2)
}

/// The message to publish to retry queue `index` of `record`'s queue, where it will come
/// back as delivery `attempt`: the body and headers as the dead letter would have them
/// (the failure's why-headers included, so the retry queue shows why it is there; not
/// `x-death`, which the broker keeps), sent through the default exchange.
pub fn reschedule(record: &Record, index: u32, attempt: u32, info: &FailureInfo) -> OutgoingRecord {
    let mut out = dead_letter::build(record, info);
    out.topic = Exchange::destination("", &name(&record.topic, index));
    // RabbitMQ writes `x-death` itself when the TTL expires: the record's copy must not
    // come back to it beside the broker's.
    // Nor the counts a quorum queue keeps of its own deliveries.
    out.headers.retain(|h| {
        h != "x-death" && h != super::routes::DELIVERY_COUNT && h != super::routes::ACQUIRED_COUNT
    });
    // A 64-bit integer, what Java's `long` (Spring AMQP's reading) expects.
    out.headers
        .insert_typed(ATTEMPTS, HeaderValue::I64(i64::from(attempt)));
    out
}

/// The exchange and routing key `record` was first published with: carried in the
/// `x-original-*` headers when it came back from a retry queue, else `None`.
pub(crate) fn carried_original(record: &Record) -> Option<(String, String)> {
    attempt(&record.headers)?;
    let exchange = record.headers.get_str(dlq_headers::ORIGINAL_EXCHANGE)?;
    let routing_key = record.headers.get_str(dlq_headers::ORIGINAL_ROUTING_KEY)?;
    Some((exchange.to_owned(), routing_key.to_owned()))
}

/// The TTLs of the retry queues `retry` asks for, by index: none unless its mode is
/// `topics`; else one per attempt but the last, each the backoff after that attempt.
pub fn ttls(retry: &crate::config::RetryConfig) -> Vec<std::time::Duration> {
    if retry.mode != crate::config::RetryMode::Topics {
        return Vec::new();
    }
    (1..retry.max_attempts)
        .map(|attempt| crate::failure::policy::backoff(retry, attempt, 0.0))
        .collect()
}

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn name() {
        assert_eq!(
            crate::transport::rabbitmq::retry_queue::name("task_queue", 0),
            "task_queue.retry.0"
        );
    }

    #[test]
    fn attempt() {
        use crate::record::Headers;
        use crate::transport::rabbitmq::retry_queue::{attempt, ATTEMPTS};
        let mut h = Headers::default();
        assert_eq!(attempt(&h), None);
        h.insert(ATTEMPTS, "3");
        assert_eq!(attempt(&h), Some(3));
        h.insert(ATTEMPTS, "many");
        assert_eq!(attempt(&h), None);
    }

    #[test]
    fn reschedule() {
        use crate::failure::FailureInfo;
        use crate::record::Record;
        use crate::transport::rabbitmq::retry_queue::{reschedule, ATTEMPTS};
        let mut r = Record::new(
            "task_queue",
            0,
            7,
            Some(b"task.new".to_vec()),
            Some(b"{}".to_vec()),
        );
        r.headers.insert("amqp_receivedExchange", "tasks");
        r.headers.insert("amqp_receivedRoutingKey", "task.new");
        let info = FailureInfo {
            exception_type: "E".into(),
            cause_type: None,
            message: "down".into(),
            trace: "E: down".into(),
        };
        let out = reschedule(&r, 0, 2, &info);
        assert_eq!(out.topic, "amqp:///task_queue.retry.0");
        assert_eq!(out.headers.get_str(ATTEMPTS), Some("2"));
        assert_eq!(out.headers.get_str("x-original-exchange"), Some("tasks"));
        assert_eq!(out.headers.get_str("x-exception-message"), Some("down"));
    }

    #[test]
    fn ttls() {
        use crate::config::{RetryConfig, RetryMode};
        use crate::transport::rabbitmq::retry_queue::ttls;
        use std::time::Duration;
        assert!(ttls(&RetryConfig::default()).is_empty());
        let retry = RetryConfig {
            mode: RetryMode::Topics,
            max_attempts: 4,
            ..Default::default()
        };
        assert_eq!(ttls(&retry), [1, 2, 4].map(Duration::from_secs));
    }
}
