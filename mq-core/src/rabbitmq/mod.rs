//! The RabbitMQ transport (AMQP 0-9-1 through `lapin`): queue listeners, `amqp://`
//! destinations of the [`Publisher`](crate::Publisher), topology and health.
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
//! Only the submodules behind the `rabbitmq` feature name lapin types; what is here
//! (destinations, dead letters, header names) is plain data, also used by the in-memory
//! broker.

// Without the app's transport (the `kafka` feature) nothing starts consumers or sinks.
#![cfg_attr(not(feature = "kafka"), allow(dead_code))]

pub mod dead_letter;
pub mod destination;
pub mod redrive;
pub mod retry_queue;

#[cfg(feature = "rabbitmq")]
pub(crate) mod connection;
// Consumers and health run inside the app's transport, which needs Kafka's client too.
#[cfg(all(feature = "rabbitmq", feature = "kafka"))]
pub(crate) mod consumer;
#[cfg(all(feature = "rabbitmq", feature = "kafka"))]
pub(crate) mod depth;
#[cfg(all(feature = "rabbitmq", feature = "kafka"))]
pub(crate) mod health;
#[cfg(feature = "rabbitmq")]
pub(crate) mod properties;
#[cfg(feature = "rabbitmq")]
pub(crate) mod publisher;
// The replay report is the Kafka replay's.
#[cfg(all(feature = "rabbitmq", feature = "kafka"))]
pub(crate) mod replay;
#[cfg(feature = "rabbitmq")]
pub(crate) mod tls;
#[cfg(feature = "rabbitmq")]
pub(crate) mod topology;

/// A binding of a listener's queue to an exchange, declared (exchange included, durable)
/// at startup.
///
/// ```
/// let b = mq_core::rabbitmq::Binding { exchange: "orders".into(), kind: "topic".into(), routing_key: "order.*".into() };
/// assert_eq!(b.kind, "topic");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The exchange.
    pub exchange: String,
    /// Its kind: `direct`, `fanout`, `topic` or `headers`.
    pub kind: String,
    /// The binding's routing key (a pattern for a topic exchange).
    pub routing_key: String,
}

/// The direct exchange every queue listener's dead letters are published to; the queue
/// `<queue>.dlq` is bound to it with the routing key `<queue>`.
pub const DEAD_LETTER_EXCHANGE: &str = "mq.dlx";

/// The dead-letter queue of `queue`: `<queue>.dlq`.
///
/// ```
/// assert_eq!(mq_core::rabbitmq::dlq("task_queue"), "task_queue.dlq");
/// ```
pub fn dlq(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Headers a queue listener's records carry besides the message's own (Spring AMQP's
/// `AmqpHeaders` names); read them with `ctx.headers()`. They are not copied into dead
/// letters.
pub mod headers {
    /// The exchange the message was published to (empty: the default exchange).
    pub const RECEIVED_EXCHANGE: &str = "amqp_receivedExchange";
    /// The routing key it was published with (also the record's key).
    pub const RECEIVED_ROUTING_KEY: &str = "amqp_receivedRoutingKey";
    /// `true` when RabbitMQ delivered it before (to this or another consumer).
    pub const REDELIVERED: &str = "amqp_redelivered";
    /// The delivery tag on its channel (also the record's offset).
    pub const DELIVERY_TAG: &str = "amqp_deliveryTag";
    /// Prefix of the headers above.
    pub const PREFIX: &str = "amqp_";
}
