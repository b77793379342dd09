//! Delivery: a typed round trip through a topic exchange, poison next to good messages,
//! a flaky handler, prefetch.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ExchangeDeleteOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use mq_core::prelude::*;

use super::*;

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
    ch.exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
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
    let (good, poison) = (10_000u32, 1_000u32);
    for n in 0..good {
        publisher
            .send("amqp:///mq_t_poison", "k", Task { n })
            .await
            .unwrap();
        if n % 10 == 0 {
            let confirm = ch
                .basic_publish(
                    "".into(),
                    "mq_t_poison".into(),
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
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
    // Poison is never retried.
    let text = running.metrics().encode();
    for line in [
        r#"mq_listener_decode_errors_total{application="rabbit-test",name="on_poison_mix"} 1000"#,
        r#"mq_listener_retries_total{application="rabbit-test",name="on_poison_mix"} 0"#,
        r#"mq_listener_dead_lettered_total{application="rabbit-test",name="on_poison_mix"} 1000"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
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
        queue.into(),
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

// --- a binding from YAML -------------------------------------------------------------

static FANNED: AtomicU32 = AtomicU32::new(0);

#[listener(queue = "mq_t_yaml_bound")]
async fn on_yaml_bound(_task: Task) -> Result<(), HandlerError> {
    FANNED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn a_binding_configured_in_yaml_is_declared_at_startup() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_yaml_bound").await;
    ch.exchange_delete("mq_t_fanout".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let yaml = "  listeners:\n    on_yaml_bound:\n      bindings:\n        - exchange: mq_t_fanout\n          exchange-type: fanout\n";
    let running = start("on_yaml_bound", yaml).await;
    for n in 0..3 {
        running
            .publisher()
            .send("amqp://mq_t_fanout", "any.key", Task { n })
            .await
            .unwrap();
    }
    wait_for("3 handled", || FANNED.load(Ordering::SeqCst) == 3).await;
    running.shutdown().await.unwrap();
}
