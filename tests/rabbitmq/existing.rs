//! Queues operations created (issue 22, item 4): a quorum queue with single active
//! consumer and its own dead-lettering is consumed as it is (RabbitMQ refuses mq's
//! declaration with `inequivalent arg`; Spring's `@RabbitListener(queues = ..)` consumes
//! such a queue too); more than one consumer on a single-active-consumer queue is refused
//! at startup; `declare: false` takes a queue as it exists and waits, unready, until it does;
//! an instance that stops hands a single-active-consumer queue over to the next in order.

use std::sync::Mutex;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use mq_core::prelude::*;

use super::*;

fn sac_quorum() -> FieldTable {
    let mut args = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    args.insert("x-dead-letter-exchange".into(), text("ops.dlx"));
    args
}

static SAC_SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t22_ops_sac")]
async fn on_ops_sac(task: Task) -> Result<(), HandlerError> {
    SAC_SEEN.lock().unwrap().push(task.n);
    Ok(())
}

#[tokio::test]
async fn a_quorum_single_active_consumer_queue_made_by_operations_is_consumed_as_it_is() {
    let (_c, ch) = channel().await;
    fresh_with(&ch, "mq_t22_ops_sac", sac_quorum()).await;
    let running = start("on_ops_sac", "").await;
    for n in 0..20u32 {
        publish_raw(
            &ch,
            "mq_t22_ops_sac",
            format!(r#"{{"n":{n}}}"#).as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    wait_for("20 handled", || SAC_SEEN.lock().unwrap().len() == 20).await;
    assert_eq!(
        *SAC_SEEN.lock().unwrap(),
        (0..20).collect::<Vec<_>>(),
        "in order"
    );
    running.shutdown().await.unwrap();
    // (basic.get is refused on a single-active-consumer quorum queue: a passive declare.)
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let left = ch
        .queue_declare("mq_t22_ops_sac".into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count();
    assert_eq!(left, 0, "all acked");
    ch.queue_delete("mq_t22_ops_sac".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[listener(queue = "mq_t22_ops_sac_many")]
async fn on_ops_sac_many(_task: Task) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn two_consumers_on_a_single_active_consumer_queue_are_refused_at_startup() {
    let (_c, ch) = channel().await;
    fresh_with(&ch, "mq_t22_ops_sac_many", sac_quorum()).await;
    let yaml = "mq:\n  application:\n    name: rabbit-test\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\n  listeners:\n    on_ops_sac_many:\n      concurrency: 2\nmanagement:\n  server:\n    enabled: false\n";
    let config = mq_core::Config::from_yaml_str(yaml).unwrap();
    let err = match mq_core::App::new(config)
        .only_listeners(["on_ops_sac_many"])
        .start()
        .await
    {
        Ok(running) => {
            running.shutdown().await.unwrap();
            panic!("started with 2 consumers on a single-active-consumer queue")
        }
        Err(e) => e.to_string(),
    };
    for part in [
        "queue mq_t22_ops_sac_many is a single-active-consumer queue",
        "concurrency 2",
        "mq.listeners.on_ops_sac_many.concurrency: 1",
    ] {
        assert!(err.contains(part), "{part} in {err}");
    }
    ch.queue_delete("mq_t22_ops_sac_many".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

static LATE_SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t22_ops_late")]
async fn on_ops_late(task: Task) -> Result<(), HandlerError> {
    LATE_SEEN.lock().unwrap().push(task.n);
    Ok(())
}

#[tokio::test]
async fn declare_false_waits_unready_for_the_queue_and_consumes_it_once_it_exists() {
    let (_c, ch) = channel().await;
    for q in ["mq_t22_ops_late", "mq_t22_ops_late.dlq"] {
        ch.queue_delete(q.into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    let yaml = "  listeners:\n    on_ops_late:\n      declare: false\n";
    let management =
        "management:\n  server:\n    port: 0\n  endpoint:\n    health:\n      show-details: always\n";
    let running = start_unchecked("on_ops_late", yaml, management).await;
    assert!(!running.wait_assigned(Duration::from_secs(2)).await);
    let addr = running.actuator_addr().unwrap();
    let health = support::http(addr, "GET", "/actuator/health/readiness", None, None).await;
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(
        health
            .body
            .contains("queue mq_t22_ops_late is not there to consume as it is"),
        "{}",
        health.body
    );
    // Not created by mq.
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let (_c2, probe) = channel().await;
    assert!(probe
        .queue_declare("mq_t22_ops_late".into(), passive, FieldTable::default())
        .await
        .is_err());
    // Operations create it (a classic queue with a TTL mq would never declare).
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(600_000));
    fresh_with(&ch, "mq_t22_ops_late", args).await;
    assert!(
        running.wait_assigned(Duration::from_secs(30)).await,
        "consuming once the queue exists"
    );
    publish_raw(
        &ch,
        "mq_t22_ops_late",
        br#"{"n":7}"#,
        BasicProperties::default(),
    )
    .await;
    wait_for("handled", || *LATE_SEEN.lock().unwrap() == [7]).await;
    running.shutdown().await.unwrap();
    ch.queue_delete("mq_t22_ops_late".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

// --- a graceful hand-over on a single-active-consumer queue ----------------------------

static HANDOVER: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t22_sac_handover")]
async fn on_sac_handover(task: Task) -> Result<(), HandlerError> {
    HANDOVER.lock().unwrap().push(task.n);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    Ok(())
}

#[tokio::test]
async fn a_stopping_instance_hands_a_single_active_consumer_queue_over_in_order() {
    let (_c, ch) = channel().await;
    fresh_with(&ch, "mq_t22_sac_handover", sac_quorum()).await;
    let quiet = "management:\n  server:\n    enabled: false\n";
    let first = start_named("rabbit-sac-first", "on_sac_handover", "", quiet).await;
    assert!(
        first
            .wait_assigned(std::time::Duration::from_secs(20))
            .await
    );
    let second = start_named("rabbit-sac-second", "on_sac_handover", "", quiet).await;
    assert!(
        second
            .wait_assigned(std::time::Duration::from_secs(20))
            .await
    );
    let total = 300u32;
    for n in 0..total {
        publish_raw(
            &ch,
            "mq_t22_sac_handover",
            format!(r#"{{"n":{n}}}"#).as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    wait_for("50 handled", || HANDOVER.lock().unwrap().len() >= 50).await;
    // The first stops: it finishes the message it is on, acknowledges what it handled and
    // returns the rest, which the second (now active) takes in order.
    first.shutdown().await.unwrap();
    let by_first = HANDOVER.lock().unwrap().len() as u32;
    wait_for("all handled", || {
        HANDOVER.lock().unwrap().len() >= total as usize
    })
    .await;
    second.shutdown().await.unwrap();
    let seen = HANDOVER.lock().unwrap().clone();
    assert_eq!(seen, (0..total).collect::<Vec<_>>(), "in order, each once");
    assert!(
        by_first < total,
        "the second took over ({by_first} by the first)"
    );
}
