//! CloudEvents binary mode over AMQP with native attribute values (issue 22, item 6): the
//! AMQP binding lets a producer send attributes as native AMQP types (a timestamp-typed
//! `time`, an integer extension); mq reads them, and refuses what the spec forbids (a
//! non-string `id`, a `specversion` other than 1.0, a `time` that is neither a timestamp
//! nor RFC 3339 text) with a dead letter whose `x-exception-message` names the reason.
//! Published raw with lapin, as the Java client types them.

use std::sync::Mutex;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use mq_core::prelude::*;

use super::*;

const QUEUE: &str = "mq_t22_ce_native";

/// (id, time in seconds, correlationid) of an event handled.
type Seen = (String, Option<i64>, Option<String>);

static HANDLED: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t22_ce_native")]
async fn on_ce_native(event: Event<Task>) -> Result<(), HandlerError> {
    HANDLED.lock().unwrap().push((
        event.id.clone(),
        event.time.map(|t| t.timestamp()),
        event.correlationid.clone(),
    ));
    Ok(())
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// A binary-mode event: the required attributes as strings, then `extra` over them.
fn event(id: &str, prefix: &str, extra: Vec<(&str, AMQPValue)>) -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in [
        ("specversion", text("1.0")),
        ("id", text(id)),
        ("source", text("/java")),
        ("type", text("Task")),
    ]
    .into_iter()
    .chain(extra)
    {
        table.insert(ShortString::from(format!("{prefix}{k}")), v);
    }
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(ShortString::from(id))
        .with_headers(table)
}

#[tokio::test]
async fn native_typed_attributes_are_read_and_what_the_spec_forbids_is_dead_lettered_by_reason() {
    let (_c, ch) = channel().await;
    fresh(&ch, QUEUE).await;
    let running = start("on_ce_native", "").await;
    let good = [
        event(
            "good-1",
            "cloudEvents:",
            vec![
                ("time", AMQPValue::Timestamp(1_732_785_330)),
                ("correlationid", AMQPValue::LongLongInt(42)),
            ],
        ),
        event(
            "good-2",
            "cloudEvents_",
            vec![("time", text("2024-11-28T09:15:30Z"))],
        ),
    ];
    let bad = [
        ("bad-id", "cloudEvents:", "id", AMQPValue::LongInt(7)),
        ("bad-version", "cloudEvents:", "specversion", text("0.3")),
        ("bad-time-text", "cloudEvents_", "time", text("yesterday")),
        (
            "bad-time-int",
            "cloudEvents:",
            "time",
            AMQPValue::LongLongInt(1_732_785_330),
        ),
    ];
    for props in good {
        publish_raw(&ch, QUEUE, br#"{"n":1}"#, props).await;
    }
    for (id, prefix, attr, value) in bad.clone() {
        let mut props = event(id, prefix, vec![]);
        let mut table = props.headers().clone().unwrap();
        table.insert(ShortString::from(format!("{prefix}{attr}")), value);
        props = props.with_headers(table);
        publish_raw(&ch, QUEUE, br#"{"n":1}"#, props).await;
    }
    wait_for("the two good events", || HANDLED.lock().unwrap().len() == 2).await;
    let mut handled = HANDLED.lock().unwrap().clone();
    handled.sort();
    assert_eq!(
        handled,
        [
            (
                "good-1".to_owned(),
                Some(1_732_785_330),
                Some("42".to_owned())
            ),
            ("good-2".to_owned(), Some(1_732_785_330), None),
        ]
    );
    let (_c2, dlq_ch) = channel().await;
    let dead = take_at_least(&dlq_ch, &format!("{QUEUE}.dlq"), bad.len()).await;
    for (id, reason) in [
        (
            "bad-id",
            "ce_id is not valid: a native 32-bit integer value, but CloudEvents' id is a String",
        ),
        ("bad-version", "unsupported CloudEvents specversion \"0.3\""),
        (
            "bad-time-text",
            "\"yesterday\" is not an RFC 3339 timestamp",
        ),
        (
            "bad-time-int",
            "a native 64-bit integer value, but CloudEvents' time is a Timestamp",
        ),
    ] {
        let m = dead
            .iter()
            .find(|m| {
                m.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str())
                    == Some(id)
            })
            .unwrap_or_else(|| panic!("{id} not dead-lettered"));
        let message = header(&m.delivery.properties, "x-exception-message").unwrap_or_default();
        assert!(message.contains(reason), "{id}: {message}");
    }
    running.shutdown().await.unwrap();
    assert!(drain(&ch, QUEUE).await.is_empty(), "all acked");
}
