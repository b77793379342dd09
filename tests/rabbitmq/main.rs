//! The RabbitMQ transport against the real broker on 127.0.0.1:5672 (guest/guest;
//! `scripts/test.sh` starts it). Each test owns its queues and deletes them (and their
//! `.dlq`) before it starts, so a run never sees an earlier run's messages.

use std::time::Duration;

use lapin::message::BasicGetMessage;
use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use mq_core::prelude::*;
use mq_core::App;

use mq_tests as support;

mod cloudevents;
mod cluster;
mod crash;
mod delivery;
mod depth;
mod encoding;
mod existing;
mod frame;
mod interop;
mod operations;
mod redelivery;
mod replay;
mod request_reply;
mod retry_queues;
mod tls;
mod typed;

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
    fresh_with(ch, queue, FieldTable::default()).await;
}

/// Deletes `queue` and its dead-letter queue, then declares `queue` durable with `args`
/// (as an operator would, before mq).
async fn fresh_with(ch: &Channel, queue: &str, args: FieldTable) {
    for q in [queue.to_owned(), format!("{queue}.dlq")] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), durable, args).await.unwrap();
}

/// Publishes `body` to `queue` through the default exchange as another client would (raw
/// lapin, not mq), and waits for the broker's confirm.
async fn publish_raw(ch: &Channel, queue: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        lapin::options::BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Takes messages off `queue` until at least `n` came (30 s at most).
async fn take_at_least(ch: &Channel, queue: &str, n: usize) -> Vec<BasicGetMessage> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} in {queue}",
            got.len()
        );
        got.extend(drain(ch, queue).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

/// The message of `all` whose `message_id` is `id`.
fn by_message_id<'a>(all: &'a [BasicGetMessage], id: &str) -> &'a BasicGetMessage {
    all.iter()
        .find(|m| {
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str())
                == Some(id)
        })
        .unwrap_or_else(|| panic!("no message with message_id {id}"))
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
async fn drain(ch: &Channel, queue: &str) -> Vec<BasicGetMessage> {
    let mut all = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        all.push(m);
    }
    all
}

/// At most this for one run of a broker's command-line tool (`rabbitmqctl`,
/// scripts/rabbit-cluster.sh).
const TOOL_WAIT: Duration = Duration::from_secs(240);

/// [`support::process::run`] with [`TOOL_WAIT`].
fn run_tool(
    cmd: &mut std::process::Command,
    what: &str,
) -> (std::process::ExitStatus, String, String) {
    support::process::run(cmd, TOOL_WAIT, what)
}

fn header(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => Some(format!("{other:?}")),
    }
}
