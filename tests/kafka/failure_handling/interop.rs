//! Records as other tools write them (issue 11): an oversized dead letter, foreign and
//! Spring-written retry headers, tombstones, plain-JSON ids across retry hops.

use std::collections::HashSet;
use std::sync::Mutex;

use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

use super::*;

/// Records every delivery (failing ones too); quantity 0 always fails, quantity 7 fails on
/// its first delivery only.
#[listener(
    topic = "fi-topics",
    retry(
        mode = "topics",
        max_attempts = 3,
        initial_interval = "300ms",
        max_interval = "2s"
    )
)]
async fn on_interop_topics(event: Event<Order>, ctx: Context) -> Result<(), HandlerError> {
    ctx.state::<Seen>().record(&event, &ctx);
    match (event.data.quantity, ctx.attempt()) {
        (0, _) => Err(HandlerError::msg("never works")),
        (7, 1) => Err(HandlerError::msg("first delivery fails")),
        _ => Ok(()),
    }
}

/// Takes deletes: a tombstone arrives as `None`.
#[listener(topic = "fi-deletes")]
async fn on_interop_deletes(event: Option<Event<Order>>, ctx: Context) -> Result<(), HandlerError> {
    match event {
        Some(e) => ctx.state::<Seen>().record(&e, &ctx),
        None => ctx
            .state::<Deleted>()
            .0
            .lock()
            .unwrap()
            .push(ctx.key_str().unwrap_or_default().to_owned()),
    }
    Ok(())
}

#[derive(Default, Clone)]
struct Deleted(std::sync::Arc<Mutex<Vec<String>>>);

/// A producer that may send records larger than librdkafka's 1,000,000-byte default.
fn big_producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", support::bootstrap())
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer")
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: Option<&[u8]>,
    headers: &[(&str, &[u8])],
) -> i64 {
    let mut oh = OwnedHeaders::new();
    for (k, v) in headers {
        oh = oh.insert(KHeader {
            key: k,
            value: Some(*v),
        });
    }
    let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key).headers(oh);
    if let Some(v) = value {
        r = r.payload(v);
    }
    producer
        .send(r, Duration::from_secs(30))
        .await
        .expect("produced")
        .offset
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn order_json(order_id: u64, quantity: u32) -> Vec<u8> {
    serde_json::to_vec(&Order { order_id, quantity }).unwrap()
}

/// BigInteger.valueOf(v).toByteArray(), as Spring writes timestamps: the fewest bytes of
/// two's complement that keep the sign bit (written here from Java's definition, not with
/// mq's encoder, so the test does not check mq against itself).
fn big_integer(v: i64) -> Vec<u8> {
    let magnitude_bits = if v < 0 {
        64 - v.leading_ones()
    } else {
        64 - v.leading_zeros()
    };
    let len = (magnitude_bits as usize + 1).div_ceil(8);
    v.to_be_bytes()[8 - len..].to_vec()
}

async fn start_with(
    listener: &str,
    topic: &str,
    seen: &Seen,
    deleted: &Deleted,
) -> mq_core::RunningApp {
    start_with_yaml(listener, topic, "", seen, deleted).await
}

async fn start_with_yaml(
    listener: &str,
    topic: &str,
    extra: &str,
    seen: &Seen,
    deleted: &Deleted,
) -> mq_core::RunningApp {
    let app = App::new(config(&listener_yaml(listener, topic, extra)))
        .with_state(seen.clone())
        .with_state(deleted.clone())
        .only_listeners([listener])
        .start()
        .await
        .unwrap();
    assert!(app.wait_assigned(WAIT).await);
    app
}

/// Input 1: 1,040,000 bytes of `x` (not JSON, under the 1 MiB payload limit) must reach the
/// dead-letter topic (whole, or without its value if the broker refuses the copy) and the
/// five records behind it on the same partition must be handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_poison_record_does_not_stall_its_partition() {
    let topic = unique("fi-big");
    create_topic(&topic, 1).await;
    let producer = big_producer();
    let big = vec![b'x'; 1_040_000];
    produce(&producer, &topic, "big", Some(&big), &[]).await;
    for i in 0..5 {
        produce(
            &producer,
            &topic,
            &format!("good-{i}"),
            Some(&order_json(i, 1)),
            &[],
        )
        .await;
    }
    let seen = Seen::default();
    let app = start_with("on_interop_topics", &topic, &seen, &Deleted::default()).await;
    assert_eq!(
        seen.wait_for(5, WAIT).await,
        5,
        "the records behind it are handled"
    );
    let dlt = read_topic(&format!("{topic}-dlt"), 1, WAIT).await;
    assert_eq!(dlt.len(), 1);
    let dl = &dlt[0];
    assert_eq!(dl.key(), Some(&b"big"[..]));
    assert_eq!(
        header(dl, "kafka_dlt-exception-fqcn"),
        Some(&b"mq_core::envelope::DecodeError::Json"[..])
    );
    match header(dl, "mq_dlt-value-dropped") {
        // The broker took the full copy: byte for byte.
        None => assert_eq!(dl.payload().map(<[u8]>::len), Some(1_040_000)),
        Some(why) => {
            assert!(String::from_utf8_lossy(why).starts_with("1040000 bytes: "));
            assert_eq!(dl.payload(), Some(&b""[..]));
        }
    }
    app.shutdown().await.unwrap();
}

/// Input 1, when the copy is refused anyway (here: the user kept librdkafka's 1,000,000-byte
/// `message.max.bytes`): the dead letter goes without its value, saying why, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dead_letter_goes_without_its_value() {
    let topic = unique("fi-refused");
    create_topic(&topic, 1).await;
    let producer = big_producer();
    produce(&producer, &topic, "big", Some(&vec![b'x'; 1_040_000]), &[]).await;
    produce(&producer, &topic, "good", Some(&order_json(1, 1)), &[]).await;
    let seen = Seen::default();
    let small = "  kafka:\n    producer:\n      properties:\n        message.max.bytes: 1000000\n";
    let app = start_with_yaml(
        "on_interop_topics",
        &topic,
        small,
        &seen,
        &Deleted::default(),
    )
    .await;
    assert_eq!(
        seen.wait_for(1, WAIT).await,
        1,
        "the record behind it is handled"
    );
    let dlt = read_topic(&format!("{topic}-dlt"), 1, WAIT).await;
    assert_eq!(dlt.len(), 1);
    let dl = &dlt[0];
    assert_eq!(dl.key(), Some(&b"big"[..]));
    assert_eq!(dl.payload(), Some(&b""[..]));
    let why = String::from_utf8(header(dl, "mq_dlt-value-dropped").unwrap().to_vec()).unwrap();
    assert!(why.starts_with("1040000 bytes: "), "{why}");
    assert!(why.contains("MessageSizeTooLarge"), "{why}");
    let message =
        String::from_utf8(header(dl, "kafka_dlt-exception-message").unwrap().to_vec()).unwrap();
    assert!(
        message.contains("[dead letter without its value of 1040000 bytes"),
        "{message}"
    );
    assert_eq!(
        header(dl, "kafka_dlt-exception-fqcn"),
        Some(&b"mq_core::envelope::DecodeError::Json"[..])
    );
    app.shutdown().await.unwrap();
}

/// Input 2: a record on the *source* topic carrying `retry_topic-backoff-timestamp`
/// 7F FF FF FF FF FF FF FF and `retry_topic-attempts` 00 00 00 01 is handled at once, as
/// the first delivery, and does not hold up the records behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_time_on_the_source_topic_is_ignored() {
    let topic = unique("fi-due");
    create_topic(&topic, 1).await;
    let producer = support::raw_producer();
    let far = [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    produce(
        &producer,
        &topic,
        "foreign",
        Some(&order_json(1, 1)),
        &[
            ("retry_topic-backoff-timestamp", &far[..]),
            ("retry_topic-attempts", &[0, 0, 0, 1][..]),
        ],
    )
    .await;
    for i in 2..5 {
        produce(&producer, &topic, "next", Some(&order_json(i, 1)), &[]).await;
    }
    let seen = Seen::default();
    let app = start_with("on_interop_topics", &topic, &seen, &Deleted::default()).await;
    let started = Instant::now();
    assert_eq!(seen.wait_for(4, Duration::from_secs(20)).await, 4);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let all = seen.all();
    assert_eq!(all[0].data["order_id"], 1);
    assert_eq!(
        all[0].attempt, 1,
        "a source-topic record is the first delivery"
    );
    app.shutdown().await.unwrap();
}

/// Input 3: a retry record as Spring writes it (1-byte attempts, a 6-byte big-endian due
/// time, the source coordinates in `kafka_dlt-original-*`) waits for its due time, counts
/// as Spring counts, and its dead letter names the source topic's partition and offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spring_written_retry_records_are_read_as_spring_means_them() {
    let topic = unique("fi-spring");
    create_topic(&topic, 1).await;
    let seen = Seen::default();
    let app = start_with("on_interop_topics", &topic, &seen, &Deleted::default()).await;
    let producer = support::raw_producer();
    let retry0 = format!("{topic}-retry-0");
    let retry1 = format!("{topic}-retry-1");
    let due = now_ms() + 1_500;
    let due_bytes = big_integer(due);
    assert_eq!(due_bytes.len(), 6);
    produce(
        &producer,
        &retry0,
        "spring-ok",
        Some(&order_json(10, 1)),
        &[
            ("retry_topic-attempts", &[2][..]),
            ("retry_topic-backoff-timestamp", &due_bytes),
        ],
    )
    .await;
    // The last delivery of a record that keeps failing: to the DLT, naming the source.
    produce(
        &producer,
        &retry1,
        "spring-broken",
        Some(&order_json(11, 0)),
        &[
            ("retry_topic-attempts", &[0, 0, 0, 3][..]),
            ("retry_topic-backoff-timestamp", &big_integer(due)),
            ("kafka_dlt-original-topic", topic.as_bytes()),
            ("kafka_dlt-original-partition", &0i32.to_be_bytes()),
            ("kafka_dlt-original-offset", &41i64.to_be_bytes()),
            (
                "kafka_dlt-original-timestamp",
                &1_700_000_000_000i64.to_be_bytes(),
            ),
            ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ],
    )
    .await;
    // Held back until the due time...
    let early = due - 600 - now_ms();
    tokio::time::sleep(Duration::from_millis(early.max(0) as u64)).await;
    assert_eq!(seen.len(), 0, "handled before its due time");
    // ...and handled then.
    assert_eq!(seen.wait_for(2, WAIT).await, 2);
    assert!(now_ms() >= due - 50);
    for h in seen.all() {
        let want = if h.data["order_id"] == 10 { 2 } else { 3 };
        assert_eq!(h.attempt, want, "Spring's attempt numbering: {h:?}");
    }
    let dead = read_topic(&format!("{topic}-dlt"), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.key(), Some(&b"spring-broken"[..]));
    assert_eq!(
        header(d, "kafka_dlt-original-topic"),
        Some(topic.as_bytes())
    );
    assert_eq!(
        header(d, "kafka_dlt-original-offset"),
        Some(&41i64.to_be_bytes()[..])
    );
    assert_eq!(
        header(d, "kafka_dlt-exception-message"),
        Some(&b"never works"[..])
    );
    app.shutdown().await.unwrap();
}

/// Input 9: a plain-JSON event keeps the id it got on the source topic across retry hops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_json_ids_stay_the_same_across_retry_topics() {
    let topic = unique("fi-ids");
    create_topic(&topic, 1).await;
    let producer = support::raw_producer();
    let offset = produce(&producer, &topic, "k", Some(&order_json(7, 7)), &[]).await;
    let seen = Seen::default();
    let app = start_with("on_interop_topics", &topic, &seen, &Deleted::default()).await;
    assert_eq!(seen.wait_for(2, WAIT).await, 2);
    let all = seen.all();
    let ids: HashSet<_> = all.iter().map(|h| h.id.clone()).collect();
    assert_eq!(ids.len(), 1, "{all:?}");
    assert_eq!(all[0].id, format!("{topic}-0-{offset}"));
    assert_eq!(all[1].topic, format!("{topic}-retry-0"));
    assert_eq!(all[1].attempt, 2);
    let retry0 = read_topic(&format!("{topic}-retry-0"), 1, WAIT).await;
    assert_eq!(
        header(&retry0[0], "retry_topic-attempts"),
        Some(&[0u8, 0, 0, 2][..]),
        "Spring's numbering: the next delivery is the 2nd"
    );
    assert_eq!(
        header(&retry0[0], "retry_topic-backoff-timestamp").map(<[u8]>::len),
        Some(6),
        "BigInteger bytes, as Spring writes them"
    );
    app.shutdown().await.unwrap();
}

/// Input 4: a listener taking `Option<Event<T>>` receives a tombstone as `None`; one that
/// cannot take deletes dead-letters it with a null value, and replay writes it back null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_reach_listeners_and_stay_null_through_dlt_and_replay() {
    let topic = unique("fi-tomb");
    create_topic(&topic, 1).await;
    let producer = support::raw_producer();
    produce(&producer, &topic, "cust-42", None, &[]).await;
    produce(&producer, &topic, "cust-43", Some(&order_json(43, 1)), &[]).await;
    let deleted = Deleted::default();
    let seen = Seen::default();
    let app = start_with("on_interop_deletes", &topic, &seen, &deleted).await;
    assert_eq!(seen.wait_for(1, WAIT).await, 1);
    assert_eq!(*deleted.0.lock().unwrap(), ["cust-42"]);
    app.shutdown().await.unwrap();

    // A listener that takes `Event<T>` cannot take a delete: dead letter, value null.
    let strict = unique("fi-tomb-strict");
    create_topic(&strict, 1).await;
    produce(&producer, &strict, "cust-42", None, &[]).await;
    let app = start_with("on_mix", &strict, &seen, &deleted).await;
    let dlt = format!("{strict}-dlt");
    let dead = read_topic(&dlt, 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key(), Some(&b"cust-42"[..]));
    assert_eq!(dead[0].payload(), None, "the DLT copy is a tombstone too");
    app.shutdown().await.unwrap();
    let report = mq_core::dead_letter::replay(&config(""), &dlt, None)
        .await
        .unwrap();
    assert_eq!(report.replayed.get(&strict), Some(&1));
    let back = read_topic(&strict, 2, WAIT).await;
    assert_eq!(back.len(), 2);
    assert_eq!(back[1].key(), Some(&b"cust-42"[..]));
    assert_eq!(
        back[1].payload(),
        None,
        "replayed as a tombstone, so compaction deletes the key"
    );
}

/// Input 7: on a `LogAppendTime` topic the dead letter says `LogAppendTime`, with the
/// broker's timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_carries_the_records_own_timestamp_type() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let topic = unique("fi-logappend");
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", support::bootstrap())
        .create()
        .unwrap();
    let t = NewTopic::new(&topic, 1, TopicReplication::Fixed(1))
        .set("message.timestamp.type", "LogAppendTime");
    for r in admin
        .create_topics([&t], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let producer = support::raw_producer();
    produce(&producer, &topic, "poison", Some(b"not json"), &[]).await;
    let seen = Seen::default();
    let app = start_with("on_mix", &topic, &seen, &Deleted::default()).await;
    let dlt = read_topic(&format!("{topic}-dlt"), 1, WAIT).await;
    assert_eq!(dlt.len(), 1);
    let original = read_topic(&topic, 1, WAIT).await;
    let rdkafka::Timestamp::LogAppendTime(ts) = original[0].timestamp() else {
        panic!(
            "the broker did not apply LogAppendTime: {:?}",
            original[0].timestamp()
        );
    };
    assert_eq!(
        header(&dlt[0], "kafka_dlt-original-timestamp-type"),
        Some(&b"LogAppendTime"[..])
    );
    assert_eq!(
        header(&dlt[0], "kafka_dlt-original-timestamp"),
        Some(&ts.to_be_bytes()[..])
    );
    app.shutdown().await.unwrap();
}

/// Inputs 5 and 6: a structured event with `data_base64`, and a binary-mode event whose
/// `ce_*` headers Spring's header mapper JSON-quoted (with a `ce_time` that is quoted too,
/// and a `ce_subject` that is not UTF-8): both are handled, not dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_base64_and_spring_quoted_binary_events_are_handled() {
    let topic = unique("fi-ce");
    create_topic(&topic, 1).await;
    let producer = support::raw_producer();
    let structured = br#"{"specversion":"1.0","id":"b64-1","source":"/shop","type":"Order","datacontenttype":"application/json","data_base64":"eyJvcmRlcl9pZCI6MSwicXVhbnRpdHkiOjN9"}"#;
    produce(
        &producer,
        &topic,
        "b64",
        Some(structured),
        &[(
            "content-type",
            b"application/cloudevents+json; charset=UTF-8",
        )],
    )
    .await;
    produce(
        &producer,
        &topic,
        "spring",
        Some(&order_json(2, 4)),
        &[
            ("ce_specversion", b"\"1.0\""),
            ("ce_id", b"\"sp-2\""),
            ("ce_source", b"\"/order-service\""),
            ("ce_type", b"\"Order\""),
            ("ce_time", b"\"2024-11-28T10:15:30.123+01:00\""),
            ("ce_subject", b"\xff\xfe"),
            (
                "spring_json_header_types",
                br#"{"ce_source":"java.lang.String"}"#,
            ),
        ],
    )
    .await;
    let seen = Seen::default();
    let app = start_with("on_interop_topics", &topic, &seen, &Deleted::default()).await;
    assert_eq!(seen.wait_for(2, WAIT).await, 2);
    let all = seen.all();
    assert_eq!(
        (all[0].id.as_str(), all[0].source.as_str()),
        ("b64-1", "/shop")
    );
    assert_eq!(all[0].data["quantity"], 3);
    assert_eq!(
        (all[1].id.as_str(), all[1].source.as_str()),
        ("sp-2", "/order-service")
    );
    assert_eq!(
        all[1].subject, None,
        "the unreadable optional attribute is dropped"
    );
    assert_eq!(all[1].data["quantity"], 4);
    assert_eq!(
        metric(&app, "mq_listener_decode_errors_total", "on_interop_topics"),
        0
    );
    app.shutdown().await.unwrap();
}
