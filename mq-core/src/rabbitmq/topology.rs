//! What a queue listener declares at startup: its durable queue, the dead-letter exchange
//! and `<queue>.dlq` bound to it with the queue's name.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use super::{dlq, Binding, DEAD_LETTER_EXCHANGE};

/// Declares `queue`, its `bindings` (with their exchanges), the dead-letter exchange and
/// `queue`'s dead-letter queue (all durable; declaring what exists with the same settings
/// changes nothing). A queue that exists with other settings is refused by RabbitMQ
/// (`PRECONDITION_FAILED`): the error names the queue and what mq declares.
pub(crate) async fn declare(
    channel: &Channel,
    queue: &str,
    bindings: &[Binding],
) -> Result<(), String> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue, durable, FieldTable::default())
        .await
        .map_err(|e| refused(queue, &e))?;
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
        .map_err(|e| refused(&dead, &e))?;
    channel
        .queue_bind(
            &dead,
            DEAD_LETTER_EXCHANGE,
            queue,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot bind {dead} to {DEAD_LETTER_EXCHANGE}: {e}"))
}

fn refused(queue: &str, e: &lapin::Error) -> String {
    let text = e.to_string();
    if text.contains("PRECONDITION_FAILED") || text.contains("inequivalent") {
        format!(
            "queue {queue} exists with other settings than mq declares (durable, no arguments); \
             delete it or declare it the same way: {text}"
        )
    } else {
        format!("cannot declare queue {queue}: {text}")
    }
}
