//! The RabbitMQ transport against the real broker on 127.0.0.1:5672 (guest/guest;
//! `scripts/test.sh` starts it). Each test owns its queues and deletes them (and their
//! `.dlq`) before it starts, so a run never sees an earlier run's messages.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use mq_core::prelude::*;
use mq_core::App;

mod support;

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
    let yaml = format!(
        "mq:\n  application:\n    name: rabbit-test\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\n{extra_yaml}{management}"
    );
    let config = mq_core::Config::from_yaml_str(&yaml).unwrap();
    let running = App::new(config)
        .only_listeners([listener])
        .start()
        .await
        .unwrap();
    assert!(
        running.wait_assigned(Duration::from_secs(20)).await,
        "the queue consumer did not start"
    );
    running
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

// --- typed round trip through a topic exchange --------------------------------------

static ROUND_TRIP: Mutex<Vec<(u32, String, String)>> = Mutex::new(Vec::new());

#[listener(
    queue = "mq_t_round_trip",
    exchange = "mq_t_orders",
    exchange_type = "topic",
    routing_key = "order.*"
)]
async fn on_round_trip(event: Event<Task>, ctx: Context) -> Result<(), HandlerError> {
    let h = ctx.headers();
    ROUND_TRIP.lock().unwrap().push((
        event.data.n,
        h.get_str("amqp_receivedExchange")
            .unwrap_or_default()
            .to_owned(),
        ctx.key_str().unwrap_or_default().to_owned(),
    ));
    Ok(())
}

#[tokio::test]
async fn typed_round_trip_through_a_topic_exchange() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_round_trip").await;
    // The exchange and the binding are the listener's: declared at startup.
    let exchange = "mq_t_orders";
    ch.exchange_delete(exchange, ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let running = start("on_round_trip", "").await;
    let publisher = running.publisher();
    for n in 0..10 {
        publisher
            .send("amqp://mq_t_orders/order.confirmed", "ignored", Task { n })
            .await
            .unwrap();
    }
    wait_for("10 handled", || ROUND_TRIP.lock().unwrap().len() == 10).await;
    let seen = ROUND_TRIP.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>(),
        "one consumer: in order"
    );
    assert!(seen
        .iter()
        .all(|s| s.1 == exchange && s.2 == "order.confirmed"));
    // Unroutable (mandatory): an error, not a silent drop.
    let err = publisher
        .send("amqp://mq_t_orders/nobody.listens", "k", Task { n: 99 })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unroutable"), "{err}");
    running.shutdown().await.unwrap();
    assert!(drain(&ch, "mq_t_round_trip").await.is_empty(), "all acked");
}

// --- poison interleaved with good messages -------------------------------------------

static GOOD: AtomicU32 = AtomicU32::new(0);
static GOOD_SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(
    queue = "mq_t_poison",
    retry(max_attempts = 3, initial_interval = "10ms")
)]
async fn on_poison_mix(task: Task) -> Result<(), HandlerError> {
    GOOD.fetch_add(1, Ordering::SeqCst);
    GOOD_SEEN.lock().unwrap().push(task.n);
    Ok(())
}

#[tokio::test]
async fn poison_goes_to_the_dlq_with_headers_and_good_messages_are_handled_once() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_poison").await;
    let running = start("on_poison_mix", "").await;
    let publisher = running.publisher();
    let (good, poison) = (200u32, 20u32);
    for n in 0..good {
        publisher
            .send("amqp:///mq_t_poison", "k", Task { n })
            .await
            .unwrap();
        if n % 10 == 0 {
            let confirm = ch
                .basic_publish(
                    "",
                    "mq_t_poison",
                    BasicPublishOptions::default(),
                    b"{not json",
                    BasicProperties::default(),
                )
                .await
                .unwrap();
            confirm.await.unwrap();
        }
    }
    wait_for("all good handled", || GOOD.load(Ordering::SeqCst) == good).await;
    let (_c2, dlq_ch) = channel().await;
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while dead.len() < poison as usize && tokio::time::Instant::now() < deadline {
        dead.extend(drain(&dlq_ch, "mq_t_poison.dlq").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), poison as usize);
    for m in &dead {
        assert_eq!(m.delivery.data, b"{not json");
        let props = &m.delivery.properties;
        assert!(header(props, "x-exception-message").is_some_and(|e| !e.is_empty()));
        assert!(header(props, "x-exception-stacktrace").is_some());
        assert_eq!(header(props, "x-original-exchange").as_deref(), Some(""));
        assert_eq!(
            header(props, "x-original-routingKey").as_deref(),
            Some("mq_t_poison")
        );
    }
    running.shutdown().await.unwrap();
    let mut seen = GOOD_SEEN.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        (0..good).collect::<Vec<_>>(),
        "each good one exactly once"
    );
    assert!(drain(&ch, "mq_t_poison").await.is_empty(), "all acked");
}

// --- a flaky handler -----------------------------------------------------------------

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[listener(
    queue = "mq_t_flaky",
    retry(max_attempts = 3, initial_interval = "20ms")
)]
async fn on_flaky(_task: Task, ctx: Context) -> Result<(), HandlerError> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() < 3 {
        return Err(HandlerError::transient(std::io::Error::other("not yet")));
    }
    Ok(())
}

#[tokio::test]
async fn a_handler_that_fails_twice_then_succeeds_is_acked_and_not_dead_lettered() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_flaky").await;
    let running = start("on_flaky", "").await;
    running
        .publisher()
        .send("amqp:///mq_t_flaky", "k", Task { n: 1 })
        .await
        .unwrap();
    wait_for("three calls", || FLAKY_CALLS.load(Ordering::SeqCst) == 3).await;
    let metrics = running.metrics();
    wait_for("the success timed", || {
        metrics.encode().lines().any(|l| {
            l.starts_with("spring_rabbitmq_listener_seconds_count{")
                && l.contains(r#"name="on_flaky",result="success",exception="none"} 1"#)
        })
    })
    .await;
    let text = metrics.encode();
    assert!(
        text.contains(r#"mq_listener_retries_total{application="rabbit-test",name="on_flaky"} 2"#),
        "{text}"
    );
    running.shutdown().await.unwrap();
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 3);
    assert!(drain(&ch, "mq_t_flaky.dlq").await.is_empty());
    assert!(drain(&ch, "mq_t_flaky").await.is_empty(), "acked");
}

// --- prefetch ------------------------------------------------------------------------

static HELD: AtomicU32 = AtomicU32::new(0);
static RELEASE: OnceLock<tokio::sync::Semaphore> = OnceLock::new();

fn release() -> &'static tokio::sync::Semaphore {
    RELEASE.get_or_init(|| tokio::sync::Semaphore::new(0))
}

#[listener(queue = "mq_t_prefetch")]
async fn on_prefetch(_task: Task) -> Result<(), HandlerError> {
    HELD.fetch_add(1, Ordering::SeqCst);
    release().acquire().await.unwrap().forget();
    Ok(())
}

/// Messages ready (not delivered) in `queue`.
async fn ready(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

#[tokio::test]
async fn the_broker_never_sends_more_unacked_messages_than_the_prefetch() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_prefetch").await;
    let running = start(
        "on_prefetch",
        "  rabbitmq:\n    listener:\n      prefetch: 5\n",
    )
    .await;
    let publisher = running.publisher();
    for n in 0..20 {
        publisher
            .send("amqp:///mq_t_prefetch", "k", Task { n })
            .await
            .unwrap();
    }
    wait_for("the first in the handler", || {
        HELD.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready(&ch, "mq_t_prefetch").await, 15, "5 unacked, 15 ready");
    release().add_permits(20);
    wait_for("all handled", || HELD.load(Ordering::SeqCst) == 20).await;
    running.shutdown().await.unwrap();
    assert_eq!(ready(&ch, "mq_t_prefetch").await, 0);
}

// --- Spring AMQP's Jackson2JsonMessageConverter --------------------------------------

static SPRING: Mutex<Vec<Task>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_spring")]
async fn on_spring(event: Event<Task>) -> Result<(), HandlerError> {
    SPRING.lock().unwrap().push(event.data);
    Ok(())
}

#[tokio::test]
async fn spring_amqp_plain_json_with_a_type_id_decodes() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_spring").await;
    let running = start("on_spring", "").await;
    let mut headers = FieldTable::default();
    headers.insert(
        "__TypeId__".into(),
        AMQPValue::LongString(LongString::from("com.example.Task")),
    );
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("UTF-8".into())
        .with_delivery_mode(2)
        .with_headers(headers);
    ch.basic_publish(
        "",
        "mq_t_spring",
        BasicPublishOptions::default(),
        br#"{"n":42}"#,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap();
    wait_for("handled", || !SPRING.lock().unwrap().is_empty()).await;
    running.shutdown().await.unwrap();
    assert_eq!(SPRING.lock().unwrap().as_slice(), &[Task { n: 42 }]);
    assert!(drain(&ch, "mq_t_spring.dlq").await.is_empty());
}

// --- concurrency, health, recovery ---------------------------------------------------

static SPREAD: Mutex<Vec<(u32, i32)>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_spread", concurrency = 2)]
async fn on_spread(task: Task, ctx: Context) -> Result<(), HandlerError> {
    SPREAD.lock().unwrap().push((task.n, ctx.partition()));
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(())
}

#[tokio::test]
async fn two_consumers_are_two_lanes_and_the_rabbit_health_component_is_up() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_spread").await;
    let management =
        "management:\n  server:\n    port: 0\n  endpoint:\n    health:\n      show-details: always\n";
    let running = start_with("on_spread", "", management).await;
    let mut lanes: Vec<(String, i32)> = running
        .lanes()
        .into_iter()
        .map(|l| (l.topic, l.partition))
        .collect();
    lanes.sort();
    assert_eq!(
        lanes,
        vec![("mq_t_spread".to_owned(), 0), ("mq_t_spread".to_owned(), 1)]
    );
    let publisher = running.publisher();
    for n in 0..100 {
        publisher
            .send("amqp:///mq_t_spread", "k", Task { n })
            .await
            .unwrap();
    }
    wait_for("100 handled", || SPREAD.lock().unwrap().len() == 100).await;
    let seen = SPREAD.lock().unwrap().clone();
    let mut ns: Vec<u32> = seen.iter().map(|s| s.0).collect();
    ns.sort();
    assert_eq!(ns, (0..100).collect::<Vec<_>>(), "each once");
    assert!(
        seen.iter().any(|s| s.1 == 0) && seen.iter().any(|s| s.1 == 1),
        "both consumers took messages"
    );
    let addr = running.actuator_addr().unwrap();
    let health = support::http(addr, "GET", "/actuator/health/readiness", None, None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    let json: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(json["components"]["rabbit"]["status"], "UP", "{json}");
    assert_eq!(
        json["components"]["rabbit"]["details"]["address"],
        "127.0.0.1:5672"
    );
    running.shutdown().await.unwrap();
}

static RECOVERED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_recover")]
async fn on_recover(task: Task) -> Result<(), HandlerError> {
    RECOVERED.lock().unwrap().push(task.n);
    Ok(())
}

#[tokio::test]
async fn a_consumer_whose_queue_vanished_redeclares_it_and_consumes_again() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_recover").await;
    let running = start("on_recover", "").await;
    let publisher = running.publisher();
    publisher
        .send("amqp:///mq_t_recover", "k", Task { n: 1 })
        .await
        .unwrap();
    wait_for("the first handled", || RECOVERED.lock().unwrap().len() == 1).await;
    // RabbitMQ cancels the consumer of a deleted queue.
    ch.queue_delete("mq_t_recover", QueueDeleteOptions::default())
        .await
        .unwrap();
    // Until the consumer has declared the queue again, the message is unroutable: the
    // publish fails (mandatory) rather than dropping it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match publisher
            .send("amqp:///mq_t_recover", "k", Task { n: 2 })
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(e.to_string().contains("unroutable"), "{e}");
                assert!(tokio::time::Instant::now() < deadline, "never redeclared");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    wait_for("the second handled", || {
        RECOVERED.lock().unwrap().len() == 2
    })
    .await;
    running.shutdown().await.unwrap();
    assert_eq!(RECOVERED.lock().unwrap().as_slice(), &[1, 2]);
}

// --- CloudEvents AMQP binding, binary mode -------------------------------------------

static BINARY: Mutex<Vec<(String, String, u32)>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_ce_binary")]
async fn on_ce_binary(event: Event<Task>) -> Result<(), HandlerError> {
    BINARY
        .lock()
        .unwrap()
        .push((event.id.clone(), event.source.clone(), event.data.n));
    Ok(())
}

#[tokio::test]
async fn binary_mode_cloud_events_in_application_properties_decode_with_either_prefix() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_ce_binary").await;
    let running = start("on_ce_binary", "").await;
    for (i, prefix) in ["cloudEvents:", "cloudEvents_"].into_iter().enumerate() {
        let mut headers = FieldTable::default();
        for (attr, value) in [
            ("specversion", "1.0".to_owned()),
            ("id", format!("ce-{i}")),
            ("source", "/java-service".to_owned()),
            ("type", "com.example.Task".to_owned()),
        ] {
            headers.insert(
                format!("{prefix}{attr}").into(),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers);
        let body = format!(r#"{{"n":{i}}}"#);
        ch.basic_publish(
            "",
            "mq_t_ce_binary",
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    wait_for("both handled", || BINARY.lock().unwrap().len() == 2).await;
    running.shutdown().await.unwrap();
    let seen = BINARY.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("ce-0".to_owned(), "/java-service".to_owned(), 0),
            ("ce-1".to_owned(), "/java-service".to_owned(), 1)
        ]
    );
}
