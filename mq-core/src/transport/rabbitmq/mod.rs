//! The RabbitMQ transport (AMQP 0-9-1 through `lapin`): queue listeners, `amqp://`
//! destinations of the [`Publisher`](crate::publisher::Publisher), topology and health.
//!
//! A queue listener (`#[listener(queue = "task_queue")]`) runs `concurrency` consumers,
//! each on its own channel with `basic.qos(prefetch)`, and each consumer is **one lane**
//! (topic = the queue, partition = the consumer's index): the delivery tag is the lane's
//! offset, and the lane's commit (`commit_through(tag)`) is `basic.ack(tag, multiple)`.
//! So a message is acknowledged only after its handler succeeded or it reached the
//! dead-letter queue, and a message whose lane closed first is never acked: RabbitMQ
//! delivers it again when the channel closes.
//!
//! Dead letters go to `<queue>.dlq`, bound with the queue's name to the direct exchange
//! [`DEAD_LETTER_EXCHANGE`], with Spring AMQP's `RepublishMessageRecoverer` headers (see
//! [`dead_letter`]). Publishing picks the broker by destination (see [`destination`]).
//!
//! Only the submodules behind the `rabbitmq` feature name lapin types; the conventions
//! (destinations, dead letters, retry queues, header names) are plain data, always
//! compiled, also used by the in-memory broker.

// Without the client, the conventions serve the in-memory broker only.
#![cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]

// Conventions: plain data, always compiled.
pub(crate) mod dead_letter;
pub(crate) mod destination;
pub(crate) mod redrive;
pub(crate) mod reply;
pub(crate) mod retry_queue;
pub(crate) mod routes;

// The client.
#[cfg(feature = "rabbitmq")]
pub(crate) mod connection;
#[cfg(feature = "rabbitmq")]
pub(crate) mod consumer;
#[cfg(feature = "rabbitmq")]
pub(crate) mod depth;
#[cfg(feature = "rabbitmq")]
pub(crate) mod frame;
#[cfg(feature = "rabbitmq")]
pub(crate) mod health;
#[cfg(feature = "rabbitmq")]
pub(crate) mod properties;
#[cfg(feature = "rabbitmq")]
pub(crate) mod publisher;
#[cfg(feature = "rabbitmq")]
pub(crate) mod redelivery;
#[cfg(feature = "rabbitmq")]
pub(crate) mod replay;
#[cfg(feature = "rabbitmq")]
pub(crate) mod tls;
#[cfg(feature = "rabbitmq")]
pub(crate) mod topology;
#[cfg(feature = "rabbitmq")]
pub(crate) mod transport;

/// The direct exchange every queue listener's dead letters are published to; the queue
/// `<queue>.dlq` is bound to it with the routing key `<queue>`.
pub(crate) const DEAD_LETTER_EXCHANGE: &str = "mq.dlx";

/// The dead-letter queue of `queue`: `<queue>.dlq`.
pub(crate) fn dlq(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Headers a queue listener's records carry besides the message's own (Spring AMQP's
/// `AmqpHeaders` names); read them with `ctx.headers()`. The delivery's (exchange, routing
/// key, redelivered, tag) are not copied into dead letters; the message's basic properties
/// are, as properties: a dead letter, a retry copy and a replayed message keep
/// `message_id`, `correlation_id`, `reply_to`, `timestamp`, `type`, `app_id`,
/// `content_type`, `content_encoding` and `priority`. Not `expiration` (the copy would
/// expire in the dead-letter or retry queue; a dead letter keeps it as
/// `x-original-expiration`, as RabbitMQ's own dead-lettering does in `x-death`) nor
/// `user_id` (the broker refuses a `user_id` that is not the publishing connection's user).
pub(crate) mod headers {
    /// The exchange the message was published to (empty: the default exchange).
    pub const RECEIVED_EXCHANGE: &str = "amqp_receivedExchange";
    /// The routing key it was published with (also the record's key).
    pub const RECEIVED_ROUTING_KEY: &str = "amqp_receivedRoutingKey";
    /// `true` when RabbitMQ delivered it before (to this or another consumer).
    pub const REDELIVERED: &str = "amqp_redelivered";
    /// The delivery tag on its channel (also the record's offset).
    pub const DELIVERY_TAG: &str = "amqp_deliveryTag";
    /// The `message_id` property.
    pub const MESSAGE_ID: &str = "amqp_messageId";
    /// The `correlation_id` property.
    pub const CORRELATION_ID: &str = "amqp_correlationId";
    /// The `reply_to` property.
    pub const REPLY_TO: &str = "amqp_replyTo";
    /// The `timestamp` property (a timestamp-typed header, seconds).
    pub const TIMESTAMP: &str = "amqp_timestamp";
    /// The `type` property.
    pub const TYPE: &str = "amqp_type";
    /// The `app_id` property.
    pub const APP_ID: &str = "amqp_appId";
    /// The `priority` property (an unsigned 8-bit header).
    pub const PRIORITY: &str = "amqp_priority";
    /// The `expiration` property (read only: never republished).
    pub const EXPIRATION: &str = "amqp_expiration";
    /// The `user_id` property (read only: never republished).
    pub const USER_ID: &str = "amqp_userId";

    /// The headers that describe one delivery rather than the message: never copied.
    pub(crate) fn is_delivery(name: &str) -> bool {
        matches!(
            name,
            RECEIVED_EXCHANGE | RECEIVED_ROUTING_KEY | REDELIVERED | DELIVERY_TAG
        )
    }
}

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn dlq() {
        assert_eq!(
            crate::transport::rabbitmq::dlq("task_queue"),
            "task_queue.dlq"
        );
    }
}
