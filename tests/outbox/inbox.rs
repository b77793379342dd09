//! The idempotent consumer on the real broker and real PostgreSQL: the same bytes twice,
//! and a process killed between its handler's writes and their commit.

use std::path::Path;
use std::time::Duration;

use mq_core::inbox::Tx;
use mq_core::prelude::*;
use mq_core::sqlx;
use mq_core::testing::TestApp;

use super::db;
use super::support::{self, create_topic, unique, KillOnDrop};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Effect {
    pub n: u32,
}

/// Writes one `effects` row per call, in the listener's transaction.
#[listener(topic = "outbox-test-effects", idempotent)]
async fn record_effect(event: Event<Effect>, tx: Tx) -> Result<(), HandlerError> {
    sqlx::query("INSERT INTO effects (event_id, n) VALUES ($1, $2)")
        .bind(&event.id)
        .bind(event.data.n as i32)
        .execute(&mut *tx.conn().await?)
        .await?;
    Ok(())
}

/// Calls of `count_in_memory`.
static MEMORY_CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Counts its calls (memory store: no database), and says whether it has a database.
#[listener(topic = "outbox-test-memory", idempotent)]
async fn count_in_memory(_e: Event<Effect>, tx: Tx) -> Result<(), HandlerError> {
    assert!(!tx.is_database());
    assert!(matches!(
        tx.conn().await,
        Err(mq_core::inbox::TxError::NoDatabase)
    ));
    MEMORY_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// Takes a `Tx` without being idempotent: the app must refuse to start.
#[listener(topic = "outbox-test-misuse")]
async fn tx_without_idempotency(_e: Event<Effect>, _tx: Tx) -> Result<(), HandlerError> {
    Ok(())
}

/// `mq_inbox_duplicates_total` of `listener` in `metrics` (0 when absent).
fn duplicates(metrics: &str, listener: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("mq_inbox_duplicates_total{")
                && l.contains(&format!("name=\"{listener}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn create_effects(url: &str) -> sqlx::PgPool {
    let pool = db::pool(url, 2).await;
    sqlx::query("CREATE TABLE effects (event_id TEXT NOT NULL, n INTEGER NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_twice_change_the_database_once() {
    let (_schema, url) = db::fresh_schema("dedup").await;
    let pool = create_effects(&url).await;
    let topic = unique("effects");
    create_topic(&topic, 1).await;
    let config = support::config(&format!(
        "{}  listeners:\n    record_effect:\n      topics: [{topic}]\n      group: {}\n",
        db::datasource_yaml(&url),
        unique("dedup")
    ));
    let app = App::new(config)
        .only_listeners(["record_effect"])
        .start()
        .await
        .unwrap();
    assert!(app.wait_assigned(Duration::from_secs(30)).await);

    // One event, encoded once, sent twice: the same bytes.
    let event = Event::new("Effect", Effect { n: 1 });
    let first = app
        .publisher()
        .send(&topic, "k", event.clone())
        .await
        .unwrap();
    let again = app
        .publisher()
        .send(&topic, "k", event.clone())
        .await
        .unwrap();
    assert_ne!(first.offset, again.offset, "two records on the topic");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while duplicates(&app.metrics().encode(), "record_effect") < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the redelivery was not seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another event still runs.
    let other = Event::new("Effect", Effect { n: 2 });
    app.publisher()
        .send(&topic, "k", other.clone())
        .await
        .unwrap();
    while db::count(&pool, "SELECT count(*) FROM effects").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second event was not handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = app.metrics().encode();
    app.shutdown().await.unwrap();
    let rows = db::count(
        &pool,
        &format!(
            "SELECT count(*) FROM effects WHERE event_id = '{}'",
            event.id
        ),
    )
    .await;
    assert_eq!(rows, 1, "the duplicate changed nothing");
    assert_eq!(db::count(&pool, "SELECT count(*) FROM effects").await, 2);
    assert_eq!(db::count(&pool, "SELECT count(*) FROM mq_inbox").await, 2);
    assert_eq!(duplicates(&metrics, "record_effect"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_skips_a_redelivered_event_in_test_app() {
    let config = mq_core::Config::from_yaml_str("mq:\n  application:\n    name: mem\n").unwrap();
    let app = TestApp::new(App::new(config).only_listeners(["count_in_memory"])).unwrap();
    let event = Event::new("Effect", Effect { n: 1 });
    for _ in 0..3 {
        app.publisher()
            .send("outbox-test-memory", "k", event.clone())
            .await
            .unwrap();
    }
    app.publisher()
        .send(
            "outbox-test-memory",
            "k",
            Event::new("Effect", Effect { n: 2 }),
        )
        .await
        .unwrap();
    let outcomes = app.drain().await;
    assert_eq!(
        outcomes.len(),
        4,
        "every record acknowledged, duplicates included"
    );
    assert!(
        outcomes.iter().all(|d| *d == mq_core::Disposition::Handled),
        "{outcomes:?}"
    );
    assert_eq!(
        MEMORY_CALLS.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the handler ran once per event id"
    );
}

#[tokio::test]
async fn a_tx_argument_needs_an_idempotent_listener() {
    let config = mq_core::Config::from_yaml_str("mq:\n  application:\n    name: misuse\n").unwrap();
    let e = App::new(config)
        .only_listeners(["tx_without_idempotency"])
        .start()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("\"tx_without_idempotency\" takes a Tx"), "{e}");
    assert!(
        e.contains("mq.listeners.tx_without_idempotency.idempotency: true"),
        "{e}"
    );
}

fn spawn_consumer(dir: &Path, url: &str, topic: &str, group: &str, marker: &Path) -> KillOnDrop {
    let child = support::child_app(
        env!("CARGO_BIN_EXE_mq-outbox-consumer"),
        dir,
        "outbox-consumer",
    )
    .env("MQ_DATASOURCE__URL", url)
    .env("MQ_LISTENERS__APPLY_ONCE__TOPICS", topic)
    .env("MQ_LISTENERS__APPLY_ONCE__GROUP", group)
    .env("STALL_MARKER", marker)
    .spawn()
    .expect("spawn the outbox consumer");
    KillOnDrop(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_a_crash_between_handler_and_commit_changes_the_database_once() {
    let (_schema, url) = db::fresh_schema("crashtx").await;
    let pool = create_effects(&url).await;
    let topic = unique("crashtx");
    create_topic(&topic, 1).await;
    let group = unique("crashtx");
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("stalled");

    let sender = App::new(support::config(""))
        .only_listeners(Vec::<String>::new())
        .start()
        .await
        .unwrap();
    let event = Event::new("Effect", Effect { n: 7 });
    sender
        .publisher()
        .send(&topic, "k", event.clone())
        .await
        .unwrap();

    // First run: the handler writes its row, then stalls before returning (the marker
    // says it got there); the process is killed with its transaction open.
    let mut child = spawn_consumer(dir.path(), &url, &topic, &group, &marker);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler never ran"
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "consumer exited early"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        db::count(&pool, "SELECT count(*) FROM effects").await,
        0,
        "the handler's write is not committed yet"
    );
    child.0.kill().unwrap(); // SIGKILL between the handler's write and the commit
    child.0.wait().unwrap();
    assert_eq!(db::count(&pool, "SELECT count(*) FROM effects").await, 0);
    assert_eq!(db::count(&pool, "SELECT count(*) FROM mq_inbox").await, 0);

    // Second run: the event comes again, the handler runs again, and commits once; the
    // same bytes sent once more change nothing.
    let _child = spawn_consumer(dir.path(), &url, &topic, &group, &marker);
    while db::count(&pool, "SELECT count(*) FROM effects").await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline + Duration::from_secs(30),
            "not redelivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sender
        .publisher()
        .send(&topic, "k", event.clone())
        .await
        .unwrap();
    sender
        .publisher()
        .send(&topic, "k", Event::new("Effect", Effect { n: 8 }))
        .await
        .unwrap();
    while db::count(&pool, "SELECT count(*) FROM effects").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline + Duration::from_secs(60),
            "later event not handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sender.shutdown().await.unwrap();
    let same = db::count(
        &pool,
        &format!(
            "SELECT count(*) FROM effects WHERE event_id = '{}'",
            event.id
        ),
    )
    .await;
    assert_eq!(
        same, 1,
        "one effect for the event handled in a killed process and again"
    );
    assert_eq!(db::count(&pool, "SELECT count(*) FROM mq_inbox").await, 2);
}
