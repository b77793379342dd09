//! The read-ahead budget on the real broker: a lane whose handler is slower than the poll
//! thread fills its share of `mq.listener.buffer-bytes`, the poll thread holds its next
//! batch, then pauses the partition; the lane's buffer never grows past its share by more
//! than one poll round, and after the resumes every record is handled once, in order. A
//! lane that keeps up is paced to instead: its buffer stays near the pace mark (2 MiB),
//! well below its share, and its partition is never paused.

use crate::support;

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
async fn on_paced_tick(tick: Tick, State(seen): State<Seen>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    seen.0.lock().unwrap().push(tick.seq);
    Ok(())
}

/// Takes each record at once: the lane keeps up, only slower than the poll thread copies.
#[listener(topic = "read-ahead-paced")]
async fn on_quick_tick(tick: Tick, State(seen): State<Seen>) -> Result<(), HandlerError> {
    seen.0.lock().unwrap().push(tick.seq);
    Ok(())
}

const RECORDS: u64 = 4000;
const SHARE: usize = 64 * 1024;
/// A poll round takes at most this many records (`DRAIN_MAX` of the Kafka consumer).
const ROUND: usize = 512;

/// Produces `records` ticks padded with `pad` bytes to `topic` (key `k`); the size of one.
async fn produce(topic: &str, records: u64, pad: usize) -> usize {
    let producer = raw_producer();
    let pad = "x".repeat(pad);
    let values: Vec<Vec<u8>> = (0..records)
        .map(|seq| {
            serde_json::to_vec(&Tick {
                seq,
                pad: pad.clone(),
            })
            .unwrap()
        })
        .collect();
    let sends = values.iter().map(|v| {
        producer.send(
            FutureRecord::to(topic).key("k").payload(v),
            Duration::from_secs(10),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("produced");
    }
    values[0].len()
}

/// What [`consume`] saw of the lanes while it ran.
#[derive(Default)]
struct Watched {
    /// The most bytes a lane had buffered.
    max_buffered: usize,
    /// The most bytes a lane had buffered while its transport paced itself to it.
    paced_high: usize,
    /// Whether a lane was paused.
    was_paused: bool,
}

/// Runs `listener` over `topic` with `extra` YAML under `mq:` until it saw `records` or
/// 90 s passed; the records in the order seen and what the lanes showed.
async fn consume(
    listener: &'static str,
    topic: &str,
    extra: &str,
    records: u64,
) -> (Vec<u64>, Watched) {
    let yaml = format!(
        "mq:\n{extra}  listeners:\n    {listener}:\n      topics: [\"{topic}\"]\n      group: \"{}\"\n",
        unique("ra")
    );
    let seen = Seen::default();
    let app = App::new(config(&yaml))
        .with_state(seen.clone())
        .only_listeners([listener])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(Duration::from_secs(30)).await, "assigned");
    let mut lanes = Watched::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.0.lock().unwrap().len() < records as usize && Instant::now() < deadline {
        for lane in app.lanes() {
            lanes.max_buffered = lanes.max_buffered.max(lane.buffered_bytes);
            lanes.paced_high = lanes.paced_high.max(lane.paced_high_bytes);
            lanes.was_paused |= lane.paused;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    app.shutdown().await.unwrap();
    let seen = seen.0.lock().unwrap().clone();
    (seen, lanes)
}

/// Every one of `records` sequence numbers was seen once, in order.
fn assert_once_in_order(seen: &[u64], records: u64) {
    assert_eq!(seen.len(), records as usize, "every record handled once");
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no record twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lane_is_held_then_paused_and_stays_within_its_share() {
    let topic = unique("read-ahead");
    create_topic(&topic, 1).await;
    let record_bytes = produce(&topic, RECORDS, 400).await;

    let extra = format!("  listener:\n    buffer-bytes: {SHARE}\n");
    let (seen, lanes) = consume("on_paced_tick", &topic, &extra, RECORDS).await;
    let max = lanes.max_buffered;
    assert_once_in_order(&seen, RECORDS);
    assert!(
        lanes.was_paused,
        "a lane that stays over its share is paused"
    );
    let bound = SHARE + ROUND * record_bytes;
    assert!(
        max > SHARE / 2 && max <= bound,
        "buffered at most {max} B: its share ({SHARE} B) plus one poll round ({bound} B in all); the backlog was {} B",
        RECORDS as usize * record_bytes
    );
}

/// Records of the paced test: about 5 MB, more than twice the pace mark and far below the
/// default share (32 MiB).
const PACED_RECORDS: u64 = 12_000;
/// `consume::flow::PACE_BYTES`.
const PACE: usize = 2 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_that_keeps_up_is_paced_to_not_filled_to_its_share() {
    let topic = unique("read-ahead-paced");
    create_topic(&topic, 1).await;
    let record_bytes = produce(&topic, PACED_RECORDS, 400).await;
    let (seen, lanes) = consume("on_quick_tick", &topic, "", PACED_RECORDS).await;

    assert_once_in_order(&seen, PACED_RECORDS);
    // The backlog is far below the share: whatever the machine's speed, nothing is paused.
    assert!(!lanes.was_paused, "a lane within its share is never paused");
    // The mechanism, not the speed: while the lane was paced to (not found slow, which a
    // busy machine may make it), the poll thread never buffered more than the pace mark
    // plus one poll round for it. A lane that was found slow fills towards its share, as
    // the slow-lane test shows; how fast this lane is decides only which of the two it saw.
    let bound = PACE + ROUND * record_bytes;
    assert!(
        lanes.paced_high <= bound,
        "buffered at most {} B while paced to: the pace mark ({PACE} B) plus one poll round ({bound} B in all); the backlog was {} B (most ever buffered: {} B)",
        lanes.paced_high,
        PACED_RECORDS as usize * record_bytes,
        lanes.max_buffered
    );
}
