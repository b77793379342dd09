//! Rows the broker refuses for good are set aside and never keep other keys waiting: on
//! the real broker (a topic name Kafka refuses, a record over the producer's maximum) and
//! through a sink whose refusals the test switches (key order with and without
//! `mq.outbox.strict-key-order`, retrying and dropping rows set aside, a key stuck on a
//! destination that is away).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use mq_core::outbox::{drop_parked, retry_parked, Outbox, ParkedRows, Relay, RoundReport};
use mq_core::publisher::RecordSink;
use mq_core::record::OutgoingRecord;
use mq_core::sqlx::{self, PgPool};
use mq_core::testing::TestBroker;
use mq_core::{Config, Delivery, PublishError, PublishErrorKind, Publisher};
use serde_json::Value;

use super::db;
use super::support::{self, create_topic, unique};

/// The in-memory broker, refusing every record for `refused` (as a broker refuses an
/// invalid or unauthorized destination) while `refusing`, and failing every record for
/// `away` as an unreachable destination does (transient).
#[derive(Clone, Default)]
struct Picky {
    broker: TestBroker,
    refusing: Arc<AtomicBool>,
}

impl RecordSink for Picky {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        let (broker, refusing) = (self.broker.clone(), self.refusing.load(Ordering::SeqCst));
        Box::pin(async move {
            let kind = match record.topic.as_str() {
                "refused" if refusing => PublishErrorKind::DestinationRejected,
                "away" => PublishErrorKind::Transient,
                _ => return broker.send(record).await,
            };
            Err(PublishError::Broker {
                reason: format!("{} refuses it (test)", record.topic),
                topic: record.topic,
                kind,
            })
        })
    }
}

struct Setup {
    pool: PgPool,
    outbox: Outbox,
    relay: Relay,
    sink: Picky,
}

/// An outbox in a schema of its own with one slot (every key shares it), and a relay
/// through a [`Picky`] sink that refuses `refused`.
async fn setup(prefix: &str, extra: &str) -> Setup {
    let (_schema, url) = db::fresh_schema(prefix).await;
    let config = Config::from_yaml_str(&format!("mq:\n  outbox:\n    slots: 1\n{extra}")).unwrap();
    let pool = db::pool(&url, 4).await;
    mq_core::outbox::migrate(&pool, "mq_outbox", "mq_inbox")
        .await
        .unwrap();
    let sink = Picky::default();
    sink.refusing.store(true, Ordering::SeqCst);
    let publisher = Publisher::new(Arc::new(sink.clone()), "/refused", Default::default());
    Setup {
        relay: Relay::new(pool.clone(), publisher, &config.mq.outbox),
        outbox: Outbox::new(&config),
        pool,
        sink,
    }
}

/// Writes `(destination, key, seq)` rows in this order, in one transaction.
async fn write(pool: &PgPool, outbox: &Outbox, rows: &[(&str, String, usize)]) {
    let mut tx = pool.begin().await.unwrap();
    for (destination, key, seq) in rows {
        let data = serde_json::json!({ "key": key, "seq": seq });
        outbox.send(&mut tx, destination, key, data).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// `(key, seq)` of what reached `topic` of the in-memory broker, in arrival order.
fn arrived(broker: &TestBroker, topic: &str) -> Vec<(String, u64)> {
    broker
        .records(topic)
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            let data = &v["data"];
            (
                data["key"].as_str().unwrap().to_owned(),
                data["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `rounds` relay rounds, added up.
async fn rounds(relay: &Relay, rounds: usize) -> RoundReport {
    let mut total = RoundReport::default();
    for _ in 0..rounds {
        total += relay.run_once().await.unwrap();
    }
    total
}

/// 300 rows of key `bad` for `destination`, then 10 rows on each of 20 other keys for `good`.
fn bad_then_good(destination: &str, good: &str) -> Vec<(String, String, usize)> {
    let mut rows: Vec<(String, String, usize)> = (0..300)
        .map(|seq| (destination.to_owned(), "bad".to_owned(), seq))
        .collect();
    for seq in 0..10 {
        for k in 0..20 {
            rows.push((good.to_owned(), format!("k{k}"), seq));
        }
    }
    rows
}

async fn write_owned(pool: &PgPool, outbox: &Outbox, rows: &[(String, String, usize)]) {
    let rows: Vec<(&str, String, usize)> = rows
        .iter()
        .map(|(d, k, s)| (d.as_str(), k.clone(), *s))
        .collect();
    write(pool, outbox, &rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_are_set_aside_and_other_keys_of_their_slot_go_on() {
    for strict in [false, true] {
        let Setup {
            pool,
            outbox,
            relay,
            sink,
        } = setup("refused_keys", &format!("    strict-key-order: {strict}\n")).await;
        write_owned(&pool, &outbox, &bad_then_good("refused", "good")).await;
        // Two rounds of batches of 256: the refused rows take the first batch.
        let report = rounds(&relay, 2).await;
        let good = arrived(&sink.broker, "good");
        let parked = db::count(
            &pool,
            "SELECT count(*) FROM mq_outbox WHERE failed_at IS NOT NULL",
        )
        .await;
        println!("strict-key-order {strict}: after 2 rounds {} of 200 rows of other keys published, {parked} refused rows set aside ({report:?})", good.len());
        assert_eq!(good.len(), 200, "every row of the other keys is published");
        for k in 0..20 {
            let seqs: Vec<u64> = good
                .iter()
                .filter(|(key, _)| *key == format!("k{k}"))
                .map(|r| r.1)
                .collect();
            assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "k{k} in order");
        }
        let backlog = relay.backlog().await.unwrap();
        if strict {
            // The first refused row is set aside; the key's later rows wait behind it.
            assert_eq!((parked, backlog.pending), (1, 299));
        } else {
            assert_eq!((parked, backlog.pending), (300, 0));
        }
        assert_eq!(backlog.failed, parked);
        let (error,): (String,) =
            sqlx::query_as("SELECT last_error FROM mq_outbox WHERE failed_at IS NOT NULL LIMIT 1")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(error.contains("refused refuses it"), "{error}");

        // The destination is fixed: retried, the rows go out, in the key's order.
        sink.refusing.store(false, Ordering::SeqCst);
        assert_eq!(
            retry_parked(
                &pool,
                "mq_outbox",
                &ParkedRows::Destination("refused".into())
            )
            .await
            .unwrap(),
            parked as u64
        );
        rounds(&relay, 3).await;
        let bad: Vec<u64> = arrived(&sink.broker, "refused")
            .iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(
            bad,
            (0..300).collect::<Vec<_>>(),
            "strict {strict}: the retried rows in order"
        );
        let backlog = relay.backlog().await.unwrap();
        assert_eq!((backlog.pending, backlog.failed), (0, 0), "nothing left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_later_rows_go_on_past_a_refused_row_unless_strict_order_is_asked() {
    for strict in [false, true] {
        let Setup {
            pool,
            outbox,
            relay,
            sink,
        } = setup(
            "refused_order",
            &format!("    strict-key-order: {strict}\n"),
        )
        .await;
        let a = |d, seq| (d, "a".to_owned(), seq);
        write(
            &pool,
            &outbox,
            &[a("t", 0), a("refused", 1), a("t", 2), a("t", 3)],
        )
        .await;
        rounds(&relay, 2).await;
        let seqs: Vec<u64> = arrived(&sink.broker, "t").iter().map(|r| r.1).collect();
        if strict {
            assert_eq!(seqs, [0], "strict: 2 and 3 wait behind the refused 1");
            assert_eq!(relay.backlog().await.unwrap().pending, 2);
        } else {
            assert_eq!(seqs, [0, 2, 3], "default: 2 and 3 go on");
        }
        // Dropping the refused row: it is gone, and nothing waits behind it any more.
        let n = drop_parked(&pool, "mq_outbox", &ParkedRows::All)
            .await
            .unwrap();
        assert_eq!(n, 1);
        rounds(&relay, 1).await;
        let seqs: Vec<u64> = arrived(&sink.broker, "t").iter().map(|r| r.1).collect();
        assert_eq!(seqs, [0, 2, 3]);
        assert!(sink.broker.records("refused").is_empty());
        assert_eq!(
            db::count(
                &pool,
                "SELECT count(*) FROM mq_outbox WHERE sent_at IS NULL"
            )
            .await,
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_stuck_on_a_destination_that_is_away_does_not_hold_its_slot() {
    let Setup {
        pool,
        outbox,
        relay,
        sink,
    } = setup("stuck_key", "").await;
    write_owned(&pool, &outbox, &bad_then_good("away", "good")).await;
    let report = relay.run_once().await.unwrap();
    assert_eq!(arrived(&sink.broker, "good").len(), 200, "{report:?}");
    assert_eq!(
        (report.published, report.failed, report.parked),
        (200, 1, 0)
    );
    assert_eq!(
        relay.backlog().await.unwrap().pending,
        300,
        "the stuck key's rows wait"
    );
}

/// The real broker: a topic name Kafka refuses and records over the producer's maximum
/// size, on one key, ahead of 200 rows of 20 other keys in the same slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_refusals_are_set_aside_and_the_slots_other_keys_are_published() {
    let (_schema, url) = db::fresh_schema("refused_kafka").await;
    let good = unique("refused-good");
    create_topic(&good, 3).await;
    let config = support::config(&format!(
        "{}  outbox:\n    slots: 1\n    poll-interval: 20ms\n\
         management:\n  endpoints:\n    web:\n      exposure:\n        include: health,prometheus\n  endpoint:\n    health:\n      show-details: always\n",
        db::datasource_yaml(&url)
    ));
    let (outbox, app) = super::app::outbox_app(config).await;
    let pool = db::pool(&url, 2).await;
    let invalid = format!("{} invalid!", unique("refused"));
    let rows = bad_then_good(&invalid, &good);
    // 50 records over the producer's 1 MB `message.max.bytes` on key `big`, first too.
    let mut tx = pool.begin().await.unwrap();
    for seq in 0..50 {
        outbox
            .send(&mut tx, &good, "big", "x".repeat(1_100_000 + seq))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    write_owned(&pool, &outbox, &rows).await;

    let records = support::read_topic(&good, 200, Duration::from_secs(60)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let parked = loop {
        let parked = db::count(
            &pool,
            "SELECT count(*) FROM mq_outbox WHERE failed_at IS NOT NULL",
        )
        .await;
        if parked == 350 || tokio::time::Instant::now() > deadline {
            break parked;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let errors: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT destination || ': ' || last_error FROM mq_outbox WHERE failed_at IS NOT NULL")
        .fetch_all(&pool)
        .await
        .unwrap();
    println!("real broker: {} of 200 rows of other keys published, {parked} of 350 refused rows set aside: {errors:?}", records.len());
    assert_eq!(
        records.len(),
        200,
        "every row of the other keys is published"
    );
    assert_eq!(parked, 350, "every refused row set aside: {errors:?}");

    let addr = app.actuator_addr().unwrap();
    let health = support::http(addr, "GET", "/actuator/health", None, None).await;
    let details = &health.json()["components"]["outbox"]["details"];
    assert_eq!(details["failedRows"], 350, "{details}");
    assert!(details["lastFailedRow"].is_string(), "{details}");
    let scrape = support::http(addr, "GET", "/actuator/prometheus", None, None)
        .await
        .body;
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("mq_outbox_parked_total{") && l.ends_with(" 350")),
        "{scrape}"
    );
    app.shutdown().await.unwrap();
}
