//! The read-ahead budget on the real broker: a lane whose handler is slower than the poll
//! thread fills its share of `mq.listener.buffer-bytes`, the poll thread holds its next
//! batch, then pauses the partition; the lane's buffer never grows past its share by more
//! than one poll round, and after the resumes every record is handled once, in order.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::App;
use rdkafka::producer::FutureRecord;
use support::{config, create_topic, raw_producer, unique};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    seq: u64,
    pad: String,
}

/// Sequence numbers in the order the handler saw them.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<u64>>>);

#[listener(topic = "read-ahead")]
async fn on_tick(tick: Tick, State(seen): State<Seen>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    seen.0.lock().unwrap().push(tick.seq);
    Ok(())
}

const RECORDS: u64 = 4000;
const SHARE: usize = 64 * 1024;
/// A poll round takes at most this many records (`DRAIN_MAX` of the Kafka consumer).
const ROUND: usize = 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lane_is_held_then_paused_and_stays_within_its_share() {
    let topic = unique("read-ahead");
    create_topic(&topic, 1).await;
    let producer = raw_producer();
    let pad = "x".repeat(400);
    let values: Vec<Vec<u8>> = (0..RECORDS)
        .map(|seq| {
            serde_json::to_vec(&Tick {
                seq,
                pad: pad.clone(),
            })
            .unwrap()
        })
        .collect();
    let record_bytes = values[0].len();
    let sends = values.iter().map(|v| {
        producer.send(
            FutureRecord::to(&topic).key("k").payload(v),
            Duration::from_secs(10),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("produced");
    }

    let yaml = format!(
        "mq:\n  listener:\n    buffer-bytes: {SHARE}\n  listeners:\n    on_tick:\n      topics: [\"{topic}\"]\n      group: \"{}\"\n",
        unique("ra")
    );
    let seen = Seen::default();
    let app = App::new(config(&yaml))
        .with_state(seen.clone())
        .only_listeners(["on_tick"])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(Duration::from_secs(30)).await, "assigned");

    let (max_buffered, was_paused) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.0.lock().unwrap().len() < RECORDS as usize && Instant::now() < deadline {
        for lane in app.lanes() {
            max_buffered.fetch_max(lane.buffered_bytes, Ordering::Relaxed);
            if lane.paused {
                was_paused.store(true, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    app.shutdown().await.unwrap();

    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen.len(), RECORDS as usize, "every record handled once");
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no record twice"
    );
    assert!(
        was_paused.load(Ordering::Relaxed),
        "a lane that stays over its share is paused"
    );
    let max = max_buffered.load(Ordering::Relaxed);
    let bound = SHARE + ROUND * record_bytes;
    assert!(
        max > SHARE / 2 && max <= bound,
        "buffered at most {max} B: its share ({SHARE} B) plus one poll round ({bound} B in all); the backlog was {} B",
        RECORDS as usize * record_bytes
    );
}
