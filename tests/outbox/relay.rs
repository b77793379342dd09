//! The relay against real PostgreSQL, publishing into the in-memory broker (through a sink
//! that can fail like a broker that is away): two relays on one outbox, a broker outage,
//! a rolled-back transaction.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use mq_core::config::OutboxConfig;
use mq_core::outbox::{Outbox, Relay};
use mq_core::publisher::RecordSink;
use mq_core::record::OutgoingRecord;
use mq_core::sqlx::PgPool;
use mq_core::testing::TestBroker;
use mq_core::{Config, Delivery, PublishError, PublishErrorKind, Publisher};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::db;

/// The in-memory broker behind a switch: while `down`, every send fails as a broker that
/// cannot be reached does (transient), after a short wait.
#[derive(Clone)]
struct Switchable {
    broker: TestBroker,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

impl RecordSink for Switchable {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        let (broker, down, refused) =
            (self.broker.clone(), self.down.clone(), self.refused.clone());
        Box::pin(async move {
            if down.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                refused.fetch_add(1, Ordering::SeqCst);
                return Err(PublishError::Broker {
                    topic: record.topic,
                    reason: "broker unreachable (test)".into(),
                    kind: PublishErrorKind::Transient,
                });
            }
            broker.send(record).await
        })
    }
}

fn switchable() -> Switchable {
    Switchable {
        broker: TestBroker::new(),
        down: Arc::default(),
        refused: Arc::default(),
    }
}

fn publisher(sink: &Switchable) -> Publisher {
    Publisher::new(Arc::new(sink.clone()), "/relay-test", Default::default())
}

/// An outbox in a schema of its own, migrated, with the relay settings of
/// `mq.outbox` (poll interval 20 ms, plus `extra` YAML under it).
struct Setup {
    url: String,
    settings: OutboxConfig,
    pool: PgPool,
    outbox: Outbox,
}

async fn migrated(schema_prefix: &str, extra: &str) -> Setup {
    let (_schema, url) = db::fresh_schema(schema_prefix).await;
    let config = Config::from_yaml_str(&format!(
        "mq:\n  application:\n    name: relay-test\n  outbox:\n    poll-interval: 20ms\n{extra}"
    ))
    .unwrap();
    let settings = config.mq.outbox.clone();
    let pool = db::pool(&url, 4).await;
    mq_core::outbox::migrate(&pool, &settings.table, &config.mq.inbox.table)
        .await
        .unwrap();
    Setup {
        url,
        settings,
        pool,
        outbox: Outbox::new(&config),
    }
}

/// Writes `keys` × `per_key` events (data `{"key", "seq"}`) in transactions of 50 rows.
async fn fill(pool: &PgPool, outbox: &Outbox, topic: &str, keys: usize, per_key: usize) -> usize {
    let mut n = 0;
    for seq in 0..per_key {
        let mut tx = pool.begin().await.unwrap();
        for k in 0..keys {
            let key = format!("key-{k}");
            outbox
                .send(
                    &mut tx,
                    topic,
                    &key,
                    serde_json::json!({"key": key, "seq": seq}),
                )
                .await
                .unwrap();
            n += 1;
            if n % 50 == 0 {
                tx.commit().await.unwrap();
                tx = pool.begin().await.unwrap();
            }
        }
        tx.commit().await.unwrap();
    }
    n
}

/// Ids, keys and sequence numbers of what reached `topic`, in arrival order.
fn published(broker: &TestBroker, topic: &str) -> Vec<(String, String, u64)> {
    broker
        .records(topic)
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            (
                v["id"].as_str().unwrap().to_owned(),
                v["data"]["key"].as_str().unwrap().to_owned(),
                v["data"]["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Each key's sequence numbers arrive in order, each once.
fn assert_in_order_per_key(records: &[(String, String, u64)], per_key: usize) {
    let mut by_key: HashMap<&str, Vec<u64>> = HashMap::new();
    for (_, key, seq) in records {
        by_key.entry(key).or_default().push(*seq);
    }
    for (key, seqs) in by_key {
        assert_eq!(
            seqs,
            (0..per_key as u64).collect::<Vec<_>>(),
            "key {key} out of order or incomplete"
        );
    }
}

/// Waits until the outbox has nothing pending (or panics after `timeout`).
async fn drained(relay: &Relay, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let backlog = relay.backlog().await.unwrap();
        if backlog.pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox not drained in {timeout:?}: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_every_row_once_and_keep_each_key_in_order() {
    let Setup {
        url,
        settings,
        pool,
        outbox,
    } = migrated("relays", "    batch-size: 40\n    slots: 8\n").await;
    const KEYS: usize = 40;
    const PER_KEY: usize = 50;
    let total = fill(&pool, &outbox, "orders", KEYS, PER_KEY).await;

    // Two relays, each with a pool and a publisher of its own, into one broker.
    let sink = switchable();
    let stop = CancellationToken::new();
    let counted = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut relays = Vec::new();
    for _ in 0..2 {
        let relay = Relay::new(db::pool(&url, 4).await, publisher(&sink), &settings);
        relays.push(relay.clone());
        let (stop, counted) = (stop.clone(), counted.clone());
        tokio::spawn(async move {
            let mut published = 0;
            while !stop.is_cancelled() {
                published += relay.run_once().await.unwrap().published;
            }
            counted.lock().await.push(published);
        });
    }
    drained(&relays[0], Duration::from_secs(60)).await;
    stop.cancel();
    while counted.lock().await.len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let records = published(&sink.broker, "orders");
    let ids: HashSet<&String> = records.iter().map(|r| &r.0).collect();
    let per_relay = counted.lock().await.clone();
    println!(
        "two relays: {total} rows, published {} ({per_relay:?} per relay)",
        records.len()
    );
    assert_eq!(records.len(), total, "every row published exactly once");
    assert_eq!(ids.len(), total, "no event published twice");
    assert!(
        per_relay.iter().all(|n| *n > 0),
        "both relays took part: {per_relay:?}"
    );
    assert_eq!(per_relay.iter().sum::<u64>(), total as u64);
    assert_in_order_per_key(&records, PER_KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_wait_out_a_broker_outage_and_none_is_lost() {
    let Setup {
        settings,
        pool,
        outbox,
        ..
    } = migrated("outage", "").await;
    let sink = switchable();
    sink.down.store(true, Ordering::SeqCst);
    let relay = Relay::new(pool.clone(), publisher(&sink), &settings);
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.clone().run(stop.clone()));

    const KEYS: usize = 10;
    const PER_KEY: usize = 30;
    let total = fill(&pool, &outbox, "payments", KEYS, PER_KEY).await;
    // The relay keeps trying while the broker is away: attempts are recorded on the rows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while db::count(&pool, "SELECT count(*) FROM mq_outbox WHERE attempts >= 2").await < KEYS as i64
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay did not retry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backlog = relay.backlog().await.unwrap();
    assert_eq!(backlog.pending, total as i64, "every row still waits");
    assert!(backlog.oldest_seconds > 0.0);
    assert!(sink.broker.records("payments").is_empty());
    let last_error: Option<String> = mq_core::sqlx::query_as::<_, (Option<String>,)>(
        "SELECT last_error FROM mq_outbox WHERE attempts > 0 LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
    .0;
    assert!(last_error.unwrap().contains("broker unreachable"));
    // Only the first row of each key is tried while the broker is away (the rest wait
    // behind it, keeping the key's order).
    assert_eq!(
        db::count(&pool, "SELECT count(*) FROM mq_outbox WHERE attempts > 0").await,
        KEYS as i64
    );

    sink.down.store(false, Ordering::SeqCst);
    drained(&relay, Duration::from_secs(60)).await;
    stop.cancel();
    task.await.unwrap();
    let records = published(&sink.broker, "payments");
    let ids: HashSet<&String> = records.iter().map(|r| &r.0).collect();
    println!(
        "broker outage: {} publishes refused, then {} of {total} rows published",
        sink.refused.load(Ordering::SeqCst),
        records.len()
    );
    assert_eq!(records.len(), total, "nothing lost, nothing twice");
    assert_eq!(ids.len(), total);
    assert_in_order_per_key(&records, PER_KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_publishes_nothing() {
    let Setup {
        settings,
        pool,
        outbox,
        ..
    } = migrated("rollback", "").await;
    let mut tx = pool.begin().await.unwrap();
    outbox.send(&mut tx, "t", "a", "rolled back").await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let id = outbox.send(&mut tx, "t", "b", "committed").await.unwrap();
    tx.commit().await.unwrap();

    let sink = switchable();
    let relay = Relay::new(pool.clone(), publisher(&sink), &settings);
    let round = relay.run_once().await.unwrap();
    assert_eq!(round.published, 1);
    let records = sink.broker.records("t");
    assert_eq!(records.len(), 1);
    let v: Value = serde_json::from_slice(records[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(v["data"], "committed");
    assert_eq!(v["source"], "/relay-test");
    assert_eq!(records[0].key.as_deref(), Some(&b"b"[..]));
    let sent: i64 = db::count(
        &pool,
        &format!("SELECT count(*) FROM mq_outbox WHERE id = {id} AND sent_at IS NOT NULL"),
    )
    .await;
    assert_eq!(sent, 1, "marked sent");
    assert_eq!(relay.run_once().await.unwrap().published, 0, "sent once");
}
