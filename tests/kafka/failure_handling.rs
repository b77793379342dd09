//! Failure handling against the real broker: a poison mix that must not stall anything,
//! a flaky handler retried to success, and a failing partition that must not hold up the
//! others.

use crate::support;

mod interop;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use mq_core::envelope::{encode, ContentMode};
use mq_core::prelude::*;
use mq_core::publisher::Raw;
use mq_core::App;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use support::{config, create_topic, header, read_topic, unique, Seen};

const WAIT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    order_id: u64,
    quantity: u32,
}

#[listener(topic = "fh-mix")]
async fn on_mix(event: Event<Order>, ctx: Context) -> Result<(), HandlerError> {
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

/// Fails twice for every event, then succeeds.
#[listener(topic = "fh-flaky")]
async fn on_flaky(event: Event<Order>, ctx: Context) -> Result<(), HandlerError> {
    let attempts = {
        let tries = ctx.state::<Tries>();
        let mut map = tries.0.lock().unwrap();
        let n = map.entry(event.id.clone()).or_default();
        *n += 1;
        *n
    };
    if attempts <= 2 {
        return Err(HandlerError::msg(format!("attempt {attempts} fails")));
    }
    assert_eq!(
        ctx.attempt(),
        attempts,
        "Context::attempt counts deliveries"
    );
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

#[derive(Default)]
struct Tries(Mutex<HashMap<String, u32>>);

/// Partition 0 always fails; the others succeed.
#[listener(topic = "fh-isolation")]
async fn on_isolation(event: Event<Order>, ctx: Context) -> Result<(), HandlerError> {
    if ctx.partition() == 0 {
        return Err(HandlerError::msg("partition 0 is broken"));
    }
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

/// Retry topics: quantity 0 always fails, quantity 1 succeeds on the third attempt,
/// everything else at once.
#[listener(
    topic = "fh-retry-topics",
    retry(mode = "topics", max_attempts = 3, initial_interval = "300ms")
)]
async fn on_retry_topics(event: Event<Order>, ctx: Context) -> Result<(), HandlerError> {
    match (event.data.quantity, ctx.attempt()) {
        (0, _) => Err(HandlerError::msg("never works")),
        (1, n) if n < 3 => Err(HandlerError::msg(format!("attempt {n} fails"))),
        _ => {
            ctx.state::<Seen>().record(&event, &ctx);
            Ok(())
        }
    }
}

/// Rejects every record until the `Fixed` flag is set (then the DLT is replayed).
#[listener(topic = "fh-replay", retry(max_attempts = 1))]
async fn on_replay(event: Event<Order>, ctx: Context) -> Result<(), HandlerError> {
    if !ctx
        .state::<Fixed>()
        .0
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(HandlerError::permanent_msg("bug in the handler"));
    }
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

/// Partition 0 fails for 10 s of blocking retries; the others succeed.
#[listener(topic = "fh-long-retry")]
async fn on_long_retry(event: Event<Order>, ctx: Context) -> Result<(), HandlerError> {
    if ctx.partition() == 0 {
        return Err(HandlerError::msg("still broken"));
    }
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

#[derive(Default)]
struct Fixed(std::sync::atomic::AtomicBool);

/// Publishes order `i` to one partition of `topic`.
async fn send_to(
    publisher: &mq_core::Publisher,
    topic: &str,
    partition: i32,
    i: u64,
) -> Result<mq_core::Delivery, mq_core::PublishError> {
    let event = Event::new(
        "Order",
        Order {
            order_id: i,
            quantity: 1,
        },
    );
    let value = event.to_json().expect("encodes");
    let raw = Raw::new(value)
        .with_header(
            "content-type",
            "application/cloudevents+json; charset=UTF-8",
        )
        .to_partition(partition);
    publisher.send(topic, i.to_string(), raw).await
}

fn listener_yaml(listener: &str, topic: &str, extra: &str) -> String {
    format!(
        "mq:\n  listeners:\n    {listener}:\n      topics: [\"{topic}\"]\n      group: \"{}\"\n{extra}",
        unique("g")
    )
}

async fn start(yaml: &str, listener: &str, seen: &Seen) -> mq_core::RunningApp {
    let app = App::new(config(yaml))
        .with_state(seen.clone())
        .with_state(Tries::default())
        .with_state(Fixed::default())
        .only_listeners([listener])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(WAIT).await);
    app
}

fn metric(app: &mq_core::RunningApp, name: &str, listener: &str) -> u64 {
    let text = app.metrics().encode();
    let prefix = format!("{name}{{application=\"mq-tests\",name=\"{listener}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

/// The kinds of poison, and the decode error each must be dead-lettered with.
fn poison(kind: usize, i: usize) -> (Option<Vec<u8>>, &'static str) {
    match kind {
        0 => (
            Some(format!("{{\"order_id\": {i}, oops").into_bytes()),
            "DecodeError::Json",
        ),
        1 => (
            Some(br#"{"order_id":"not a number","quantity":1}"#.to_vec()),
            "DecodeError::Json",
        ),
        2 => (Some(vec![0xff, 0xfe, b'{', 0x80]), "DecodeError::NotUtf8"),
        3 => (None, "DecodeError::Empty"),
        _ => (
            Some(
                format!(
                    "{{\"order_id\":{i},\"quantity\":1,\"pad\":\"{}\"}}",
                    "x".repeat(4096)
                )
                .into_bytes(),
            ),
            "DecodeError::Oversized",
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_mix_goes_to_the_dlt_and_every_good_event_is_handled() {
    const GOOD: usize = 10_000;
    const POISON: usize = 1_000;
    let topic = unique("mix");
    create_topic(&topic, 3).await;
    let producer = support::raw_producer();
    let mut expected_kind: HashMap<String, (&'static str, Option<Vec<u8>>)> = HashMap::new();
    let mut good_ids = HashSet::new();
    let mut sends = Vec::new();
    let every = GOOD / POISON;
    for i in 0..GOOD {
        let event = Event::new(
            "Order",
            Order {
                order_id: i as u64,
                quantity: 1,
            },
        )
        .with_source("/test");
        good_ids.insert(event.id.clone());
        let rec = encode(
            &topic,
            Some(i.to_string().into_bytes()),
            &event,
            ContentMode::Structured,
        )
        .unwrap();
        sends.push((format!("good-{i}"), rec.value, Some(rec.headers)));
        if i % every == 0 {
            let p = i / every;
            let (value, kind) = poison(p % 5, p);
            expected_kind.insert(format!("poison-{p}"), (kind, value.clone()));
            sends.push((format!("poison-{p}"), value, None));
        }
    }
    assert_eq!(expected_kind.len(), POISON);
    for chunk in sends.chunks(1_000) {
        let futures = chunk.iter().map(|(key, value, headers)| {
            let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(&topic).key(key.as_str());
            if let Some(v) = value {
                r = r.payload(&v[..]);
            }
            if let Some(h) = headers {
                let mut oh = rdkafka::message::OwnedHeaders::new();
                for h in h.iter() {
                    oh = oh.insert(rdkafka::message::Header {
                        key: &h.key,
                        value: h.value.as_deref(),
                    });
                }
                r = r.headers(oh);
            }
            producer.send(r, Duration::from_secs(30))
        });
        for r in join_all(futures).await {
            r.expect("produced");
        }
    }

    let seen = Seen::default();
    let started = Instant::now();
    let app = start(
        &listener_yaml(
            "on_mix",
            &topic,
            "  listener:\n    max-payload-bytes: 2048\n",
        ),
        "on_mix",
        &seen,
    )
    .await;
    assert_eq!(
        seen.wait_for(GOOD, WAIT).await,
        GOOD,
        "every good event handled"
    );
    let dlt = read_topic(&format!("{topic}-dlt"), POISON, WAIT).await;
    let drained = started.elapsed();
    println!("poison mix: {GOOD} good + {POISON} poison drained in {drained:?}");
    assert_eq!(dlt.len(), POISON, "every poison record dead-lettered once");

    let handled: HashSet<String> = seen.all().into_iter().map(|h| h.id).collect();
    assert_eq!(handled, good_ids, "exactly the good events were handled");
    assert!(seen.duplicates().is_empty());
    let mut dlt_keys = HashSet::new();
    for m in &dlt {
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let (kind, value) = &expected_kind[&key];
        let fqcn =
            String::from_utf8(header(m, "kafka_dlt-exception-fqcn").unwrap().to_vec()).unwrap();
        assert_eq!(fqcn, format!("mq_core::envelope::{kind}"), "{key}");
        // Byte for byte, and a tombstone (null value) stays null.
        assert_eq!(m.payload(), value.as_deref(), "{key}: original bytes");
        assert_eq!(
            header(m, "kafka_dlt-original-topic"),
            Some(topic.as_bytes())
        );
        assert!(header(m, "kafka_dlt-exception-message").is_some());
        assert!(header(m, "kafka_dlt-original-consumer-group").is_some());
        dlt_keys.insert(key);
    }
    assert_eq!(dlt_keys.len(), POISON);
    assert_eq!(
        metric(&app, "mq_listener_retries_total", "on_mix"),
        0,
        "poison is never retried"
    );
    assert_eq!(
        metric(&app, "mq_listener_decode_errors_total", "on_mix"),
        POISON as u64
    );
    assert_eq!(
        metric(&app, "mq_listener_dead_lettered_total", "on_mix"),
        POISON as u64
    );
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_failing_twice_is_retried_and_handled_once() {
    let topic = unique("flaky");
    create_topic(&topic, 1).await;
    let seen = Seen::default();
    let app = start(
        &listener_yaml(
            "on_flaky",
            &topic,
            "  listener:\n    retry:\n      max-attempts: 3\n      initial-interval: 20ms\n",
        ),
        "on_flaky",
        &seen,
    )
    .await;
    app.publisher()
        .send(
            &topic,
            "1",
            Order {
                order_id: 1,
                quantity: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(seen.wait_for(1, WAIT).await, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.len(), 1, "handled once");
    assert_eq!(metric(&app, "mq_listener_retries_total", "on_flaky"), 2);
    assert_eq!(
        metric(&app, "mq_listener_dead_lettered_total", "on_flaky"),
        0
    );
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_partition_does_not_delay_the_others() {
    let topic = unique("isolation");
    create_topic(&topic, 2).await;
    let seen = Seen::default();
    // Each failing record holds partition 0 for 4 x 500 ms = 2 s before it is dead-lettered.
    let app = start(
        &listener_yaml(
            "on_isolation",
            &topic,
            "  listener:\n    retry:\n      max-attempts: 5\n      initial-interval: 500ms\n      multiplier: 1\n",
        ),
        "on_isolation",
        &seen,
    )
    .await;
    let publisher = app.publisher();
    for i in 0..3 {
        send_to(&publisher, &topic, 0, i).await.unwrap();
    }
    // While partition 0 is stuck for ~6 s, records on partition 1 keep flowing.
    let mut worst = Duration::ZERO;
    for i in 100..120 {
        let before = seen.len();
        let sent_at = Instant::now();
        send_to(&publisher, &topic, 1, i).await.unwrap();
        assert_eq!(seen.wait_for(before + 1, WAIT).await, before + 1);
        worst = worst.max(sent_at.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("worst publish-to-handled latency on the healthy partition: {worst:?}");
    assert!(
        worst < Duration::from_millis(1_000),
        "healthy partition delayed by {worst:?} while partition 0 retried"
    );
    let dead = read_topic(&format!("{topic}-dlt"), 3, WAIT).await;
    assert_eq!(dead.len(), 3, "the failing records end in the DLT");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_topics_retry_without_blocking_the_source_partition() {
    let topic = unique("rt");
    create_topic(&topic, 1).await;
    let seen = Seen::default();
    let app = start(
        &listener_yaml("on_retry_topics", &topic, ""),
        "on_retry_topics",
        &seen,
    )
    .await;
    let p = app.publisher();
    p.send(
        &topic,
        "flaky",
        Order {
            order_id: 1,
            quantity: 1,
        },
    )
    .await
    .unwrap();
    p.send(
        &topic,
        "broken",
        Order {
            order_id: 2,
            quantity: 0,
        },
    )
    .await
    .unwrap();
    p.send(
        &topic,
        "fine",
        Order {
            order_id: 3,
            quantity: 5,
        },
    )
    .await
    .unwrap();

    assert_eq!(seen.wait_for(2, WAIT).await, 2);
    let got = seen.all();
    assert_eq!(
        got[0].data["order_id"], 3,
        "the record behind the failing ones is not held up"
    );
    assert_eq!(got[0].topic, topic);
    assert_eq!(got[1].data["order_id"], 1);
    assert_eq!(
        got[1].topic,
        format!("{topic}-retry-1"),
        "third attempt reads the second retry topic"
    );
    assert_eq!(got[1].attempt, 3);

    let dead = read_topic(&format!("{topic}-dlt"), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key(), Some(&b"broken"[..]));
    assert_eq!(
        header(&dead[0], "retry_topic-attempts"),
        Some(&3u32.to_be_bytes()[..]),
        "Spring's numbering: the delivery that failed last"
    );
    // A dead letter from a retry topic names the record on the source topic, as Spring's.
    assert_eq!(
        header(&dead[0], "kafka_dlt-original-topic"),
        Some(topic.as_bytes())
    );
    assert_eq!(
        header(&dead[0], "kafka_dlt-original-offset"),
        Some(&1i64.to_be_bytes()[..]),
        "\"broken\" was the second record on the source topic"
    );
    let retry0 = read_topic(&format!("{topic}-retry-0"), 2, WAIT).await;
    assert_eq!(retry0.len(), 2, "both failing records went through retry-0");
    assert_eq!(
        metric(&app, "mq_listener_retries_total", "on_retry_topics"),
        4
    );
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_to_their_topic_once() {
    let topic = unique("replay");
    create_topic(&topic, 1).await;
    let seen = Seen::default();
    let yaml = listener_yaml("on_replay", &topic, "");
    let app = App::new(config(&yaml))
        .with_state(seen.clone())
        .with_state(Fixed::default())
        .only_listeners(["on_replay"])
        .start()
        .await
        .unwrap();
    assert!(app.wait_assigned(WAIT).await);
    let sent = Event::new(
        "Order",
        Order {
            order_id: 9,
            quantity: 1,
        },
    );
    app.publisher()
        .send(&topic, "nine", sent.clone())
        .await
        .unwrap();
    let dlt = format!("{topic}-dlt");
    assert_eq!(read_topic(&dlt, 1, WAIT).await.len(), 1);
    app.shutdown().await.unwrap();

    // The bug is fixed: a new deployment, then the dead letters are replayed.
    let fixed = Fixed::default();
    fixed.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let app = App::new(config(&yaml))
        .with_state(seen.clone())
        .with_state(fixed)
        .only_listeners(["on_replay"])
        .start()
        .await
        .unwrap();
    assert!(app.wait_assigned(WAIT).await);
    let report = mq_core::dead_letter::replay(&config(&yaml), &dlt, None)
        .await
        .unwrap();
    assert_eq!(report.total(), 1);
    assert_eq!(report.replayed.get(&topic), Some(&1));
    assert_eq!(seen.wait_for(1, WAIT).await, 1);
    assert_eq!(seen.all()[0].id, sent.id, "the same event, byte for byte");
    let on_topic = read_topic(&topic, 2, WAIT).await;
    assert_eq!(on_topic.len(), 2);
    assert!(
        header(&on_topic[1], "kafka_dlt-exception-message").is_none(),
        "dead-letter headers are stripped"
    );
    assert_eq!(on_topic[1].payload(), on_topic[0].payload());
    let again = mq_core::dead_letter::replay(&config(&yaml), &dlt, None)
        .await
        .unwrap();
    assert_eq!(again.total(), 0, "a second replay republishes nothing");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_retries_longer_than_max_poll_interval_keep_the_consumer_in_its_group() {
    let topic = unique("longretry");
    create_topic(&topic, 2).await;
    let seen = Seen::default();
    // max.poll.interval.ms 7 s; one record keeps partition 0 in retries for 5 x 2 s = 10 s.
    let app = start(
        &listener_yaml(
            "on_long_retry",
            &topic,
            "  kafka:\n    consumer:\n      properties:\n        max.poll.interval.ms: 7000\n  listener:\n    retry:\n      max-attempts: 6\n      initial-interval: 2s\n      multiplier: 1\n",
        ),
        "on_long_retry",
        &seen,
    )
    .await;
    let rebalances_before = app.rebalances();
    let publisher = app.publisher();
    send_to(&publisher, &topic, 0, 1).await.unwrap();
    let dead = read_topic(&format!("{topic}-dlt"), 1, WAIT).await;
    assert_eq!(
        dead.len(),
        1,
        "the record is dead-lettered after its retries"
    );
    send_to(&publisher, &topic, 1, 2).await.unwrap();
    assert_eq!(seen.wait_for(1, WAIT).await, 1);
    assert_eq!(
        app.rebalances(),
        rebalances_before,
        "10 s of retries with max.poll.interval.ms = 7 s caused a rebalance"
    );
    assert_eq!(
        metric(&app, "mq_listener_retries_total", "on_long_retry"),
        5
    );
    app.shutdown().await.unwrap();
}
