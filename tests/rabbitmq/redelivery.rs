//! Redelivered messages count their attempts (issue 22, item 3): a handler that outlives
//! its channel (what RabbitMQ's `consumer_timeout` does to a slow consumer: it closes the
//! channel, and the message comes back `redelivered`) ends in the dead-letter queue after
//! `max-attempts` deliveries instead of looping as attempt 1 for ever, the messages behind
//! it are handled, and the lost acks are not counted as successes.
//!
//! The broker's `consumer_timeout` is global (30 minutes here, and other tests share the
//! node): the test closes the listener's connection with `rabbitmqctl` while the handler
//! runs, which is what the timeout does to the channel.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::BasicProperties;
use mq_core::prelude::*;

use super::operations::close_connections_of;
use super::*;

const OUTLIVE: &str = "mq_t22_outlive";

/// The attempt of every call on message 0, in order.
static OUTLIVE_ATTEMPTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Calls on message 0 the test let finish (after it closed their channel).
static OUTLIVE_RELEASED: AtomicU32 = AtomicU32::new(0);
static OUTLIVE_DONE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(
    queue = "mq_t22_outlive",
    retry(max_attempts = 3, initial_interval = "10ms")
)]
async fn on_outlive(task: Task, ctx: Context) -> Result<(), HandlerError> {
    if task.n == 0 {
        let call = {
            let mut attempts = OUTLIVE_ATTEMPTS.lock().unwrap();
            attempts.push(ctx.attempt());
            attempts.len() as u32
        };
        // Runs until the test has closed the channel under it (at most a minute).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while OUTLIVE_RELEASED.load(Ordering::SeqCst) < call
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        return Ok(());
    }
    OUTLIVE_DONE.lock().unwrap().push(task.n);
    Ok(())
}

/// The value of the listener timer's count series of `on_outlive` with these labels.
fn timer_count(text: &str, labels: &str) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with("spring_rabbitmq_listener_seconds_count{"))
        .filter(|l| l.contains(r#"name="on_outlive""#) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn a_handler_that_outlives_its_channel_is_dead_lettered_after_max_attempts_not_looped() {
    let (_c, ch) = channel().await;
    fresh(&ch, OUTLIVE).await;
    let management = "management:\n  server:\n    enabled: false\n";
    let running = start_named("rabbit-outlive", "on_outlive", "", management).await;
    assert!(running.wait_assigned(Duration::from_secs(20)).await);
    // As another client publishes them: plain JSON, each with its message_id.
    for n in 0..6u32 {
        let props = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(format!("outlive-{n}")))
            .with_delivery_mode(2);
        ch.basic_publish(
            "".into(),
            OUTLIVE.into(),
            BasicPublishOptions::default(),
            format!(r#"{{"n":{n}}}"#).as_bytes(),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    for call in 1..=3u32 {
        wait_for(&format!("call {call} on message 0"), || {
            OUTLIVE_ATTEMPTS.lock().unwrap().len() as u32 >= call
        })
        .await;
        close_connections_of("rabbit-outlive").await;
        // The consumer saw its channel go (it closes the lane) before the handler ends, as
        // with a handler that outlives consumer_timeout by more than a moment.
        wait_for("the consumer saw the channel close", || {
            running
                .lanes()
                .iter()
                .any(|l| l.listener == "on_outlive" && l.closing)
        })
        .await;
        OUTLIVE_RELEASED.store(call, Ordering::SeqCst);
    }
    let (_c2, dlq_ch) = channel().await;
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while dead.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "message 0 never reached the DLQ; attempts: {:?}",
            OUTLIVE_ATTEMPTS.lock().unwrap()
        );
        dead.extend(drain(&dlq_ch, &format!("{OUTLIVE}.dlq")).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for("the 5 messages behind it handled", || {
        let done: std::collections::BTreeSet<u32> =
            OUTLIVE_DONE.lock().unwrap().iter().copied().collect();
        done == (1..6).collect()
    })
    .await;
    // Each delivery was an attempt: 1, 2, 3, and the fourth went to the DLQ unhandled.
    assert_eq!(*OUTLIVE_ATTEMPTS.lock().unwrap(), [1, 2, 3]);
    assert_eq!(dead.len(), 1);
    let m = &dead[0];
    assert_eq!(&m.delivery.data[..], br#"{"n":0}"#);
    let reason = header(&m.delivery.properties, "x-exception-message").unwrap_or_default();
    assert!(
        reason.contains("closed under a running handler") && reason.contains("max-attempts is 3"),
        "{reason}"
    );
    let metrics = running.metrics();
    wait_for("the 5 successes timed", || {
        timer_count(&metrics.encode(), r#"result="success""#) == Some(5)
    })
    .await;
    let text = metrics.encode();
    // The three calls that finished after their channel closed were no successes.
    assert_eq!(
        timer_count(&text, r#"exception="AckLost""#),
        Some(3),
        "{text}"
    );
    assert_eq!(timer_count(&text, r#"result="success""#), Some(5), "{text}");
    running.shutdown().await.unwrap();
    assert_eq!(OUTLIVE_ATTEMPTS.lock().unwrap().len(), 3, "never looped");
    assert!(drain(&ch, OUTLIVE).await.is_empty(), "all acked in the end");
}
