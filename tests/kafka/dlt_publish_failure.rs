//! If the dead-letter topic cannot be written, the failed record's offset is held (never
//! committed past it) and the publish is retried until it works. librdkafka's MockCluster
//! injects the failure, which a real broker cannot do on demand.

use crate::support;

use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::App;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    n: u32,
}

#[listener(topic = "dpf-jobs", group = "dpf-group", retry(max_attempts = 1))]
async fn on_job(_job: Job) -> Result<(), HandlerError> {
    Err(HandlerError::permanent_msg("rejected"))
}

fn committed(bootstrap: &str, topic: &str) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "dpf-group")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(5)).unwrap();
    match got.elements()[0].offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_publish_holds_the_offset_until_it_succeeds() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("dpf-jobs", 1, 1).unwrap();
    cluster.create_topic("dpf-jobs-dlt", 1, 1).unwrap();
    let yaml = "mq:\n  kafka:\n    admin:\n      auto-create-topics: false\n    producer:\n      properties:\n        message.timeout.ms: 1000\n";
    let app = App::new(support::config_for(&bootstrap, yaml))
        .only_listeners(["on_job"])
        .start()
        .await
        .unwrap();
    assert!(app.wait_assigned(Duration::from_secs(60)).await);

    cluster
        .topic_error(
            "dpf-jobs-dlt",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    app.publisher()
        .send("dpf-jobs", "1", Job { n: 1 })
        .await
        .unwrap();

    // The dead-letter publish fails again and again; the record stays uncommitted.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = app.metrics().encode();
        let failures = metric_sum(&text, "spring_kafka_template_seconds_count{application=\"mq-tests\",name=\"publisher\",result=\"failure\"");
        if failures >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failing DLT publish seen:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = committed(&bootstrap, "dpf-jobs");
    assert!(
        held.is_none_or(|o| o < 1),
        "offset committed past an undelivered dead letter: {held:?}"
    );
    assert!(!app
        .metrics()
        .encode()
        .contains("mq_listener_dead_lettered_total{application=\"mq-tests\",name=\"on_job\"} 1"));

    // The DLT comes back: the publish goes through and only then the offset moves.
    cluster
        .topic_error("dpf-jobs-dlt", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&bootstrap, "dpf-jobs") != Some(1) {
        assert!(
            Instant::now() < deadline,
            "offset never committed after the DLT recovered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(app
        .metrics()
        .encode()
        .contains("mq_listener_dead_lettered_total{application=\"mq-tests\",name=\"on_job\"} 1"));
    app.shutdown().await.unwrap();
    // The cluster must outlive the clients (DESIGN §4).
    drop(cluster);
}

#[listener(
    topic = "dpf-fatal",
    group = "dpf-fatal-group",
    retry(max_attempts = 1)
)]
async fn on_fatal_job(_job: Job) -> Result<(), HandlerError> {
    Err(HandlerError::permanent_msg("rejected"))
}

/// Issue 11, input 8: librdkafka's idempotent producer raises a fatal error (here: an
/// out-of-order sequence number on the head-of-line request). Every later send on that
/// producer would fail; mq notices, replaces the producer, sends again, and says so in health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_is_survived_and_reported_in_health() {
    use rdkafka::types::RDKafkaApiKey;
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("dpf-fatal", 1, 1).unwrap();
    cluster.create_topic("dpf-fatal-dlt", 1, 1).unwrap();
    let yaml = "mq:\n  kafka:\n    admin:\n      auto-create-topics: false\n    producer:\n      properties:\n        message.timeout.ms: 5000\nmanagement:\n  endpoint:\n    health:\n      show-details: always\n";
    let app = App::new(support::config_for(&bootstrap, yaml))
        .only_listeners(["on_fatal_job"])
        .start()
        .await
        .unwrap();
    assert!(app.wait_assigned(Duration::from_secs(60)).await);

    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    app.publisher()
        .send("dpf-fatal", "1", Job { n: 1 })
        .await
        .expect("sent again on a new producer");

    // The handler rejects it; the dead letter goes out on the new producer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !app.metrics().encode().contains(
        "mq_listener_dead_lettered_total{application=\"mq-tests\",name=\"on_fatal_job\"} 1",
    ) {
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addr = app.actuator_addr().expect("actuator");
    let health = support::http(addr, "GET", "/actuator/health", None, None)
        .await
        .json();
    let publisher = &health["components"]["publisher"]["details"];
    assert_eq!(publisher["fatalErrors"], 1, "{health}");
    assert!(
        publisher["lastFatalError"]
            .as_str()
            .unwrap()
            .contains("OutOfOrderSequenceNumber"),
        "{health}"
    );
    app.shutdown().await.unwrap();
    drop(cluster);
}
