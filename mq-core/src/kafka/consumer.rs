//! A listener's Kafka consumer: a poll loop that routes records into lanes.
//!
//! The consumer's one queue is polled by its own task the whole time. That serves
//! rebalances (see [`rebalance`](super::rebalance)), keeps the member in its group while
//! handlers are slow (`max.poll.interval.ms` counts polls), and routes each record into
//! its partition's lane (`consume`). The loop never runs a handler.
//!
//! Because every record comes through the one queue, librdkafka's read-ahead limit
//! (`queued.max.messages.kbytes`) bounds the whole consumer whatever its partition count,
//! and the lanes' buffers are bounded by `mq.listener.buffer-bytes` (a lane over its share
//! has its partition paused).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::rebalance::{commit_stored, ConsumerStatus, MqConsumer, MqContext};
use super::record_copy::next_record;
use crate::consume::{self, LaneKey, LaneSet, LaneSettings};
use crate::dispatch::ListenerRuntime;
use crate::metrics::Metrics;
use crate::record::Record;

/// Starts one consumer of a listener; the returned task ends after shutdown, once the
/// consumer committed and left its group.
pub(crate) fn spawn(
    runtime: Arc<ListenerRuntime>,
    config: rdkafka::ClientConfig,
    settings: LaneSettings,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<(JoinHandle<()>, Arc<ConsumerStatus>), crate::Error> {
    let status = Arc::new(ConsumerStatus::default());
    let rt = tokio::runtime::Handle::current();
    let lanes = Arc::new(LaneSet::new(runtime.clone(), settings, rt.clone()));
    let _ = status.lanes.set(lanes.clone());
    consume::spawn_watchdog(&lanes, shutdown.clone(), &rt);
    let context = MqContext {
        lanes: lanes.clone(),
        consumer: OnceLock::new(),
        status: status.clone(),
        metrics,
        rt,
    };
    let consumer: MqConsumer = config.create_with_context(context).map_err(|e| {
        crate::Error::Kafka(format!(
            "cannot create consumer of {}: {e}",
            runtime.spec.name
        ))
    })?;
    let consumer = Arc::new(consumer);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    let subscriptions = runtime.spec.subscriptions();
    let topics: Vec<&str> = subscriptions.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| {
        crate::Error::Kafka(format!(
            "cannot subscribe {} to {topics:?}: {e}",
            runtime.spec.name
        ))
    })?;
    let task_status = status.clone();
    let join = tokio::spawn(async move {
        poll_until_shutdown(&consumer, &lanes, &shutdown, &task_status).await;
        close(consumer, lanes).await;
    });
    Ok((join, status))
}

/// Records routed between two updates of the poll loop's liveness stamp.
const STAMP_EVERY: u32 = 1024;

async fn poll_until_shutdown(
    consumer: &Arc<MqConsumer>,
    lanes: &LaneSet,
    shutdown: &CancellationToken,
    status: &ConsumerStatus,
) {
    let listener = lanes.runtime().spec.name;
    let (recycle, spares) = tokio::sync::mpsc::unbounded_channel();
    lanes.recycle_into(recycle);
    let mut router = Router { last: None, spares };
    let mut messages = consumer.stream();
    let mut since_stamp = 0;
    loop {
        since_stamp += 1;
        if since_stamp >= STAMP_EVERY {
            since_stamp = 0;
            stamp(status);
        }
        let polled = match messages.next().now_or_never() {
            Some(m) => m,
            None => {
                stamp(status);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    m = messages.next() => m,
                    // Wake up now and then so liveness sees the loop turning.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        match polled {
            Some(Ok(m)) => router.route(lanes, &m),
            Some(Err(e)) => tracing::warn!(listener, error = %e, "consumer error"),
            None => return,
        }
        // Let the lanes on this thread have their turn.
        tokio::task::consume_budget().await;
    }
}

fn stamp(status: &ConsumerStatus) {
    status
        .last_poll_ms
        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
}

/// Finds records' lanes, remembering the last one (consecutive records mostly share it),
/// and copies each message into a spent record when the lanes gave one back.
struct Router {
    last: Option<(LaneKey, consume::Lane)>,
    spares: tokio::sync::mpsc::UnboundedReceiver<Arc<Record>>,
}

impl Router {
    fn route(&mut self, lanes: &LaneSet, m: &BorrowedMessage<'_>) {
        let hit = matches!(&self.last, Some((k, lane))
            if k.partition == m.partition() && &*k.topic == m.topic() && !lane.is_closed());
        if !hit {
            let key = LaneKey::of(m.topic(), m.partition());
            self.last = lanes.get(&key).map(|lane| (key, lane));
        }
        let Some((key, lane)) = &self.last else {
            // No lane: the partition was revoked after librdkafka queued the record. Its
            // next owner reads it again.
            tracing::debug!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                "record for a partition without a lane: dropped unacknowledged"
            );
            return;
        };
        let record = next_record(self.spares.try_recv().ok(), m, &key.topic);
        if !lane.push(record) {
            tracing::debug!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                "lane closed: record dropped unacknowledged"
            );
            self.last = None;
        }
    }
}

/// Closes every lane (their in-flight records finish), commits, leaves the group.
async fn close(consumer: Arc<MqConsumer>, lanes: Arc<LaneSet>) {
    let timeout = lanes.settings().drain_timeout;
    lanes.close(None).await;
    // Closing blocks (commit, leave group): keep it off the async threads, and do not wait
    // for ever when the broker is gone (the stored offsets are then simply not committed,
    // and the records are read again).
    let closing = tokio::task::spawn_blocking(move || {
        commit_stored(&*consumer);
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
