//! `mq dlt-replay amqp:///<queue>.dlq` (the library call the command makes): a dry run
//! sends nothing and leaves the DLQ as it was, a filter replays only what it picks and
//! leaves the rest in the DLQ, and a message replayed too often is parked in
//! `<queue>.dlq.parking` instead of looping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use mq_core::failure::redrive::ReplayOptions;
use mq_core::prelude::*;

use super::*;

static FAIL: AtomicBool = AtomicBool::new(true);
static REPLAYED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_replay", retry(max_attempts = 1))]
async fn on_replay(task: Task) -> Result<(), HandlerError> {
    if FAIL.load(Ordering::SeqCst) {
        let parity = if task.n % 2 == 0 { "even" } else { "odd" };
        return Err(HandlerError::permanent_msg(format!("refused-{parity}")));
    }
    REPLAYED.lock().unwrap().push(task.n);
    Ok(())
}

async fn ready(ch: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .map(|q| q.message_count())
        .unwrap_or_else(|e| panic!("{queue}: {e}"))
}

/// Waits until `queue` holds `n` ready messages.
async fn wait_ready(queue: &str, n: u32) {
    let (_c, ch) = channel().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = ready(&ch, queue).await;
        if now == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue}: {now} ready, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn dlq_replay_with_dry_run_filter_and_parking() {
    let (_c, ch) = channel().await;
    ch.queue_delete(
        "mq_t_replay.dlq.parking".into(),
        QueueDeleteOptions::default(),
    )
    .await
    .unwrap();
    fresh(&ch, "mq_t_replay").await;
    let running = start("on_replay", "").await;
    for n in 0..6 {
        running
            .publisher()
            .send("amqp:///mq_t_replay", "k", Task { n })
            .await
            .unwrap();
    }
    wait_ready("mq_t_replay.dlq", 6).await;
    let config =
        mq_core::Config::from_yaml_str("mq:\n  application:\n    name: replay-test\n").unwrap();
    let dlq = "amqp:///mq_t_replay.dlq";

    // A dry run says what it would do and leaves all six in the DLQ.
    let dry = ReplayOptions {
        dry_run: true,
        ..Default::default()
    };
    let report = mq_core::dead_letter::replay_with(&config, dlq, &dry)
        .await
        .unwrap();
    assert_eq!(report.planned.len(), 6, "{report:?}");
    assert!(
        report
            .planned
            .iter()
            .all(|l| l.ends_with("replay -> amqp:///mq_t_replay")),
        "{report:?}"
    );
    assert_eq!(report.total(), 0);
    wait_ready("mq_t_replay.dlq", 6).await;

    // A filter on the error: the even ones go back and are handled; the odd ones stay.
    FAIL.store(false, Ordering::SeqCst);
    let even = ReplayOptions {
        exception: Some("refused-even".into()),
        ..Default::default()
    };
    let report = mq_core::dead_letter::replay_with(&config, dlq, &even)
        .await
        .unwrap();
    assert_eq!(
        (report.total(), report.skipped, report.parked),
        (3, 3, 0),
        "{report:?}"
    );
    wait_for("the even ones handled", || {
        REPLAYED.lock().unwrap().len() == 3
    })
    .await;
    let mut handled = REPLAYED.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, [0, 2, 4]);
    wait_ready("mq_t_replay.dlq", 3).await;

    // The odd ones fail once more after their replay: back in the DLQ, replayed once.
    FAIL.store(true, Ordering::SeqCst);
    let report = mq_core::dead_letter::replay_with(&config, dlq, &ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(report.total(), 3, "{report:?}");
    wait_ready("mq_t_replay.dlq", 3).await;
    let back = drain_peek().await;
    assert!(back.iter().all(|c| c.as_deref() == Some("1")), "{back:?}");

    // With at most one replay, they are parked instead of looping.
    let guarded = ReplayOptions {
        max_replays: 1,
        ..Default::default()
    };
    let report = mq_core::dead_letter::replay_with(&config, dlq, &guarded)
        .await
        .unwrap();
    assert_eq!((report.total(), report.parked), (0, 3), "{report:?}");
    wait_ready("mq_t_replay.dlq", 0).await;
    wait_ready("mq_t_replay.dlq.parking", 3).await;
    running.shutdown().await.unwrap();
    assert_eq!(REPLAYED.lock().unwrap().len(), 3, "no odd one was handled");
}

/// The `mq_replay-count` of each message in the DLQ, leaving them there (a dry run).
async fn drain_peek() -> Vec<Option<String>> {
    let (_c, ch) = channel().await;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let m = ch
            .basic_get(
                "mq_t_replay.dlq".into(),
                lapin::options::BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap()
            .expect("a dead letter");
        counts.push(header(&m.delivery.properties, "mq_replay-count"));
    }
    // Closing the channel returns the unacked messages to the DLQ.
    ch.close(200, "peeked".into()).await.unwrap();
    counts
}
