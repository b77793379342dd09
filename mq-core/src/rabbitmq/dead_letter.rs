//! Dead letters of queue listeners, as Spring AMQP's `RepublishMessageRecoverer` writes
//! them: the original body and headers (RabbitMQ's own `x-death` included), plus
//! `x-exception-message`, `x-exception-stacktrace` (capped), `x-original-exchange` and
//! `x-original-routingKey`; earlier `x-exception-*` and `x-original-*` headers are
//! replaced, not appended (a message back from a [retry queue](super::retry_queue) keeps
//! the exchange and routing key it was first published with).

use super::destination::Exchange;
use super::{headers as amqp, DEAD_LETTER_EXCHANGE};
use crate::dead_letter::{truncate, FailureInfo, STACKTRACE_CAP};
use crate::record::{OutgoingRecord, Record};

/// Header names (Spring AMQP's `RepublishMessageRecoverer`).
pub mod headers {
    /// The error message.
    pub const EXCEPTION_MESSAGE: &str = "x-exception-message";
    /// The error and its causes, capped at [`crate::dead_letter::STACKTRACE_CAP`] bytes.
    pub const EXCEPTION_STACKTRACE: &str = "x-exception-stacktrace";
    /// The exchange the message had been published to.
    pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
    /// Its routing key.
    pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routingKey";
}

/// The dead letter of `record` (read from queue `record.topic`), bound for
/// `<queue>.dlq` through [`DEAD_LETTER_EXCHANGE`].
///
/// ```
/// use mq_core::dead_letter::FailureInfo;
/// use mq_core::rabbitmq::dead_letter::{build, headers};
/// use mq_core::record::Record;
/// let mut r = Record::new("task_queue", 0, 7, Some(b"task.new".to_vec()), Some(b"{".to_vec()));
/// r.headers.insert("amqp_receivedExchange", "tasks");
/// r.headers.insert("amqp_receivedRoutingKey", "task.new");
/// r.headers.insert("x-exception-message", "old");
/// let info = FailureInfo { exception_type: "E".into(), cause_type: None, message: "bad".into(), trace: "E: bad".into() };
/// let out = build(&r, &info);
/// assert_eq!(out.topic, "amqp://mq.dlx/task_queue");
/// assert_eq!(out.value.as_deref(), Some(&b"{"[..]));
/// assert_eq!(out.headers.get_str(headers::EXCEPTION_MESSAGE), Some("bad"));
/// assert_eq!(out.headers.get_str(headers::ORIGINAL_EXCHANGE), Some("tasks"));
/// assert_eq!(out.headers.get_str(headers::ORIGINAL_ROUTING_KEY), Some("task.new"));
/// assert!(out.headers.get("amqp_receivedExchange").is_none());
/// ```
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
        !name.starts_with(amqp::PREFIX)
            && !name.starts_with("x-exception-")
            && !name.starts_with("x-original-")
    });
    out.headers
        .insert(headers::EXCEPTION_MESSAGE, truncate(&info.message, 4096));
    out.headers.insert(
        headers::EXCEPTION_STACKTRACE,
        truncate(&info.trace, STACKTRACE_CAP),
    );
    out.headers.insert(headers::ORIGINAL_EXCHANGE, exchange);
    out.headers
        .insert(headers::ORIGINAL_ROUTING_KEY, routing_key);
    out
}
