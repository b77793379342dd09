//! Handler tests without a broker, with `mq_core::testing::TestApp`: the same pipeline
//! (decode, handler, retries, dead letters) over an in-memory broker. Also pins how
//! correlation and trace context flow into events published from a handler.

use mq_core::prelude::*;
use mq_core::publisher::Raw;
use mq_core::testing::TestApp;
use mq_core::{App, Config, Disposition};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderCreated {
    order_id: u64,
    quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StockReserved {
    order_id: u64,
}

#[listener(topic = "mem-orders")]
async fn reserve(event: Event<OrderCreated>, ctx: Context) -> Result<(), HandlerError> {
    if event.data.quantity == 0 {
        return Err(HandlerError::permanent_msg("quantity must be positive"));
    }
    let order_id = event.data.order_id;
    ctx.publisher()
        .send(
            "mem-reserved",
            order_id.to_string(),
            StockReserved { order_id },
        )
        .await?;
    Ok(())
}

fn app() -> TestApp {
    let config = Config::from_yaml_str(
        "mq:\n  application:\n    name: mem\n  listener:\n    retry:\n      initial-interval: 1ms\n",
    )
    .unwrap();
    TestApp::new(App::new(config).only_listeners(["reserve"])).unwrap()
}

#[tokio::test]
async fn correlation_and_trace_context_flow_into_published_events() {
    let app = app();
    let incoming = Event::new(
        "OrderCreated",
        OrderCreated {
            order_id: 7,
            quantity: 1,
        },
    )
    .with_correlation_id("flow-42");
    let mut incoming = incoming;
    incoming.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    app.publisher()
        .send("mem-orders", "7", incoming.clone())
        .await
        .unwrap();
    assert_eq!(app.drain().await, vec![Disposition::Handled]);

    let out = app.events::<StockReserved>("mem-reserved");
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(e.data, StockReserved { order_id: 7 });
    assert_eq!(
        e.correlationid.as_deref(),
        Some("flow-42"),
        "correlation id carried over"
    );
    assert_eq!(
        e.causationid.as_deref(),
        Some(incoming.id.as_str()),
        "caused by the handled event"
    );
    assert_eq!(
        e.traceparent, incoming.traceparent,
        "trace context carried over"
    );
    assert_eq!(e.source, "/mem");
    assert_eq!(e.ty, "StockReserved");
}

#[tokio::test]
async fn permanent_errors_and_poison_go_to_the_in_memory_dlt() {
    let app = app();
    let p = app.publisher();
    p.send(
        "mem-orders",
        "1",
        OrderCreated {
            order_id: 1,
            quantity: 0,
        },
    )
    .await
    .unwrap();
    p.send("mem-orders", "", Raw::new(b"{oops".to_vec()))
        .await
        .unwrap();
    p.send(
        "mem-orders",
        "3",
        OrderCreated {
            order_id: 3,
            quantity: 2,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        app.drain().await,
        vec![
            Disposition::DeadLettered,
            Disposition::DeadLettered,
            Disposition::Handled
        ]
    );
    let dlt = app.broker().records("mem-orders-dlt");
    assert_eq!(dlt.len(), 2);
    assert_eq!(
        dlt[0].headers.get_str("kafka_dlt-exception-message"),
        Some("quantity must be positive")
    );
    assert_eq!(
        dlt[0].headers.get_str("kafka_dlt-exception-fqcn"),
        Some("mq_core::HandlerError")
    );
    assert_eq!(
        dlt[1].value.as_deref(),
        Some(&b"{oops"[..]),
        "original bytes kept"
    );
    assert_eq!(app.events::<StockReserved>("mem-reserved").len(), 1);
}

/// (listener, partition, number) of each handled record.
type Handled = Vec<(&'static str, i32, u64)>;

#[derive(Debug, Clone, Default)]
struct Tally(std::sync::Arc<std::sync::Mutex<Handled>>);

#[listener(topic = "mem-shared")]
async fn tally_a(n: u64, ctx: Context, State(t): State<Tally>) -> Result<(), HandlerError> {
    t.0.lock().unwrap().push(("a", ctx.partition(), n));
    Ok(())
}

#[listener(topic = "mem-shared")]
async fn tally_b(n: u64, ctx: Context, State(t): State<Tally>) -> Result<(), HandlerError> {
    t.0.lock().unwrap().push(("b", ctx.partition(), n));
    Ok(())
}

fn tally_app(yaml: &str) -> (TestApp, Tally) {
    let tally = Tally::default();
    let app = TestApp::new(
        App::new(Config::from_yaml_str(yaml).unwrap())
            .with_state(tally.clone())
            .only_listeners(["tally_a", "tally_b"]),
    )
    .unwrap();
    app.broker().create_topic("mem-shared", 4);
    (app, tally)
}

async fn publish_numbers(app: &TestApp, n: u64) {
    for i in 0..n {
        app.publisher()
            .send("mem-shared", format!("key-{i}"), i)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn two_listeners_in_one_group_are_refused_unless_they_share_on_purpose() {
    let err = TestApp::new(
        App::new(Config::from_yaml_str("mq:\n  application:\n    name: mem\n").unwrap())
            .only_listeners(["tally_a", "tally_b"]),
    )
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(text.contains("tally_a and tally_b"), "{text}");
    assert!(text.contains("group \"mem\""), "{text}");
    assert!(text.contains("share-group: true"), "names the fix: {text}");
}

#[tokio::test]
async fn listeners_of_one_group_split_the_partitions_and_each_group_gets_every_record() {
    // One group, sharing on purpose: each record handled once, each partition by one.
    let (app, tally) = tally_app(
        "mq:\n  application:\n    name: mem\n  listeners:\n    tally_b:\n      share-group: true\n",
    );
    publish_numbers(&app, 40).await;
    assert_eq!(app.drain().await.len(), 40);
    let seen = tally.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 40, "each record once in one group");
    let mut owner: std::collections::HashMap<i32, &str> = Default::default();
    for (who, partition, _) in &seen {
        assert_eq!(
            *owner.entry(*partition).or_insert(who),
            *who,
            "one owner per partition"
        );
    }
    assert!(owner.values().any(|w| *w == "a") && owner.values().any(|w| *w == "b"));
    for p in 0..4 {
        let end = app
            .broker()
            .records("mem-shared")
            .iter()
            .filter(|r| r.partition == p)
            .count();
        assert_eq!(
            app.broker().committed("mem", "mem-shared", p),
            Some(end as i64)
        );
    }

    // Two groups: each gets every record, each partition in order.
    let (app, tally) = tally_app(
        "mq:\n  application:\n    name: mem\n  listeners:\n    tally_b:\n      group: other\n",
    );
    publish_numbers(&app, 40).await;
    assert_eq!(app.drain().await.len(), 80);
    let seen = tally.0.lock().unwrap().clone();
    for who in ["a", "b"] {
        let mine: Vec<_> = seen.iter().filter(|s| s.0 == who).collect();
        assert_eq!(mine.len(), 40, "{who} got every record");
        for p in 0..4 {
            let ns: Vec<u64> = mine.iter().filter(|s| s.1 == p).map(|s| s.2).collect();
            assert!(
                ns.windows(2).all(|w| w[0] < w[1]),
                "partition {p} in order: {ns:?}"
            );
        }
    }
}

#[tokio::test]
async fn dead_letters_are_routed_by_failure_when_configured() {
    let config = Config::from_yaml_str(
        "mq:\n  application:\n    name: mem\n  listener:\n    dlt:\n      routes:\n        poison: -poison-dlt\n        mq_core::HandlerError: -rejected-dlt\n",
    )
    .unwrap();
    let app = TestApp::new(App::new(config).only_listeners(["reserve"])).unwrap();
    let p = app.publisher();
    p.send("mem-orders", "", Raw::new(b"{oops".to_vec()))
        .await
        .unwrap();
    p.send(
        "mem-orders",
        "2",
        OrderCreated {
            order_id: 2,
            quantity: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        app.drain().await,
        vec![Disposition::DeadLettered, Disposition::DeadLettered]
    );
    let poison = app.broker().records("mem-orders-poison-dlt");
    assert_eq!(poison.len(), 1, "decode errors by kind");
    assert_eq!(poison[0].value.as_deref(), Some(&b"{oops"[..]));
    let rejected = app.broker().records("mem-orders-rejected-dlt");
    assert_eq!(rejected.len(), 1, "handler errors by type");
    assert!(app.broker().records("mem-orders-dlt").is_empty());
}

#[listener(topic = "mem-slow", retry(max_attempts = 2, initial_interval = "1ms"))]
async fn slow(_n: u64) -> Result<(), HandlerError> {
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    Ok(())
}

#[tokio::test]
async fn a_handler_over_its_timeout_is_cancelled_retried_and_dead_lettered() {
    let config = Config::from_yaml_str(
        "mq:\n  application:\n    name: mem\n  listener:\n    handler-timeout: 50ms\n",
    )
    .unwrap();
    let app = TestApp::new(App::new(config).only_listeners(["slow"])).unwrap();
    app.publisher().send("mem-slow", "k", 1u64).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(app.drain().await, vec![Disposition::DeadLettered]);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let dlt = app.broker().records("mem-slow-dlt");
    assert_eq!(
        dlt[0].headers.get_str("kafka_dlt-exception-fqcn"),
        Some("timeout")
    );
    assert_eq!(
        dlt[0].headers.get_str("kafka_dlt-exception-message"),
        Some("handler timed out after 50ms")
    );
}

// A queue listener runs on the in-memory broker too: `amqp:///<queue>` reaches it, and its
// dead letters land on `<queue>.dlq` with Spring AMQP's headers.
#[listener(queue = "mem-task-queue")]
async fn on_mem_task(event: Event<OrderCreated>) -> Result<(), HandlerError> {
    if event.data.quantity == 0 {
        return Err(HandlerError::permanent_msg("nothing to ship"));
    }
    Ok(())
}

#[tokio::test]
async fn a_queue_listener_runs_in_memory_and_dead_letters_to_its_dlq() {
    let config = Config::from_yaml_str("mq:\n  application:\n    name: mem\n").unwrap();
    let app = TestApp::new(App::new(config).only_listeners(["on_mem_task"])).unwrap();
    let publisher = app.publisher();
    for quantity in [1, 0] {
        let order = OrderCreated {
            order_id: 7,
            quantity,
        };
        publisher
            .send("amqp:///mem-task-queue", "k", order)
            .await
            .unwrap();
    }
    let outcomes = app.drain().await;
    assert_eq!(
        outcomes,
        vec![Disposition::Handled, Disposition::DeadLettered]
    );
    let dead = app.broker().records("mem-task-queue.dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].headers.get_str("x-exception-message"),
        Some("nothing to ship")
    );
    assert_eq!(
        app.events::<OrderCreated>("mem-task-queue.dlq")[0]
            .data
            .quantity,
        0
    );
}
