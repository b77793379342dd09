//! The cleanup of sent rows keeps up: a backlog of tens of thousands of rows sent before
//! the retention is gone after one cleanup pass (in batches of 5,000, each its own short
//! transaction), and rows still within the retention, pending or set aside stay; the
//! table's size is reported with the backlog.

use std::sync::Arc;
use std::time::Duration;

use mq_core::config::OutboxConfig;
use mq_core::outbox::Relay;
use mq_core::sqlx;
use mq_core::testing::TestBroker;
use mq_core::{Config, Publisher};

use super::db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cleanup_pass_deletes_every_sent_row_past_the_retention() {
    let (_schema, url) = db::fresh_schema("cleanup").await;
    let config = Config::from_yaml_str("mq:\n  outbox:\n    retention: 10m\n").unwrap();
    let settings: OutboxConfig = config.mq.outbox.clone();
    let pool = db::pool(&url, 2).await;
    mq_core::outbox::migrate(&pool, "mq_outbox", "mq_inbox")
        .await
        .unwrap();
    // 32,000 rows sent an hour ago (the backlog), 1,000 sent a minute ago (within the
    // retention), 100 pending, 10 set aside.
    const OLD: i64 = 32_000;
    let insert = |n: i64, sent: &'static str, failed: &'static str| {
        format!(
            "INSERT INTO mq_outbox (destination, msg_key, key_hash, event, sent_at, failed_at) \
             SELECT 't', convert_to('k' || g, 'UTF8'), g, '{{}}', {sent}, {failed} \
             FROM generate_series(1, {n}) g"
        )
    };
    for sql in [
        insert(OLD, "now() - interval '1 hour'", "NULL"),
        insert(1_000, "now() - interval '1 minute'", "NULL"),
        insert(100, "NULL", "NULL"),
        insert(10, "NULL", "now()"),
    ] {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    let relay = Relay::new(
        pool.clone(),
        Publisher::new(Arc::new(TestBroker::new()), "/cleanup", Default::default()),
        &settings,
    );

    // The table's size is reported with the backlog: PostgreSQL's live-row count, which
    // its statistics publish within seconds of each transaction (wait for the inserts to
    // be counted: a count of deletes published first would be clamped at zero).
    table_size_is(&relay, OLD + 1_110).await;

    let started = std::time::Instant::now();
    let cleanup = relay.clean_up().await.unwrap();
    let took = started.elapsed();
    let left = db::count(&pool, "SELECT count(*) FROM mq_outbox").await;
    println!(
        "cleanup: {} rows deleted in {} batches ({took:?}, {:.0} rows/s), {left} rows left",
        cleanup.deleted,
        cleanup.batches,
        cleanup.deleted as f64 / took.as_secs_f64()
    );
    assert_eq!(cleanup.deleted, OLD as u64, "the whole backlog in one pass");
    assert_eq!(cleanup.batches, 7, "6 full batches of 5,000 and the rest");
    assert_eq!(
        db::count(
            &pool,
            "SELECT count(*) FROM mq_outbox WHERE sent_at < now() - interval '10 minutes'"
        )
        .await,
        0,
        "nothing older than the retention left"
    );
    assert_eq!(left, 1_110, "recent, pending and set-aside rows stay");
    assert_eq!(relay.clean_up().await.unwrap().deleted, 0);

    table_size_is(&relay, 1_110).await;
    let backlog = relay.backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.failed), (100, 10));
}

/// Waits until the backlog reports `rows` rows in the table.
async fn table_size_is(relay: &Relay, rows: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let backlog = relay.backlog().await.unwrap();
        if backlog.rows == rows {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "table size {rows} not reported: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
