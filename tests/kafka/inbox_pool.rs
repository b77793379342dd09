//! An idempotent listener with `ordering: key` and 64 records in flight, on the default pool
//! of 10 connections, with a handler that holds its transaction for 2 s: every valid record
//! is handled, none is dead-lettered for want of a connection (issue 23, input 4: 10 of 100
//! were, with "pool timed out").

use std::time::{Duration, Instant};

use crate::support::{self, bootstrap};
use mq_core::inbox::Tx;
use mq_core::prelude::*;
use mq_core::sqlx::{self, PgPool};
use mq_core::{App, Config};

const EVENTS: u64 = 100;

fn database_url() -> String {
    std::env::var("MQ_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A name no other run uses, with `_` (a schema name) instead of `-`.
fn unique(prefix: &str) -> String {
    support::unique(prefix).replace('-', "_")
}

/// A schema of its own with the handler's table, and the URL whose connections use it.
async fn fresh_schema() -> String {
    let schema = unique("inbox_pool");
    let pool = PgPool::connect(&database_url())
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 with database `test`");
    for sql in [
        format!("CREATE SCHEMA {schema}"),
        format!("CREATE TABLE {schema}.effects (n BIGINT PRIMARY KEY)"),
    ] {
        sqlx::query(&sql).execute(&pool).await.expect(&sql);
    }
    pool.close().await;
    format!("{}?options[search_path]={schema}", database_url())
}

#[derive(Debug, Serialize, Deserialize)]
struct Hold {
    n: u64,
}

/// Writes its effect, then keeps its transaction (and its connection) for 2 s.
#[listener(topic = "inbox-pool", idempotent)]
async fn ip_hold(event: Event<Hold>, tx: Tx) -> Result<(), HandlerError> {
    sqlx::query("INSERT INTO effects (n) VALUES ($1)")
        .bind(event.data.n as i64)
        .execute(&mut *tx.conn().await?)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ordered_idempotent_listener_never_dead_letters_for_want_of_a_connection() {
    // The binary's log capture goes first (the app would install a subscriber of its own).
    let _ = super::static_membership::logs();
    let url = fresh_schema().await;
    let topic = unique("inbox-pool").replace('_', "-");
    let yaml = format!(
        r#"
mq:
  application:
    name: mq-field-inbox
  kafka:
    bootstrap-servers: "{}"
    consumer:
      properties:
        session.timeout.ms: 6000
        heartbeat.interval.ms: 500
  datasource:
    url: "{url}"
  listeners:
    ip_hold:
      topics: ["{topic}"]
      group: "{topic}-group"
      ordering: key
      max-in-flight: 64
  shutdown:
    timeout: 10s
management:
  server:
    port: 0
"#,
        bootstrap()
    );
    let config = Config::from_yaml_str(&yaml).expect("config");
    assert_eq!(config.mq.datasource.pool_size, 10, "the default pool");
    let app = App::new(config)
        .only_listeners(["ip_hold"])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(Duration::from_secs(60)).await);
    let publisher = app.publisher();
    for n in 0..EVENTS {
        publisher
            .send(&topic, format!("key-{n}"), Hold { n })
            .await
            .unwrap();
    }
    let check = PgPool::connect(&url).await.unwrap();
    let dead_prefix =
        "mq_listener_dead_lettered_total{application=\"mq-field-inbox\",name=\"ip_hold\"";
    let deadline = Instant::now() + Duration::from_secs(180);
    let (handled, dead) = loop {
        let (handled,): (i64,) = sqlx::query_as("SELECT count(*) FROM effects")
            .fetch_one(&check)
            .await
            .unwrap();
        let dead = metric(&app.metrics().encode(), dead_prefix);
        if handled as u64 + dead as u64 >= EVENTS || Instant::now() > deadline {
            break (handled, dead);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("inbox under a pool of 10: {handled} of {EVENTS} handled, {dead} dead-lettered");
    assert_eq!(dead, 0.0, "records dead-lettered for want of a connection");
    assert_eq!(handled as u64, EVENTS);
    check.close().await;
    app.shutdown().await.unwrap();
}
