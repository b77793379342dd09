//! The foundation, end to end against the real broker: typed listeners, envelope modes,
//! partition workers across two instances of one group, committed offsets across a
//! restart, graceful shutdown, and poison/failing records that must not stall a partition.

use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use mq_core::prelude::*;
use mq_core::App;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use support::{config, create_topic, header, read_topic, unique, Seen};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderCreated {
    order_id: u64,
    product_id: u64,
    quantity: u32,
}

#[listener(topic = "e2e-orders")]
async fn on_order(event: Event<OrderCreated>, ctx: Context) -> Result<(), HandlerError> {
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

/// Takes the data alone: plain JSON producers (no envelope) are understood.
#[listener(topic = "e2e-plain")]
async fn on_plain_order(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    let event = Event::new("plain", order).with_id(format!("{}-{}", ctx.partition(), ctx.offset()));
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

/// Fails for quantity 0 (always), panics for quantity 1, succeeds otherwise.
#[listener(topic = "e2e-failing")]
async fn on_failing(event: Event<OrderCreated>, ctx: Context) -> Result<(), HandlerError> {
    match event.data.quantity {
        0 => Err(std::io::Error::other("warehouse offline").into()),
        1 => panic!("handler bug for order {}", event.data.order_id),
        _ => {
            ctx.state::<Seen>().record(&event, &ctx);
            Ok(())
        }
    }
}

/// Slow handler, to observe shutdown with a record in flight.
#[listener(topic = "e2e-slow")]
async fn on_slow(event: Event<OrderCreated>, ctx: Context) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(800)).await;
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

/// Contexts a handler kept after it returned (a partition worker reuses a record's buffers
/// only when nothing holds it any more).
#[derive(Clone, Default)]
struct KeptContexts(std::sync::Arc<std::sync::Mutex<Vec<(u64, Context)>>>);

/// Keeps every other `Context` (even order ids): the rest let the worker reuse the record.
#[listener(topic = "e2e-keep")]
async fn on_keep(event: Event<OrderCreated>, ctx: Context) -> Result<(), HandlerError> {
    if event.data.order_id % 2 == 0 {
        let kept = ctx.state::<KeptContexts>();
        kept.0
            .lock()
            .unwrap()
            .push((event.data.order_id, ctx.clone()));
    }
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

fn order(i: u64) -> OrderCreated {
    OrderCreated {
        order_id: i,
        product_id: 100 + i % 7,
        quantity: 1 + (i % 5) as u32,
    }
}

fn listener_topic(listener: &str, topic: &str, group: &str) -> String {
    format!(
        "mq:\n  listeners:\n    {listener}:\n      topics: [\"{topic}\"]\n      group: \"{group}\"\n"
    )
}

async fn start(yaml: &str, listener: &str, seen: &Seen) -> mq_core::RunningApp {
    let app = App::new(config(yaml))
        .with_state(seen.clone())
        .only_listeners([listener])
        .start()
        .await
        .expect("app starts");
    assert!(
        app.wait_assigned(WAIT).await,
        "{listener} got no partitions"
    );
    app
}

async fn publisher_app(extra: &str) -> mq_core::RunningApp {
    App::new(config(extra))
        .only_listeners(Vec::<String>::new())
        .start()
        .await
        .expect("publisher app starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_events_arrive_with_their_envelope() {
    let topic = unique("orders");
    create_topic(&topic, 1).await;
    let seen = Seen::default();
    let app = start(
        &listener_topic("on_order", &topic, &unique("g")),
        "on_order",
        &seen,
    )
    .await;
    let publisher = app.publisher();

    let mut sent = Vec::new();
    for i in 0..20 {
        let event =
            Event::new("com.example.OrderCreated", order(i)).with_subject(format!("order-{i}"));
        sent.push(event.clone());
        publisher
            .send(&topic, i.to_string(), event)
            .await
            .expect("sent");
    }
    assert_eq!(seen.wait_for(20, WAIT).await, 20);
    let got = seen.all();
    for (s, g) in sent.iter().zip(&got) {
        assert_eq!(g.id, s.id);
        assert_eq!(
            g.source, "/mq-tests",
            "source comes from mq.application.name"
        );
        assert_eq!(g.ty, "com.example.OrderCreated");
        assert_eq!(g.subject, s.subject);
        assert_eq!(
            g.correlationid.as_deref(),
            Some(s.id.as_str()),
            "a new flow is correlated by its first event id"
        );
        assert_eq!(g.data, serde_json::to_value(&s.data).unwrap());
    }
    let offsets: Vec<i64> = got.iter().map(|h| h.offset).collect();
    assert_eq!(
        offsets,
        (0..20).collect::<Vec<_>>(),
        "one partition is handled in order"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_three_partitions_and_handle_each_event_once() {
    let topic = unique("split");
    create_topic(&topic, 3).await;
    let group = unique("g");
    let yaml = listener_topic("on_order", &topic, &group);
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let a = start(&yaml, "on_order", &seen_a).await;
    let b = start(&yaml, "on_order", &seen_b).await;
    // Wait for the rebalance that gives both members their share.
    let deadline = Instant::now() + WAIT;
    loop {
        let (na, nb) = (a.assigned_partitions()[0].1, b.assigned_partitions()[0].1);
        if na > 0 && nb > 0 && na + nb == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no stable split: a={na} b={nb}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    const N: usize = 3_000;
    let publisher = a.publisher();
    let started = Instant::now();
    for chunk in (0..N as u64).collect::<Vec<_>>().chunks(500) {
        let sends = chunk
            .iter()
            .map(|i| publisher.send(&topic, format!("key-{i}"), order(*i)));
        for r in join_all(sends).await {
            r.expect("sent");
        }
    }
    let deadline = Instant::now() + WAIT;
    while seen_a.len() + seen_b.len() < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let (ha, hb) = (seen_a.all(), seen_b.all());
    println!(
        "handled {N} events (published and consumed) in {elapsed:?}: {:.0} events/s; instance a {} / b {}",
        N as f64 / elapsed.as_secs_f64(),
        ha.len(),
        hb.len()
    );
    assert_eq!(
        ha.len() + hb.len(),
        N,
        "every event handled exactly once in total"
    );
    let ids: HashSet<&str> = ha.iter().chain(&hb).map(|h| h.id.as_str()).collect();
    assert_eq!(ids.len(), N, "no event handled twice");
    assert!(!ha.is_empty() && !hb.is_empty(), "both instances did work");
    let parts_a: HashSet<i32> = ha.iter().map(|h| h.partition).collect();
    let parts_b: HashSet<i32> = hb.iter().map(|h| h.partition).collect();
    assert!(
        parts_a.is_disjoint(&parts_b),
        "a partition belongs to one instance"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_from_the_committed_offset() {
    let topic = unique("restart");
    create_topic(&topic, 2).await;
    let yaml = listener_topic("on_order", &topic, &unique("g"));
    let publisher = publisher_app("").await;
    for i in 0..50 {
        publisher
            .publisher()
            .send(&topic, i.to_string(), order(i))
            .await
            .unwrap();
    }
    let first = Seen::default();
    let app = start(&yaml, "on_order", &first).await;
    assert_eq!(first.wait_for(50, WAIT).await, 50);
    app.shutdown().await.unwrap();

    for i in 50..100 {
        publisher
            .publisher()
            .send(&topic, i.to_string(), order(i))
            .await
            .unwrap();
    }
    let second = Seen::default();
    let app = start(&yaml, "on_order", &second).await;
    assert_eq!(second.wait_for(50, WAIT).await, 50);
    // Give a redelivery of old records the chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old: HashSet<String> = first.all().into_iter().map(|h| h.id).collect();
    let again: Vec<_> = second
        .all()
        .into_iter()
        .filter(|h| old.contains(&h.id))
        .collect();
    assert!(
        again.is_empty(),
        "committed records were handled again: {again:?}"
    );
    let orders: HashSet<u64> = second
        .all()
        .iter()
        .map(|h| h.data["order_id"].as_u64().unwrap())
        .collect();
    assert_eq!(orders, (50..100).collect());
    app.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_structured_modes_interoperate() {
    let topic = unique("modes");
    create_topic(&topic, 1).await;
    // Binary is Kafka's default; structured is one setting away.
    let binary = publisher_app("").await;
    let structured =
        publisher_app("mq:\n  kafka:\n    producer:\n      content-mode: structured\n").await;
    let e1 = Event::new("OrderCreated", order(1)).with_subject("s1");
    let e2 = Event::new("OrderCreated", order(2)).with_subject("s2");
    binary
        .publisher()
        .send(&topic, "1", e1.clone())
        .await
        .unwrap();
    structured
        .publisher()
        .send(&topic, "2", e2.clone())
        .await
        .unwrap();

    // On the wire: binary puts attributes in ce_* headers and the bare data in the value.
    let raw = read_topic(&topic, 2, WAIT).await;
    assert_eq!(raw.len(), 2);
    assert_eq!(header(&raw[0], "ce_id"), Some(e1.id.as_bytes()));
    assert_eq!(
        serde_json::from_slice::<OrderCreated>(raw[0].payload().unwrap()).unwrap(),
        e1.data
    );
    assert_eq!(
        header(&raw[1], "content-type"),
        Some(&b"application/cloudevents+json; charset=UTF-8"[..])
    );

    let seen = Seen::default();
    let app = start(
        &listener_topic("on_order", &topic, &unique("g")),
        "on_order",
        &seen,
    )
    .await;
    assert_eq!(seen.wait_for(2, WAIT).await, 2);
    let got = seen.all();
    for (sent, got) in [e1, e2].iter().zip(&got) {
        assert_eq!(got.id, sent.id);
        assert_eq!(got.subject, sent.subject);
        assert_eq!(got.ty, "OrderCreated");
        assert_eq!(got.source, "/mq-tests");
        assert_eq!(got.data, serde_json::to_value(&sent.data).unwrap());
    }
    for a in [app, binary, structured] {
        a.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_json_without_envelope_is_understood() {
    let topic = unique("plain");
    create_topic(&topic, 1).await;
    let producer = support::raw_producer();
    let body = serde_json::to_vec(&order(7)).unwrap();
    producer
        .send(
            FutureRecord::to(&topic).key("7").payload(&body),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // What Spring's JsonSerializer sends: a type header and the bare JSON.
    producer
        .send(
            FutureRecord::to(&topic)
                .key("8")
                .payload(&serde_json::to_vec(&order(8)).unwrap())
                .headers(OwnedHeaders::new().insert(Header {
                    key: "__TypeId__",
                    value: Some("com.example.OrderCreated"),
                })),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let seen = Seen::default();
    let app = start(
        &listener_topic("on_plain_order", &topic, &unique("g")),
        "on_plain_order",
        &seen,
    )
    .await;
    assert_eq!(seen.wait_for(2, WAIT).await, 2);
    let got = seen.all();
    assert_eq!(got[0].data, serde_json::to_value(order(7)).unwrap());
    assert_eq!(got[1].data, serde_json::to_value(order(8)).unwrap());
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_poison_records_go_to_the_dlt_and_the_partition_moves_on() {
    let topic = unique("failing");
    create_topic(&topic, 1).await;
    let yaml = format!(
        "{}      retry:\n        max-attempts: 3\n        initial-interval: 10ms\n        max-interval: 20ms\n",
        listener_topic("on_failing", &topic, &unique("g"))
    );
    let producer = support::raw_producer();
    let poison: &[u8] = b"{\"order_id\": oops";
    producer
        .send(
            FutureRecord::to(&topic).key("poison").payload(poison),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let publisher = publisher_app("").await;
    let mut fails = order(1);
    fails.quantity = 0;
    let mut panics = order(2);
    panics.quantity = 1;
    publisher
        .publisher()
        .send(&topic, "fails", fails)
        .await
        .unwrap();
    publisher
        .publisher()
        .send(&topic, "panics", panics)
        .await
        .unwrap();
    for i in 10..15 {
        let mut good = order(i);
        good.quantity = 3;
        publisher
            .publisher()
            .send(&topic, i.to_string(), good)
            .await
            .unwrap();
    }

    let seen = Seen::default();
    let app = start(&yaml, "on_failing", &seen).await;
    assert_eq!(
        seen.wait_for(5, WAIT).await,
        5,
        "good records after the bad ones are handled"
    );

    let dlt = read_topic(&format!("{topic}-dlt"), 3, WAIT).await;
    assert_eq!(
        dlt.len(),
        3,
        "poison, failing and panicking records are dead-lettered"
    );
    let by_key = |k: &str| dlt.iter().find(|m| m.key() == Some(k.as_bytes())).unwrap();
    let p = by_key("poison");
    assert_eq!(p.payload(), Some(poison), "original bytes kept");
    assert_eq!(
        header(p, "kafka_dlt-exception-fqcn"),
        Some(&b"mq_core::envelope::DecodeError::Json"[..])
    );
    assert_eq!(
        header(p, "kafka_dlt-original-topic"),
        Some(topic.as_bytes())
    );
    assert_eq!(
        header(p, "kafka_dlt-original-offset"),
        Some(&0i64.to_be_bytes()[..])
    );
    let f = by_key("fails");
    let msg =
        String::from_utf8(header(f, "kafka_dlt-exception-message").unwrap().to_vec()).unwrap();
    assert_eq!(msg, "warehouse offline");
    let x = by_key("panics");
    let msg =
        String::from_utf8(header(x, "kafka_dlt-exception-message").unwrap().to_vec()).unwrap();
    assert!(msg.contains("handler bug for order 2"), "{msg}");
    assert_eq!(header(x, "kafka_dlt-exception-fqcn"), Some(&b"panic"[..]));

    let text = app.metrics().encode();
    assert!(
        text.contains("mq_listener_retries_total{application=\"mq-tests\",name=\"on_failing\"} 4"),
        "2 retries each for the failing and panicking records:\n{text}"
    );
    assert!(
        text.contains(
            "mq_listener_decode_errors_total{application=\"mq-tests\",name=\"on_failing\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "mq_listener_dead_lettered_total{application=\"mq-tests\",name=\"on_failing\"} 3"
        ),
        "{text}"
    );
    app.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_record_in_flight_and_commits_it() {
    let topic = unique("slow");
    create_topic(&topic, 1).await;
    let yaml = listener_topic("on_slow", &topic, &unique("g"));
    let seen = Seen::default();
    let app = start(&yaml, "on_slow", &seen).await;
    app.publisher().send(&topic, "1", order(1)).await.unwrap();
    // Wait until the handler is running, then ask for shutdown.
    let deadline = Instant::now() + WAIT;
    while app
        .metrics()
        .encode()
        .contains("mq_listener_in_flight{application=\"mq-tests\",name=\"on_slow\"} 0")
    {
        assert!(Instant::now() < deadline, "handler never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.shutdown().await.unwrap();
    assert_eq!(
        seen.len(),
        1,
        "the in-flight record finished before shutdown returned"
    );

    // A new instance of the group must not get it again: send a marker after it and see
    // that the marker is the only thing handled.
    let marker = publisher_app("").await;
    marker
        .publisher()
        .send(&topic, "2", order(2))
        .await
        .unwrap();
    let again = Seen::default();
    let app = start(&yaml, "on_slow", &again).await;
    assert_eq!(again.wait_for(1, WAIT).await, 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let orders: Vec<u64> = again
        .all()
        .iter()
        .map(|h| h.data["order_id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        orders,
        vec![2],
        "the record finished during shutdown was committed"
    );
    app.shutdown().await.unwrap();
    marker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_context_still_describes_its_own_record() {
    let topic = unique("keep");
    create_topic(&topic, 1).await;
    let publisher = publisher_app("").await;
    for i in 0..200u64 {
        let event = Event::new("OrderCreated", order(i)).with_subject(format!("order-{i}"));
        publisher
            .publisher()
            .send(&topic, format!("key-{i}"), event)
            .await
            .unwrap();
    }
    let seen = Seen::default();
    let kept = KeptContexts::default();
    let app = App::new(config(&listener_topic("on_keep", &topic, &unique("g"))))
        .with_state(seen.clone())
        .with_state(kept.clone())
        .only_listeners(["on_keep"])
        .start()
        .await
        .expect("app starts");
    assert_eq!(seen.wait_for(200, WAIT).await, 200);
    app.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();

    // One partition, published in order: order i is at offset i. Records the worker
    // refilled in place after the odd orders must not have overwritten the kept ones.
    let kept = kept.0.lock().unwrap();
    assert_eq!(kept.len(), 100);
    for (order_id, ctx) in kept.iter() {
        assert_eq!(ctx.offset(), *order_id as i64);
        assert_eq!(ctx.key_str(), Some(format!("key-{order_id}").as_str()));
        // Binary mode, Kafka's default: the record's own content type and `ce_id`.
        assert_eq!(
            ctx.headers().get_str("content-type"),
            Some("application/json")
        );
        assert!(ctx.headers().get_str("ce_id").is_some());
    }
    let offsets: Vec<i64> = seen.all().iter().map(|h| h.offset).collect();
    assert_eq!(offsets, (0..200).collect::<Vec<i64>>());
}
