//! The RabbitMQ transport against the real broker on 127.0.0.1:5672 (guest/guest;
//! `scripts/test.sh` starts it). Each test owns its queues and deletes them (and their
//! `.dlq`) before it starts, so a run never sees an earlier run's messages.

use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use mq_core::prelude::*;
use mq_core::App;

#[path = "../support/mod.rs"]
mod support;

mod crash;
mod delivery;
mod depth;
mod interop;
mod operations;
mod replay;
mod retry_queues;
mod tls;

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Task {
    n: u32,
}

async fn channel() -> (Connection, Channel) {
    let c = Connection::connect(URI, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (scripts/test.sh starts it)");
    let ch = c.create_channel().await.unwrap();
    (c, ch)
}

/// Deletes `queue` and its dead-letter queue, then declares `queue` as mq does.
async fn fresh(ch: &Channel, queue: &str) {
    for q in [queue.to_owned(), format!("{queue}.dlq")] {
        ch.queue_delete(&q, QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue, durable, FieldTable::default())
        .await
        .unwrap();
}

/// Starts the app with `listener` alone. Kafka points at a port where nothing listens: an
/// app whose listeners are all queue listeners must neither need nor wait for it.
async fn start(listener: &str, extra_yaml: &str) -> mq_core::RunningApp {
    let management = "management:\n  server:\n    enabled: false\n";
    start_with(listener, extra_yaml, management).await
}

async fn start_with(listener: &str, extra_yaml: &str, management: &str) -> mq_core::RunningApp {
    let running = start_unchecked(listener, extra_yaml, management).await;
    assert!(
        running.wait_assigned(Duration::from_secs(20)).await,
        "the queue consumer did not start"
    );
    running
}

/// [`start_with`] without waiting for the consumers.
async fn start_unchecked(
    listener: &str,
    extra_yaml: &str,
    management: &str,
) -> mq_core::RunningApp {
    start_named("rabbit-test", listener, extra_yaml, management).await
}

/// [`start_unchecked`] with its own application name (which names its connection).
async fn start_named(
    application: &str,
    listener: &str,
    extra_yaml: &str,
    management: &str,
) -> mq_core::RunningApp {
    let yaml = format!(
        "mq:\n  application:\n    name: {application}\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\n{extra_yaml}{management}"
    );
    let config = mq_core::Config::from_yaml_str(&yaml).unwrap();
    App::new(config)
        .only_listeners([listener])
        .start()
        .await
        .unwrap()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every message of `queue` taken with basic.get (and acked).
async fn drain(ch: &Channel, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let mut all = Vec::new();
    while let Some(m) = ch
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        all.push(m);
    }
    all
}

fn header(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => Some(format!("{other:?}")),
    }
}
