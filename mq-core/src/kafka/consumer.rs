//! A listener's Kafka consumer: one ordered worker task per assigned partition.
//!
//! On assignment, each partition's messages are split into their own librdkafka queue
//! (`split_partition_queue`) and a worker task reads it in order, runs each record through
//! the [`ListenerRuntime`], and stores the record's offset only once the record is done
//! (handled, dead-lettered or skipped). librdkafka auto-commits stored offsets, so the
//! committed offset never passes a record that was not done: at-least-once.
//!
//! The consumer's main queue is polled by its own task the whole time, which serves
//! rebalances and keeps the member in its group even while a worker waits out a retry
//! backoff (`max.poll.interval.ms` counts main-queue polls).
//!
//! On revocation the revoked workers stop taking records, finish the one in flight (bounded
//! by `mq.shutdown.timeout`), and the stored offsets are committed synchronously before the
//! partitions go. On shutdown the same happens for every partition, then the consumer
//! leaves its group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Statistics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dispatch::ListenerRuntime;
use crate::metrics::Metrics;
use crate::record::{copy_into, Headers, Record, TimestampType};

type MqConsumer = StreamConsumer<MqContext>;

/// Live facts about one consumer, read by health checks and tests.
#[derive(Debug, Default)]
pub(crate) struct ConsumerStatus {
    /// Partitions assigned right now.
    pub(crate) assigned: AtomicUsize,
    /// Unix millis of the last main-queue poll.
    pub(crate) last_poll_ms: AtomicI64,
    /// Rebalances seen.
    pub(crate) rebalances: AtomicUsize,
    /// In its group right now: set by an assignment (even an empty one), cleared by a
    /// revocation (readiness reads it).
    pub(crate) member: AtomicBool,
}

struct Worker {
    stop: CancellationToken,
    join: JoinHandle<()>,
}

/// The rdkafka context: reacts to rebalances by starting and stopping partition workers.
pub(crate) struct MqContext {
    runtime: Arc<ListenerRuntime>,
    consumer: OnceLock<Weak<MqConsumer>>,
    workers: Mutex<HashMap<(String, i32), Worker>>,
    shutdown: CancellationToken,
    drain_timeout: Duration,
    status: Arc<ConsumerStatus>,
    metrics: Arc<Metrics>,
    rt: tokio::runtime::Handle,
}

impl ClientContext for MqContext {
    fn stats(&self, stats: Statistics) {
        for topic in stats.topics.values() {
            for p in topic.partitions.values() {
                if p.partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics.set_lag(
                        self.runtime.spec.name,
                        &topic.topic,
                        p.partition,
                        p.consumer_lag,
                    );
                }
            }
        }
    }
}

impl ConsumerContext for MqContext {
    fn pre_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked: Vec<Worker> = {
                let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
                tpl.elements()
                    .iter()
                    .filter_map(|e| workers.remove(&(e.topic().to_owned(), e.partition())))
                    .collect()
            };
            tracing::info!(
                listener = self.runtime.spec.name,
                partitions = tpl.count(),
                "partitions revoked"
            );
            self.drain(revoked);
            commit_stored(consumer);
            self.status.assigned.store(0, Ordering::Relaxed);
            self.status.member.store(false, Ordering::Relaxed);
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        self.status.rebalances.fetch_add(1, Ordering::Relaxed);
        match rebalance {
            Rebalance::Assign(tpl) => {
                let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
                    return;
                };
                let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
                for e in tpl.elements() {
                    let (topic, partition) = (e.topic().to_owned(), e.partition());
                    let Some(queue) = consumer.split_partition_queue(&topic, partition) else {
                        tracing::error!(%topic, partition, "cannot split the partition queue");
                        continue;
                    };
                    let stop = self.shutdown.child_token();
                    let join = self.rt.spawn(run_worker(
                        queue,
                        Arc::from(topic.as_str()),
                        partition,
                        consumer.clone(),
                        self.runtime.clone(),
                        stop.clone(),
                    ));
                    workers.insert((topic, partition), Worker { stop, join });
                }
                self.status.assigned.store(workers.len(), Ordering::Relaxed);
                self.status.member.store(true, Ordering::Relaxed);
                tracing::info!(
                    listener = self.runtime.spec.name,
                    partitions = ?tpl.elements().iter().map(|e| format!("{}-{}", e.topic(), e.partition())).collect::<Vec<_>>(),
                    "partitions assigned"
                );
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl MqContext {
    /// Stops `workers` and waits (bounded) for their in-flight record.
    fn drain(&self, workers: Vec<Worker>) {
        if workers.is_empty() {
            return;
        }
        let wait = stop_workers(workers, self.drain_timeout);
        // Rebalance callbacks run inside a poll on a runtime thread: step out of the
        // async context to wait. On a current-thread runtime we cannot block, so we do not
        // wait (the revoked records are simply delivered again).
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(wait));
            }
            Ok(_) => tracing::debug!("current-thread runtime: not waiting for revoked workers"),
            Err(_) => self.rt.block_on(wait),
        }
    }
}

/// Stops `workers` from taking records at once; the returned future waits (up to
/// `timeout`) for the record each has in flight.
fn stop_workers(workers: Vec<Worker>, timeout: Duration) -> impl std::future::Future<Output = ()> {
    for w in &workers {
        w.stop.cancel();
    }
    let joins = futures::future::join_all(workers.into_iter().map(|w| w.join));
    async move {
        if tokio::time::timeout(timeout, joins).await.is_err() {
            tracing::warn!(
                ?timeout,
                "partition workers did not finish in time; their records will be delivered again"
            );
        }
    }
}

fn commit_stored<C: ConsumerContext>(consumer: &impl Consumer<C>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "commit of stored offsets failed"),
    }
}

/// Records a worker handles before it stores their offset. Storing takes librdkafka's
/// topic and partition locks, which every worker of the topic shares; the offset is also
/// stored whenever the partition runs dry and when the worker stops, so this bounds only
/// how many records a crash re-delivers, not how long a done record stays unstored.
const STORE_EVERY: u32 = 64;

/// The offset of the last done record of one partition, until it is stored.
struct OffsetStore<'a> {
    consumer: &'a MqConsumer,
    topic: &'a str,
    partition: i32,
    done: Option<i64>,
    unstored: u32,
}

impl OffsetStore<'_> {
    /// `offset` was handled, dead-lettered or skipped: it may be committed.
    fn done(&mut self, offset: i64) {
        self.done = Some(offset);
        self.unstored += 1;
        if self.unstored >= STORE_EVERY {
            self.store();
        }
    }

    /// Stores the last done offset (librdkafka commits `offset + 1` with the next commit).
    fn store(&mut self) {
        self.unstored = 0;
        if let Some(offset) = self.done.take() {
            if let Err(e) = self
                .consumer
                .store_offset(self.topic, self.partition, offset)
            {
                // The partition was revoked meanwhile: the new owner reads the record again.
                tracing::debug!(error = %e, "offset not stored");
            }
        }
    }
}

async fn run_worker(
    queue: rdkafka::consumer::stream_consumer::StreamPartitionQueue<MqContext>,
    topic: Arc<str>,
    partition: i32,
    consumer: Arc<MqConsumer>,
    runtime: Arc<ListenerRuntime>,
    stop: CancellationToken,
) {
    let local = runtime.worker_local();
    let mut offsets = OffsetStore {
        consumer: &consumer,
        topic: &topic,
        partition,
        done: None,
        unstored: 0,
    };
    // The record the previous message was copied into, refilled when no one kept it.
    let mut spare = None;
    // One stream and one cancellation future for the worker's life: `queue.recv()` and
    // `stop.cancelled()` per record each registered and removed a waker under a lock.
    let mut messages = queue.stream();
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        // Give other tasks on this thread their turn now and then: a partition that never
        // runs dry would otherwise keep the thread for itself.
        tokio::task::consume_budget().await;
        if stop.is_cancelled() {
            break;
        }
        let message = match messages.next().now_or_never() {
            Some(m) => m,
            None => {
                // Nothing ready: store what is done before waiting.
                offsets.store();
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    m = messages.next() => m,
                }
            }
        };
        let message = match message {
            Some(Ok(m)) => m,
            // Kafka streams never end; should one, the worker stops.
            None => break,
            Some(Err(e)) => {
                tracing::warn!(listener = runtime.spec.name, error = %e, "consumer error");
                continue;
            }
        };
        let record = next_record(spare.take(), &message, &topic);
        let disposition = runtime.process(&local, record.clone(), &stop).await;
        spare = Some(record);
        if !disposition.is_done() {
            break;
        }
        offsets.done(message.offset());
    }
    // Stopped (shutdown or revocation): what is done gets committed before the partition goes.
    offsets.store();
}

/// A new record holding a copy of `m`.
fn to_record(m: &BorrowedMessage<'_>, topic: Arc<str>) -> Record {
    let mut record = Record {
        topic,
        partition: 0,
        offset: 0,
        key: None,
        value: None,
        headers: Headers::default(),
        timestamp: None,
        timestamp_type: TimestampType::NoTimestampType,
    };
    refill(&mut record, m);
    record
}

/// The record for `m`: the worker's previous one refilled in place when nothing else holds
/// it any more (the handler kept no `Context`), which saves its six allocations; a new
/// one otherwise. `topic` is the worker's partition's, so it never changes.
fn next_record(
    spare: Option<Arc<Record>>,
    m: &BorrowedMessage<'_>,
    topic: &Arc<str>,
) -> Arc<Record> {
    if let Some(mut record) = spare {
        if let Some(r) = Arc::get_mut(&mut record) {
            refill(r, m);
            return record;
        }
    }
    Arc::new(to_record(m, topic.clone()))
}

/// Copies `m` (all but its topic) into `record`, reusing its buffers.
fn refill(record: &mut Record, m: &BorrowedMessage<'_>) {
    record.partition = m.partition();
    record.offset = m.offset();
    let ts = m.timestamp();
    record.timestamp = ts.to_millis();
    record.timestamp_type = match ts {
        rdkafka::Timestamp::CreateTime(_) => TimestampType::CreateTime,
        rdkafka::Timestamp::LogAppendTime(_) => TimestampType::LogAppendTime,
        rdkafka::Timestamp::NotAvailable => TimestampType::NoTimestampType,
    };
    copy_into(&mut record.key, m.key());
    copy_into(&mut record.value, m.payload());
    match m.headers() {
        Some(hs) => record.headers.refill(hs.iter().map(|h| (h.key, h.value))),
        None => record.headers.refill(std::iter::empty()),
    }
}

/// Starts one consumer of a listener; the returned task ends after shutdown, once the
/// consumer committed and left its group.
pub(crate) fn spawn(
    runtime: Arc<ListenerRuntime>,
    config: rdkafka::ClientConfig,
    shutdown: CancellationToken,
    drain_timeout: Duration,
    metrics: Arc<Metrics>,
) -> Result<(JoinHandle<()>, Arc<ConsumerStatus>), crate::Error> {
    let status = Arc::new(ConsumerStatus::default());
    let context = MqContext {
        runtime: runtime.clone(),
        consumer: OnceLock::new(),
        workers: Mutex::new(HashMap::new()),
        shutdown: shutdown.clone(),
        drain_timeout,
        status: status.clone(),
        metrics,
        rt: tokio::runtime::Handle::current(),
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
        poll_until_shutdown(&consumer, &runtime, &shutdown, &task_status).await;
        close(consumer).await;
    });
    Ok((join, status))
}

async fn poll_until_shutdown(
    consumer: &Arc<MqConsumer>,
    runtime: &Arc<ListenerRuntime>,
    shutdown: &CancellationToken,
    status: &ConsumerStatus,
) {
    let local = runtime.worker_local();
    loop {
        status
            .last_poll_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        let polled = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = consumer.recv() => m,
            // Wake up now and then so liveness sees the loop turning.
            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
        };
        match polled {
            // Records fetched before their partition queue was split arrive here. Handle
            // them (never drop one); their offset is not stored, the partition's worker
            // stores later ones.
            Ok(m) => {
                tracing::debug!(
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    "record on the main queue"
                );
                let _ = runtime
                    .process(
                        &local,
                        Arc::new(to_record(&m, Arc::from(m.topic()))),
                        shutdown,
                    )
                    .await;
            }
            Err(e) => tracing::warn!(listener = runtime.spec.name, error = %e, "consumer error"),
        }
    }
}

/// Stops every worker (their in-flight record finishes), commits, leaves the group.
async fn close(consumer: Arc<MqConsumer>) {
    let workers: Vec<Worker> = {
        let mut w = consumer
            .context()
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        w.drain().map(|(_, w)| w).collect()
    };
    let ctx_timeout = consumer.context().drain_timeout;
    stop_workers(workers, ctx_timeout).await;
    // Closing blocks (commit, leave group): keep it off the async threads, and do not wait
    // for ever when the broker is gone (the stored offsets are then simply not committed,
    // and the records are read again).
    let closing = tokio::task::spawn_blocking(move || {
        commit_stored(&*consumer);
        consumer.unsubscribe();
        drop(consumer);
    });
    if tokio::time::timeout(ctx_timeout, closing).await.is_err() {
        tracing::warn!(timeout = ?ctx_timeout, "consumer did not close in time (broker unreachable?); left behind");
    }
}
