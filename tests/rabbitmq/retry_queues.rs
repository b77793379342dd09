//! Non-blocking retries through TTL'd retry queues (`retry(mode = "topics")` on a queue
//! listener): a failed message waits in `<queue>.retry.<n>` while the consumer goes on,
//! comes back through RabbitMQ's dead-lettering, and after the last attempt lands in
//! `<queue>.dlq` with the why-headers and its attempt count.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use mq_core::prelude::*;

use super::*;

/// [`fresh`], and the retry queues of an earlier run deleted too.
async fn fresh_with_retry_queues(ch: &Channel, queue: &str, retries: u32) {
    for n in 0..retries {
        ch.queue_delete(
            format!("{queue}.retry.{n}").into(),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    }
    fresh(ch, queue).await;
}

/// (n, attempt) of every successful call, in the order they succeeded.
static FLAKY_DONE: Mutex<Vec<(u32, u32)>> = Mutex::new(Vec::new());
static FLAKY_FIRST_CALLS: AtomicU32 = AtomicU32::new(0);

#[listener(
    queue = "mq_t_rq_flaky",
    retry(mode = "topics", max_attempts = 3, initial_interval = "400ms")
)]
async fn on_rq_flaky(task: Task, ctx: Context) -> Result<(), HandlerError> {
    if task.n == 0 {
        FLAKY_FIRST_CALLS.fetch_add(1, Ordering::SeqCst);
        if ctx.attempt() < 3 {
            return Err(HandlerError::transient(std::io::Error::other("not yet")));
        }
    }
    FLAKY_DONE.lock().unwrap().push((task.n, ctx.attempt()));
    Ok(())
}

#[tokio::test]
async fn a_flaky_message_succeeds_on_attempt_3_through_retry_queues_without_blocking_others() {
    let (_c, ch) = channel().await;
    fresh_with_retry_queues(&ch, "mq_t_rq_flaky", 2).await;
    let running = start("on_rq_flaky", "").await;
    let publisher = running.publisher();
    for n in 0..=50 {
        publisher
            .send("amqp:///mq_t_rq_flaky", "k", Task { n })
            .await
            .unwrap();
    }
    wait_for("the flaky one handled", || {
        FLAKY_DONE.lock().unwrap().iter().any(|(n, _)| *n == 0)
    })
    .await;
    let done = FLAKY_DONE.lock().unwrap().clone();
    assert_eq!(done.len(), 51, "each handled once: {done:?}");
    // It succeeded last, on its third attempt: the 50 behind it did not wait for it.
    assert_eq!(done.last(), Some(&(0, 3)), "{done:?}");
    assert!(done[..50]
        .iter()
        .all(|(n, attempt)| *n != 0 && *attempt == 1));
    assert_eq!(FLAKY_FIRST_CALLS.load(Ordering::SeqCst), 3);
    // The retry queues are declared with their TTL (a passive declare fails otherwise).
    for n in 0..2 {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        ch.queue_declare(
            format!("mq_t_rq_flaky.retry.{n}").into(),
            passive,
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("retry queue {n}: {e}"));
    }
    let text = running.metrics().encode();
    assert!(
        text.contains(
            r#"mq_listener_retries_total{application="rabbit-test",name="on_rq_flaky"} 2"#
        ),
        "{text}"
    );
    running.shutdown().await.unwrap();
    let (_c2, ch) = channel().await;
    assert!(drain(&ch, "mq_t_rq_flaky.dlq").await.is_empty());
    assert!(drain(&ch, "mq_t_rq_flaky").await.is_empty(), "acked");
    assert!(drain(&ch, "mq_t_rq_flaky.retry.0").await.is_empty());
    assert!(drain(&ch, "mq_t_rq_flaky.retry.1").await.is_empty());
}

static FAILING_CALLS: AtomicU32 = AtomicU32::new(0);

#[listener(
    queue = "mq_t_rq_failing",
    exchange = "mq_t_rq_ex",
    routing_key = "job.fail",
    retry(mode = "topics", max_attempts = 3, initial_interval = "100ms")
)]
async fn on_rq_failing(_task: Task) -> Result<(), HandlerError> {
    FAILING_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(HandlerError::transient(std::io::Error::other(
        "always down",
    )))
}

#[tokio::test]
async fn an_always_failing_message_ends_in_the_dlq_with_headers_and_its_attempt_count() {
    let (_c, ch) = channel().await;
    fresh_with_retry_queues(&ch, "mq_t_rq_failing", 2).await;
    let running = start("on_rq_failing", "").await;
    running
        .publisher()
        .send("amqp://mq_t_rq_ex/job.fail", "k", Task { n: 7 })
        .await
        .unwrap();
    let (_c2, dlq_ch) = channel().await;
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dead.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing in the DLQ");
        dead.extend(drain(&dlq_ch, "mq_t_rq_failing.dlq").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead.len(), 1);
    let m = &dead[0];
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&m.delivery.data).unwrap()["data"]["n"],
        7
    );
    let props = &m.delivery.properties;
    // A 64-bit integer, what Java's `long` reads.
    let table = props.headers().as_ref().unwrap().inner();
    assert_eq!(
        table.get("x-retry-attempts"),
        Some(&lapin::types::AMQPValue::LongLongInt(3))
    );
    assert!(header(props, "x-exception-message").is_some_and(|e| e.contains("always down")));
    assert!(header(props, "x-exception-stacktrace").is_some());
    // The exchange and routing key it was first published with, not the retry hop's.
    assert_eq!(
        header(props, "x-original-exchange").as_deref(),
        Some("mq_t_rq_ex")
    );
    assert_eq!(
        header(props, "x-original-routingKey").as_deref(),
        Some("job.fail")
    );
    // RabbitMQ's own record of the two hops through the retry queues.
    // An array of tables, as the broker wrote it.
    let Some(lapin::types::AMQPValue::FieldArray(deaths)) = table.get("x-death") else {
        panic!("x-death is not an array: {:?}", table.get("x-death"));
    };
    let queues: Vec<String> = deaths
        .as_slice()
        .iter()
        .filter_map(|d| match d {
            lapin::types::AMQPValue::FieldTable(t) => match t.inner().get("queue") {
                Some(lapin::types::AMQPValue::LongString(q)) => {
                    Some(String::from_utf8_lossy(q.as_bytes()).into_owned())
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(
        queues.iter().any(|q| q == "mq_t_rq_failing.retry.1"),
        "{queues:?}"
    );
    assert_eq!(FAILING_CALLS.load(Ordering::SeqCst), 3);
    let text = running.metrics().encode();
    for line in [
        r#"mq_listener_retries_total{application="rabbit-test",name="on_rq_failing"} 2"#,
        r#"mq_listener_dead_lettered_total{application="rabbit-test",name="on_rq_failing"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    running.shutdown().await.unwrap();
    assert!(drain(&ch, "mq_t_rq_failing").await.is_empty(), "acked");
}
