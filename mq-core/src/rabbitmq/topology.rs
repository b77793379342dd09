//! What a queue listener declares at startup: its durable queue, the dead-letter exchange
//! and `<queue>.dlq` bound to it with the queue's name, and in retry-topics mode its
//! [retry queues](super::retry_queue).

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use super::{dlq, Binding, DEAD_LETTER_EXCHANGE};

/// Declares `queue`, its `bindings` (with their exchanges), the dead-letter exchange and
/// `queue`'s dead-letter queue (all durable; declaring what exists with the same settings
/// changes nothing). With a `delivery_limit`, `queue` is a quorum queue that dead-letters
/// a message returned more often than that to `<queue>.dlq`. A queue that exists with
/// other settings is refused by RabbitMQ (`PRECONDITION_FAILED`): the error names the
/// queue and what mq declares. `retry_ttls`: the TTL of each retry queue
/// `<queue>.retry.<n>`, which dead-letters back to `queue` through the default exchange.
pub(crate) async fn declare(
    channel: &Channel,
    queue: &str,
    bindings: &[Binding],
    delivery_limit: Option<u32>,
    retry_ttls: &[Duration],
) -> Result<(), String> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let (args, wanted) = queue_arguments(queue, delivery_limit);
    channel
        .queue_declare(queue, durable, args)
        .await
        .map_err(|e| refused(queue, &wanted, &e))?;
    for b in bindings {
        let kind = match b.kind.as_str() {
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            _ => ExchangeKind::Direct,
        };
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(&b.exchange, kind, durable, FieldTable::default())
            .await
            .map_err(|e| format!("cannot declare {} exchange {}: {e}", b.kind, b.exchange))?;
        channel
            .queue_bind(
                queue,
                &b.exchange,
                &b.routing_key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("cannot bind {queue} to {}: {e}", b.exchange))?;
    }
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE,
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot declare exchange {DEAD_LETTER_EXCHANGE}: {e}"))?;
    let dead = dlq(queue);
    channel
        .queue_declare(&dead, durable, FieldTable::default())
        .await
        .map_err(|e| refused(&dead, "durable, no arguments", &e))?;
    channel
        .queue_bind(
            &dead,
            DEAD_LETTER_EXCHANGE,
            queue,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot bind {dead} to {DEAD_LETTER_EXCHANGE}: {e}"))?;
    for (n, ttl) in retry_ttls.iter().enumerate() {
        let retry = super::retry_queue::name(queue, n as u32);
        let (args, wanted) = retry_queue_arguments(queue, *ttl);
        channel
            .queue_declare(&retry, durable, args)
            .await
            .map_err(|e| refused(&retry, &wanted, &e))?;
    }
    Ok(())
}

/// The arguments of a retry queue of `queue` holding messages for `ttl`.
fn retry_queue_arguments(queue: &str, ttl: Duration) -> (FieldTable, String) {
    let ms = ttl.as_millis().min(i32::MAX as u128) as i32;
    let mut args = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(ms));
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(queue));
    let wanted = format!(
        "durable, x-message-ttl={ms}, x-dead-letter-exchange=\"\", x-dead-letter-routing-key={queue}"
    );
    (args, wanted)
}

/// The arguments of a listener's queue, and how they read in an error.
fn queue_arguments(queue: &str, delivery_limit: Option<u32>) -> (FieldTable, String) {
    let mut args = FieldTable::default();
    let Some(limit) = delivery_limit else {
        return (args, "durable, no arguments".to_owned());
    };
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit as i32));
    args.insert("x-dead-letter-exchange".into(), text(DEAD_LETTER_EXCHANGE));
    args.insert("x-dead-letter-routing-key".into(), text(queue));
    let wanted = format!(
        "durable, x-queue-type=quorum, x-delivery-limit={limit}, \
         x-dead-letter-exchange={DEAD_LETTER_EXCHANGE}, x-dead-letter-routing-key={queue}"
    );
    (args, wanted)
}

fn refused(queue: &str, wanted: &str, e: &lapin::Error) -> String {
    let text = e.to_string();
    if text.contains("PRECONDITION_FAILED") || text.contains("inequivalent") {
        format!(
            "queue {queue} exists with other settings than mq declares ({wanted}); \
             delete it or declare it the same way: {text}"
        )
    } else {
        format!("cannot declare queue {queue}: {text}")
    }
}
