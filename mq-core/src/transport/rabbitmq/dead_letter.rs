//! Dead letters of queue listeners, as Spring AMQP's `RepublishMessageRecoverer` writes
//! them: the original body, headers (RabbitMQ's own `x-death` included) and basic
//! properties (see [`headers`](super::headers)), plus `x-exception-message`,
//! `x-exception-stacktrace` (capped; left out with
//! `mq.rabbitmq.listener.dead-letter.stack-trace: false`), `x-original-exchange`,
//! `x-original-routingKey` and mq's `mq_dlt-timestamp` (when); earlier `x-exception-*` and `x-original-*` headers are
//! replaced, not appended (a message back from a [retry queue](super::retry_queue) keeps
//! the exchange and routing key it was first published with).

use super::destination::Exchange;
use super::{headers as amqp, DEAD_LETTER_EXCHANGE};
use crate::failure::info::{truncate, FailureInfo, STACKTRACE_CAP};
use crate::record::{HeaderValue, OutgoingRecord, Record};

/// Header names (Spring AMQP's `RepublishMessageRecoverer`).
pub mod headers {
    /// The error message.
    pub const EXCEPTION_MESSAGE: &str = "x-exception-message";
    /// The error and its causes, capped at `STACKTRACE_CAP` bytes.
    pub const EXCEPTION_STACKTRACE: &str = "x-exception-stacktrace";
    /// The exchange the message had been published to.
    pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
    /// Its routing key.
    pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routingKey";
    /// `mq`'s own: the dead letter had to be published without its body (how large it was
    /// and why it went); the same name on every transport.
    pub const VALUE_DROPPED: &str = "mq_dlt-value-dropped";
    /// `mq`'s own: the original headers had to be left out too (their count).
    pub const HEADERS_DROPPED: &str = "mq_dlt-headers-dropped";
    /// `mq`'s own: the names of the original headers left out to fit `frame_max`.
    pub const HEADERS_DROPPED_NAMES: &str = "mq_dlt-headers-dropped-names";
    /// `mq`'s own: the key had to be left out too (its size in bytes).
    pub const KEY_DROPPED: &str = "mq_dlt-key-dropped";
    /// The message's `expiration` property (not republished: the copy would expire).
    pub const ORIGINAL_EXPIRATION: &str = "x-original-expiration";
    /// `mq`'s own: when it was dead-lettered (a timestamp, seconds; the message keeps its
    /// own `timestamp` property). What `mq dlt-replay --since/--until` read.
    pub const DEAD_LETTERED_AT: &str = "mq_dlt-timestamp";
}

/// The dead letter of `record` (read from queue `record.topic`), bound for
/// `<queue>.dlq` through [`DEAD_LETTER_EXCHANGE`].
pub fn build(record: &Record, info: &FailureInfo) -> OutgoingRecord {
    // Back from a retry queue, it was received from the default exchange: the exchange
    // and routing key it was first published with are the ones it carries.
    let (exchange, routing_key) =
        super::retry_queue::carried_original(record).unwrap_or_else(|| {
            let received = |name| record.headers.get_str(name).unwrap_or_default().to_owned();
            (
                received(amqp::RECEIVED_EXCHANGE),
                received(amqp::RECEIVED_ROUTING_KEY),
            )
        });
    let mut out = OutgoingRecord::new(
        Exchange::destination(DEAD_LETTER_EXCHANGE, &record.topic),
        record.key.clone(),
        record.value.clone().unwrap_or_default(),
    );
    out.headers = record.headers.clone();
    out.headers.retain(|name| {
        !amqp::is_delivery(name)
            && name != amqp::USER_ID
            && name != amqp::EXPIRATION
            && !name.starts_with("x-exception-")
            && !name.starts_with("x-original-")
            && name != headers::DEAD_LETTERED_AT
    });
    out.headers
        .insert(headers::EXCEPTION_MESSAGE, truncate(&info.message, 4096));
    out.headers.insert(
        headers::EXCEPTION_STACKTRACE,
        truncate(&info.trace, STACKTRACE_CAP),
    );
    // Not republished as a property (it would expire in the dead-letter queue): kept
    // where RabbitMQ's own dead-lettering keeps it in `x-death`.
    if let Some(expiration) = record.headers.get(amqp::EXPIRATION) {
        out.headers
            .insert(headers::ORIGINAL_EXPIRATION, expiration.to_vec());
    }
    out.headers.insert_typed(
        headers::DEAD_LETTERED_AT,
        HeaderValue::Timestamp(chrono::Utc::now().timestamp().max(0) as u64),
    );
    out.headers.insert(headers::ORIGINAL_EXCHANGE, exchange);
    out.headers
        .insert(headers::ORIGINAL_ROUTING_KEY, routing_key);
    out
}

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn build() {
        use crate::failure::FailureInfo;
        use crate::record::Record;
        use crate::transport::rabbitmq::dead_letter::{build, headers};
        let mut r = Record::new(
            "task_queue",
            0,
            7,
            Some(b"task.new".to_vec()),
            Some(b"{".to_vec()),
        );
        r.headers.insert("amqp_receivedExchange", "tasks");
        r.headers.insert("amqp_receivedRoutingKey", "task.new");
        r.headers.insert("x-exception-message", "old");
        let info = FailureInfo {
            exception_type: "E".into(),
            cause_type: None,
            message: "bad".into(),
            trace: "E: bad".into(),
        };
        let out = build(&r, &info);
        assert_eq!(out.topic, "amqp://mq.dlx/task_queue");
        assert_eq!(out.value.as_deref(), Some(&b"{"[..]));
        assert_eq!(out.headers.get_str(headers::EXCEPTION_MESSAGE), Some("bad"));
        assert_eq!(
            out.headers.get_str(headers::ORIGINAL_EXCHANGE),
            Some("tasks")
        );
        assert_eq!(
            out.headers.get_str(headers::ORIGINAL_ROUTING_KEY),
            Some("task.new")
        );
        assert!(out.headers.get("amqp_receivedExchange").is_none());
    }
}
