//! The outbox on a database whose transactions default to SERIALIZABLE (a database of the
//! test's own, `ALTER DATABASE .. SET default_transaction_isolation = 'serializable'`):
//! replicas that start together all apply the migrations, and two relays on the real broker
//! publish each row once while the application keeps writing.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::db;
use super::support::{self, create_topic, unique};

/// Records in `topic` (the sum of its partitions' high watermarks).
async fn records_in(topic: &str, partitions: i32) -> i64 {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", support::bootstrap())
            .create()
            .expect("consumer");
        (0..partitions)
            .map(|p| {
                let (low, high) = c
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .expect("watermarks");
                high - low
            })
            .sum()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_apply_the_migrations_under_serializable() {
    let (name, url) = db::serializable_database("outbox_ser_migrate").await;
    let pools = futures::future::join_all((0..4).map(|_| db::pool(&url, 2))).await;
    let results = futures::future::join_all(
        pools
            .iter()
            .map(|p| mq_core::outbox::migrate(p, "mq_outbox", "mq_inbox")),
    )
    .await;
    for p in &pools {
        p.close().await;
    }
    let pool = db::pool(&url, 1).await;
    let history = db::count(&pool, "SELECT count(*) FROM mq_schema_history").await;
    pool.close().await;
    db::drop_database(&name).await;
    for r in &results {
        assert!(r.is_ok(), "every replica's migrations succeed: {results:?}");
    }
    assert_eq!(history, 3, "each migration applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_a_serializable_database_publish_each_row_once() {
    let (name, url) = db::serializable_database("outbox_ser_relay").await;
    let topic = unique("serializable");
    create_topic(&topic, 3).await;
    // Two replicas, started together (their migrations race), each with its relay; small
    // batches and 8 connections each: many slot transactions overlap.
    let yaml = format!(
        "mq:\n  datasource:\n    url: \"{url}\"\n    pool-size: 8\n  outbox:\n    batch-size: 25\n    poll-interval: 10ms\n"
    );
    let (a, b) = tokio::join!(
        super::app::outbox_app(support::config(&yaml)),
        super::app::outbox_app(support::config(&yaml)),
    );
    let (outbox, apps) = (a.0, [a.1, b.1]);

    // The application writes 4,000 rows (40 keys × 100) in SERIALIZABLE transactions of 20
    // rows while both relays publish, retrying its own serialization failures.
    const KEYS: usize = 40;
    const PER_KEY: usize = 100;
    let pool = db::pool(&url, 4).await;
    let mut retried = 0;
    for seq in 0..PER_KEY {
        for chunk in 0..KEYS / 20 {
            loop {
                let mut tx = pool.begin().await.unwrap();
                let mut ok = true;
                for k in chunk * 20..(chunk + 1) * 20 {
                    let data = serde_json::json!({ "key": k, "seq": seq });
                    if outbox
                        .send(&mut tx, &topic, format!("key-{k}"), data)
                        .await
                        .is_err()
                    {
                        ok = false;
                        break;
                    }
                }
                if ok && tx.commit().await.is_ok() {
                    break;
                }
                retried += 1;
            }
        }
    }
    let total = (KEYS * PER_KEY) as i64;
    assert_eq!(
        db::count(&pool, "SELECT count(*) FROM mq_outbox").await,
        total
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let sent = db::count(
            &pool,
            "SELECT count(*) FROM mq_outbox WHERE sent_at IS NOT NULL",
        )
        .await;
        if sent == total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sent} of {total} rows sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every row is marked sent, so every publish the relays made is acknowledged and in
    // the topic: its size is the number of publishes.
    let published = records_in(&topic, 3).await;
    let attempts = db::count(
        &pool,
        "SELECT coalesce(sum(attempts), 0)::bigint FROM mq_outbox",
    )
    .await;
    println!(
        "SERIALIZABLE database: {total} rows, {published} records published ({:.3} per row), \
         {attempts} attempts recorded, {retried} application transactions retried",
        published as f64 / total as f64
    );
    for app in apps {
        app.shutdown().await.unwrap();
    }
    pool.close().await;
    db::drop_database(&name).await;
    assert_eq!(published, total, "each row published once");
    assert_eq!(attempts, total, "each row tried once");
}
