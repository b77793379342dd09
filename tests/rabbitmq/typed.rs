//! A broker-neutral record on RabbitMQ: headers keep their AMQP type end to end, and a
//! message's identity comes from the message, never from a delivery tag.

use std::collections::BTreeSet;
use std::sync::Mutex;

use lapin::options::BasicPublishOptions;
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use lapin::BasicProperties;
use mq_core::prelude::*;

use super::operations::close_connections_of;
use super::*;

/// A header of every type RabbitMQ's tables carry, as the Java client and pika write them.
fn every_type() -> FieldTable {
    let mut death = FieldTable::default();
    death.insert("queue".into(), AMQPValue::LongString("orders".into()));
    death.insert("reason".into(), AMQPValue::LongString("rejected".into()));
    death.insert("count".into(), AMQPValue::LongLongInt(2));
    death.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
    let mut nested = FieldTable::default();
    nested.insert("inner".into(), AMQPValue::LongInt(7));
    let fields: Vec<(&str, AMQPValue)> = vec![
        ("t-string", AMQPValue::LongString("text ü".into())),
        (
            "t-bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![0u8, 159, 255])),
        ),
        ("t-i8", AMQPValue::ShortShortInt(-8)),
        ("t-u8", AMQPValue::ShortShortUInt(200)),
        ("t-i16", AMQPValue::ShortInt(-1600)),
        ("t-u16", AMQPValue::ShortUInt(60_000)),
        ("t-i32", AMQPValue::LongInt(-3_200_000)),
        ("t-u32", AMQPValue::LongUInt(4_000_000_000)),
        ("retries", AMQPValue::LongLongInt(9_007_199_254_740_993)),
        ("t-f32", AMQPValue::Float(1.5)),
        ("t-f64", AMQPValue::Double(-2.000_000_000_1)),
        (
            "t-decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 3,
                value: 123_456,
            }),
        ),
        ("t-timestamp", AMQPValue::Timestamp(1_732_785_330)),
        ("t-bool", AMQPValue::Boolean(true)),
        ("t-void", AMQPValue::Void),
        (
            "t-array",
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::LongInt(1),
                AMQPValue::LongString("two".into()),
            ])),
        ),
        ("t-table", AMQPValue::FieldTable(nested)),
        (
            "x-death",
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        ),
    ];
    let mut table = FieldTable::default();
    for (name, value) in fields {
        table.insert(ShortString::from(name), value);
    }
    table
}

/// What the handler read: `retries` as `i64`, `t-string` as text, `t-bool` as `bool`.
type Read = (Option<i64>, Option<String>, Option<bool>);

static TYPED: Mutex<Vec<Read>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_typed", retry(max_attempts = 1))]
async fn on_typed(_task: Task, ctx: Context) -> Result<(), HandlerError> {
    TYPED.lock().unwrap().push((
        ctx.header::<i64>("retries"),
        ctx.header::<String>("t-string"),
        ctx.header::<bool>("t-bool"),
    ));
    Err(HandlerError::permanent(std::io::Error::other(
        "dead-letter it",
    )))
}

#[tokio::test]
async fn typed_amqp_headers_reach_the_dead_letter_queue_with_their_type_and_bytes() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_typed").await;
    let running = start("on_typed", "").await;
    let sent = every_type();
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id("typed-1".into())
        .with_headers(sent.clone());
    publish_raw(&ch, "mq_t_typed", br#"{"n":1}"#, props).await;
    wait_for("handled", || !TYPED.lock().unwrap().is_empty()).await;
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dead.is_empty() && tokio::time::Instant::now() < deadline {
        dead = drain(&ch, "mq_t_typed.dlq").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await.unwrap();

    // The handler read the typed values as their types.
    assert_eq!(
        TYPED.lock().unwrap()[0],
        (
            Some(9_007_199_254_740_993),
            Some("text ü".to_owned()),
            Some(true)
        )
    );
    // The dead letter, read back with lapin (not mq): every header it came with, same
    // type, same value; Spring AMQP's why-headers beside them.
    assert_eq!(dead.len(), 1, "one dead letter");
    let got = dead[0].delivery.properties.headers().clone().unwrap();
    for (name, value) in sent.inner() {
        assert_eq!(got.inner().get(name), Some(value), "header {name}");
    }
    assert!(got.inner().contains_key("x-exception-message"));
    assert_eq!(
        dead[0]
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("typed-1"),
        "the dead letter keeps the message's identity"
    );
}

static TIMES: Mutex<Vec<i64>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_ce_typed_time")]
async fn on_ce_typed_time(event: Event<Task>) -> Result<(), HandlerError> {
    TIMES
        .lock()
        .unwrap()
        .push(event.time.map_or(0, |t| t.timestamp()));
    Ok(())
}

#[tokio::test]
async fn a_timestamp_typed_cloudevents_time_is_read_as_that_time() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_ce_typed_time").await;
    let running = start("on_ce_typed_time", "").await;
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("cloudEvents:specversion", "1.0"),
        ("cloudEvents:id", "t-1"),
        ("cloudEvents:source", "/java"),
        ("cloudEvents:type", "Task"),
    ] {
        headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    }
    // The AMQP binding lets a sender type `time` as an AMQP timestamp.
    headers.insert(
        "cloudEvents:time".into(),
        AMQPValue::Timestamp(1_732_785_330),
    );
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(headers);
    ch.basic_publish(
        "".into(),
        "mq_t_ce_typed_time".into(),
        BasicPublishOptions::default(),
        br#"{"n":3}"#,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap();
    wait_for("handled", || !TIMES.lock().unwrap().is_empty()).await;
    running.shutdown().await.unwrap();
    assert_eq!(
        TIMES.lock().unwrap().as_slice(),
        &[1_732_785_330],
        "not 1970"
    );
}

static IDEMPOTENT: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_idem_reconnect", idempotent)]
async fn on_idem_reconnect(task: Task) -> Result<(), HandlerError> {
    IDEMPOTENT.lock().unwrap().push(task.n);
    Ok(())
}

/// Publishes plain JSON tasks `ns` with no `message_id` (as pika does by default).
async fn publish_tasks(ch: &lapin::Channel, queue: &str, ns: std::ops::Range<u32>) {
    for n in ns {
        let body = format!(r#"{{"n":{n}}}"#);
        let props = BasicProperties::default().with_content_type("application/json".into());
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn an_idempotent_queue_listener_handles_every_new_message_after_a_reconnect() {
    let (_c, ch) = channel().await;
    let queue = "mq_t_idem_reconnect";
    fresh(&ch, queue).await;
    let management = "management:\n  server:\n    enabled: false\n";
    let running = start_named("rabbit-idem-reconnect", "on_idem_reconnect", "", management).await;
    assert!(running.wait_assigned(Duration::from_secs(20)).await);
    publish_tasks(&ch, queue, 0..3).await;
    wait_for("the first three", || IDEMPOTENT.lock().unwrap().len() == 3).await;

    // A new connection and channel: delivery tags start again at 1.
    close_connections_of("rabbit-idem-reconnect").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        running.wait_assigned(Duration::from_secs(20)).await,
        "the consumer is back"
    );
    publish_tasks(&ch, queue, 3..6).await;
    wait_for("the three sent after the reconnect", || {
        IDEMPOTENT.lock().unwrap().len() >= 6
    })
    .await;
    // The same message again (same body and properties, no id): a duplicate.
    publish_tasks(&ch, queue, 5..6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.shutdown().await.unwrap();
    let seen = IDEMPOTENT.lock().unwrap().clone();
    let distinct: BTreeSet<u32> = seen.iter().copied().collect();
    assert_eq!(
        distinct,
        (0..6).collect(),
        "every new message handled: {seen:?}"
    );
    assert_eq!(
        seen.len(),
        6,
        "the repeated message was taken for a duplicate: {seen:?}"
    );
}
