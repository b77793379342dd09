//! The outbox outlives a real broker outage: an app whose Kafka is not running yet takes
//! orders into its outbox; the rows wait (pending, lag growing) and are published once,
//! in order per key, when a broker comes up on that address.

use std::time::Duration;

use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;

use super::db;
use super::support::{
    broker_on, config_for, read_topic_on, try_create_topic_on, unique, StopOnDrop,
};

/// A broker of this test's own (the shared one on 9092 stays up).
const PORT: &str = "19395";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_wait_for_a_broker_that_is_down_and_are_published_once_it_is_up() {
    let bootstrap = format!("127.0.0.1:{PORT}");
    assert!(
        std::net::TcpStream::connect(&bootstrap).is_err(),
        "nothing may listen on {bootstrap} yet"
    );
    let (_schema, url) = db::fresh_schema("outage_real").await;
    let topic = unique("outage-real");
    let config = config_for(
        &bootstrap,
        &format!(
            "{}  outbox:\n    poll-interval: 100ms\n",
            db::datasource_yaml(&url)
        ),
    );
    let (outbox, app) = super::app::outbox_app(config).await;

    // 5 keys × 20 rows, each committed in the application's transaction.
    let pool = db::pool(&url, 2).await;
    let (keys, per_key) = (5, 20);
    for seq in 0..per_key {
        for k in 0..keys {
            let mut tx = pool.begin().await.unwrap();
            outbox
                .send(
                    &mut tx,
                    &topic,
                    &format!("k{k}"),
                    &serde_json::json!({ "seq": seq }),
                )
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    }
    let total = (keys * per_key) as i64;
    // The broker is away: after several relay rounds every row is still pending.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending = "SELECT count(*) FROM mq_outbox WHERE sent_at IS NULL AND failed_at IS NULL";
    assert_eq!(
        db::count(&pool, pending).await,
        total,
        "rows wait while the broker is down"
    );

    broker_on(PORT, &["start"]);
    let _stop = StopOnDrop(PORT);
    // The relay publishes as soon as the broker answers, and the broker auto-creates the
    // topic on that first produce: the topic may exist already, with the broker's default
    // partitions (the rows' order per key is what this test checks, on any count).
    match try_create_topic_on(&bootstrap, &topic, 3).await {
        Ok(()) | Err(RDKafkaErrorCode::TopicAlreadyExists) => {}
        Err(e) => panic!("create {topic}: {e}"),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while db::count(&pool, pending).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows still pending a minute after the broker came"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        db::count(
            &pool,
            "SELECT count(*) FROM mq_outbox WHERE failed_at IS NOT NULL"
        )
        .await,
        0,
        "no row set aside"
    );

    let records = read_topic_on(
        &bootstrap,
        &topic,
        total as usize + 1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        records.len() as i64,
        total,
        "every row published once, none twice"
    );
    let mut seqs: std::collections::HashMap<String, Vec<u64>> = Default::default();
    for r in &records {
        let key = String::from_utf8(r.key().unwrap().to_vec()).unwrap();
        // Binary mode, Kafka's default: the value is the event's data.
        let data: serde_json::Value = serde_json::from_slice(r.payload().unwrap()).unwrap();
        seqs.entry(key)
            .or_default()
            .push(data["seq"].as_u64().unwrap());
    }
    for (key, got) in &seqs {
        assert_eq!(
            got,
            &(0..per_key as u64).collect::<Vec<_>>(),
            "key {key} published in order"
        );
    }
    app.shutdown().await.expect("clean shutdown");
}
