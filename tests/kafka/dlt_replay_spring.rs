//! `mq dlt-replay` on dead letters Spring wrote, in both of its dialects: `kafka_dlt-*`
//! (`DeadLetterPublishingRecoverer`) and `kafka_original-*` / `kafka_exception-*`
//! (`@RetryableTopic`); a record that cannot be replayed is counted with its reason, never
//! stops the replay, and is committed past only with `skip_unreplayable`.

use std::time::Duration;

use crate::support::{self, bootstrap, unique};

use mq_core::dead_letter::{ReplayOptions, ReplayReport};
use mq_core::Config;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

async fn create_topics(topics: &[&str]) {
    for t in topics {
        support::create_topic(t, 1).await;
    }
}

/// Every record of `topic` until nothing new came for 3 s (the first wait, with the group
/// join, is 20 s).
async fn read_all(topic: &str) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let mut wait = Duration::from_secs(20);
    while let Ok(m) = tokio::time::timeout(wait, consumer.recv()).await {
        out.push(m.expect("read").detach());
        wait = Duration::from_secs(3);
    }
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .ok();
    out
}

fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    let hs = m.headers()?;
    hs.iter().find(|h| h.key == name).and_then(|h| h.value)
}

/// A dead letter as Spring Kafka writes it: `dialect` is `"kafka_dlt-"` or `"kafka_"`.
fn spring_headers(dialect: &str, original: &str, fqcn: &str) -> OwnedHeaders {
    let h = |k: &str, v: &[u8]| (format!("{dialect}{k}"), v.to_vec());
    let pairs = [
        h("original-topic", original.as_bytes()),
        h("original-partition", &0i32.to_be_bytes()),
        h("original-offset", &7i64.to_be_bytes()),
        h("original-timestamp", &1_700_000_000_000i64.to_be_bytes()),
        h("original-timestamp-type", b"CreateTime"),
        h("exception-fqcn", fqcn.as_bytes()),
        h("exception-message", b"Listener method threw exception"),
        h(
            "exception-stacktrace",
            b"java.lang.IllegalStateException: no stock\n\tat ...",
        ),
        (
            "kafka_dlt-original-consumer-group".to_owned(),
            b"inventory".to_vec(),
        ),
        ("app".to_owned(), b"kept".to_vec()),
    ];
    pairs.iter().fold(OwnedHeaders::new(), |hs, (k, v)| {
        hs.insert(Header {
            key: k,
            value: Some(v),
        })
    })
}

async fn produce(topic: &str, key: &str, value: &str, headers: OwnedHeaders) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

/// The services' configuration, as the command reads it (a StatefulSet's instance id too).
fn config(app: &str) -> Config {
    let yaml = format!(
        "mq:\n  application:\n    name: {app}\n  kafka:\n    bootstrap-servers: \"{}\"\n    consumer:\n      properties:\n        session.timeout.ms: 6000\n        group.instance.id: pod-0\n",
        bootstrap()
    );
    Config::from_yaml_str(&yaml).expect("config")
}

async fn replay(config: &Config, dlt: &str, opts: &ReplayOptions) -> ReplayReport {
    mq_core::dead_letter::replay_with(config, dlt, opts)
        .await
        .expect("the replay runs to the end")
}

/// Issue 23, input 6: four dead letters on `orders.DLT`: Spring's classic dialect, its
/// `@RetryableTopic` dialect (from a retry topic), a record that is no dead letter at all,
/// and one more `@RetryableTopic` dead letter behind it. Before the fix the replay (and
/// its dry run) failed at the second record, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_spring_dialects_replay_and_an_unreplayable_record_is_counted_not_fatal() {
    let orders = unique("orders");
    let dlt = format!("{orders}.DLT");
    create_topics(&[&orders, &dlt]).await;
    let retry = format!("{orders}-retry-0");
    let fqcn = "org.springframework.kafka.listener.ListenerExecutionFailedException";
    produce(
        &dlt,
        "a",
        r#"{"n":0}"#,
        spring_headers("kafka_dlt-", &orders, fqcn),
    )
    .await;
    produce(
        &dlt,
        "b",
        r#"{"n":1}"#,
        spring_headers("kafka_", &retry, fqcn),
    )
    .await;
    produce(&dlt, "c", "garbage", OwnedHeaders::new()).await;
    produce(
        &dlt,
        "d",
        r#"{"n":3}"#,
        spring_headers("kafka_", &orders, fqcn),
    )
    .await;
    let config = config(&unique("replayer"));

    // The dry run says what the run will do, and sends nothing.
    let dry = ReplayOptions {
        dry_run: true,
        ..Default::default()
    };
    let report = replay(&config, &dlt, &dry).await;
    assert_eq!(report.planned.len(), 4, "{:#?}", report.planned);
    assert!(
        report.planned[0].ends_with(&format!("replay -> {orders}")),
        "{:#?}",
        report.planned
    );
    assert!(
        report.planned[1].ends_with(&format!("replay -> {orders}")),
        "{:#?}",
        report.planned
    );
    assert!(
        report.planned[2]
            .contains("unreplayable (no kafka_dlt-original-topic or kafka_original-topic header"),
        "{:#?}",
        report.planned
    );
    assert!(report.planned[3].contains("held"), "{:#?}", report.planned);
    assert_eq!(
        (report.unreplayable.len(), report.held, report.total()),
        (1, 1, 0)
    );

    // The run replays both dialects, counts the bad record with its reason, holds the one
    // behind it (its position cannot move past the bad one), and does not stop.
    let report = replay(&config, &dlt, &ReplayOptions::default()).await;
    assert_eq!(report.replayed.get(&orders), Some(&2), "{report:?}");
    assert_eq!(report.unreplayable.len(), 1, "{report:?}");
    assert_eq!(report.unreplayable[0].at, format!("{dlt}/0@2"));
    assert!(report.unreplayable[0].reason.contains("not a dead letter"));
    assert_eq!(report.held, 1);
    // A rerun replays nothing twice.
    let again = replay(&config, &dlt, &ReplayOptions::default()).await;
    assert_eq!(
        (again.total(), again.unreplayable.len(), again.held),
        (0, 1, 1),
        "{again:?}"
    );

    // Told to, it commits past the bad record and replays what it held.
    let skip = ReplayOptions {
        skip_unreplayable: true,
        ..Default::default()
    };
    let report = replay(&config, &dlt, &skip).await;
    assert_eq!(report.replayed.get(&orders), Some(&1), "{report:?}");
    assert_eq!((report.unreplayable.len(), report.held), (1, 0));
    let last = replay(&config, &dlt, &ReplayOptions::default()).await;
    assert_eq!(
        (last.total(), last.unreplayable.len(), last.held),
        (0, 0, 0),
        "{last:?}"
    );

    let back = read_all(&orders).await;
    let keys: Vec<&[u8]> = back.iter().filter_map(|m| m.key()).collect();
    assert_eq!(keys, [&b"a"[..], b"b", b"d"], "each replayable record once");
    for m in &back {
        assert_eq!(header(m, "app"), Some(&b"kept"[..]));
        assert_eq!(header(m, "mq_replay-count"), Some(&b"1"[..]));
        for h in m.headers().unwrap().iter() {
            assert!(
                !h.key.starts_with("kafka_"),
                "dead-letter header {} left on the replayed record",
                h.key
            );
        }
    }
    assert_eq!(back[1].payload(), Some(&br#"{"n":1}"#[..]));
}
