//! A listener's Kafka consumer: a poll loop on a thread of its own that routes records into
//! lanes.
//!
//! The consumer's one queue is polled by its own thread the whole time. That serves
//! rebalances (see [`rebalance`](super::rebalance)), keeps the member in its group while
//! handlers are slow or block a runtime thread (`max.poll.interval.ms` counts polls), and
//! routes records into their partitions' lanes (`consume`) in batches: one handoff per
//! batch, not per record. The loop never runs a handler. Being off the runtime's worker
//! threads, it polls on one core while the lanes run on the others; on a worker it would
//! share a core with the lanes it wakes.
//!
//! Because every record comes through the one queue, librdkafka's read-ahead limit
//! (`queued.max.messages.kbytes`) bounds the whole consumer whatever its partition count,
//! and the lanes' buffers are bounded by `mq.listener.buffer-bytes`: the poll thread waits
//! a moment for a lane over its share ([`HOLD`]), then has its partition paused. It also
//! paces itself to a lane that keeps up, so that the lane reads records the poll thread
//! copied a moment ago, still in cache (`consume::flow::PACE_BYTES`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::rebalance::{commit_stored, ConsumerStatus, MqConsumer, MqContext};
use super::record_copy::next_record;
use crate::consume::{self, Batch, LaneKey, LaneSet, LaneSettings, MAX_BATCH};
use crate::metrics::Metrics;
use crate::pipeline::ListenerRuntime;
use crate::record::Record;

/// Starts one consumer of a listener; the returned task ends after shutdown, once the
/// consumer committed and left its group.
pub(crate) fn spawn(
    runtime: Arc<ListenerRuntime>,
    config: rdkafka::ClientConfig,
    settings: LaneSettings,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<(JoinHandle<()>, Arc<ConsumerStatus>), crate::error::Error> {
    let status = Arc::new(ConsumerStatus::default());
    let rt = tokio::runtime::Handle::current();
    let lanes = Arc::new(LaneSet::new(runtime.clone(), settings, rt.clone()));
    let _ = status.lanes.set(lanes.clone());
    consume::spawn_watchdog(&lanes, shutdown.clone(), &rt);
    // Cancelled when the task below ends, or is dropped with the runtime without having
    // been shut down: the poll thread then stops, and rebalances no longer wait for lanes.
    let runtime_gone = CancellationToken::new();
    let context = MqContext {
        instance_id: config.get(super::instance_id::KEY).map(str::to_owned),
        lanes: lanes.clone(),
        consumer: OnceLock::new(),
        status: status.clone(),
        metrics,
        rt,
        runtime_gone: runtime_gone.clone(),
    };
    let name = runtime.spec.name;
    let consumer: MqConsumer = config.create_with_context(context).map_err(|e| {
        crate::error::Error::Kafka(format!("cannot create consumer of {name}: {e}"))
    })?;
    let consumer = Arc::new(consumer);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    let subscriptions = super::retry_topic::subscriptions(&runtime.spec);
    let topics: Vec<&str> = subscriptions.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| {
        crate::error::Error::Kafka(format!("cannot subscribe {name} to {topics:?}: {e}"))
    })?;
    let (stopped, polled_out) = tokio::sync::oneshot::channel();
    let (poll_consumer, poll_lanes, poll_status) =
        (consumer.clone(), lanes.clone(), status.clone());
    let stop = CancellationToken::new();
    let poll_stop = stop.clone();
    std::thread::Builder::new()
        .name(format!("mq-poll-{name}"))
        .spawn(move || {
            if let Some(reason) =
                poll_until_shutdown(&poll_consumer, &poll_lanes, &poll_stop, &poll_status)
            {
                if poll_status.stop(reason.clone()) {
                    tracing::error!(
                        listener = name,
                        reason = %reason,
                        "consumer stopped for good: its partitions go to the group's other members, which read again what it had not committed; the listener is not ready"
                    );
                }
            }
            let _ = stopped.send(());
        })
        .map_err(|e| {
            crate::error::Error::Kafka(format!("cannot start the poll thread of {name}: {e}"))
        })?;
    // Whether this task ends or is dropped with its runtime, the poll thread stops.
    let stop_polling = stop.clone().drop_guard();
    let gone = runtime_gone.drop_guard();
    let close_status = status.clone();
    let join = tokio::spawn(async move {
        let (_stop_polling, _gone) = (stop_polling, gone);
        let mut polled_out = polled_out;
        tokio::select! {
            _ = shutdown.cancelled() => {
                stop.cancel();
                let _ = polled_out.await;
            }
            // The poll loop stopped by itself: a fatal error. Leave the group now, so its
            // partitions go to the other members.
            _ = &mut polled_out => {}
        }
        close(consumer, lanes, &close_status).await;
    });
    Ok((join, status))
}

/// How long one poll waits for a record: the most the loop takes to notice shutdown, and
/// the longest gap between two liveness stamps.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// Records taken without waiting after a poll that waited, before the loop looks at
/// shutdown and stamps its liveness again.
const DRAIN_MAX: usize = 4 * MAX_BATCH;

/// Polls until `stop` (the app's shutdown, or the runtime's end), or until an error stops
/// the consumer for good ([`fatal_error`](super::fatal_error)): then returns why, and the
/// records polled but not yet handed to their lanes are dropped (never handled, never
/// committed).
fn poll_until_shutdown(
    consumer: &MqConsumer,
    lanes: &LaneSet,
    stop: &CancellationToken,
    status: &ConsumerStatus,
) -> Option<String> {
    let listener = lanes.runtime().spec.name;
    let instance_id = consumer.context().instance_id.clone();
    let (recycle, returned) = tokio::sync::mpsc::unbounded_channel();
    lanes.recycle_into(recycle);
    let mut router = Router::new(returned);
    while !stop.is_cancelled() {
        stamp(status);
        router.hold_left = HOLD;
        let mut wait = POLL_WAIT;
        for _ in 0..DRAIN_MAX {
            match consumer.poll(wait) {
                Some(Ok(m)) => router.route(lanes, &m),
                Some(Err(e)) => {
                    let fatal = consumer.client().fatal_error();
                    match super::fatal_error::stop_reason(&e, fatal, instance_id.as_deref()) {
                        Some(reason) => return Some(reason),
                        None => tracing::warn!(listener, error = %e, "consumer error"),
                    }
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        // Nothing more is ready (or the loop took its fill): the lanes get what was routed.
        router.flush(lanes);
    }
    None
}

fn stamp(status: &ConsumerStatus) {
    status
        .last_poll_ms
        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
}

/// Batches records for their lanes. Consecutive records mostly share a partition (a fetch
/// brings a run of each), so it keeps one batch, for the last record's lane, and hands it
/// over when the next record is for another lane, when it is full, or when the poll loop
/// is about to wait. Each message is copied into a spent record when the lanes gave some
/// back.
struct Router {
    last: Option<(LaneKey, consume::Lane)>,
    batch: Batch,
    /// Spent records to refill.
    spares: Vec<Arc<Record>>,
    /// Empty vectors for the next batches.
    empties: Vec<Vec<Arc<Record>>>,
    returned: tokio::sync::mpsc::UnboundedReceiver<Vec<Arc<Record>>>,
    /// What is left of this poll round's [`HOLD`].
    hold_left: Duration,
}

impl Router {
    fn new(returned: tokio::sync::mpsc::UnboundedReceiver<Vec<Arc<Record>>>) -> Router {
        Router {
            last: None,
            batch: Batch::default(),
            spares: Vec::new(),
            empties: Vec::new(),
            returned,
            hold_left: HOLD,
        }
    }

    fn route(&mut self, lanes: &LaneSet, m: &BorrowedMessage<'_>) {
        let hit = matches!(&self.last, Some((k, lane))
            if k.partition == m.partition() && &*k.topic == m.topic() && !lane.is_closed());
        if !hit {
            self.flush(lanes);
            // Keep the lane's own key: its topic is the one `Arc` that spent records
            // already hold, so refilling them does not swap it.
            let key = LaneKey::of(m.topic(), m.partition());
            self.last = lanes.get(&key).map(|lane| (lane.shared.key.clone(), lane));
        }
        if self.last.is_none() {
            // No lane: the partition was revoked after librdkafka queued the record. Its
            // next owner reads it again.
            tracing::debug!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                "record for a partition without a lane: dropped unacknowledged"
            );
            return;
        }
        let spare = self.spare();
        if let Some((key, _)) = &self.last {
            self.batch.push(next_record(spare, m, &key.topic));
        }
        if self.batch.len() >= MAX_BATCH {
            self.flush(lanes);
        }
    }

    /// Hands the batch to its lane.
    fn flush(&mut self, lanes: &LaneSet) {
        if self.batch.is_empty() {
            return;
        }
        let next = Batch::reusing(self.empties.pop().unwrap_or_default());
        let batch = std::mem::replace(&mut self.batch, next);
        let Some((key, lane)) = &self.last else {
            return;
        };
        let (first, n) = (batch.records[0].offset, batch.len());
        hold_for_room(lanes, lane, batch.bytes, &mut self.hold_left);
        if !lane.push_batch(batch) {
            tracing::debug!(
                topic = %key.topic,
                partition = key.partition,
                offset = first,
                records = n,
                "lane closed: records dropped unacknowledged"
            );
            self.last = None;
        }
    }

    /// A spent record to refill, if the lanes gave one back.
    fn spare(&mut self) -> Option<Arc<Record>> {
        if self.spares.is_empty() {
            let mut returned = self.returned.try_recv().ok()?;
            std::mem::swap(&mut self.spares, &mut returned);
            if self.empties.len() < 4 {
                self.empties.push(returned);
            }
        }
        self.spares.pop()
    }
}

/// How long the poll thread waits for lanes, at most, per poll round: for a lane over its
/// share of the read-ahead budget before its partition is paused, and for a lane deeper than
/// it needs (`consume::flow::PACE_BYTES`) before it is taken for slow.
///
/// A lane that keeps up but is behind the poll thread gets room within a moment: waiting
/// for it, as a bounded channel would, keeps what librdkafka fetched ahead, and keeps the
/// lane reading records that are still in cache. Pausing the partition makes librdkafka
/// drop its read-ahead and fetch it again on resume. A lane whose handler is slow stays
/// full, and is paused once the round's hold is spent (once: a paused lane has room).
/// Rebalance events and shutdown wait behind the poll thread for at most this long per
/// round, however many lanes are full.
const HOLD: Duration = Duration::from_millis(50);

/// The longest the poll thread waits for a lane that is only deeper than its pace mark:
/// a lane that does not take a batch within this is taken for slow, and is not paced to
/// until it has caught up. Pacing pays for lanes that take a record in microseconds (the
/// cache misses it saves are a fraction of a microsecond); waiting longer for a slower lane
/// would hold every other lane of the consumer to its pace.
const PACE_WAIT: Duration = Duration::from_millis(5);

/// Waits, up to what is `left` of the round's [`HOLD`], for `lane` to have room for `bytes`
/// and to be within its pace mark (for the latter at most [`PACE_WAIT`], and only while no
/// other lane of `lanes` runs low: the poll thread then has better to do than wait); takes
/// the time waited from `left`. A lane still deeper than its mark when the wait is over is
/// taken for slow.
fn hold_for_room(lanes: &LaneSet, lane: &consume::Lane, bytes: usize, left: &mut Duration) {
    let full = !lane.has_room(bytes);
    let pace = !full && lane.is_deep() && !lanes.any_low(&lane.shared.key);
    if !full && !pace {
        return;
    }
    let limit = if full { *left } else { PACE_WAIT.min(*left) };
    let start = std::time::Instant::now();
    loop {
        if start.elapsed() >= limit {
            if !full {
                lane.set_slow();
            }
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
        if lane.has_room(bytes) && !lane.is_deep() {
            break;
        }
    }
    *left = left.saturating_sub(start.elapsed());
}

/// Closes every lane (their in-flight records finish), commits (unless the consumer was
/// stopped by a fatal error: it stored nothing since), leaves the group.
async fn close(consumer: Arc<MqConsumer>, lanes: Arc<LaneSet>, status: &ConsumerStatus) {
    let timeout = lanes.settings().drain_timeout;
    lanes.close(None).await;
    let commit = status.stopped().is_none();
    // Closing blocks (commit, leave group): keep it off the async threads, and do not wait
    // for ever when the broker is gone (the stored offsets are then simply not committed,
    // and the records are read again).
    let closing = tokio::task::spawn_blocking(move || {
        if commit {
            commit_stored(&*consumer);
        }
        consumer.unsubscribe();
        drop(consumer);
    });
    if tokio::time::timeout(timeout, closing).await.is_err() {
        tracing::warn!(
            ?timeout,
            "consumer did not close in time (broker unreachable?); left behind"
        );
    }
}
