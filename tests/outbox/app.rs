//! The outbox inside an app on the real broker: migrations at startup, the `outbox` health
//! component and `mq_outbox_lag_seconds` (DOWN above the threshold, UP once the rows are
//! published), the app's own relay, and the cleanup of sent rows after the retention.

use std::time::Duration;

use mq_core::outbox::{Outbox, Relay};
use mq_core::prelude::*;

use super::db;
use super::support::{self, create_topic, http, unique};

/// An app that runs no listener, only what the outbox needs (migrations, relay, health),
/// and the `Outbox` its services would write with.
pub(super) async fn outbox_app(config: mq_core::Config) -> (Outbox, mq_core::RunningApp) {
    let outbox = Outbox::new(&config);
    let app = App::new(config)
        .only_listeners(Vec::<String>::new())
        .start()
        .await
        .expect("the app starts (no listeners; its broker may be down)");
    (outbox, app)
}

/// The value of `mq_outbox_lag_seconds` in a Prometheus scrape.
fn lag_metric(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with("mq_outbox_lag_seconds"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_a_metric_and_health_and_the_relay_clears_it() {
    let (_schema, url) = db::fresh_schema("lag").await;
    let topic = unique("lagged");
    create_topic(&topic, 1).await;
    // This instance does not relay: the rows wait, and their age shows.
    let config = support::config(&format!(
        "{}  outbox:\n    enabled: false\n    lag-threshold: 30s\n    retention: 1ms\n    cleanup-interval: 1s\n\
         management:\n  endpoints:\n    web:\n      exposure:\n        include: health,prometheus\n  endpoint:\n    health:\n      show-details: always\n",
        db::datasource_yaml(&url)
    ));
    let outbox_settings = config.mq.outbox.clone();
    let (outbox, app) = outbox_app(config).await;
    let addr = app.actuator_addr().unwrap();
    // The app applied the migrations: the table is there.
    let pool = db::pool(&url, 2).await;
    let mut tx = pool.begin().await.unwrap();
    outbox.send(&mut tx, &topic, "k", "late").await.unwrap();
    tx.commit().await.unwrap();
    mq_core::sqlx::query("UPDATE mq_outbox SET created_at = now() - interval '2 minutes'")
        .execute(&pool)
        .await
        .unwrap();

    let health = http(addr, "GET", "/actuator/health", None, None).await;
    assert_eq!(health.status, 503, "{}", health.body);
    let outbox_health = &health.json()["components"]["outbox"];
    assert_eq!(outbox_health["status"], "DOWN", "{outbox_health}");
    assert_eq!(outbox_health["details"]["pending"], 1);
    assert!(outbox_health["details"]["lagSeconds"].as_f64().unwrap() >= 119.0);
    assert!(
        outbox_health["details"]["tableRows"].is_i64(),
        "the table's size is a health detail: {outbox_health}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = http(addr, "GET", "/actuator/prometheus", None, None)
            .await
            .body;
        if lag_metric(&scrape).is_some_and(|lag| lag >= 119.0) {
            for metric in [
                "mq_outbox_rows{",
                "mq_outbox_failed_rows{",
                "mq_outbox_deleted_total{",
            ] {
                assert!(
                    scrape.lines().any(|l| l.starts_with(metric)),
                    "{metric}: {scrape}"
                );
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no lag metric: {scrape}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A relay on the app's publisher (the real broker) publishes the row: UP again.
    let relay = Relay::new(pool.clone(), app.publisher(), &outbox_settings);
    assert_eq!(relay.run_once().await.unwrap().published, 1);
    let health = http(addr, "GET", "/actuator/health", None, None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(
        health.json()["components"]["outbox"]["details"]["pending"],
        0
    );
    let records = support::read_topic(&topic, 1, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 1, "the row reached the broker");

    // Sent rows are deleted after the retention (1 ms here), by the app's cleanup.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while db::count(&pool, "SELECT count(*) FROM mq_outbox").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sent row not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_relay_publishes_committed_rows_to_kafka() {
    let (_schema, url) = db::fresh_schema("apprelay").await;
    let topic = unique("relayed");
    create_topic(&topic, 3).await;
    let config = support::config(&format!(
        "{}  outbox:\n    table: app_outbox\n  inbox:\n    table: app_inbox\n",
        db::datasource_yaml(&url)
    ));
    let (outbox, app) = outbox_app(config).await;
    let pool = db::pool(&url, 2).await;
    let mut tx = pool.begin().await.unwrap();
    for n in 0..100u32 {
        outbox
            .send(&mut tx, &topic, format!("k{}", n % 7), n)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let records = support::read_topic(&topic, 100, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 100, "the app's relay published every row");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while db::count(
        &pool,
        "SELECT count(*) FROM app_outbox WHERE sent_at IS NULL",
    )
    .await
        > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows not marked sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.shutdown().await.unwrap();
}
