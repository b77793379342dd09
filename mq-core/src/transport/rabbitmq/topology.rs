//! What a queue listener declares at startup: its durable queue (or, for a queue operations
//! created otherwise, a passive declare: see [`QueueMode`]), the dead-letter exchange
//! and `<queue>.dlq` bound to it with the queue's name, and in retry-topics mode its
//! [retry queues](super::retry_queue).

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use super::properties::short;
use super::{dlq, DEAD_LETTER_EXCHANGE};
use crate::registry::Binding;

/// How a listener's queue is to be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueMode {
    /// Declared as mq would have it (`declare: true`, the default).
    Declare,
    /// Taken as it exists (`declare: false`, or after RabbitMQ refused mq's declaration
    /// of a queue operations created otherwise): a passive declare, which fails only when
    /// the queue does not exist.
    AsItIs,
}

/// Declares `queue` and its `bindings` (with their exchanges), all durable (declaring what
/// exists with the same settings changes nothing). With a `delivery_limit`, `queue` is a
/// quorum queue that dead-letters a message returned more often than that to
/// `<queue>.dlq`. A queue that exists with other settings is refused by RabbitMQ
/// (`PRECONDITION_FAILED`): the error names the queue and what mq declares. The dead-letter
/// and retry queues: [`declare_dead_letters`].
pub(crate) async fn declare(
    channel: &Channel,
    queue: &str,
    mode: QueueMode,
    bindings: &[Binding],
    delivery_limit: Option<u32>,
) -> Result<(), String> {
    let durable = QueueDeclareOptions::durable();
    let name = short("queue name", queue)?;
    match mode {
        QueueMode::Declare => {
            let (args, wanted) = queue_arguments(queue, delivery_limit);
            channel
                .queue_declare(name.clone(), durable, args)
                .await
                .map_err(|e| refused(queue, &wanted, &e))?;
        }
        QueueMode::AsItIs => {
            let passive = QueueDeclareOptions::default().passive();
            channel
                .queue_declare(name.clone(), passive, FieldTable::default())
                .await
                .map_err(|e| format!("queue {queue} is not there to consume as it is: {e}"))?;
        }
    }
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
        let exchange = short("exchange name", &b.exchange)?;
        let routing_key = short("routing key", &b.routing_key)?;
        channel
            .exchange_declare(exchange.clone(), kind, durable, FieldTable::default())
            .await
            .map_err(|e| format!("cannot declare {} exchange {}: {e}", b.kind, b.exchange))?;
        channel
            .queue_bind(
                name.clone(),
                exchange,
                routing_key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("cannot bind {queue} to {}: {e}", b.exchange))?;
    }
    Ok(())
}

/// Declares the dead-letter exchange, `queue`'s dead-letter queue bound to it with the
/// queue's name, and the retry queues (TTLs `retry_ttls`), each on a channel of its own.
/// The dead-letter queue takes the listener queue's kind: a quorum queue's dead letters go
/// to a quorum queue, which (as the queue itself) lives on while a node is down; a classic
/// one's stay on the node that declared it. A dead-letter or retry queue that exists with
/// other settings (a classic `.dlq` from before, one operations made) is used as it is:
/// returned are the notes that say so, for one WARN.
pub(crate) async fn declare_dead_letters(
    connection: &lapin::Connection,
    queue: &str,
    quorum: bool,
    retry_ttls: &[Duration],
) -> Result<Vec<String>, String> {
    let channel = open(connection).await?;
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot declare exchange {DEAD_LETTER_EXCHANGE}: {e}"))?;
    let mut notes = Vec::new();
    let dead = dlq(queue);
    let mut args = FieldTable::default();
    if quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    let wanted = if quorum {
        "durable, x-queue-type=quorum"
    } else {
        "durable, no arguments"
    };
    let mut channel = declare_or_take(connection, channel, &dead, args, wanted, &mut notes).await?;
    channel
        .queue_bind(
            short("dead-letter queue name", &dead)?,
            DEAD_LETTER_EXCHANGE.into(),
            short("queue name", queue)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot bind {dead} to {DEAD_LETTER_EXCHANGE}: {e}"))?;
    for (n, ttl) in retry_ttls.iter().enumerate() {
        let retry = super::retry_queue::name(queue, n as u32);
        let (args, wanted) = retry_queue_arguments(queue, *ttl);
        channel = declare_or_take(connection, channel, &retry, args, &wanted, &mut notes).await?;
    }
    let _ = channel.close(200, "declared".into()).await;
    Ok(notes)
}

async fn open(connection: &lapin::Connection) -> Result<Channel, String> {
    connection
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))
}

/// Declares `queue` durable with `args` on `channel`; when it exists with other settings,
/// takes it as it is (a passive declare on a new channel: the refusal closed the first)
/// and adds a note. Returns the channel that is still open.
async fn declare_or_take(
    connection: &lapin::Connection,
    channel: Channel,
    queue: &str,
    args: FieldTable,
    wanted: &str,
    notes: &mut Vec<String>,
) -> Result<Channel, String> {
    let name = short("queue name", queue)?;
    let declared = channel
        .queue_declare(name.clone(), QueueDeclareOptions::durable(), args)
        .await
        .map_err(|e| refused(queue, wanted, &e));
    match declared {
        Ok(_) => Ok(channel),
        Err(e) if is_inequivalent(&e) => {
            let channel = open(connection).await?;
            let passive = QueueDeclareOptions::default().passive();
            channel
                .queue_declare(name, passive, FieldTable::default())
                .await
                .map_err(|e| format!("cannot declare queue {queue}: {e}"))?;
            notes.push(format!(
                "{queue} exists with other settings than mq declares ({wanted}): used as it is"
            ));
            Ok(channel)
        }
        Err(e) => Err(e),
    }
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
pub(crate) fn queue_arguments(queue: &str, delivery_limit: Option<u32>) -> (FieldTable, String) {
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

/// Whether `error` (a declaration refused) says the queue exists with other arguments.
pub(crate) fn is_inequivalent(error: &str) -> bool {
    error.contains("exists with other settings")
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

/// The arguments `queue` exists with, learnt the only way AMQP 0-9-1 tells them: declare it
/// with `args`; on each `inequivalent arg` refusal, take the value RabbitMQ says is
/// current and declare again (each refusal closes its channel: a new one each time).
/// Returns the channel of the declaration that passed (equivalent to a passive one: the
/// queue must exist, or it is created with what was learnt) and the arguments.
pub(crate) async fn existing_arguments(
    connection: &lapin::Connection,
    queue: &str,
    mut args: FieldTable,
) -> Result<(Channel, FieldTable), String> {
    let mut durable = true;
    for _ in 0..32 {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        let options = QueueDeclareOptions {
            durable,
            ..Default::default()
        };
        let e = match channel
            .queue_declare(short("queue name", queue)?, options, args.clone())
            .await
        {
            Ok(_) => return Ok((channel, args)),
            Err(e) => e.to_string(),
        };
        match inequivalent(&e) {
            Some(("durable", current)) => durable = current == Some(AMQPValue::Boolean(true)),
            Some((name, current)) => {
                let mut next = FieldTable::default();
                for (k, v) in args.inner() {
                    if k.as_str() != name {
                        next.insert(k.clone(), v.clone());
                    }
                }
                if let Some(v) = current {
                    next.insert(name.into(), v);
                }
                args = next;
            }
            None => return Err(format!("cannot declare queue {queue}: {e}")),
        }
    }
    Err(format!("cannot learn the arguments of queue {queue}"))
}

/// RabbitMQ's `inequivalent arg '<name>' ... but current is the value '<v>' of type '<t>'`
/// (or `... current is none`): the argument and its current value. `durable` reads
/// `received 'true' but current is 'false'`.
fn inequivalent(error: &str) -> Option<(&str, Option<AMQPValue>)> {
    let rest = &error[error.find("inequivalent arg '")? + "inequivalent arg '".len()..];
    let name = &rest[..rest.find('\'')?];
    let current = &rest[rest.find("current is ")? + "current is ".len()..];
    if current.starts_with("none") {
        return Some((name, None));
    }
    if name == "durable" {
        return Some((
            name,
            Some(AMQPValue::Boolean(current.starts_with("'true'"))),
        ));
    }
    let value = &current[current.find("the value '")? + "the value '".len()..];
    let (value, kind) = value.split_once("' of type '")?;
    let kind = &kind[..kind.find('\'')?];
    let typed = match kind {
        "bool" => AMQPValue::Boolean(value == "true"),
        "longstr" | "shortstr" => AMQPValue::LongString(LongString::from(value)),
        "signedint" | "long" | "short" | "byte" | "unsignedbyte" | "unsignedshort"
        | "unsignedint" => AMQPValue::LongLongInt(value.parse().ok()?),
        _ => return None,
    };
    Some((name, Some(typed)))
}

/// Whether `args` make a single-active-consumer queue.
pub(crate) fn is_single_active_consumer(args: &FieldTable) -> bool {
    args.inner().get("x-single-active-consumer") == Some(&AMQPValue::Boolean(true))
}

/// Whether `args` make a quorum queue.
pub(crate) fn is_quorum(args: &FieldTable) -> bool {
    matches!(args.inner().get("x-queue-type"), Some(AMQPValue::LongString(t)) if t.as_bytes() == b"quorum")
}

/// `args` as text, for a log line.
pub(crate) fn describe(args: &FieldTable) -> String {
    let items: Vec<String> = args
        .inner()
        .iter()
        .map(|(k, v)| match v {
            AMQPValue::LongString(s) => format!("{k}={}", String::from_utf8_lossy(s.as_bytes())),
            AMQPValue::Boolean(b) => format!("{k}={b}"),
            AMQPValue::LongLongInt(i) => format!("{k}={i}"),
            AMQPValue::LongInt(i) => format!("{k}={i}"),
            other => format!("{k}={other:?}"),
        })
        .collect();
    if items.is_empty() {
        "no arguments".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmqs_refusals_say_what_the_queue_has() {
        let sac = "protocol error: AMQP soft error: PRECONDITION-FAILED: PRECONDITION_FAILED - \
                   inequivalent arg 'x-single-active-consumer' for queue 'q' in vhost '/': \
                   received none but current is the value 'true' of type 'bool'";
        assert_eq!(
            inequivalent(sac),
            Some(("x-single-active-consumer", Some(AMQPValue::Boolean(true))))
        );
        let quorum = "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received \
                      none but current is the value 'quorum' of type 'longstr'";
        assert_eq!(
            inequivalent(quorum),
            Some(("x-queue-type", Some(AMQPValue::LongString("quorum".into()))))
        );
        let limit = "inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': received \
                     the value '3' of type 'signedint' but current is none";
        assert_eq!(inequivalent(limit), Some(("x-delivery-limit", None)));
        let ttl = "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received none \
                   but current is the value '5000' of type 'long'";
        assert_eq!(
            inequivalent(ttl),
            Some(("x-message-ttl", Some(AMQPValue::LongLongInt(5000))))
        );
        let durable = "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' \
                       but current is 'false'";
        assert_eq!(
            inequivalent(durable),
            Some(("durable", Some(AMQPValue::Boolean(false))))
        );
        assert_eq!(inequivalent("NOT_FOUND - no queue 'q'"), None);
    }
}
