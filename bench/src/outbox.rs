//! Effectively-once effects on PostgreSQL (`MQ_BENCH_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; each run in a schema of its own):
//!
//! - **relay**: rows written to the outbox beforehand (1,000 keys), then drained by one
//!   relay publishing to the broker: rows per second, from the relay's start until nothing
//!   is pending.
//! - **idempotent**: one topic (6 partitions) read by a plain listener and by an
//!   `idempotent` one (a transaction per record: the identity insert, the commit), each in
//!   a group of its own, one after the other: records per second of each, and the ratio.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mq_core::inbox::Tx;
use mq_core::outbox::{Outbox, Relay};
use mq_core::prelude::*;
use mq_core::sqlx;
use mq_core::Config;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::common::{unique, BenchResult};

/// What the outbox section measured.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxResult {
    pub relay_rows: u64,
    pub relay_rows_per_s: f64,
    pub listener_messages: u64,
    pub plain_msgs_per_s: f64,
    pub idempotent_msgs_per_s: f64,
    /// idempotent / plain.
    pub idempotent_ratio: f64,
}

/// Counts what a bench listener handled, and when it started.
#[derive(Default)]
pub struct Counter {
    first: OnceLock<Instant>,
    handled: AtomicU64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    n: u64,
}

#[listener(topic = "mq-bench-plain", group = "mq-bench-plain")]
async fn bench_plain(_r: Row, counter: State<Arc<Counter>>) -> Result<(), HandlerError> {
    counter.first.get_or_init(Instant::now);
    counter.handled.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[listener(
    topic = "mq-bench-idempotent",
    group = "mq-bench-idempotent",
    idempotent
)]
async fn bench_idempotent(
    _r: Row,
    _tx: Tx,
    counter: State<Arc<Counter>>,
) -> Result<(), HandlerError> {
    counter.first.get_or_init(Instant::now);
    counter.handled.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn database_url() -> String {
    std::env::var("MQ_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own; the URL whose connections use it.
async fn schema() -> BenchResult<(String, String)> {
    let schema = unique("bench").replace('-', "_");
    let pool = sqlx::PgPool::connect(&database_url()).await.map_err(|e| {
        format!(
            "PostgreSQL at {} (MQ_BENCH_DATABASE_URL): {e}",
            database_url()
        )
    })?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
    pool.close().await;
    Ok((
        schema.clone(),
        format!("{}?options[search_path]={schema}", database_url()),
    ))
}

async fn drop_schema(schema: &str) {
    if let Ok(pool) = sqlx::PgPool::connect(&database_url()).await {
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&pool)
            .await;
        pool.close().await;
    }
}

fn config(bootstrap: &str, url: &str, extra: &str) -> BenchResult<Config> {
    Config::from_yaml_str(&format!(
        "mq:\n  application:\n    name: mq-bench\n  kafka:\n    bootstrap-servers: \"{bootstrap}\"\n  datasource:\n    url: \"{url}\"\n    pool-size: 16\n  outbox:\n    enabled: false\n{extra}management:\n  server:\n    enabled: false\n"
    ))
    .map_err(|e| e.to_string())
}

/// Runs both measurements: `rows` outbox rows, `messages` records per listener.
pub async fn run(
    bootstrap: &str,
    topic: &str,
    rows: u64,
    messages: u64,
) -> BenchResult<OutboxResult> {
    let (schema, url) = schema().await?;
    let result = measure(bootstrap, topic, &url, rows, messages).await;
    drop_schema(&schema).await;
    result
}

async fn measure(
    bootstrap: &str,
    topic: &str,
    url: &str,
    rows: u64,
    messages: u64,
) -> BenchResult<OutboxResult> {
    crate::common::create_topics(bootstrap, &[(topic, 6)]).await?;
    // The app applies the migrations; its own relay is off (`outbox.enabled: false`).
    let app = App::new(config(bootstrap, url, "")?)
        .only_listeners(Vec::<String>::new())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let cfg = config(bootstrap, url, "")?;
    let pool = mq_core::datasource::pool(&cfg)
        .map_err(|e| e.to_string())?
        .ok_or("no datasource")?;
    let outbox = Outbox::new(&cfg);
    for chunk in (0..rows).collect::<Vec<_>>().chunks(1_000) {
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        for n in chunk {
            outbox
                .send(&mut tx, topic, format!("key-{}", n % 1_000), Row { n: *n })
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
    }
    let relay = Relay::new(pool.clone(), app.publisher(), &cfg.mq.outbox);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(relay.clone().run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let backlog = relay.backlog().await.map_err(|e| e.to_string())?;
        if backlog.pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "relay: {} rows still pending after 600 s",
                backlog.pending
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relay_secs = started.elapsed().as_secs_f64().max(1e-6);
    stop.cancel();
    let _ = task.await;

    // The listeners read what the relay published to `topic` (`rows` records), or the
    // first `messages` of them.
    let messages = messages.min(rows);
    let plain = consume(bootstrap, url, topic, "bench_plain", messages).await?;
    let idempotent = consume(bootstrap, url, topic, "bench_idempotent", messages).await?;
    app.shutdown().await.map_err(|e| e.to_string())?;
    pool.close().await;
    Ok(OutboxResult {
        relay_rows: rows,
        relay_rows_per_s: rows as f64 / relay_secs,
        listener_messages: messages,
        plain_msgs_per_s: plain,
        idempotent_msgs_per_s: idempotent,
        idempotent_ratio: idempotent / plain,
    })
}

/// Starts `listener` on `topic` in a new group; records per second until `n` handled.
async fn consume(
    bootstrap: &str,
    url: &str,
    topic: &str,
    listener: &str,
    n: u64,
) -> BenchResult<f64> {
    let extra = format!(
        "  listeners:\n    {listener}:\n      topics: [\"{topic}\"]\n      group: \"{}\"\n",
        unique(listener)
    );
    let counter = Arc::new(Counter::default());
    let app = App::new(config(bootstrap, url, &extra)?)
        .with_state(counter.clone())
        .only_listeners([listener])
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while counter.handled.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "{listener}: {} of {n} handled in 600 s",
                counter.handled.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = counter
        .first
        .get()
        .map_or(0.0, |f| f.elapsed().as_secs_f64())
        .max(1e-6);
    app.shutdown().await.map_err(|e| e.to_string())?;
    Ok(n as f64 / secs)
}
