//! Which broker a publish goes to: a destination `amqp://<exchange>/<routing-key>` is a
//! RabbitMQ exchange, anything else a Kafka topic. One [`Publisher`](crate::publisher::Publisher)
//! API for both brokers, as `RabbitTemplate.convertAndSend(exchange, routingKey, ..)`:
//!
//! - `amqp://orders/order.confirmed`: exchange `orders`, routing key `order.confirmed`;
//! - `amqp://orders`: exchange `orders`, the record's key as routing key;
//! - `amqp:///task_queue`: the default exchange, which routes to the queue of that name.

/// The scheme that marks a RabbitMQ destination.
pub const SCHEME: &str = "amqp://";

/// A RabbitMQ destination: exchange and routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The exchange (empty: the default exchange).
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
}

impl Exchange {
    /// The exchange and routing key `destination` names; `key` (the record's key) is the
    /// routing key when the destination has none. `None` for a Kafka topic.
    pub fn parse(destination: &str, key: Option<&[u8]>) -> Option<Exchange> {
        let rest = destination.strip_prefix(SCHEME)?;
        let (exchange, routing_key) = match rest.split_once('/') {
            Some((e, rk)) => (e, rk.to_owned()),
            None => (
                rest,
                key.map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default(),
            ),
        };
        Some(Exchange {
            exchange: exchange.to_owned(),
            routing_key,
        })
    }

    /// The destination string of `exchange` and `routing_key`.
    pub fn destination(exchange: &str, routing_key: &str) -> String {
        format!("{SCHEME}{exchange}/{routing_key}")
    }
}

/// Whether `destination` is a RabbitMQ one.
pub fn is_rabbit(destination: &str) -> bool {
    destination.starts_with(SCHEME)
}

/// Where the in-memory broker of `mq_core::testing` puts a record for `destination`: a
/// queue's name for the default exchange (`amqp:///task_queue` → `task_queue`, which a
/// queue listener of `TestApp` reads), `<queue>.dlq` for a dead letter; any other
/// destination as it is (exchanges route nothing in memory).
pub fn in_memory_topic(destination: &str) -> String {
    match Exchange::parse(destination, None) {
        Some(e) if e.exchange.is_empty() => e.routing_key,
        Some(e) if e.exchange == super::DEAD_LETTER_EXCHANGE => super::dlq(&e.routing_key),
        _ => destination.to_owned(),
    }
}

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn exchange() {
        use crate::transport::rabbitmq::destination::Exchange;
        let d = Exchange::parse("amqp://orders/order.confirmed", None).unwrap();
        assert_eq!(
            (d.exchange.as_str(), d.routing_key.as_str()),
            ("orders", "order.confirmed")
        );
        let d = Exchange::parse("amqp://orders", Some(b"order.created")).unwrap();
        assert_eq!(d.routing_key, "order.created");
        let d = Exchange::parse("amqp:///task_queue", None).unwrap();
        assert_eq!(
            (d.exchange.as_str(), d.routing_key.as_str()),
            ("", "task_queue")
        );
        assert!(Exchange::parse("orders", None).is_none());
    }

    #[test]
    fn destination() {
        use crate::transport::rabbitmq::destination::Exchange;
        assert_eq!(
            Exchange::destination("mq.dlx", "task_queue"),
            "amqp://mq.dlx/task_queue"
        );
    }

    #[test]
    fn is_rabbit() {
        assert!(crate::transport::rabbitmq::destination::is_rabbit(
            "amqp://orders/x"
        ));
        assert!(!crate::transport::rabbitmq::destination::is_rabbit(
            "orders"
        ));
    }

    #[test]
    fn in_memory_topic() {
        use crate::transport::rabbitmq::destination::in_memory_topic;
        assert_eq!(in_memory_topic("amqp:///task_queue"), "task_queue");
        assert_eq!(
            in_memory_topic("amqp://mq.dlx/task_queue"),
            "task_queue.dlq"
        );
        assert_eq!(
            in_memory_topic("amqp://orders/order.created"),
            "amqp://orders/order.created"
        );
        assert_eq!(in_memory_topic("orders"), "orders");
    }
}
